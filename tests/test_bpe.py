"""The rank index (budget_service.pricing.bpe) gives tiktoken's tokens, or declines and tiktoken answers."""

import json
import os
import unicodedata

import pytest
import regex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from budget_service.pricing import bpe, tokens
from scripts import vendor_tiktoken

os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(tokens.ENCODING_DIR))
import tiktoken  # noqa: E402  (after the cache dir is set: offline)

ENCODINGS = tokens.ENCODINGS
NEWER = json.loads(bpe.NEWER_UNICODE.read_text())["ranges"]
NEWER_POINTS = frozenset(point for lo, hi in NEWER for point in range(lo, hi + 1))


def reference(name: str) -> tiktoken.Encoding:
    return tiktoken.get_encoding(name)


@pytest.mark.parametrize("name", ENCODINGS)
def test_patterns_are_tiktokens_own(name):
    assert bpe.PATTERNS[name] == reference(name)._pat_str


@pytest.mark.parametrize("name", ENCODINGS)
def test_every_token_is_found_at_its_rank_and_nothing_else_is(name):
    index = bpe.counter(name).index
    ranks = reference(name)._mergeable_ranks
    assert index.tokens == len(ranks)
    assert all(index.rank(token) == rank for token, rank in ranks.items())
    # Byte strings one byte off a token, and the empty string, are not tokens.
    for token in list(ranks)[::997]:
        for other in (token + b"\x00", b"\xff" + token, b""):
            assert index.rank(other) == ranks.get(other)


def test_the_committed_indexes_are_what_the_vendored_encodings_give():
    assert vendor_tiktoken.main(["--check"]) == 0
    for name in ENCODINGS:
        url, _ = vendor_tiktoken.pinned()[name]
        source = (tokens.ENCODING_DIR / vendor_tiktoken.cache_name(url)).read_bytes()
        assert bpe.index_path(name).read_bytes() == vendor_tiktoken.rank_index(source)


def test_characters_newer_than_this_interpreters_unicode_are_listed():
    # The list was made with CPython 3.11's Unicode 14.0; a newer interpreter knows more
    # characters, so what it would list is contained in it.
    assigned = regex.compile(r"\P{Cn}").match
    for point in range(0x110000):
        if 0xD800 <= point <= 0xDFFF:
            continue
        char = chr(point)
        if unicodedata.category(char) == "Cn" and assigned(char):
            assert point in NEWER_POINTS, hex(point)


def sample_points() -> list[int]:
    """Every character this interpreter assigns (private use sampled), unassigned ones sampled."""
    return [
        point
        for point in range(0x110000)
        if not 0xD800 <= point <= 0xDFFF
        and point not in NEWER_POINTS
        and (unicodedata.category(chr(point)) not in ("Cn", "Co") or point % 61 == 0)
    ]


@pytest.mark.parametrize("name", ENCODINGS)
def test_every_assigned_character_splits_and_merges_as_tiktoken_does(name):
    # Each character beside a lower and an upper letter, a digit, a space, an apostrophe (the
    # case-insensitive 's 'll ... suffixes) and a newline: a character the two regex engines
    # classed differently would change a piece, and so the tokens.
    counter, encoding = bpe.counter(name), reference(name)
    points = sample_points()
    assert len(points) > 150_000
    for start in range(0, len(points), 64):
        text = "".join(f"a{c}A{c}1{c} {c}x'{c}\n" for c in map(chr, points[start : start + 64]))
        assert counter.encode(text) == encoding.encode_ordinary(text), (name, hex(points[start]))


@pytest.mark.parametrize("name", ENCODINGS)
def test_characters_newer_than_unicode_14_are_left_to_tiktoken(name):
    counter = bpe.counter(name)
    for point in sorted(NEWER_POINTS)[::37] + [0xD800, 0xDFFF]:
        assert counter.count(f"hello {chr(point)} world") is None, hex(point)
    model = "gpt-4o" if name == "o200k_base" else "gpt-4"
    text = "new: \U0001fae9 and \u0558's, a lone surrogate \ud800."
    assert tokens.count_text(text, model) == len(reference(name).encode_ordinary(text))


@pytest.mark.parametrize("name", ENCODINGS)
def test_a_long_piece_is_left_to_tiktoken(name):
    counter = bpe.counter(name)
    assert counter.count("a" * bpe.MAX_PIECE_BYTES) == len(
        reference(name).encode_ordinary("a" * bpe.MAX_PIECE_BYTES)
    )
    assert counter.count("a" * (bpe.MAX_PIECE_BYTES + 1)) is None


# Characters that sit on the patterns' edges: each class, ASCII controls that str.isspace takes
# and Unicode White_Space does not, case folds of the suffix letters (long s, Kelvin sign), marks.
EDGES = list("aAzZsStTdDlLvVeErRmM019 '\t\n\r\x0b\x0c\x1c\x1f\x00/!.,-_") + [
    "\u00a0", "\u2003", "\u3000", "\u0085", "\u2028", "\u017f", "\u212a", "\u0301", "\u0663",
    "\u00b2", "\u01c5", "\u02b0", "\u00e9", "\u4e16", "\u0416", "\U0001f600", "\u200d", "\ufe0f",
]  # fmt: skip
edge_text = st.lists(st.sampled_from(EDGES), max_size=60).map("".join)
any_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=80)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(ENCODINGS), st.one_of(edge_text, any_text, st.text(st.characters(max_codepoint=127))))
def test_counts_equal_tiktoken_or_decline(name, text):
    got = bpe.counter(name).encode(text)
    want = reference(name).encode_ordinary(text)
    if got is None:
        # Declining is only for newer characters and long pieces.
        assert (
            set(map(ord, text)) & NEWER_POINTS
            or max(map(len, regex.findall(bpe.PATTERNS[name], text))) * 4 > bpe.MAX_PIECE_BYTES
        )
    else:
        assert got == want


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(["gpt-4o", "gpt-4", "gpt-3.5-turbo"]), st.one_of(edge_text, any_text))
def test_count_text_is_the_same_through_the_index_and_through_tiktoken(model, text):
    text = text * 40  # crosses the 1024-character chunks LiteLLM encodes in
    name = tokens.encoding_name_for(model)
    counter, encoding = bpe.counter(name), tokens.get_encoding(name)
    for i in range(0, len(text), tokens.CHUNK_CHARS):
        chunk = text[i : i + tokens.CHUNK_CHARS]
        assert counter.count(chunk) in (None, len(encoding.encode_ordinary(chunk)))


ascii_edges = st.lists(
    st.sampled_from([c for c in EDGES if c.isascii()] + ["\x1d", "\x1e", "\x7f"]), max_size=60
)


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(ENCODINGS), st.one_of(ascii_edges.map("".join), st.text(st.characters(max_codepoint=127)))
)
def test_the_ascii_patterns_split_as_tiktokens_patterns_do(name, text):
    # Pieces, not only tokens: \x1c-\x1f are whitespace to str.isspace but not to Unicode's
    # White_Space, and no token joins them to a space, so only the split shows that difference.
    original = regex.compile(bpe.PATTERNS[name].replace("$", r"\Z"))
    assert bpe.counter(name).pieces(text) == original.findall(text)
