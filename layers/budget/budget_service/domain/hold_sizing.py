"""Hold sizing: how many output tokens a hold by messages reserves, and the project's settings.

A hold by messages reserves the prompt plus some output. With ``max_tokens`` that is the call's
own bound. Without it (most chat requests), a hold of the prompt alone is no cap at all, and a
hold of the model's maximum output is a cap that refuses long before the budget is spent. So the
output is estimated from what the project's calls of that model really produced:

- a histogram per project and model of the output tokens of settled calls (bucket ``i`` holds
  outputs up to ``bucket_upper(i)``: 16 tokens, then steps of 2^(1/4), about 19 %), kept by the
  store (budget_service.store.hold_sizing) over the last two weeks;
- with at least ``min_samples`` settles counted, the hold reserves the ``percentile`` (default
  95) of it, rounded up to its bucket's upper bound, and never more than the model's maximum
  output (``max_output_tokens`` in LiteLLM's map);
- with fewer, the model's maximum output, or the project's ``default_max_output_tokens`` (default
  4,096) for a model the map gives none;
- then a project's ``max_hold`` (USD), when set, caps every priced hold's amount.

A call that produces more than its hold is still charged in full at settle (the settle is a
top-up, never refused), which is how a learned or capped hold can overshoot a cap; the bench
measures by how much (docs: "Hold sizing").
"""

from __future__ import annotations

import math
import os
import threading
import time
from decimal import Decimal
from typing import NamedTuple

from budget_service.core.records import iso
from budget_service.schemas import HoldSizingIn, HoldSizingRecord
from budget_service.store.base import BudgetStore, default_store
from budget_service.store.hold_sizing import HoldSizingStore

FIRST_BUCKET_TOKENS = 16
BUCKETS_PER_DOUBLING = 4
MAX_BUCKET = 96  # 16 * 2^24 tokens: far past any model's output
DEFAULT_PERCENTILE = 95
DEFAULT_MIN_SAMPLES = 20
DEFAULT_MAX_OUTPUT_TOKENS = 4096
SETTINGS_CACHE_SECONDS = float(os.environ.get("HOLD_SIZING_CACHE_SECONDS", "60"))

SIZED_BY_MAX_TOKENS = "max_tokens"
SIZED_BY_LEARNED = "learned"
SIZED_BY_MODEL_MAX = "model_max_output"
SIZED_BY_PROJECT_DEFAULT = "project_default"


def bucket_upper(bucket: int) -> int:
    """The most output tokens bucket `bucket` counts (16, 20, 23, 27, 32, ...)."""
    return math.ceil(FIRST_BUCKET_TOKENS * 2 ** (bucket / BUCKETS_PER_DOUBLING))


def bucket_of(tokens: int) -> int:
    """The bucket an output of `tokens` tokens is counted in (the first whose upper bound holds it)."""
    if tokens <= FIRST_BUCKET_TOKENS:
        return 0
    bucket = max(0, math.floor(BUCKETS_PER_DOUBLING * math.log2(tokens / FIRST_BUCKET_TOKENS)) - 1)
    while bucket_upper(bucket) < tokens and bucket < MAX_BUCKET:
        bucket += 1
    return bucket


def percentile_tokens(counts: dict[int, int], percentile: float) -> int | None:
    """The `percentile` (0-100) of a histogram, as its bucket's upper bound; None when empty."""
    total = sum(counts.values())
    if total <= 0:
        return None
    rank = max(1, math.ceil(total * percentile / 100))
    seen = 0
    for bucket in sorted(counts):
        seen += counts[bucket]
        if seen >= rank:
            return bucket_upper(bucket)
    return bucket_upper(max(counts))  # pragma: no cover - the loop reaches the rank


class Settings(NamedTuple):
    """A project's hold sizing (the defaults when it set none)."""

    max_hold: Decimal | None = None
    default_max_output_tokens: int = DEFAULT_MAX_OUTPUT_TOKENS
    percentile: int = DEFAULT_PERCENTILE
    min_samples: int = DEFAULT_MIN_SAMPLES


class Sizing(NamedTuple):
    """The output tokens a hold reserves and why (``sized_by``: one of the SIZED_BY_ names)."""

    output_tokens: int
    sized_by: str


