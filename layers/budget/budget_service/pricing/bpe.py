"""Exact token counts for a cold process, from a rank index read without building a table.

tiktoken answers every count once its encoding is loaded, but loading one costs a fixed ~150 ms
(cl100k_base) to ~320 ms (o200k_base) of CPU and ~90 MiB: it parses 100k-200k base64 lines into
a dict, then builds Rust hash maps from them. A Lambda's first counted request pays all of it.
This module counts the same tokens with nothing to build: ``<encoding>.ranks`` beside the
encodings (written by scripts/vendor_tiktoken.py from the hash-checked files) holds every token's
bytes in rank order and an open-addressing hash table over them, memory-mapped as it is and
probed in place (only the pages a count touches are read).

The algorithm is tiktoken's ``encode_ordinary`` (tiktoken/src/lib.rs, ``_byte_pair_merge``):
split the text with the encoding's pattern, take a piece whole when it is a token, else merge its
adjacent parts lowest rank first (leftmost on ties) until no pair is a token. Splitting uses:

- for ASCII text, ``re`` with the pattern spelled for ASCII (``\\p{L}`` is ``[A-Za-z]``, ``\\s``
  is Unicode White_Space within ASCII: tab, LF, VT, FF, CR, space);
- otherwise the ``regex`` module (tiktoken's own dependency) with tiktoken's pattern, except for
  characters that module's Unicode tables know and tiktoken's may not (assigned after Unicode
  14.0; listed in ``newer_unicode.json``), which it hands back to tiktoken; with a regex release
  other than the one the list was made from, every non-ASCII text goes back to tiktoken.

`count` answers None where it cannot vouch for the count (those characters, lone surrogates,
a piece longer than MAX_PIECE_BYTES, whose merge is quadratic here); the caller then asks tiktoken.
tests/test_bpe.py compares the two on every code point and on generated text.
"""

from __future__ import annotations

import binascii
import itertools
import json
import mmap
import re
import struct
import sys
import threading
from collections.abc import Callable
from pathlib import Path

INDEX_DIR = Path(__file__).with_name("tiktoken_cache")
MAGIC = b"BPEIDX1\n"
_HEADER = struct.Struct("<8sIII")  # magic, tokens, log2(slots), blob bytes
EMPTY = 0xFFFFFFFF
NO_RANK = 1 << 40  # above every rank; tiktoken's Rank::MAX
MAX_PIECE_BYTES = 128  # longer pieces (long CJK runs, "aaaa...") go to tiktoken

