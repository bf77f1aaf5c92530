"""Copy the tiktoken encodings the layer needs into it, verified against tiktoken's pinned SHA-256.

    python scripts/vendor_tiktoken.py          # (re)write layers/budget/budget_service/pricing/tiktoken_cache/
    python scripts/vendor_tiktoken.py --check  # verify what is committed; exit 1 on any mismatch

The files come from the installed litellm wheel (litellm/litellm_core_utils/tokenizers/, which
ships them under tiktoken's cache file names), with no network. Each is accepted only if its
SHA-256 equals the ``expected_hash`` tiktoken pins for that encoding in tiktoken_ext/openai_public.py,
and is stored under the name tiktoken's cache looks for: the SHA-1 of the encoding's URL.

Beside each it writes ``<encoding>.ranks``, the rank index budget_service.pricing.bpe probes in place
(a cold process counts tokens without building tiktoken's tables), and ``newer_unicode.json``, the
characters the ``regex`` module's Unicode tables assign and this interpreter's (Unicode 14.0 on
CPython 3.11) do not, which bpe hands back to tiktoken. ``--check`` verifies both.
"""

from __future__ import annotations

import argparse
import ast
import base64
import binascii
import hashlib
import json
import struct
import sys
import unicodedata
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENCODINGS = ("cl100k_base", "o200k_base")
LAYER = ROOT / "layers" / "budget"
if str(LAYER) not in sys.path:
    sys.path.insert(0, str(LAYER))  # budget_service.pricing.bpe defines the index format and its place

from budget_service.pricing import bpe  # noqa: E402  (after the layer is on sys.path)

TARGET = bpe.INDEX_DIR  # the layer's tiktoken_cache/, where tokens points TIKTOKEN_CACHE_DIR


def pinned() -> dict[str, tuple[str, str]]:
    """{encoding: (url, expected sha256)} read from tiktoken's own source, without running it."""
    source = Path(str(metadata.distribution("tiktoken").locate_file("tiktoken_ext/openai_public.py")))
    found: dict[str, tuple[str, str]] = {}
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.FunctionDef) and node.name in ENCODINGS:
            for call in ast.walk(node):
                if (
                    isinstance(call, ast.Call)
                    and getattr(call.func, "id", None) == "load_tiktoken_bpe"
                    and call.args
                    and isinstance(call.args[0], ast.Constant)
                ):
                    hashes = [
                        k.value.value
                        for k in call.keywords
                        if k.arg == "expected_hash" and isinstance(k.value, ast.Constant)
                    ]
                    found[node.name] = (str(call.args[0].value), str(hashes[0]))
    missing = set(ENCODINGS) - set(found)
    if missing:
        raise SystemExit(f"tiktoken does not pin {sorted(missing)}")
    return found


def cache_name(url: str) -> str:
    return hashlib.sha1(url.encode()).hexdigest()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rank_index(encoding_file: bytes) -> bytes:
    """The budget_service.pricing.bpe rank index of a .tiktoken file ("<base64 token> <rank>" lines)."""
    tokens: list[bytes] = []
    for number, line in enumerate(encoding_file.splitlines()):
        encoded, rank = line.split()
        if int(rank) != number:  # bpe reads a token's rank as its position
            raise ValueError(f"line {number} has rank {int(rank)}: ranks must run 0, 1, 2, ...")
        tokens.append(base64.b64decode(encoded))
    bits = (2 * len(tokens)).bit_length()  # at most half the slots filled
    mask = (1 << bits) - 1
    slots = [bpe.EMPTY] * (1 << bits)
    offsets = [0]
    for position, token in enumerate(tokens):
        offsets.append(offsets[-1] + len(token))
        home = binascii.crc32(token) & mask
        while slots[home] != bpe.EMPTY:
            home = (home + 1) & mask
        slots[home] = position
    blob = b"".join(tokens)
    return b"".join(
        [
            bpe._HEADER.pack(bpe.MAGIC, len(tokens), bits, len(blob)),
            struct.pack(f"<{len(offsets)}I", *offsets),
            struct.pack(f"<{len(slots)}I", *slots),
            blob,
        ]
    )


def newer_unicode() -> dict:
    """Code point ranges the regex module assigns and this interpreter's unicodedata does not."""
    import regex

    assigned = regex.compile(r"\P{Cn}").match
    ranges: list[list[int]] = []
    for point in range(0x110000):
        if 0xD800 <= point <= 0xDFFF:
            continue
        char = chr(point)
        if unicodedata.category(char) == "Cn" and assigned(char):
            if ranges and ranges[-1][1] == point - 1:
                ranges[-1][1] = point
            else:
                ranges.append([point, point])
    return {
        "why": "assigned in the regex module's Unicode tables, not in unicodedata's; counted by tiktoken",
        "regex": metadata.version("regex"),
        "unicodedata": unicodedata.unidata_version,
        "ranges": ranges,
    }


def _points(ranges: list[list[int]]) -> set[int]:
    return {point for lo, hi in ranges for point in range(lo, hi + 1)}


def newer_unicode_is_current(committed: dict, fresh: dict) -> bool:
    """The committed list is what this regex module gives: the same, or, on an interpreter whose
    Unicode is newer than the one it was made with (which assigns more), a superset of it."""
    if committed.get("regex") != fresh["regex"]:
        return False
    if committed.get("unicodedata") == fresh["unicodedata"]:
        return committed.get("ranges") == fresh["ranges"]
    return _points(fresh["ranges"]) <= _points(committed.get("ranges", []))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    source_dir = Path(
        str(metadata.distribution("litellm").locate_file("litellm/litellm_core_utils/tokenizers"))
    )
    bad = 0
    for encoding, (url, expected) in pinned().items():
        name = cache_name(url)
        target = TARGET / name
        index = TARGET / bpe.index_path(encoding).name
        if args.check:
            ok = target.is_file() and sha256(target) == expected
            print(f"{encoding}: {target.relative_to(ROOT)} {'ok' if ok else 'MISMATCH or missing'}")
            bad += not ok
            if ok:
                fresh = index.is_file() and index.read_bytes() == rank_index(target.read_bytes())
                print(f"{encoding}: {index.relative_to(ROOT)} {'ok' if fresh else 'STALE or missing'}")
                bad += not fresh
            continue
        source = source_dir / name
        actual = sha256(source)
        if actual != expected:
            print(f"{encoding}: {source} has sha256 {actual}, tiktoken pins {expected}", file=sys.stderr)
            bad += 1
            continue
        TARGET.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
        print(f"{encoding}: {target.relative_to(ROOT)} sha256 {actual} (pinned by tiktoken)")
        index.write_bytes(rank_index(target.read_bytes()))
        print(f"{encoding}: {index.relative_to(ROOT)} written")
    guard = TARGET / bpe.NEWER_UNICODE.name
    if args.check:
        fresh = guard.is_file() and newer_unicode_is_current(json.loads(guard.read_text()), newer_unicode())
        print(f"{guard.relative_to(ROOT)} {'ok' if fresh else 'STALE or missing'}")
        bad += not fresh
    else:
        guard.write_text(json.dumps(newer_unicode(), indent=1) + "\n")
        print(f"{guard.relative_to(ROOT)} written")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
