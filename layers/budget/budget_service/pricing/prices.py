"""Token prices, offline: the table shipped in the layer (prices.json), priced in Decimal.

The table is derived from LiteLLM's model price map by ``scripts/refresh_prices.py`` (``make
prices``); every price is kept as the text of its JSON number and read straight into Decimal.
A cost is computed the way LiteLLM 1.110.2 computes it (``litellm_core_utils/llm_cost_calc/utils.py
generic_cost_per_token`` and the provider calculators it routes to), from a ``TokenUsage``:

- ``prompt_tokens`` counts every prompt token: cache reads and writes, audio, image and video
  tokens included (as OpenAI and LiteLLM report usage; other shapes are converted in models.py).
  Cache reads bill at the cache-read rate (cached audio / image tokens at their own cache-read rate
  where the model has one), cache writes at the cache-creation rate of their TTL (5 minutes: the
  base write rate; 1 hour and 12 hours: their own rate where the model has one), audio, image and
  video tokens at their modality rate; the rest at the input rate. A model without a rate bills
  those tokens at the rate they fall back to in LiteLLM (cache rates and modality rates fall back
  to the input rate, a TTL rate to the base write rate).
- ``completion_tokens`` counts every output token: reasoning, audio, image, video included. Each
  bills at its own rate where the model has one, else at the output rate.
- ``*_above_Nk_tokens`` tiers: when the prompt is over N tokens (from N on, for xAI), every token
  of the request bills at that tier's rates (a rate the tier does not name stays at the one below).
- Web search bills per request, at the price the provider's rule picks (see ``web_search_rate``).
- Anthropic's ``inference_geo`` and ``speed`` multipliers apply to the token cost.

Where a usage names something the model's price cannot bill (a service tier other than the
standard one, a web search without a price), the cost is refused (``UnpricedUsage``, 422) rather
than charged at another rate.

Model names resolve as LiteLLM resolves them (``litellm.utils.get_potential_model_names`` and
``_get_model_info_helper``): provider prefixes (checked against the entry's provider), Bedrock
route segments (``converse/``, ``invoke/``...), AWS region paths, cross-region inference prefixes
(``us.``, ``eu.``, ``apac.``, ``global.``...), throughput and context suffixes, dated snapshots,
Vertex/Gemini version numbers and OpenAI fine-tunes. A name that does not resolve is unknown (422).

The table loads on first use (once per Lambda container).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from decimal import Decimal, localcontext
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple

from budget_service.core.errors import UnknownModel, UnpricedUsage
from budget_service.core.numbers import DECIMAL_CONTEXT
from budget_service.schemas.usage import TokenUsage, UsageContext

TABLE_PATH = Path(__file__).with_name("prices.json")
ZERO = Decimal(0)
ONE = Decimal(1)
# The default of a ModelPrice's rate maps: read-only, so the one instance every default shares stays empty.
NO_RATES: Mapping[str, Decimal] = MappingProxyType({})
# Providers whose long-context tier starts AT the threshold rather than above it (as in LiteLLM).
INCLUSIVE_THRESHOLD_PROVIDERS = frozenset({"xai"})

# The rates a model may carry besides input and output (the names of prices.json, which
# scripts/refresh_prices.py maps from LiteLLM's keys), in USD per token.
OPTIONAL_RATES = (
    "cache_read",
    "cache_creation",
    "cache_creation_1h",
    "cache_creation_12h",
    "reasoning",
    "input_audio",
    "output_audio",
    "cache_read_audio",
    "input_image",
    "output_image",
    "cache_read_image",
    "input_video",
    "output_video",
)
TIER_RATES = (
    "input",
    "output",
    "cache_read",
    "cache_creation",
    "cache_creation_1h",
    "cache_creation_12h",
    "input_audio",
)
SEARCH_SIZES = ("low", "medium", "high")
# Service tiers billed at the standard rates (what providers answer for a standard request).
STANDARD_SERVICE_TIERS = frozenset({"default", "auto", "standard", "on_demand", "standard_only"})

# Map providers that are not a name prefix LiteLLM routes (bedrock_converse is bedrock/converse/...).
NOT_PREFIXES = frozenset({"bedrock_converse"})
# Providers whose names LiteLLM cannot route from a name (its get_llm_provider does not know the
# prefix, or needs the provider's login): only their exact map keys are priced.
EXACT_NAME_ONLY = frozenset(
    {
        "github_copilot",
        "anyscale",
        "amazon_nova",
        "amazon-nova",
        "ai21",
        "scaledown",
        "bedrock_mantle",
        "together_ai",
    }
)
# Providers whose names LiteLLM strips by their own rule (not the dated-snapshot one).
OWN_STRIP_RULE = ("bedrock", "vertex_ai", "gemini", "databricks")
_DATED_SUFFIX = re.compile(r"-\d{4}-\d{2}-\d{2}$")
_FINE_TUNE_SUFFIX = re.compile(r"(:[^:]*){3}$")  # ft:gpt-4o:org:suffix:id -> ft:gpt-4o
_VERTEX_VERSION = re.compile(r"-\d+$")  # gemini-1.5-pro-002 -> gemini-1.5-pro
# litellm/llms/bedrock/common_utils.py: strip_bedrock_routing_prefix, the regions and the
# cross-region inference prefixes it knows, strip_bedrock_throughput_suffix.
BEDROCK_ROUTES = (
    "bedrock/",
    "chat_completions/",
    "converse/",
    "invoke/",
    "openai/",
    "mantle/",
    "nova-2/",
    "nova/",
)
BEDROCK_CROSS_REGION = frozenset({"global", "us", "eu", "apac", "jp", "au", "us-gov"})
AWS_REGIONS = frozenset(
    {
        "us-east-1",
        "us-east-2",
        "us-west-1",
        "us-west-2",
        "us-gov-east-1",
        "us-gov-west-1",
        "eu-west-1",
        "eu-west-2",
        "eu-west-3",
        "eu-central-1",
        "eu-central-2",
        "eu-south-1",
        "eu-south-2",
        "eu-north-1",
        "ap-northeast-1",
        "ap-northeast-2",
        "ap-northeast-3",
        "ap-south-1",
        "ap-south-2",
        "ap-southeast-1",
        "ap-southeast-2",
        "ca-central-1",
        "sa-east-1",
    }
)


class Tier(NamedTuple):
    above: int
    input: Decimal | None = None
    output: Decimal | None = None
    cache_read: Decimal | None = None
    cache_creation: Decimal | None = None
    cache_creation_1h: Decimal | None = None
    cache_creation_12h: Decimal | None = None
    input_audio: Decimal | None = None


class ModelPrice(NamedTuple):
    """One model's prices (USD per token; web search USD per request).

    ``name`` is what ``priced_as`` shows: the table's key, or ``project:<model>`` for a project's
    own price. ``free`` says why a model priced 0/0 costs nothing (only then is it kept at 0/0).
    """

    name: str
    provider: str | None
    input: Decimal
    output: Decimal
    rates: Mapping[str, Decimal] = NO_RATES
    tiers: tuple[Tier, ...] = ()
    web_search: Mapping[str, Decimal] = NO_RATES
    web_search_unit: str | None = None
    multipliers: Mapping[str, Decimal] = NO_RATES
    free: str | None = None
    # LiteLLM's service-tier and batch rates ({"flex"|"priority"|...|"batches": {field: Decimal,
    # "tiers": (Tier, ...)}}), only what the map names; see with_service_tier and _batch_cost.
    service_tiers: Mapping[str, Mapping] = MappingProxyType({})
    max_output: int | None = None  # the most output tokens one call may produce (LiteLLM's map)

    def rate(self, name: str) -> Decimal | None:
        return self.rates.get(name)

    @property
    def cache_read(self) -> Decimal | None:
        return self.rates.get("cache_read")

    @property
    def cache_creation(self) -> Decimal | None:
        return self.rates.get("cache_creation")

    @property
    def reasoning(self) -> Decimal | None:
        return self.rates.get("reasoning")


class Rates(NamedTuple):
    input: Decimal
    output: Decimal
    cache_read: Decimal
    cache_creation: Decimal
    cache_creation_1h: Decimal
    cache_creation_12h: Decimal
    reasoning: Decimal
    input_audio: Decimal
    output_audio: Decimal
    cache_read_audio: Decimal
    input_image: Decimal
    output_image: Decimal
    cache_read_image: Decimal
    input_video: Decimal
    output_video: Decimal


class Cost(NamedTuple):
    prompt: Decimal
    completion: Decimal
    tools: Decimal = ZERO

    @property
    def total(self) -> Decimal:
        return self.prompt + self.completion + self.tools


def _dec(text) -> Decimal | None:
    return None if text is None else Decimal(str(text))


def price_from_entry(name: str, entry: Mapping) -> ModelPrice:
    """A ModelPrice from a prices.json entry (or a project price, which has the same fields)."""
    return ModelPrice(
        name=name,
        provider=entry.get("provider"),
        input=Decimal(str(entry["input"])),
        output=Decimal(str(entry["output"])),
        rates=MappingProxyType(
            {k: Decimal(str(entry[k])) for k in OPTIONAL_RATES if entry.get(k) is not None}
        ),
        tiers=tuple(
            Tier(above=int(t["above"]), **{k: _dec(t.get(k)) for k in TIER_RATES})
            for t in sorted(entry.get("tiers", ()), key=lambda t: int(t["above"]))
        ),
        web_search=MappingProxyType({k: Decimal(str(v)) for k, v in (entry.get("web_search") or {}).items()}),
        web_search_unit=entry.get("web_search_unit"),
        multipliers=MappingProxyType(
            {k: Decimal(str(v)) for k, v in (entry.get("multipliers") or {}).items()}
        ),
        free=entry.get("free"),
        service_tiers=MappingProxyType(
            {
                tier: MappingProxyType(
                    {
                        **{k: Decimal(str(v)) for k, v in rates.items() if k != "tiers"},
                        "tiers": tuple(
                            Tier(above=int(t["above"]), **{k: _dec(t.get(k)) for k in TIER_RATES})
                            for t in sorted(rates.get("tiers", ()), key=lambda t: int(t["above"]))
                        ),
                    }
                )
                for tier, rates in (entry.get("service_tiers") or {}).items()
            }
        ),
        max_output=int(entry["max_output"]) if entry.get("max_output") else None,
    )


_price = price_from_entry


def _provider_matches(prefix: str, provider: str | None) -> bool:
    """litellm.utils._check_provider_match: may a name under `prefix` use an entry of `provider`?"""
    if provider is None or prefix == provider:
        return True
    if prefix in ("vertex_ai", "fireworks_ai") and provider.startswith(prefix):
        return True
    if prefix.startswith("bedrock") and provider.startswith("bedrock"):
        return True
    if prefix == "azure_ai" and provider in ("azure", "openai"):
        return True
    return prefix in ("litellm_proxy", "github", "nadir")


def _strip_routes(model: str) -> str:
    for prefix in BEDROCK_ROUTES:  # each once, in this order, as LiteLLM does
        if model.startswith(prefix):
            model = model.split("/", 1)[1]
    return model


def _bedrock_split(model: str) -> str:
    """The model id AWS receives: routes stripped, a region path or an ARN reduced to the id."""
    stripped = _strip_routes(model)
    region, sep, rest = stripped.partition("/")
    if sep and region in AWS_REGIONS:
        stripped = rest
    return stripped.split("/")[-1] if stripped.startswith("arn:") else stripped


def _bedrock_base(model: str) -> str:
    """litellm get_bedrock_base_model: without routes, ARN, throughput suffix, cross-region prefix."""
    model = _strip_routes(model)
    if "arn" in model.lower():
        model = model.split("/")[-1]
    model = re.sub(r"(:\d+):\d+k$", r"\1", model)
    model = re.sub(r"\[\w+\]$", "", model)
    head = model.split(".", 1)[0]
    if head in BEDROCK_CROSS_REGION and "." in model:
        return model.split(".", 1)[1]
    region, sep, rest = model.partition("/")
    if sep and region in AWS_REGIONS:
        return rest
    return model


def _stripped(model: str, provider: str | None) -> str:
    """litellm.utils._strip_model_name."""
    if provider in ("bedrock", "bedrock_converse"):
        return _bedrock_base(model)
    if provider in ("vertex_ai", "gemini", "databricks"):
        return _VERTEX_VERSION.sub("", model)
    if "ft:" in model:
        return _FINE_TUNE_SUFFIX.sub("", model)
    return _DATED_SUFFIX.sub("", model)


class PriceTable:
    def __init__(
        self, models: dict[str, dict], source: str = "", unpriced: dict[str, dict] | None = None
    ) -> None:
        self._entries = models
        # The map's other names ({name: {"provider", "why"}}): a name LiteLLM resolves to one of
        # these is refused, never priced as an entry further down the lookup order.
        self._unpriced = unpriced or {}
        self._lower = {name.lower(): name for name in (*self._unpriced, *models)}
        self.source = source
        providers = {e.get("provider") for e in models.values() if e.get("provider")}
        # Name prefixes that are providers: every provider of an entry, and the prefix a family of
        # providers is called by (vertex_ai-language-models is named vertex_ai/...).
        self._prefixes = (
            providers
            | {str(p).split("-", 1)[0] for p in providers}
            | {"bedrock", "vertex_ai", "azure_ai", "litellm_proxy", "github", "nadir"}
        ) - NOT_PREFIXES

    @classmethod
    def from_file(cls, path: Path = TABLE_PATH) -> PriceTable:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return cls(doc["models"], doc.get("source", ""), doc.get("unpriced"))

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return list(self._entries)

    def entry(self, key: str) -> dict:
        return self._entries[key]

    def _provider(self, key: str) -> str:
        entry = self._entries.get(key) or self._unpriced.get(key) or {}
        return entry.get("provider") or ""

    def why_unpriced(self, model: str) -> str | None:
        """Why the map's entry `model` resolves to has no price here; None if it has one or none."""
        key = self._resolve(model)
        return None if key is None or key in self._entries else self._unpriced[key]["why"]

    def _key(self, name: str) -> str | None:
        """The key `name` is, in any case of its model part (a provider prefix as spelled)."""
        if name in self._entries or name in self._unpriced:
            return name
        key = self._lower.get(name.lower())
        if key is not None and "/" in key and key.split("/", 1)[0] != name.split("/", 1)[0]:
            return None
        return key

    def _candidates(self, model: str) -> tuple[str | None, list[str]]:
        """(the provider the name claims, the names to look up in order), as LiteLLM orders them."""
        head, sep, rest = model.partition("/")
        if not sep or head not in self._prefixes:
            bare = [model, _stripped(model, None)]
            return None, bare
        if not rest:
            return head, []
        provider = head
        split = _bedrock_split(rest) if provider.startswith("bedrock") else rest
        stripped = _stripped(rest, provider)
        return provider, [model, split, f"{provider}/{stripped}", stripped]

    def resolve_name(self, model: str) -> str | None:
        """The table key `model` names, resolved as LiteLLM resolves names; None if unknown.

        The name as given (exact, then any case) is tried first; then, for a name under a provider
        prefix, the name without it, the provider's stripped form (Bedrock: routes, regions and
        cross-region prefixes; Vertex/Gemini: version number; others: dated snapshot or fine-tune
        suffix) with and without the prefix. An entry found under a prefix must belong to that
        provider (``anthropic/gpt-4o`` is unknown, not gpt-4o).
        """
        key = self._resolve(model)
        return key if key in self._entries else None

    def _resolve(self, model: str) -> str | None:
        """The map's key for `model` (priced here or not), as LiteLLM looks it up."""
        if model in self._entries or model in self._unpriced:
            return model
        provider, candidates = self._candidates(model)
        head = model.split("/", 1)[0]
        for candidate in candidates:
            key = self._key(candidate)
            if key is None:
                continue
            entry_provider = self._provider(key)
            if key != model and (entry_provider in EXACT_NAME_ONLY or head in EXACT_NAME_ONLY):
                continue
            if provider is None:
                # A bare name reduced to its dated snapshot's model: only where LiteLLM strips dates.
                if candidate != model and entry_provider.startswith(OWN_STRIP_RULE):
                    continue
                return key
            if _provider_matches(provider, entry_provider):
                return key
        return None

    def provider_of(self, model: str) -> str | None:
        """The LiteLLM provider of the model `model` resolves to; None when it is not listed."""
        key = self.resolve_name(model)
        return None if key is None else self._entries[key].get("provider")

    def price(self, model: str) -> ModelPrice:
        key = self.resolve_name(model)
        if key is None:
            why = self.why_unpriced(model)
            because = f" (LiteLLM's map lists it, {why})" if why else ""
            raise UnknownModel(
                f'no price for model {model!r}{because}: pass the call\'s price as "cost" instead'
                " (the price table covers the text models LiteLLM prices per token; a project"
                " can set its own price with PUT /projects/{project}/prices/{model})",
                details=[{"field": "model", "problem": "unknown model; pass cost"}],
            )
        return price_from_entry(key, self._entries[key])


