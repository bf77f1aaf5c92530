"""Regenerate the layer's price table from the installed litellm's model price map, and show the diff.

    python scripts/refresh_prices.py            # write layers/budget/budget_service/pricing/prices.json
    python scripts/refresh_prices.py --check    # exit 1 if the committed table is out of date
    python scripts/refresh_prices.py --source FILE_OR_URL

The source is litellm's ``model_prices_and_context_window_backup.json`` from the installed
package (offline), or any copy of ``model_prices_and_context_window.json`` (a path or an https URL,
where the network allows). Prices are parsed from their JSON text straight into Decimal and stored
as that text, so no price ever passes through a float.

Only models this service can price exactly are kept: text models (chat, completion, responses)
with per-token input and output prices, with every other rate of theirs the map gives (audio, image
and video tokens, cache reads and writes by TTL, reasoning, long-context tiers, web search per
request). A model whose price depends on something else (a range table, off-peak hours, seconds,
characters, requests, images, Databricks DBUs), or that the map prices at 0/0 without it being free
on purpose, is left out, so a cost update for it asks the caller to pass ``cost`` instead of
guessing. The run prints how many were left out for each reason (``--list-dropped`` names them).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import urllib.request
from decimal import Decimal
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TABLE = ROOT / "layers" / "budget" / "budget_service" / "pricing" / "prices.json"
SOURCE_NAME = "model_prices_and_context_window_backup.json"

TEXT_MODES = {"chat", "completion", "responses"}
# field in our table <- key in litellm's map (USD per token unless said otherwise)
RATES = {
    "input": "input_cost_per_token",
    "output": "output_cost_per_token",
    "cache_read": "cache_read_input_token_cost",
    "cache_creation": "cache_creation_input_token_cost",  # cache writes of 5 minutes (and 30m, no TTL)
    "cache_creation_1h": "cache_creation_input_token_cost_above_1hr",  # cache writes of 1 hour
    "cache_creation_12h": "cache_creation_input_token_cost_above_12hr",  # cache writes of 12 hours
    "reasoning": "output_cost_per_reasoning_token",
    "input_audio": "input_cost_per_audio_token",
    "output_audio": "output_cost_per_audio_token",
    "cache_read_audio": "cache_read_input_audio_token_cost",
    "input_image": "input_cost_per_image_token",
    "output_image": "output_cost_per_image_token",
    "cache_read_image": "cache_read_input_image_token_cost",
    "input_video": "input_cost_per_video_token",
    "output_video": "output_cost_per_video_token",
}
# Rates a long-context tier can replace (``<key>_above_<N>[k]_tokens``).
TIER_RATES = (
    "input",
    "output",
    "cache_read",
    "cache_creation",
    "cache_creation_1h",
    "cache_creation_12h",
    "input_audio",
)
TIER_KEY = re.compile(
    r"^(input_cost_per_token|output_cost_per_token|cache_read_input_token_cost"
    r"|cache_creation_input_token_cost|cache_creation_input_token_cost_above_1hr"
    r"|cache_creation_input_token_cost_above_12hr|input_cost_per_audio_token)_above_(\d+)(k?)_tokens$"
)
# LiteLLM's service-tier and batch rates: ``<key>_<suffix>`` and ``<key>_above_<N>[k]_tokens_<suffix>``
# (litellm_core_utils/llm_cost_calc/utils.py get_service_tier_cost_key, get_batch_cost_rates).
SERVICE_TIER_SUFFIXES = ("flex", "priority", "balanced", "ultrafast", "batches")
# Rates a service tier or the batch rates can replace (flat), in our field names.
SERVICE_TIER_RATES = (
    "input",
    "output",
    "cache_read",
    "cache_creation",
    "cache_creation_1h",
    "cache_creation_12h",
    "input_audio",
    "cache_read_audio",
    "input_image",
    "input_video",
    "output_image",
    "reasoning",
)
SEARCH_SIZES = {
    "low": "search_context_size_low",
    "medium": "search_context_size_medium",
    "high": "search_context_size_high",
}
FIREWORKS_DEFAULT_CACHE_READ_RATIO = Decimal("0.5")  # litellm.constants, same name
# Web search prices litellm applies when its map names none (llms/gemini and llms/xai cost_calculator).
DEFAULT_WEB_SEARCH = {"gemini": Decimal("0.035"), "xai": Decimal("0.005")}
# Pricing rules this service does not apply: the model is left out of the table.
UNSUPPORTED = {
    "tiered_pricing": "priced by a token-range table",
    "off_peak_pricing": "price depends on the time of day",
    "input_cost_per_second": "priced per second",
    "output_cost_per_second": "priced per second",
    "cost_per_second": "priced per second",
    "input_dbu_cost_per_token": "priced in Databricks DBUs",
    "input_cost_per_character": "priced per character",
    "output_cost_per_character": "priced per character",
    "input_cost_per_request": "priced per request",
    "explicit_cache_read_input_token_cost": "cache reads priced by an explicit-cache rule",
    "input_cost_per_image": "priced per image (the usage shapes report image tokens, not images)",
    "input_cost_per_audio_per_second": "audio priced per second",
    "input_cost_per_video_per_second": "video priced per second",
    "citation_cost_per_token": "citation tokens priced apart (no usage shape reports them)",
}
# A model the map prices at 0 input and 0 output is kept (and charged $0) only when it is free on
# purpose; any other 0/0 entry is a price the map does not know, and is left out (so a cost for it
# is a 422 asking for `cost`, never a silent $0). Free on purpose means:
# - it runs on the caller's own hardware (these providers are local runtimes), unless its name says
#   it is a hosted ("-cloud") variant;
LOCAL_PROVIDERS = {"ollama": "runs locally under Ollama", "lemonade": "runs locally under Lemonade"}
# - or it is listed here, by name, with the provider's word for why it costs nothing.
FREE_ON_PURPOSE = {
    "opencode_go/beam-free": "OpenCode Go lists it as a free model",
    "opencode_go/longcat-2.5-preview-free": "OpenCode Go lists it as a free preview",
    "zai/glm-4.5-flash": "Z.ai prices GLM-4.5-Flash at $0 per token",
    "zai/glm-4.7-flash": "Z.ai prices GLM-4.7-Flash at $0 per token",
}


def load_source(source: str | None) -> tuple[dict, str, str]:
    """(the price map parsed with Decimal numbers, a description, its sha256)."""
    if source is None:
        # Located through the distribution, not imported: importing litellm fetches its map online.
        raw = Path(str(metadata.distribution("litellm").locate_file(f"litellm/{SOURCE_NAME}"))).read_bytes()
        described = f"litellm {metadata.version('litellm')} {SOURCE_NAME}"
    elif source.startswith("https://"):
        with urllib.request.urlopen(source, timeout=30) as response:  # noqa: S310 (https only)
            raw = response.read()
        described = source
    else:
        raw = Path(source).read_bytes()
        described = Path(source).name
    return json.loads(raw, parse_float=Decimal), described, hashlib.sha256(raw).hexdigest()


def price_text(value) -> str | None:
    """A price as the exact text of its number; None when absent or not a number."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, Decimal)):
        number = Decimal(value)
    elif isinstance(value, str):
        try:
            number = Decimal(value)
        except ArithmeticError:
            return None
    else:
        return None
    if not number.is_finite() or number < 0:
        return None
    return str(value) if not isinstance(value, str) else str(number)