# tiktoken_ext/openai_public.py; tests assert they equal tiktoken's own.
PATTERNS = {
    "o200k_base": "|".join(
        [
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""\p{N}{1,3}""",
            r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
            r"""\s*[\r\n]+""",
            r"""\s+(?!\S)""",
            r"""\s+""",
        ]
    ),
    "cl100k_base": r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",
}

# The same patterns for ASCII-only text, for ``re``. No ASCII character is Lt, Lm, Lo or M.
_WS = r"\t\n\x0b\x0c\r "  # Unicode White_Space in ASCII (not \x1c-\x1f, which str.isspace takes)
_SUFFIX = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
ASCII_PATTERNS = {
    "o200k_base": "|".join(
        [
            rf"[^\r\nA-Za-z0-9]?[A-Z]*[a-z]+{_SUFFIX}?",
            rf"[^\r\nA-Za-z0-9]?[A-Z]+[a-z]*{_SUFFIX}?",
            r"[0-9]{1,3}",
            rf" ?[^{_WS}A-Za-z0-9]+[\r\n/]*",
            rf"[{_WS}]*[\r\n]+",
            rf"[{_WS}]+(?![^{_WS}])",
            rf"[{_WS}]+",
        ]
    ),
    "cl100k_base": "|".join(
        [
            r"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])",
            r"[^\r\nA-Za-z0-9]?+[A-Za-z]++",
            r"[0-9]{1,3}+",
            rf" ?[^{_WS}A-Za-z0-9]++[\r\n]*+",
            rf"[{_WS}]++\Z",
            rf"[{_WS}]*[\r\n]",
            rf"[{_WS}]+(?![^{_WS}])",
            rf"[{_WS}]",
        ]
    ),
}


class RankIndex:
    """The ranks of one encoding, probed in place: ``rank(b"hello") -> 24912`` or None.

    File layout (little-endian): header (magic, n tokens, log2 of slot count, blob length),
    offsets (n+1 uint32: token r is blob[offsets[r]:offsets[r+1]]), slots (2**bits uint32: a rank,
    or EMPTY; a token's home slot is crc32(bytes) mod 2**bits, collisions probe linearly), blob.
    """

    def __init__(self, name: str, data: bytes | mmap.mmap) -> None:
        if len(data) < _HEADER.size or sys.byteorder != "little":
            raise ValueError(f"{name}: not a rank index this build can read")
        magic, tokens, bits, blob_bytes = _HEADER.unpack_from(data)
        start = _HEADER.size
        # A file cut short (or with bytes more) must not be read: a token missing from it is
        # not found, and its count is not tiktoken's.
        if magic != MAGIC or len(data) != start + 4 * (tokens + 1) + 4 * (1 << bits) + blob_bytes:
            raise ValueError(f"{name}: not a rank index this build can read")
        view = memoryview(data)
        self.offsets = view[start : start + 4 * (tokens + 1)].cast("I")
        start += 4 * (tokens + 1)
        self.slots = view[start : start + 4 * (1 << bits)].cast("I")
        start += 4 * (1 << bits)
        self.blob_start = start
        self.data = data  # a token's bytes: data[blob_start + offsets[r] : blob_start + offsets[r+1]]
        if self.offsets[0] != 0 or self.offsets[tokens] != blob_bytes:
            raise ValueError(f"{name}: not a rank index this build can read")
        self.mask = (1 << bits) - 1
        self.name = name
        self.tokens = tokens

    @classmethod
    def open(cls, name: str, path: Path) -> RankIndex:
        """The index in a file, mapped read-only: pages are read as probes touch them."""
        with path.open("rb") as file:
            return cls(name, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ))

    def rank(self, token: bytes) -> int | None:
        """The rank (token id) of these bytes, or None when they are not a token."""
        slots, offsets, data, base, mask = self.slots, self.offsets, self.data, self.blob_start, self.mask
        home = binascii.crc32(token) & mask
        while True:
            found = slots[home]
            if found == EMPTY:
                return None
            if data[base + offsets[found] : base + offsets[found + 1]] == token:
                return found
            home = (home + 1) & mask

    def encode_piece(self, piece: bytes) -> list[int]:
        """tiktoken's byte_pair_encode: the tokens of one pre-tokenized piece (UTF-8 bytes)."""
        whole = self.rank(piece)
        if whole is not None:
            return [whole]
        bounds = self._merge(piece)
        return [self._known(piece[a:b]) for a, b in itertools.pairwise(bounds)]

    def _known(self, token: bytes) -> int:
        found = self.rank(token)
        assert found is not None  # every part left after merging is a token
        return found

    def _merge(self, piece: bytes) -> list[int]:
        """Part boundaries after merging lowest-rank adjacent pairs first (leftmost on a tie)."""
        rank = self.rank
        starts = list(range(len(piece) + 1))
        # pair[i]: rank of parts i and i+1 joined; the two trailing entries never merge.
        pair = [NO_RANK if (r := rank(piece[i : i + 2])) is None else r for i in range(len(piece) - 1)]
        pair += (NO_RANK, NO_RANK)
        while (lowest := min(pair)) != NO_RANK:
            i = pair.index(lowest)
            if i + 3 < len(starts):
                joined = rank(piece[starts[i] : starts[i + 3]])
                pair[i] = NO_RANK if joined is None else joined
            else:
                pair[i] = NO_RANK
            if i > 0:
                joined = rank(piece[starts[i - 1] : starts[i + 2]])
                pair[i - 1] = NO_RANK if joined is None else joined
            del starts[i + 1], pair[i + 1]
        return starts

    def count_piece(self, piece: bytes) -> int:
        if self.rank(piece) is not None:
            return 1
        return len(self._merge(piece)) - 1


class Counter:
    """Counts one encoding's tokens of a text as tiktoken's ``encode_ordinary`` does."""

    def __init__(self, index: RankIndex, newer_unicode: list[list[int]], regex_version: str) -> None:
        self.index = index
        self.name = index.name
        self._ascii_split = re.compile(ASCII_PATTERNS[index.name]).findall
        self._newer_ranges = newer_unicode
        self._regex_version = regex_version  # the regex release newer_unicode was made with
        # (refuse, split) for non-ASCII text: built on first use, with the regex module.
        self._unicode: tuple[Callable[[str], object], Callable[[str], list[str]]] | None = None

    def pieces(self, text: str) -> list[str] | None:
        """The pre-tokenized pieces of text, or None when this module cannot vouch for them."""
        if text.isascii():
            return self._ascii_split(text)
        refuse, split = self._unicode or self._load_unicode()
        if refuse(text):
            return None
        return split(text)

    def _load_unicode(self) -> tuple[Callable[[str], object], Callable[[str], list[str]]]:
        import regex  # only for non-ASCII text: ~10 ms to import

        pattern = PATTERNS[self.name].replace("$", r"\Z")  # Rust's $ is end of text only
        ranges = "".join(f"\\U{lo:08x}-\\U{hi:08x}" for lo, hi in self._newer_ranges)
        refuse: Callable[[str], object] = regex.compile(f"[{ranges}\\ud800-\\udfff]").search
        if regex.__version__ != self._regex_version:
            # Another release's Unicode tables may know characters the list does not name:
            # refuse every text asked about (non-ASCII, so never empty).
            refuse = bool
        self._unicode = (refuse, regex.compile(pattern).findall)
        return self._unicode

    def _encoded_pieces(self, text: str) -> list[bytes] | None:
        """The pieces of text as UTF-8, or None where a split is declined or a piece is too long."""
        pieces = self.pieces(text)
        if pieces is None:
            return None
        encoded = [piece.encode() for piece in pieces]
        if any(len(piece) > MAX_PIECE_BYTES for piece in encoded):
            return None
        return encoded

    def count(self, text: str) -> int | None:
        """tiktoken's ``len(encoding.encode_ordinary(text))``, or None (see the module doc)."""
        pieces = self._encoded_pieces(text)
        if pieces is None:
            return None
        return sum(map(self.index.count_piece, pieces))

    def encode(self, text: str) -> list[int] | None:
        """tiktoken's ``encode_ordinary(text)`` token ids, or None (for tests and checks)."""
        pieces = self._encoded_pieces(text)
        if pieces is None:
            return None
        return [token for piece in pieces for token in self.index.encode_piece(piece)]


def index_path(name: str) -> Path:
    return INDEX_DIR / f"{name}.ranks"


NEWER_UNICODE = INDEX_DIR / "newer_unicode.json"

_lock = threading.Lock()
_counters: dict[str, Counter] = {}


def counter(name: str) -> Counter:
    """The Counter for an encoding carried in the layer, read on first use. KeyError otherwise."""
    found = _counters.get(name)
    if found is None:
        if name not in PATTERNS:
            raise KeyError(name)
        with _lock:
            found = _counters.get(name)
            if found is None:
                newer = json.loads(NEWER_UNICODE.read_text())
                index = RankIndex.open(name, index_path(name))
                found = Counter(index, newer["ranges"], newer["regex"])
                _counters[name] = found
    return found


def loaded() -> list[str]:
    """The encodings whose rank index this process has read."""
    return sorted(_counters)
