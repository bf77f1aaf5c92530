"""The price table: derived from litellm's map exactly, priced in Decimal, and equal to
litellm.cost_per_token for every per-token chat model both price."""

import json
import socket
from decimal import Decimal
from importlib import metadata
from pathlib import Path

import litellm
import pytest
from litellm.types.utils import Usage

from budget_service.core.errors import UnknownModel
from budget_service.pricing.prices import PriceTable, cost_of, default_table
from budget_service.schemas.usage import TokenUsage
from scripts import refresh_prices

Q = Decimal("1e-12")

# Usages that exercise every rate: plain, cached + cache-written + reasoning, and long prompts that
# cross the 128k/200k/272k tiers (with cache reads and reasoning on top).
USAGES = [
    TokenUsage(prompt_tokens=1000, completion_tokens=500),
    TokenUsage(
        prompt_tokens=1000,
        completion_tokens=500,
        cached_tokens=300,
        cache_creation_tokens=100,
        reasoning_tokens=200,
    ),
    TokenUsage(prompt_tokens=300_000, completion_tokens=1000, cached_tokens=50_000, reasoning_tokens=100),
    TokenUsage(
        prompt_tokens=150_000,
        completion_tokens=7,
        cached_tokens=10_000,
        cache_creation_tokens=10_000,
        reasoning_tokens=3,
    ),
]


def litellm_usage(u: TokenUsage) -> Usage:
    kwargs = dict(
        prompt_tokens=u.prompt_tokens,
        completion_tokens=u.completion_tokens,
        total_tokens=u.prompt_tokens + u.completion_tokens,
    )
    if u.cached_tokens:
        kwargs["prompt_tokens_details"] = {"cached_tokens": u.cached_tokens}
    if u.cache_creation_tokens:
        kwargs["cache_creation_input_tokens"] = u.cache_creation_tokens
    if u.reasoning_tokens:
        kwargs["completion_tokens_details"] = {"reasoning_tokens": u.reasoning_tokens}
    return Usage(**kwargs)


def litellm_cost(model: str, u: TokenUsage) -> Decimal:
    prompt, completion = litellm.cost_per_token(model=model, usage_object=litellm_usage(u))
    return (Decimal(repr(prompt)) + Decimal(repr(completion))).quantize(Q)


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


# The comparison of every chat model with LiteLLM, in every dimension and usage shape, is in
# test_cost_accuracy.py.


def test_table_is_current_with_the_installed_litellm(capsys):
    assert refresh_prices.main(["--check"]) == 0, capsys.readouterr().out[:2000]


def test_prices_are_the_exact_decimal_text_of_the_source():
    source = Path(metadata.distribution("litellm").locate_file(f"litellm/{refresh_prices.SOURCE_NAME}"))
    price_map = json.loads(source.read_bytes(), parse_float=Decimal)
    table = json.loads(
        (Path(__file__).parents[2] / "layers/budget/budget_service/pricing/prices.json").read_text()
    )
    checked = 0
    for name, entry in table["models"].items():
        spec = price_map[name]
        assert Decimal(entry["input"]) == spec["input_cost_per_token"]
        assert Decimal(entry["output"]) == spec["output_cost_per_token"]
        if "reasoning" in entry:
            assert Decimal(entry["reasoning"]) == spec["output_cost_per_reasoning_token"]
        for tier in entry.get("tiers", []):
            label = f"{tier['above'] // 1000}k" if tier["above"] % 1000 == 0 else str(tier["above"])
            if "input" in tier:
                assert Decimal(tier["input"]) == spec[f"input_cost_per_token_above_{label}_tokens"]
        checked += 1
    assert checked == len(default_table())