@lru_cache(maxsize=1)
def default_table() -> PriceTable:
    return PriceTable.from_file()


def _crossed(price: ModelPrice, prompt_tokens: int):
    inclusive = price.provider in INCLUSIVE_THRESHOLD_PROVIDERS
    for tier in price.tiers:  # ascending thresholds
        if prompt_tokens > tier.above or (inclusive and prompt_tokens == tier.above):
            yield tier


def rates_for(price: ModelPrice, prompt_tokens: int) -> Rates:
    """The rates a request with `prompt_tokens` bills at (long-context tiers applied, each crossed
    tier overriding what it names; missing rates fall back as LiteLLM's do)."""
    base = {k: price.rates.get(k) for k in TIER_RATES if k not in ("input", "output")}
    input_rate = price.input
    output_rate = price.output
    if output_rate == 0 and price.rates.get("output_image") is not None:
        output_rate = price.rates["output_image"]  # an image model priced only per output image token
    for tier in _crossed(price, prompt_tokens):
        input_rate = tier.input if tier.input is not None else input_rate
        output_rate = tier.output if tier.output is not None else output_rate
        for k in base:
            if getattr(tier, k) is not None:
                base[k] = getattr(tier, k)
    cache_read = input_rate if base["cache_read"] is None else base["cache_read"]
    cache_creation = input_rate if base["cache_creation"] is None else base["cache_creation"]
    r = price.rates
    return Rates(
        input=input_rate,
        output=output_rate,
        cache_read=cache_read,
        cache_creation=cache_creation,
        cache_creation_1h=cache_creation if base["cache_creation_1h"] is None else base["cache_creation_1h"],
        cache_creation_12h=cache_creation
        if base["cache_creation_12h"] is None
        else base["cache_creation_12h"],
        reasoning=output_rate if r.get("reasoning") is None else r["reasoning"],
        input_audio=input_rate if base["input_audio"] is None else base["input_audio"],
        output_audio=output_rate if r.get("output_audio") is None else r["output_audio"],
        cache_read_audio=cache_read if r.get("cache_read_audio") is None else r["cache_read_audio"],
        input_image=input_rate if r.get("input_image") is None else r["input_image"],
        output_image=output_rate if r.get("output_image") is None else r["output_image"],
        cache_read_image=cache_read if r.get("cache_read_image") is None else r["cache_read_image"],
        input_video=input_rate if r.get("input_video") is None else r["input_video"],
        output_video=output_rate if r.get("output_video") is None else r["output_video"],
    )


