"""Per-project prices: a project's own price for a model wins over the shipped table for
that project only (fine-tunes, self-hosted models, negotiated prices); costs priced by it show
``priced_as: "project:<model>"``.

Reading: the cost and projected-cost routes need a project's prices before they price a request.
They cannot come with the budget in the same request (the cost write is an UpdateItem or a
transaction, which reads nothing back before it writes), so each Lambda container caches a
project's prices for ``PRICE_CACHE_SECONDS`` (default 60 s) after one Query. Staleness: after a
PUT or DELETE, containers that read the project's prices less than that long ago keep pricing with
what they read until their copy expires (the container that served the write forgets its copy at
once). A cost request therefore makes at most one extra read (a Query of the project's PRICE#
items) per project per container per minute.

Matching: a project price applies to a request whose model is its model exactly, or resolves (in
the shipped table) to the table entry of that name: a price for ``gpt-4o`` also prices
``openai/gpt-4o``.
"""

from __future__ import annotations

import os
import threading
import time
from decimal import Decimal
from typing import TYPE_CHECKING, NamedTuple

from budget_service.core.errors import PriceNotFound
from budget_service.core.records import iso
from budget_service.pricing.prices import (
    ModelPrice,
    PriceTable,
    default_table,
    price_from_entry,
)
from budget_service.store.prices import PriceStore

if TYPE_CHECKING:  # the cost routes read project prices without the price routes' models
    from budget_service.schemas import PriceIn, PriceRecord

PRICE_CACHE_SECONDS = float(os.environ.get("PRICE_CACHE_SECONDS", "60"))
PROJECT_PRICE_PREFIX = "project:"

_cache: dict[tuple, tuple[float, dict[str, dict]]] = {}
_cache_lock = threading.Lock()


def _plain_numbers(value):
    """A stored price (DynamoDB Decimals) as the PriceIn fields, numbers kept as Decimal."""
    if isinstance(value, dict):
        return {k: _plain_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_numbers(v) for v in value]
    return value


def _entry(price: dict, model: str, table: PriceTable) -> dict:
    entry = dict(price)
    if entry.get("provider") is None:
        entry["provider"] = table.provider_of(model)
    return entry


class ProjectPrices(NamedTuple):
    """A project's prices over the shipped table: ``price(model)`` as ``PriceTable.price``."""

    prices: dict[str, dict]
    table: PriceTable

    def price(self, model: str) -> ModelPrice:
        key = model if model in self.prices else self.table.resolve_name(model)
        if key is not None and key in self.prices:
            return price_from_entry(PROJECT_PRICE_PREFIX + key, _entry(self.prices[key], key, self.table))
        return self.table.price(model)


def _price_store(store) -> PriceStore:
    return PriceStore(store.table_name, store.client)


def _cache_key(store, project: str) -> tuple:
    return (id(store.client), store.table_name, project)


def for_project(store, project: str, *, table: PriceTable | None = None) -> ProjectPrices:
    """The prices a project's costs are priced with (cached per container, see the module doc)."""
    key = _cache_key(store, project)
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(key)
    if hit is None or hit[0] <= now:
        prices = {item["model"]: _plain_numbers(item["price"]) for item in _price_store(store).list(project)}
        with _cache_lock:
            _cache[key] = (now + PRICE_CACHE_SECONDS, prices)
    else:
        prices = hit[1]
    return ProjectPrices(prices, table or default_table())


def _forget(store, project: str) -> None:
    with _cache_lock:
        _cache.pop(_cache_key(store, project), None)


def _record(item: dict) -> PriceRecord:
    from budget_service.schemas import PriceRecord

    return PriceRecord(
        project=item["project"],
        model=item["model"],
        price=_json_numbers(item["price"]),
        priced_as=PROJECT_PRICE_PREFIX + item["model"],
        created_at=iso(item["created_at"]) or "",
        updated_at=iso(item["updated_at"]) or "",
    )


def _json_numbers(value):
    if isinstance(value, dict):
        return {k: _json_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_numbers(v) for v in value]
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def put_price(store, project: str, model: str, price: PriceIn, now: Decimal) -> tuple[PriceRecord, bool]:
    """Set the project's price for `model`; (the record, True when it is new). One UpdateItem."""
    stored = price.model_dump(exclude_none=True)
    item, created = _price_store(store).put(project, model, stored, now)
    _forget(store, project)
    return _record(item), created


def get_price(store, project: str, model: str) -> PriceRecord:
    item = _price_store(store).get(project, model)
    if item is None:
        raise PriceNotFound(f"project {project!r} has no price of its own for model {model!r}")
    return _record(item)


def delete_price(store, project: str, model: str) -> None:
    """Remove it (the shipped table prices the model again); PriceNotFound when there was none."""
    existed = _price_store(store).delete(project, model)
    _forget(store, project)
    if not existed:
        raise PriceNotFound(f"project {project!r} has no price of its own for model {model!r}")


def list_prices(store, project: str) -> list[PriceRecord]:
    return [_record(item) for item in _price_store(store).list(project)]
