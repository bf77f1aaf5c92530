"""Token counts with tiktoken, offline, with the encodings carried in the layer.

The BPE files (cl100k_base, o200k_base) live in ``tiktoken_cache/`` next to this module, under the
file names tiktoken's cache uses (the SHA-1 of the encoding's URL); tiktoken checks each against
its pinned SHA-256 when it loads it. ``TIKTOKEN_CACHE_DIR`` points tiktoken there (template.yaml
sets it for the function; when unset, this module sets it on first use). Nothing is fetched.

Loading is lazy: tiktoken is imported and an encoding read only when something is counted, once
per encoding per container. Deployed functions that count (cost, holds) load both encodings
before their SnapStart snapshot (budget_service.api.http.prime), so a restored container counts
with them loaded.

Counts follow OpenAI's documented chat format, as LiteLLM's ``token_counter`` does for OpenAI
models: 3 tokens per message (4 for gpt-3.5-turbo-0301), each string field of a message counted,
+1 for a ``name`` (-1 for gpt-3.5-turbo-0301, whose name replaces the role), and 3 tokens that
prime the reply. Text is encoded in 1024-character chunks, as LiteLLM does, which keeps the cost of
a pathological input (one long run of a character) linear.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

from budget_service.core.errors import InvalidInput

ENCODING_DIR = Path(__file__).with_name("tiktoken_cache")
ENCODINGS = ("cl100k_base", "o200k_base")
CHUNK_CHARS = 1024  # LiteLLM's TIKTOKEN_ENCODE_CHUNK_SIZE_CHARS default
REPLY_PRIMER_TOKENS = 3

# o200k_base: the gpt-4o, gpt-4.1, gpt-4.5, gpt-5 (and later) families and the o-series.
_O200K = re.compile(
    r"^(?:chatgpt-4o|gpt-4o|gpt-4\.1|gpt-4\.5|gpt-(?:[5-9]|[1-9]\d+)(?:[.-]|$)|o[1-9]\d*(?:[.-]|$)"
    r"|codex-|computer-use-|gpt-realtime|gpt-audio)"
)

# cl100k_base: the OpenAI chat models before gpt-4o.
_CL100K = re.compile(r"^(?:gpt-3\.5|gpt-35|gpt-4(?![o.])|text-|davinci|babbage|curie|ada|code-)")
OPENAI_PROVIDERS = frozenset({"openai", "azure", "text-completion-openai"})

_lock = threading.Lock()
_loaded: dict[str, object] = {}


def base_model_name(model: str) -> str:
    """`openai/ft:gpt-4o-mini:org::id` -> `gpt-4o-mini`: provider path and fine-tune parts dropped."""
    name = model.rsplit("/", 1)[-1]
    if name.startswith("ft:"):
        name = name.split(":")[1]
    return name.lower()


def encoding_name_for(model: str) -> str:
    """The encoding for a model.

    o200k_base for the families above, and for any other OpenAI model the price table lists that
    is not one of the older (cl100k_base) families: every OpenAI model since gpt-4o uses o200k_base.
    cl100k_base for the older families and as the fallback for every other model.
    """
    name = base_model_name(model)
    if _CL100K.match(name):  # first: gpt-35-turbo (Azure's name) is not a "gpt-35" release
        return "cl100k_base"
    if _O200K.match(name):
        return "o200k_base"
    from budget_service.pricing.prices import default_table

    if default_table().provider_of(model) in OPENAI_PROVIDERS:
        return "o200k_base"
    return "cl100k_base"


def get_encoding(name: str):
    """A tiktoken Encoding from the layer's files, loaded on first use."""
    if name not in ENCODINGS:
        raise ValueError(f"encoding {name!r} is not carried in the layer")
    encoding = _loaded.get(name)
    if encoding is None:
        with _lock:
            encoding = _loaded.get(name)
            if encoding is None:
                os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(ENCODING_DIR))
                import tiktoken

                encoding = tiktoken.get_encoding(name)
                _loaded[name] = encoding
    return encoding


def loaded_encodings() -> list[str]:
    return sorted(_loaded)


def count_text(text: str, model: str) -> int:
    """Tokens of text (tiktoken's encode_ordinary, in CHUNK_CHARS pieces as LiteLLM encodes)."""
    encoding = get_encoding(encoding_name_for(model))
    # Special-token text such as "<|endoftext|>" counts as ordinary text, as a prompt would send it.
    return sum(
        len(encoding.encode_ordinary(text[i : i + CHUNK_CHARS])) for i in range(0, len(text), CHUNK_CHARS)
    )


def _legacy(model: str) -> bool:
    return base_model_name(model) == "gpt-3.5-turbo-0301"


def count_messages(messages: Iterable[Mapping], model: str) -> int:
    """Prompt tokens of an OpenAI-format chat message list, reply primer included."""
    per_message, per_name = (4, -1) if _legacy(model) else (3, 1)
    total = 0
    for message in messages:
        total += per_message
        for key, value in message.items():
            if value is None:
                continue
            if key == "tool_calls":
                for call in value:
                    total += count_text(str((call.get("function") or {}).get("arguments", "")), model)
            elif key == "function_call":
                total += count_text(str(value.get("arguments", "")), model)
            elif isinstance(value, str):
                total += count_text(value, model)
                if key == "name":
                    total += per_name
            elif key == "content" and isinstance(value, list):
                total += _count_parts(value, model)
    return total + REPLY_PRIMER_TOKENS


def _count_parts(parts: list, model: str) -> int:
    total = 0
    for part in parts:
        if isinstance(part, str):
            total += count_text(part, model)
        elif isinstance(part, Mapping) and part.get("type") == "text":
            total += count_text(str(part.get("text") or ""), model)
        else:
            kind = part.get("type") if isinstance(part, Mapping) else type(part).__name__
            raise InvalidInput(
                f"cannot count tokens of a {kind!r} content part offline; only text parts are"
                " counted (pass usage or cost for calls with images, audio or files)"
            )
    return total