def _family(price: ModelPrice) -> str:
    provider = price.provider or ""
    if provider == "perplexity":
        return "perplexity"
    if provider == "xai":
        return "xai"
    if provider == "gemini" or (provider.startswith("vertex_ai") and "claude" not in price.name.lower()):
        return "gemini"
    if provider in ("anthropic", "azure_ai", "groq") or provider.startswith("vertex_ai"):
        return "anthropic"
    return "openai"


def web_search_rate(price: ModelPrice, context: UsageContext) -> tuple[Decimal | None, bool]:
    """(USD per web search request, whether one grounded prompt is billed once) by the provider's
    rule in LiteLLM (llms/__init__.py get_cost_for_web_search_request): Gemini and Vertex bill the
    medium price per grounded prompt (per query where the map says ``per_query``); Anthropic, Azure
    AI and Groq the medium price per search; xAI the first positive of medium, low, high; Perplexity
    the low price; the rest (OpenAI and others) the price of the search context size the usage
    names, medium by default. None when the model has no such price."""
    prices = price.web_search
    family = _family(price)
    if family == "gemini":
        return prices.get("medium"), (price.web_search_unit or "per_prompt") == "per_prompt"
    if family == "xai":
        return next((prices[s] for s in ("medium", "low", "high") if prices.get(s, ZERO) > 0), None), False
    if family == "perplexity":
        return prices.get("low"), False
    if family == "anthropic":
        return prices.get("medium"), False
    return prices.get(context.search_context_size or "medium"), False