def _is_free_on_purpose(name: str, provider: str | None) -> str | None:
    """Why a 0/0 model costs nothing (see LOCAL_PROVIDERS, FREE_ON_PURPOSE); None if it is not free."""
    if name in FREE_ON_PURPOSE:
        return FREE_ON_PURPOSE[name]
    if provider in LOCAL_PROVIDERS and not re.search(r"[-:]cloud\b", name):
        return LOCAL_PROVIDERS[provider]
    return None


def _web_search_family(provider: str | None, name: str) -> str | None:
    if provider == "xai":
        return "xai"
    if provider in ("gemini",) or (provider or "").startswith("vertex_ai") and "claude" not in name.lower():
        return "gemini"
    return None


ROUTER = re.compile(r"(^|/)model[-_]router")


def _tier_rates(spec: dict, suffix: str = "") -> dict[int, dict]:
    """{threshold: {field: price text}} of the ``*_above_N_tokens[_<suffix>]`` keys of one map entry."""
    tiers: dict[int, dict] = {}
    ending = f"_{suffix}" if suffix else ""
    for key, value in spec.items():
        if ending and not key.endswith(ending):
            continue
        match = TIER_KEY.match(key.removesuffix(ending) if ending else key)
        text = price_text(value)
        if match and text is not None:
            threshold = int(match.group(2)) * (1000 if match.group(3) else 1)
            field = {v: k for k, v in RATES.items()}[match.group(1)]
            tiers.setdefault(threshold, {})[field] = text
    return tiers


