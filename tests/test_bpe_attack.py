"""Inputs chosen to hurt the rank index (budget_service.pricing.bpe) and the way tokens uses it.

Speed is measured in rank lookups, not seconds: the index's work is about 3 lookups per UTF-8 byte
of the pieces it merges at most (one for the whole piece, one per adjacent pair, two per merge),
at ~1-1.5 µs each here, while tiktoken's load is a fixed ~150-320 ms.
"""

import json
import os
import shutil
import threading

import pytest

from budget_service.pricing import bpe, tokens
from scripts import vendor_tiktoken

os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(tokens.ENCODING_DIR))
import tiktoken  # noqa: E402  (after the cache dir is set: offline)

# About what one tiktoken load costs, in the index's rank lookups (~0.3 s at ~1.2 µs a lookup).
MOST_LOOKUPS = 250_000

# Texts the index is slowest on per character or per byte (each piece just under MAX_PIECE_BYTES
# and merged byte by byte): space runs, 3-byte punctuation, 4-byte characters.
SLOW_UNITS = [" " * 127 + "1", "\u2026" * 42 + "1", "\U00020000\U00020001\U00020003" * 10 + "1"]


def tiktoken_count(text: str, model: str) -> int:
    encoding = tiktoken.get_encoding(tokens.encoding_name_for(model))
    chunks = range(0, len(text), tokens.CHUNK_CHARS)
    return sum(len(encoding.encode_ordinary(text[i : i + tokens.CHUNK_CHARS])) for i in chunks)


@pytest.fixture
def cold(monkeypatch):
    """tokens as a fresh process has it (no encoding loaded, nothing counted through the index);
    yields a list whose one item is the number of rank lookups the index has made."""
    monkeypatch.setattr(tokens, "_loaded", {})
    monkeypatch.setattr(tokens, "_index_bytes", 0)
    lookups = [0]
    rank = bpe.RankIndex.rank

    def counted(self, token):
        lookups[0] += 1
        return rank(self, token)

    monkeypatch.setattr(bpe.RankIndex, "rank", counted)
    return lookups


@pytest.mark.parametrize("unit", SLOW_UNITS, ids=["spaces", "3-byte punctuation", "4-byte characters"])
def test_one_long_text_cannot_keep_a_cold_process_on_the_index(cold, unit):
    # A request body may carry megabytes of text; before, the index counted all of it when it came
    # first (~4 µs a byte on these: 6 MB ~ 25 s, where tiktoken loads in ~0.3 s and counts ~1 s).
    text = unit * (600_000 // len(unit.encode()))
    assert tokens.count_text(text, "gpt-4o") == tiktoken_count(text, "gpt-4o")
    assert 0 < cold[0] <= MOST_LOOKUPS
    assert tokens.loaded_encodings() == ["o200k_base"]


def test_many_texts_spend_one_budget_between_them(cold):
    texts = [unit * (3000 // len(unit.encode())) for unit in SLOW_UNITS] * 60
    assert [tokens.count_text(t, "gpt-4o") for t in texts] == [tiktoken_count(t, "gpt-4o") for t in texts]
    assert 0 < cold[0] <= MOST_LOOKUPS


@pytest.fixture
def vendored_copy(tmp_path, monkeypatch):
    """vendor_tiktoken pointed at a copy of the layer's tiktoken_cache (links to its big files)."""
    target = tmp_path / "tiktoken_cache"
    target.mkdir()
    for path in tokens.ENCODING_DIR.iterdir():
        if path.suffix == ".json":
            shutil.copy(path, target / path.name)
        else:
            (target / path.name).symlink_to(path)
    monkeypatch.setattr(vendor_tiktoken, "ROOT", tmp_path)
    monkeypatch.setattr(vendor_tiktoken, "TARGET", target)
    return target / bpe.NEWER_UNICODE.name


def edit_json(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda d: d["ranges"].pop(3), id="a range missing"),
        pytest.param(lambda d: d.update(regex="2024.1.1"), id="made from another regex"),
    ],
)
def test_check_finds_a_stale_list_of_newer_characters(vendored_copy, change, capsys):
    # Counted by the index, a character missing from the list is split with the regex module's
    # Unicode tables where tiktoken's differ: counts that are not tiktoken's.
    edit_json(vendored_copy, change)
    assert vendor_tiktoken.main(["--check"]) == 1
    assert "newer_unicode.json STALE" in capsys.readouterr().out


def index_bytes(name="o200k_base"):
    return bpe.index_path(name).read_bytes()


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: data[:-1], id="last byte cut"),
        pytest.param(lambda data: data[:-1000], id="end of the blob cut"),
        pytest.param(lambda data: data + b"\0", id="a byte more"),
        pytest.param(lambda data: data[:12], id="shorter than its header"),
        pytest.param(lambda data: b"BPEIDX2\n" + data[8:], id="another format"),
    ],
)
def test_a_damaged_index_is_refused(damage):
    # Cut short, the index still answered: its last tokens were not found, so " cocos" (one token,
    # rank 199,9xx) was counted as 2 (3 with " x", where tiktoken says 2).
    with pytest.raises(ValueError):
        bpe.RankIndex("o200k_base", damage(index_bytes()))