# Service tiers as LiteLLM bills them (types/utils.py ServiceTier, cost_calculator._resolve_billable_service_tier,
# llm_cost_calc/utils.py get_service_tier_cost_key): the suffix of the rates each one bills at.
TIER_SUFFIXES = {
    "flex": "flex",
    "balanced": "balanced",
    "priority": "priority",
    "fast": "priority",
    "ultrafast": "ultrafast",
}
# Anthropic's Message Batches report ``service_tier: "batch"``; LiteLLM prices batch output at the
# map's ``*_batches`` rates (cost_calculator.batch_cost_calculator).
BATCH_TIER = "batch"
# Providers LiteLLM prices with a calculator that takes no service tier (cost_calculator.cost_per_token
# routes them so): any tier bills at their standard rates, as there.
TIERLESS_PROVIDERS = frozenset(
    {
        "fireworks_ai",
        "deepseek",
        "tencent",
        "perplexity",
        "xai",
        "lemonade",
        "dashscope",
        "qwencloud",
        "qwen_ai_platform",
    }
)


def _unpriced_tier(tier: str, why: str) -> UnpricedUsage:
    return UnpricedUsage(
        f'service tier {tier!r} {why}: pass the call\'s price as "cost" instead',
        details=[{"field": "service_tier", "problem": "not priced; pass cost"}],
    )