def _suffixed_rates(spec: dict, suffix: str) -> dict:
    """One service tier's (or the batch) rates of a map entry: the flat ``<key>_<suffix>`` rates and
    its ``tiers``; only what the map names (a missing rate falls back as LiteLLM's lookup does)."""
    out: dict = {}
    for field in SERVICE_TIER_RATES:
        text = price_text(spec.get(f"{RATES[field]}_{suffix}"))
        if text is not None:
            out[field] = text
    tiers = _tier_rates(spec, suffix)
    if tiers:
        out["tiers"] = [{"above": t, **tiers[t]} for t in sorted(tiers)]
    return out


def entry_for(name: str, spec: dict) -> tuple[dict | None, str | None]:
    """Our table entry for one model of the map, or (None, why it is left out)."""
    if not isinstance(spec, dict) or spec.get("mode") not in TEXT_MODES:
        return None, None  # not a text model: not our business, not worth reporting
    if ROUTER.search(name):
        return None, "a model router (LiteLLM adds the router's fee by the name's shape)"
    for key, why in UNSUPPORTED.items():
        if spec.get(key) is not None:
            return None, why
    entry: dict = {"provider": spec.get("litellm_provider"), "mode": spec["mode"]}
    for field, key in RATES.items():
        text = price_text(spec.get(key))
        if text is not None:
            entry[field] = text
    if "input" not in entry or "output" not in entry:
        return None, "no per-token input and output price"
    # The most output one call may produce: what a hold without max_tokens is sized up to.
    max_output = spec.get("max_output_tokens")
    if isinstance(max_output, (int, float)) and not isinstance(max_output, bool) and max_output > 0:
        entry["max_output"] = int(max_output)
    if Decimal(entry["input"]) == 0 and Decimal(entry["output"]) == 0:
        why_free = _is_free_on_purpose(name, entry["provider"])
        if why_free is None:
            return None, "priced 0/0 without being free on purpose (an unknown price, not $0)"
        entry["free"] = why_free
    if entry["provider"] == "fireworks_ai" and "cache_read" not in entry:
        # LiteLLM bills Fireworks cache reads at half the input rate when the map names no rate.
        entry["cache_read"] = str(Decimal(entry["input"]) * FIREWORKS_DEFAULT_CACHE_READ_RATIO)
    tiers = _tier_rates(spec)
    if tiers:
        entry["tiers"] = [{"above": t, **tiers[t]} for t in sorted(tiers)]
    service_tiers = {
        suffix: rates for suffix in SERVICE_TIER_SUFFIXES if (rates := _suffixed_rates(spec, suffix))
    }
    if service_tiers:
        entry["service_tiers"] = service_tiers
    _add_web_search(entry, name, spec)
    multipliers = spec.get("provider_specific_entry")
    if isinstance(multipliers, dict):
        kept = {k: t for k, v in multipliers.items() if (t := price_text(v)) is not None}
        if kept:
            entry["multipliers"] = kept
    return entry, None


def _add_web_search(entry: dict, name: str, spec: dict) -> None:
    """The web search prices by search context size, with the provider's default where LiteLLM
    falls back to one (Gemini: medium; xAI: when no size has a positive price), and the unit."""
    search = spec.get("search_context_cost_per_query")
    if isinstance(search, dict):
        sizes = {
            size: text
            for size, key in SEARCH_SIZES.items()
            if (text := price_text(search.get(key))) is not None
        }
        if sizes:
            entry["web_search"] = sizes
    family = _web_search_family(entry["provider"], name)
    if family is not None:
        default = DEFAULT_WEB_SEARCH[family]
        entry.setdefault("web_search", {})
        if family == "gemini":  # litellm reads the medium price, else its default
            entry["web_search"].setdefault("medium", str(default))
        elif not any(Decimal(v) > 0 for v in entry["web_search"].values()):
            entry["web_search"]["medium"] = str(default)  # xai: the first positive price, else its default
    if spec.get("web_search_billing_unit") in ("per_query", "per_prompt"):
        entry["web_search_unit"] = spec["web_search_billing_unit"]