def test_a_cost_is_exact_decimal_arithmetic():
    price = default_table().price("gpt-4o")
    assert (price.input, price.output, price.cache_read) == (
        Decimal("2.5e-06"),
        Decimal("1e-05"),
        Decimal("1.25e-06"),
    )
    cost = cost_of(price, TokenUsage(prompt_tokens=1000, completion_tokens=100, cached_tokens=400))
    # 600 uncached at 2.5e-6, 400 cached at 1.25e-6, 100 out at 1e-5: 0.0015 + 0.0005 + 0.001
    assert isinstance(cost.total, Decimal) and cost.total == Decimal("0.003")


def test_long_context_tier_bills_every_token_at_the_tier_rate():
    price = default_table().price("gemini-2.5-pro")
    (tier,) = price.tiers
    assert tier.above == 200_000
    at = cost_of(price, TokenUsage(prompt_tokens=200_000, completion_tokens=10)).total
    above = cost_of(price, TokenUsage(prompt_tokens=200_001, completion_tokens=10)).total
    assert at == 200_000 * price.input + 10 * price.output
    assert above == 200_001 * tier.input + 10 * tier.output


def test_reasoning_priced_apart_where_the_table_says_so():
    name = next(n for n in default_table().names() if default_table().price(n).reasoning is not None)
    price = default_table().price(name)
    cost = cost_of(price, TokenUsage(prompt_tokens=0, completion_tokens=100, reasoning_tokens=40)).total
    assert cost == 60 * price.output + 40 * price.reasoning


# (name, the table key it resolves to, the name litellm prices it under). litellm needs the
# provider prefix to resolve a bare differently-cased or dated name; we accept those bare, too.
@pytest.mark.parametrize(
    "name, key, litellm_name",
    [
        ("gpt-4o", "gpt-4o", "gpt-4o"),
        ("openai/gpt-4o", "gpt-4o", "openai/gpt-4o"),
        ("GPT-4o", "gpt-4o", "openai/GPT-4o"),
        ("gpt-4o-2099-01-01", "gpt-4o", "openai/gpt-4o-2099-01-01"),  # unlisted snapshot: its model
        ("openai/gpt-4o-mini-2099-12-31", "gpt-4o-mini", "openai/gpt-4o-mini-2099-12-31"),
        (
            "ft:gpt-4o-mini-2024-07-18:acme::abc123",
            "ft:gpt-4o-mini-2024-07-18",
            "ft:gpt-4o-mini-2024-07-18:acme::abc123",
        ),
        ("anthropic/claude-sonnet-4-5", "claude-sonnet-4-5", "anthropic/claude-sonnet-4-5"),
    ],
)
def test_model_names_resolve_as_litellm_resolves_them(name, key, litellm_name, no_network):
    table = default_table()
    assert table.resolve_name(name) == key
    usage = USAGES[1]
    assert cost_of(table.price(name), usage).total.quantize(Q) == litellm_cost(litellm_name, usage)


@pytest.mark.parametrize("name", ["no-such-model", "deepseek-v4-pro", "openai/", "gpt-4o/extra"])
def test_unknown_or_unpriceable_model_is_422_that_says_pass_cost(name):
    with pytest.raises(UnknownModel) as err:
        default_table().price(name)
    assert err.value.status == 422 and "cost" in err.value.message


def test_models_priced_by_rules_we_do_not_apply_are_left_out():
    price_map, _, _ = refresh_prices.load_source(None)
    models, skipped = refresh_prices.build(price_map)
    assert "deepseek-v4-pro" in skipped and "deepseek-v4-pro" not in models  # off-peak pricing
    assert all(name not in models for name in skipped)
    assert "gpt-4o" in models and len(models) == len(default_table())


def test_table_loads_from_any_file(tmp_path):
    path = tmp_path / "prices.json"
    path.write_text(
        json.dumps({"models": {"m": {"provider": "p", "mode": "chat", "input": "1E-6", "output": "2E-6"}}})
    )
    table = PriceTable.from_file(path)
    assert cost_of(table.price("m"), TokenUsage(3, 4)).total == Decimal("0.000011")