def billing_tier(price: ModelPrice, context: UsageContext) -> str | None:
    """The rates a usage's service tier bills at: None (the standard rates), a LiteLLM rate suffix
    (``flex``, ``priority``, ``balanced``, ``ultrafast``) or ``batches``.

    As LiteLLM prices them: ``auto``/``default``/``standard`` are the standard rates; ``fast`` bills
    at the priority rates; a tier on a provider whose LiteLLM calculator takes none
    (TIERLESS_PROVIDERS) bills at the standard rates; ``batch`` at the model's batch rates.
    Raises UnpricedUsage for a tier LiteLLM does not know, for ``batch`` on a model the map gives
    no batch rates (LiteLLM would halve the standard rates, a guess), and for a non-standard tier
    on a project's own price (which has no tier rates).
    """
    tier = context.service_tier
    if tier is None or tier.lower() in STANDARD_SERVICE_TIERS:
        return None
    name = tier.lower()
    if name not in TIER_SUFFIXES and name != BATCH_TIER:
        raise _unpriced_tier(tier, "is not one LiteLLM prices (flex, priority, fast, ultrafast, batch)")
    if price.name.startswith("project:"):
        raise _unpriced_tier(tier, f"has no rates in the project's price of {price.name[8:]!r}")
    if name == BATCH_TIER:
        if "input" not in price.service_tiers.get("batches", NO_RATES):
            raise _unpriced_tier(tier, f"has no rates for {price.name!r} in LiteLLM's map")
        return "batches"
    if (price.provider or "") in TIERLESS_PROVIDERS:
        return None
    return TIER_SUFFIXES[name]


