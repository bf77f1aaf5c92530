"""Token prices, offline: the table shipped in the layer (prices.json), priced in Decimal.

The table is derived from LiteLLM's model price map by ``scripts/refresh_prices.py`` (``make
prices``); every price is kept as the text of its JSON number and read straight into Decimal.
A cost is computed the way LiteLLM's generic per-token calculator computes it:

- ``prompt_tokens`` counts every prompt token, cached ones included (as OpenAI and LiteLLM report
  usage). Cache reads bill at the cache-read rate, cache writes at the cache-creation rate, the rest
  at the input rate; a model without a cache rate bills those tokens as ordinary input.
- ``reasoning_tokens`` are part of ``completion_tokens``; they bill at the reasoning rate where the
  model prices them apart, else at the output rate.
- ``*_above_Nk_tokens`` tiers: when the prompt is over N tokens, every token of the request bills
  at that tier's rates (a rate the tier does not name stays at the one below).

The table loads on first use (once per Lambda container).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal, localcontext
from functools import lru_cache
from pathlib import Path

from budget_service.errors import UnknownModel
from budget_service.limits import DECIMAL_CONTEXT

TABLE_PATH = Path(__file__).with_name("prices.json")
ZERO = Decimal(0)
# Providers whose long-context tier starts AT the threshold rather than above it (as in LiteLLM).
INCLUSIVE_THRESHOLD_PROVIDERS = frozenset({"xai"})

_DATED_SUFFIX = re.compile(r"-\d{4}-\d{2}-\d{2}$")
_FINE_TUNE_SUFFIX = re.compile(r"(:[^:]*){3}$")  # ft:gpt-4o:org:suffix:id -> ft:gpt-4o


@dataclass(frozen=True)
class Tier:
    above: int
    input: Decimal | None = None
    output: Decimal | None = None
    cache_read: Decimal | None = None
    cache_creation: Decimal | None = None


@dataclass(frozen=True)
class ModelPrice:
    name: str  # the table's key
    provider: str | None
    input: Decimal
    output: Decimal
    cache_read: Decimal | None = None
    cache_creation: Decimal | None = None
    reasoning: Decimal | None = None
    tiers: tuple[Tier, ...] = ()


@dataclass(frozen=True)
class TokenUsage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # part of prompt_tokens
    cache_creation_tokens: int = 0  # part of prompt_tokens
    reasoning_tokens: int = 0  # part of completion_tokens


@dataclass(frozen=True)
class Rates:
    input: Decimal
    output: Decimal
    cache_read: Decimal
    cache_creation: Decimal
    reasoning: Decimal


@dataclass(frozen=True)
class Cost:
    prompt: Decimal
    completion: Decimal

    @property
    def total(self) -> Decimal:
        return self.prompt + self.completion


def _dec(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def _price(name: str, entry: dict) -> ModelPrice:
    return ModelPrice(
        name=name,
        provider=entry.get("provider"),
        input=Decimal(entry["input"]),
        output=Decimal(entry["output"]),
        cache_read=_dec(entry.get("cache_read")),
        cache_creation=_dec(entry.get("cache_creation")),
        reasoning=_dec(entry.get("reasoning")),
        tiers=tuple(
            Tier(
                above=int(t["above"]),
                input=_dec(t.get("input")),
                output=_dec(t.get("output")),
                cache_read=_dec(t.get("cache_read")),
                cache_creation=_dec(t.get("cache_creation")),
            )
            for t in entry.get("tiers", ())
        ),
    )


class PriceTable:
    def __init__(self, models: dict[str, dict], source: str = "") -> None:
        self._entries = models
        self._lower = {name.lower(): name for name in models}
        self.source = source

    @classmethod
    def from_file(cls, path: Path = TABLE_PATH) -> PriceTable:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return cls(doc["models"], doc.get("source", ""))

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return list(self._entries)

    def _key(self, name: str) -> str | None:
        if name in self._entries:
            return name
        return self._lower.get(name.lower())

    def resolve_name(self, model: str) -> str | None:
        """The table key `model` names, resolved as LiteLLM resolves names; None if unknown.

        Tried in order: the name as given (exact, then any case); without its first path segment
        (``openai/gpt-4o`` -> ``gpt-4o``); a fine-tune reduced to its base
        (``ft:gpt-4o-mini:org::id`` -> ``ft:gpt-4o-mini``); a dated snapshot reduced to the model
        (``gpt-4o-2099-01-01`` -> ``gpt-4o``).
        """
        bases = [model]
        if "/" in model:
            bases.append(model.split("/", 1)[1])
        for base in bases:
            variants = [base]
            if "ft:" in base:
                variants.append(_FINE_TUNE_SUFFIX.sub("", base))
            variants.append(_DATED_SUFFIX.sub("", variants[-1]))
            for variant in variants:
                key = self._key(variant)
                if key is not None:
                    return key
        return None

    def provider_of(self, model: str) -> str | None:
        """The LiteLLM provider of the model `model` resolves to; None when it is not listed."""
        key = self.resolve_name(model)
        return None if key is None else self._entries[key].get("provider")

    def price(self, model: str) -> ModelPrice:
        key = self.resolve_name(model)
        if key is None:
            raise UnknownModel(
                f"no price for model {model!r}: pass the call's price as \"cost\" instead"
                " (the price table covers the text models LiteLLM prices per token)",
                details=[{"field": "model", "problem": "unknown model; pass cost"}],
            )
        return _price(key, self._entries[key])


@lru_cache(maxsize=1)
def default_table() -> PriceTable:
    return PriceTable.from_file()


def rates_for(price: ModelPrice, prompt_tokens: int) -> Rates:
    """The rates a request with `prompt_tokens` bills at (long-context tiers applied)."""
    inclusive = price.provider in INCLUSIVE_THRESHOLD_PROVIDERS
    input_rate, output_rate = price.input, price.output
    cache_read, cache_creation = price.cache_read, price.cache_creation
    for tier in price.tiers:  # ascending thresholds; each crossed tier overrides what it names
        if prompt_tokens > tier.above or (inclusive and prompt_tokens == tier.above):
            input_rate = tier.input if tier.input is not None else input_rate
            output_rate = tier.output if tier.output is not None else output_rate
            cache_read = tier.cache_read if tier.cache_read is not None else cache_read
            cache_creation = tier.cache_creation if tier.cache_creation is not None else cache_creation
    return Rates(
        input=input_rate,
        output=output_rate,
        cache_read=input_rate if cache_read is None else cache_read,
        cache_creation=input_rate if cache_creation is None else cache_creation,
        reasoning=output_rate if price.reasoning is None else price.reasoning,
    )


def cost_of(price: ModelPrice, usage: TokenUsage) -> Cost:
    """The Decimal cost of `usage` on a model. The caller has checked the counts are consistent."""
    rates = rates_for(price, usage.prompt_tokens)
    with localcontext(DECIMAL_CONTEXT):  # 38 digits, as DynamoDB keeps: exact for any real call
        return _cost(rates, usage)


def _cost(rates: Rates, usage: TokenUsage) -> Cost:
    uncached = max(usage.prompt_tokens - usage.cached_tokens - usage.cache_creation_tokens, 0)
    prompt = (
        uncached * rates.input
        + usage.cached_tokens * rates.cache_read
        + usage.cache_creation_tokens * rates.cache_creation
    )
    text_out = max(usage.completion_tokens - usage.reasoning_tokens, 0)
    completion = text_out * rates.output + usage.reasoning_tokens * rates.reasoning
    return Cost(prompt=prompt, completion=completion)