_cache: dict[tuple, tuple[float, Settings]] = {}
_cache_lock = threading.Lock()


def _settings_of(item: dict | None) -> Settings:
    fields = (item or {}).get("settings") or {}
    defaults = Settings()
    return Settings(
        max_hold=fields.get("max_hold"),
        default_max_output_tokens=int(
            fields.get("default_max_output_tokens") or defaults.default_max_output_tokens
        ),
        percentile=int(fields.get("percentile") or defaults.percentile),
        min_samples=int(fields.get("min_samples") or defaults.min_samples),
    )


def settings_for(store: BudgetStore, project: str) -> Settings:
    """The project's settings, cached per container for ``HOLD_SIZING_CACHE_SECONDS`` (60 s) as
    project prices are: at most one GetItem per project per container per minute."""
    key = (store.table_name, id(store.client), project)
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None and now - hit[0] < SETTINGS_CACHE_SECONDS:
            return hit[1]
    settings = _settings_of(HoldSizingStore(store).settings(project))
    with _cache_lock:
        _cache[key] = (now, settings)
    return settings


def forget_settings(store: BudgetStore, project: str) -> None:
    """Drop this container's cached settings of `project` (after a PUT here)."""
    with _cache_lock:
        _cache.pop((store.table_name, id(store.client), project), None)


def size_output(
    store: BudgetStore,
    project: str,
    sizing_model: str,
    model_max_output: int | None,
    max_tokens: int | None,
    settings: Settings,
    now: Decimal,
) -> Sizing:
    """The output tokens to hold for a call of `sizing_model` (the model's price entry name):
    `max_tokens` when given; else the learned percentile (capped by `model_max_output`) once
    ``min_samples`` settles are counted; else the model's maximum or the project's default."""
    if max_tokens is not None:
        return Sizing(max_tokens, SIZED_BY_MAX_TOKENS)
    ceiling = model_max_output or settings.default_max_output_tokens
    worst = Sizing(ceiling, SIZED_BY_MODEL_MAX if model_max_output else SIZED_BY_PROJECT_DEFAULT)
    counts = HoldSizingStore(store).output_histogram(project, sizing_model, now)
    if sum(counts.values()) < settings.min_samples:
        return worst
    learned = percentile_tokens(counts, settings.percentile)
    if learned is None or learned >= ceiling:
        return worst
    return Sizing(learned, SIZED_BY_LEARNED)


def record_output(
    store: BudgetStore, project: str, sizing_model: str, output_tokens: int, now: Decimal
) -> None:
    """Count a settled call's output in the model's histogram: one atomic UpdateItem."""
    HoldSizingStore(store).add_output(project, sizing_model, bucket_of(max(0, int(output_tokens))), now)


def get_settings(store: BudgetStore, project: str) -> HoldSizingRecord:
    """The project's hold sizing as stored, with the defaults for what it did not set."""
    item = HoldSizingStore(store).settings(project)
    return _record(project, item)


def put_settings(store: BudgetStore, project: str, request: HoldSizingIn, now: Decimal) -> HoldSizingRecord:
    """Replace the project's hold sizing whole (one UpdateItem). Containers other than this one
    keep the settings they read for up to ``HOLD_SIZING_CACHE_SECONDS``."""
    item = HoldSizingStore(store).put_settings(project, request.model_dump(), now)
    forget_settings(store, project)
    return _record(project, item)


def _record(project: str, item: dict | None) -> HoldSizingRecord:
    settings = _settings_of(item)
    return HoldSizingRecord(
        project=project,
        max_hold=settings.max_hold,
        default_max_output_tokens=settings.default_max_output_tokens,
        percentile=settings.percentile,
        min_samples=settings.min_samples,
        created_at=iso(item["created_at"]) if item else None,
        updated_at=iso(item["updated_at"]) if item else None,
    )


# ---- what each route does: the service's store and clock, the rule above, the answer's model ----


def get(project: str) -> HoldSizingRecord:
    """``GET /projects/{project}/hold-sizing``."""
    return get_settings(default_store(), project)


def put(project: str, request: HoldSizingIn) -> HoldSizingRecord:
    """``PUT /projects/{project}/hold-sizing``: put_settings now."""
    from budget_service.domain import budgets

    return put_settings(default_store(), project, request, budgets.utc_now())