def _first(*rates: Decimal | None) -> Decimal | None:
    return next((r for r in rates if r is not None), None)


def _rate(*rates: Decimal | None, default: Decimal) -> Decimal:
    """The first rate the map names, else `default` (LiteLLM's fallback order)."""
    return next((r for r in rates if r is not None), default)


def with_service_tier(price: ModelPrice, suffix: str) -> ModelPrice:
    """`price` as it bills under a service tier, by LiteLLM's lookup (get_cost_per_unit and
    _get_token_base_cost): each rate is the tier's where the map names one, else the standard one;
    long-context tiers take the tier's rates over the standard tier's (cache writes by TTL: only
    the tier's own); reasoning bills at the tier's output rate when the tier names one."""
    own = price.service_tiers.get(suffix, NO_RATES)
    rates = dict(price.rates)
    rates.update({k: v for k, v in own.items() if k not in ("input", "output", "tiers")})
    if "output" in own and "reasoning" not in own:
        rates.pop("reasoning", None)  # _resolve_reasoning_token_cost: the tier's output rate
    standard = {t.above: t for t in price.tiers}
    tiered = {t.above: t for t in own.get("tiers", ())}
    tiers = []
    for above in sorted(standard.keys() | tiered.keys()):
        s, t = standard.get(above, Tier(above)), tiered.get(above, Tier(above))
        tiers.append(
            Tier(
                above=above,
                input=_first(t.input, s.input),
                output=_first(t.output, s.output),
                cache_read=_first(t.cache_read, s.cache_read),
                cache_creation=_first(t.cache_creation, s.cache_creation),
                cache_creation_1h=t.cache_creation_1h,
                cache_creation_12h=t.cache_creation_12h,
                input_audio=_first(t.input_audio, s.input_audio),
            )
        )
    return price._replace(
        input=own.get("input", price.input),
        output=own.get("output", price.output),
        rates=MappingProxyType(rates),
        tiers=tuple(tiers),
    )