@pytest.mark.parametrize(
    "index",
    [
        pytest.param(lambda tmp: tmp / "missing.ranks", id="missing"),
        pytest.param(lambda tmp: tmp / "short.ranks", id="cut short"),
    ],
)
def test_an_index_that_cannot_be_read_leaves_the_count_to_tiktoken(cold, monkeypatch, tmp_path, index):
    (tmp_path / "short.ranks").write_bytes(index_bytes()[:-1000])
    monkeypatch.setattr(bpe, "_counters", {})
    monkeypatch.setattr(bpe, "index_path", lambda name: index(tmp_path))
    text = "hello cocos x"
    assert tokens.count_text(text, "gpt-4o") == tiktoken_count(text, "gpt-4o") == 3
    assert tokens.loaded_encodings() == ["o200k_base"]


def test_a_big_endian_machine_counts_with_tiktoken(cold, monkeypatch):
    monkeypatch.setattr(bpe, "_counters", {})
    monkeypatch.setattr(bpe.sys, "byteorder", "big")
    assert tokens.count_text("hello world", "gpt-4o") == 2
    assert tokens.loaded_encodings() == ["o200k_base"]


def test_a_regex_module_other_than_the_lists_own_leaves_non_ascii_text_to_tiktoken(monkeypatch, tmp_path):
    # newer_unicode.json lists what one regex release knows beyond Unicode 14.0; another release
    # (a newer Unicode) may know characters it does not list, and split them as tiktoken does not.
    newer = tmp_path / "newer_unicode.json"
    newer.write_text(bpe.NEWER_UNICODE.read_text())
    edit_json(newer, lambda d: d.update(regex="2024.1.1"))
    monkeypatch.setattr(bpe, "NEWER_UNICODE", newer)
    monkeypatch.setattr(bpe, "_counters", {})
    counter = bpe.counter("o200k_base")
    assert counter.count("h\u00e9llo w\u00f6rld") is None
    assert counter.count("hello world") == 2  # ASCII is split with re, not the regex module


def test_a_declined_chunk_sends_the_rest_of_its_text_to_tiktoken(cold):
    # The chunks before it stay counted by the index; the one with a character newer than Unicode
    # 14.0 and those after it are tiktoken's.
    first = "counted by the index, " * 47  # 1034 characters: the first chunk, and 10 of the second
    text = first + "then \U0001fae9 is not" + " and the rest" * 100
    assert tokens.count_text(text, "gpt-4o") == tiktoken_count(text, "gpt-4o")
    assert tokens.counted_with_index() == tokens.CHUNK_CHARS
    assert tokens.loaded_encodings() == ["o200k_base"]


def test_threads_counting_at_once_in_a_cold_process(cold, monkeypatch):
    monkeypatch.setattr(bpe, "_counters", {})
    texts = [
        "Hello, world! It's 2024.\r\n",
        "h\u00e9llo \u4e16\u754c \U0001f30d \u0663\u0664 \u017f's",
        "\u0416\u0443\u043a  \t\n\n  x" * 50,
        " " * 127 + "1",
        "x" * 200,
        "\U0001fae9 newer",
        "lone \ud800 surrogate",
    ] * 3
    models = ["gpt-4o", "gpt-4"]
    barrier = threading.Barrier(8)
    results: dict[int, list[int]] = {}

    def count(k):
        barrier.wait()
        results[k] = [tokens.count_text(text, models[k % 2]) for text in texts]

    threads = [threading.Thread(target=count, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for k in range(8):
        assert results[k] == [tiktoken_count(text, models[k % 2]) for text in texts]
