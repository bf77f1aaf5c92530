"""Token counts: tiktoken with the layer's own encodings, offline, lazily, equal to litellm's."""

import hashlib
import json
import os
import subprocess
import sys
import textwrap

import litellm
import pytest

from budget_service.core.errors import InvalidInput
from budget_service.pricing import tokens
from budget_service.pricing.prices import default_table
from localdev import template
from scripts import vendor_tiktoken

TEXTS = [
    "Hello, world!",
    "héllo 世界 🌍 <|endoftext|> tabs\t\tand\n\nnewlines   trailing  ",
    "x" * 3000 + " crosses the 1024-character chunks " + "yz" * 700,
    'def f(x):\n    return {"squares": [i ** 2 for i in range(x)]}  # 12345678901234567890',
    "",
]
MESSAGES = [
    [{"role": "user", "content": "hi"}],
    [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "name": "alice", "content": "What's 2+2? Answer briefly."},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "add", "arguments": '{"a":2,"b":2}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "4"},
        {
            "role": "user",
            "content": [{"type": "text", "text": "and 3+3?"}, {"type": "text", "text": " thanks"}],
        },
    ],
]
# OpenAI models whose litellm count we do not match, by name, with the reason.
EXCLUDED = {
    "ft:o4-mini-2025-04-16": "litellm counts this fine-tune with cl100k_base; a fine-tune keeps its"
    " base model's tokenizer, and o4-mini uses o200k_base (as tiktoken says for o4-mini)",
}


def openai_chat_models() -> list[str]:
    table = default_table()
    return sorted(
        name
        for name in table.names()
        if table.provider_of(name) == "openai" and (litellm.model_cost.get(name) or {}).get("mode") == "chat"
    )


def test_there_are_openai_models_to_compare():
    assert len(openai_chat_models()) > 80


@pytest.mark.parametrize("model", openai_chat_models())
def test_counts_equal_litellm_token_counter(model):
    if model in EXCLUDED:
        pytest.skip(EXCLUDED[model])
    for text in TEXTS:
        assert tokens.count_text(text, model) == litellm.token_counter(model=model, text=text), text[:40]
    for messages in MESSAGES:
        assert tokens.count_messages(messages, model) == litellm.token_counter(model=model, messages=messages)


def test_message_overhead_as_openai_documents_it():
    """3 per message, +1 per name, 3 to prime the reply; gpt-3.5-turbo-0301: 4 per message, -1 per
    name. (litellm no longer lists 0301, so it counts it like the rest; we keep OpenAI's numbers.)"""
    one, two = tokens.count_text("user", "gpt-4o"), tokens.count_text("hi", "gpt-4o")
    assert tokens.count_messages([{"role": "user", "content": "hi"}], "gpt-4o") == 3 + one + two + 3
    named = [{"role": "user", "name": "bob", "content": "hi"}]
    bob = tokens.count_text("bob", "gpt-4o")
    assert tokens.count_messages(named, "gpt-4o") == 3 + one + bob + 1 + two + 3
    legacy = "gpt-3.5-turbo-0301"
    assert tokens.count_messages(named, legacy) == 4 + one + bob - 1 + two + 3


@pytest.mark.parametrize(
    "model, encoding",
    [
        ("gpt-4o", "o200k_base"),
        ("gpt-4o-mini-2024-07-18", "o200k_base"),
        ("chatgpt-4o-latest", "o200k_base"),
        ("gpt-4.1", "o200k_base"),
        ("gpt-4.1-nano", "o200k_base"),
        ("gpt-5", "o200k_base"),
        ("gpt-5-mini", "o200k_base"),
        ("o1", "o200k_base"),
        ("o3-mini", "o200k_base"),
        ("o4-mini", "o200k_base"),
        ("openai/gpt-4o", "o200k_base"),
        ("azure/eu/gpt-4.1", "o200k_base"),
        ("ft:gpt-4o-mini:org::id", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-4-turbo", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("gpt-35-turbo", "cl100k_base"),
        ("text-embedding-ada-002", "cl100k_base"),
        ("claude-sonnet-4-5", "cl100k_base"),
        ("llama-3-70b", "cl100k_base"),
        ("no-such-model", "cl100k_base"),
    ],
)
def test_model_to_encoding(model, encoding):
    assert tokens.encoding_name_for(model) == encoding


def test_non_text_content_is_refused_not_guessed():
    with pytest.raises(InvalidInput):
        tokens.count_messages(
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}], "gpt-4o"
        )