def cost_of(price: ModelPrice, usage: TokenUsage, context: UsageContext | None = None) -> Cost:
    """The Decimal cost of `usage` on a model (USD), at the rates of the usage's service tier (see
    ``billing_tier``). The caller has checked the counts add up (``TokenUsage.problems``). Raises
    UnpricedUsage when the usage names what the price cannot bill."""
    context = context or UsageContext()
    tier = billing_tier(price, context)
    with localcontext(DECIMAL_CONTEXT):  # 38 digits, as DynamoDB keeps: exact for any real call
        if tier == "batches":
            cost = _batch_cost(price, usage)
        else:
            if tier is not None:
                price = with_service_tier(price, tier)
            rates = rates_for(price, usage.prompt_tokens)
            family = _family(price)
            if family == "perplexity":
                cost = _perplexity_cost(price, rates, usage)
            else:
                cost = _cost(price, rates, usage, xai=family == "xai")
            multiplier = _multiplier(price, context)
            if multiplier != ONE:
                cost = Cost(cost.prompt * multiplier, cost.completion * multiplier)
        tools = ZERO
        if usage.web_search_requests:
            rate, per_prompt = web_search_rate(price, context)
            if rate is None:
                raise UnpricedUsage(
                    f"the usage reports {usage.web_search_requests} web search request(s), which the"
                    f' price of {price.name!r} does not cover: pass the call\'s price as "cost" instead',
                    details=[{"field": "web_search_requests", "problem": "not priced; pass cost"}],
                )
            tools = rate * (1 if per_prompt else usage.web_search_requests)
        return Cost(cost.prompt, cost.completion, tools)


def _highest(tiers, field: str, prompt_tokens: int, inclusive: bool) -> tuple[int, Decimal] | None:
    """(threshold, rate) of the highest crossed tier that names `field`, or None."""
    found = None
    for tier in tiers:  # ascending thresholds
        rate = getattr(tier, field)
        if rate is not None and (prompt_tokens > tier.above or (inclusive and prompt_tokens == tier.above)):
            found = (tier.above, rate)
    return found


def _batch_cost(price: ModelPrice, usage: TokenUsage) -> Cost:
    """LiteLLM's batch_cost_calculator (cost_calculator.py) with the map's ``*_batches`` rates: each
    rate from the highest crossed ``*_above_N_tokens_batches`` tier that names it, else the flat
    batch rate; a cache read without a batch rate at the standard one; audio, image and video
    prompt tokens at their batch rate, else the batch input rate; every output token at the batch
    output rate (image tokens at their batch rate), none of the provider's multipliers."""
    batch = price.service_tiers["batches"]
    inclusive = price.provider in INCLUSIVE_THRESHOLD_PROVIDERS
    tiers = batch.get("tiers", ())

    def batch_rate(field: str) -> Decimal | None:
        crossed = _highest(tiers, field, usage.prompt_tokens, inclusive)
        return crossed[1] if crossed else batch.get(field)

    input_rate = batch_rate("input")
    assert input_rate is not None  # billing_tier checked it
    # A cache read without a batch rate: the standard rate of its long-context tier (LiteLLM's
    # get_modality_token_cost_key, which compares exclusively), else none, and then cached tokens
    # bill as input.
    standard_read = _highest(price.tiers, "cache_read", usage.prompt_tokens, False)
    cache_read = _first(
        batch_rate("cache_read"), standard_read[1] if standard_read else None, price.cache_read
    )
    cached = usage.cached_tokens if cache_read is not None else 0
    cached_audio = usage.cached_audio_tokens if cache_read is not None else 0
    creation_rate = batch_rate("cache_creation")
    by_ttl = {
        ttl: r for ttl in ("cache_creation_1h", "cache_creation_12h") if (r := batch_rate(ttl)) is not None
    }
    writes_billed = creation_rate is not None or bool(by_ttl)
    written = usage.cache_creation_tokens if writes_billed else 0
    audio = usage.audio_tokens - usage.cached_audio_tokens
    image = usage.image_tokens - usage.cached_image_tokens
    text = max(usage.prompt_tokens - audio - image - usage.video_tokens - cached - written, 0)
    # Audio: the batch rate of the highest crossed audio tier (standard or batch), else the flat one.
    audio_tier = max(
        (
            t.above
            for t in (*price.tiers, *tiers)
            if t.input_audio is not None and usage.prompt_tokens > t.above
        ),
        default=None,
    )
    audio_batch = next((t.input_audio for t in tiers if t.above == audio_tier), None)
    audio_rate = _rate(audio_batch, batch.get("input_audio"), default=input_rate)
    cached_audio_fallback = _rate(
        batch.get("cache_read"), price.rate("cache_read_audio"), cache_read, default=ZERO
    )
    prompt = (
        text * input_rate
        + audio * audio_rate
        + image * _rate(batch.get("input_image"), default=input_rate)
        + usage.video_tokens * _rate(batch.get("input_video"), default=input_rate)
        + (cached - cached_audio) * (cache_read or ZERO)
        + cached_audio * _rate(batch.get("cache_read_audio"), default=cached_audio_fallback)
    )
    if writes_billed:
        base_write = _rate(creation_rate, default=input_rate)
        one_hour = usage.cache_creation_1h_tokens
        twelve_hours = usage.cache_creation_12h_tokens
        prompt += (
            (written - one_hour - twelve_hours) * base_write
            + one_hour * by_ttl.get("cache_creation_1h", base_write)
            + twelve_hours * by_ttl.get("cache_creation_12h", base_write)
        )
    half = Decimal("0.5")  # LiteLLM's "batch is usually half" for a rate the map does not name
    text_rate = _rate(batch_rate("output"), default=price.output * half)
    standard_image = price.rate("output_image")
    image_rate = _rate(
        batch.get("output_image"),
        standard_image * half if standard_image is not None else None,
        default=text_rate,
    )
    out_image = min(usage.output_image_tokens, usage.completion_tokens)
    completion = (usage.completion_tokens - out_image) * text_rate + out_image * image_rate
    return Cost(prompt=prompt, completion=completion)