def build(price_map: dict) -> tuple[dict[str, dict], dict[str, str]]:
    models, skipped = {}, {}
    for name in sorted(price_map):
        if name == "sample_spec":
            continue
        entry, why = entry_for(name, price_map[name])
        if entry is not None:
            models[name] = entry
        elif why is not None:
            skipped[name] = why
    return models, skipped


def unpriced(price_map: dict, models: dict, skipped: dict) -> dict[str, dict]:
    """Every other name of the map, with its provider and why it has no price here: a name must
    resolve to the entry LiteLLM would use, so one that LiteLLM resolves to an entry we do not
    price is refused, never resolved to a different entry further down the lookup order."""
    out = {}
    for name in sorted(price_map):
        spec = price_map[name]
        if name == "sample_spec" or name in models or not isinstance(spec, dict):
            continue
        out[name] = {
            "provider": spec.get("litellm_provider"),
            "why": skipped.get(name, f"not a text model (mode {spec.get('mode')})"),
        }
    return out


def render(models: dict[str, dict], described: str, digest: str, unpriced_names: dict | None = None) -> str:
    """One model per line, so a refresh reads as a diff of the models that changed."""
    lines = [
        "{",
        f'"source": {json.dumps(described)},',
        f'"source_sha256": {json.dumps(digest)},',
        '"models": {',
    ]
    items = [
        f"{json.dumps(name)}: {json.dumps(entry, separators=(',', ':'))}" for name, entry in models.items()
    ]
    lines.append(",\n".join(items))
    lines += ["},", '"unpriced": {']
    items = [
        f"{json.dumps(name)}: {json.dumps(entry, separators=(',', ':'))}"
        for name, entry in (unpriced_names or {}).items()
    ]
    lines.append(",\n".join(items))
    lines += ["}", "}", ""]
    return "\n".join(lines)


def diff(old: dict[str, dict], new: dict[str, dict]) -> list[str]:
    out = []
    for name in sorted(old.keys() | new.keys()):
        before, after = old.get(name), new.get(name)
        if before == after:
            continue
        if before is None:
            out.append(f"+ {name}: {json.dumps(after)}")
        elif after is None:
            out.append(f"- {name}")
        else:
            changes = [
                f"{field} {before.get(field)} -> {after.get(field)}"
                for field in sorted(before.keys() | after.keys())
                if before.get(field) != after.get(field)
            ]
            out.append(f"~ {name}: " + "; ".join(changes))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--source", help="a model_prices_and_context_window.json path or https URL")
    parser.add_argument("--check", action="store_true", help="only report; exit 1 if out of date")
    parser.add_argument(
        "--list-dropped", action="store_true", help="name every text model left out, with why"
    )
    args = parser.parse_args(argv)

    price_map, described, digest = load_source(args.source)
    models, skipped = build(price_map)
    old = json.loads(TABLE.read_text())["models"] if TABLE.exists() else {}
    changes = diff(old, models)
    for line in changes:
        print(line)
    print(
        f"{len(models)} models priced from {described}; {len(changes)} changed;"
        f" {len(skipped)} text models left out (priced by rules this service does not apply)",
        file=sys.stderr,
    )
    reasons: dict[str, int] = {}
    for why in skipped.values():
        reasons[why] = reasons.get(why, 0) + 1
    for why, count in sorted(reasons.items()):
        print(f"  left out: {count:4d} {why}", file=sys.stderr)
    if args.list_dropped:
        for name, why in sorted(skipped.items()):
            print(f"  left out: {name}: {why}", file=sys.stderr)
    free = sorted(name for name, entry in models.items() if "free" in entry)
    print(
        f"  {len(free)} models kept at $0 because they are free on purpose (see FREE_ON_PURPOSE)",
        file=sys.stderr,
    )
    text = render(models, described, digest, unpriced(price_map, models, skipped))
    if args.check:
        return 1 if changes or not TABLE.exists() or TABLE.read_text() != text else 0
    TABLE.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