def test_encodings_in_the_layer_match_tiktokens_pinned_sha256():
    pinned = vendor_tiktoken.pinned()
    assert set(pinned) == set(tokens.ENCODINGS)
    for url, expected in pinned.values():
        path = tokens.ENCODING_DIR / hashlib.sha1(url.encode()).hexdigest()  # tiktoken's cache name
        assert hashlib.sha256(path.read_bytes()).hexdigest() == expected
    assert vendor_tiktoken.main(["--check"]) == 0


def test_pinned_hashes_are_read_from_tiktoken_itself():
    from tiktoken_ext import openai_public

    source = open(openai_public.__file__).read()
    for _, expected in vendor_tiktoken.pinned().values():
        assert f'expected_hash="{expected}"' in source


CHILD = textwrap.dedent(
    """
    import json, os, socket, sys
    def refuse(*a, **k):
        raise OSError("network disabled")
    socket.socket.connect = refuse
    socket.socket.connect_ex = refuse
    socket.getaddrinfo = refuse
    sys.path.insert(0, "layers/budget")
    sys.path.insert(0, ".")
    from budget_service.pricing import tokens
    counts = {m: [tokens.count_text(t, m) for t in json.loads(sys.argv[1])] for m in ("gpt-4o", "gpt-4")}
    print(json.dumps({"counts": counts, "dir": os.environ["TIKTOKEN_CACHE_DIR"],
                      "loaded": tokens.loaded_encodings()}))
    """
)


@pytest.mark.integration  # a fresh interpreter
def test_counting_works_offline_from_the_layer_alone():
    """A fresh process with sockets blocked, no litellm, no TIKTOKEN_CACHE_DIR: the layer suffices."""
    env = {k: v for k, v in os.environ.items() if k not in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR")}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(TEXTS)],
        cwd=template.ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(out.stdout)
    assert result["dir"] == str(tokens.ENCODING_DIR)
    assert result["loaded"] == ["cl100k_base", "o200k_base"]
    assert result["counts"] == {m: [tokens.count_text(t, m) for t in TEXTS] for m in ("gpt-4o", "gpt-4")}


LAZY_CHILD = textwrap.dedent(
    """
    import json, sys
    from decimal import Decimal
    sys.path.insert(0, "layers/budget")
    sys.path.insert(0, ".")
    from localdev import template
    for function_id in template.functions():
        template.load_module(function_id)   # every handler imported, as a cold start does
    from budget_service.domain import costs
    from budget_service.pricing import tokens
    from budget_service.schemas import CostRequest
    costs.price(CostRequest(model="gpt-4o", usage={"prompt_tokens": 10, "completion_tokens": 5}))
    costs.price(CostRequest(model="gpt-4o", cost=Decimal("0.25")))
    costs.price(CostRequest(completion={"model": "gpt-4o", "usage": {"prompt_tokens": 1}}))
    before = {"tiktoken_imported": "tiktoken" in sys.modules, "loaded": tokens.loaded_encodings()}
    costs.price(CostRequest(model="gpt-4o", input_text="hello", output_text="hi"))
    print(json.dumps({"before": before, "after": tokens.loaded_encodings()}))
    """
)


@pytest.mark.integration  # a fresh interpreter
def test_encodings_load_lazily_when_text_is_first_counted():
    env = {**os.environ, "TABLE_NAME": "t", "AWS_DEFAULT_REGION": "us-east-1"}
    out = subprocess.run(
        [sys.executable, "-c", LAZY_CHILD],
        cwd=template.ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    # Importing every handler and pricing usage or a given cost imports no tokenizer.
    assert result["before"] == {"tiktoken_imported": False, "loaded": []}
    # Counting text loads the model's encoding, and only that one.
    assert result["after"] == ["o200k_base"]