def _multiplier(price: ModelPrice, context: UsageContext) -> Decimal:
    """Anthropic's provider_specific_entry multipliers: the inference geo (``us``) and ``fast``."""
    if not price.multipliers:
        return ONE
    geo = (context.inference_geo or "").lower()
    named_geo = bool(geo) and geo not in ("global", "not_available")
    if (price.provider or "") != "anthropic":
        if (named_geo and geo in price.multipliers) or (
            context.speed == "fast" and "fast" in price.multipliers
        ):
            raise UnpricedUsage(
                f"{price.name!r} is priced apart for that inference geo or speed, which this"
                ' service does not apply for its provider: pass the call\'s price as "cost" instead',
                details=[{"field": "inference_geo", "problem": "not priced; pass cost"}],
            )
        return ONE
    out = ONE
    if context.speed == "fast":
        out *= price.multipliers.get("fast", ONE)
    if named_geo:
        out *= price.multipliers.get(geo, ONE)
    return out


def _cost(price: ModelPrice, rates: Rates, usage: TokenUsage, *, xai: bool = False) -> Cost:
    audio = usage.audio_tokens - usage.cached_audio_tokens
    image = usage.image_tokens - usage.cached_image_tokens
    cached_other = usage.cached_tokens - usage.cached_audio_tokens - usage.cached_image_tokens
    text = max(
        usage.prompt_tokens
        - usage.cached_tokens
        - usage.cache_creation_tokens
        - audio
        - image
        - usage.video_tokens,
        0,
    )
    five_minute = (
        usage.cache_creation_tokens - usage.cache_creation_1h_tokens - usage.cache_creation_12h_tokens
    )
    prompt = (
        text * rates.input
        + cached_other * rates.cache_read
        + usage.cached_audio_tokens * rates.cache_read_audio
        + usage.cached_image_tokens * rates.cache_read_image
        + audio * rates.input_audio
        + image * rates.input_image
        + usage.video_tokens * rates.input_video
        + five_minute * rates.cache_creation
        + usage.cache_creation_1h_tokens * rates.cache_creation_1h
        + usage.cache_creation_12h_tokens * rates.cache_creation_12h
    )
    if xai:  # xAI bills every output token at the output rate (llms/xai/cost_calculator.py)
        return Cost(prompt=prompt, completion=usage.completion_tokens * rates.output)
    text_out = (
        usage.completion_tokens
        - usage.reasoning_tokens
        - usage.output_audio_tokens
        - usage.output_image_tokens
        - usage.output_video_tokens
    )
    completion = (
        text_out * rates.output
        + usage.reasoning_tokens * rates.reasoning
        + usage.output_audio_tokens * rates.output_audio
        + usage.output_image_tokens * rates.output_image
        + usage.output_video_tokens * rates.output_video
    )
    return Cost(prompt=prompt, completion=completion)


def _perplexity_cost(price: ModelPrice, rates: Rates, usage: TokenUsage) -> Cost:
    """llms/perplexity/cost_calculator.py: cache reads at their rate, every other prompt token at
    the input rate; reasoning at its rate where the model has one, every other output token at the
    output rate."""
    r = price.rates
    cache_read = r.get("cache_read", price.input)
    prompt = (usage.prompt_tokens - usage.cached_tokens) * price.input + usage.cached_tokens * cache_read
    if usage.reasoning_tokens and r.get("reasoning") is not None:
        completion = (
            usage.completion_tokens - usage.reasoning_tokens
        ) * price.output + usage.reasoning_tokens * r["reasoning"]
    else:
        completion = usage.completion_tokens * price.output
    return Cost(prompt=prompt, completion=completion)


def token_fields() -> tuple[str, ...]:
    return TokenUsage._fields
