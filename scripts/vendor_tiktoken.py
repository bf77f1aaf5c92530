"""Copy the tiktoken encodings the layer needs into it, verified against tiktoken's pinned SHA-256.

    python scripts/vendor_tiktoken.py          # (re)write layers/budget/budget_service/pricing/tiktoken_cache/
    python scripts/vendor_tiktoken.py --check  # verify what is committed; exit 1 on any mismatch

The files come from the installed litellm wheel (litellm/litellm_core_utils/tokenizers/, which
ships them under tiktoken's cache file names), with no network. Each is accepted only if its
SHA-256 equals the ``expected_hash`` tiktoken pins for that encoding in tiktoken_ext/openai_public.py,
and is stored under the name tiktoken's cache looks for: the SHA-1 of the encoding's URL
(budget_service.pricing.tokens points ``TIKTOKEN_CACHE_DIR`` at that folder).
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENCODINGS = ("cl100k_base", "o200k_base")
# The layer's tiktoken_cache/, where budget_service.pricing.tokens points TIKTOKEN_CACHE_DIR.
TARGET = ROOT / "layers" / "budget" / "budget_service" / "pricing" / "tiktoken_cache"


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
        if args.check:
            ok = target.is_file() and sha256(target) == expected
            print(f"{encoding}: {target.relative_to(ROOT)} {'ok' if ok else 'MISMATCH or missing'}")
            bad += not ok
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
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
