"""Repository hygiene: no tracked text file cites a tracker number or the design notes file.

Code, comments, docs, openapi.json and template.yaml say what they mean (the behaviour or the
reason) instead of pointing at a tracker entry or at a document that is not in the repository:
a reader of the code has neither. The scan covers every file git tracks (binary files skipped)
and fails naming each hit as ``path:line: text``.

What counts as a citation (case-insensitive):

* the design notes file by name (``DESIGN`` + ``.md``);
* a tracker word with a number N: ``issue N``, ``issues N, M``, ``issue_N``, ``ticket #N``,
  ``pull request N``, ``PR #N``, ``GH-N`` (not a value such as the key ``ticket-1``);
* a bare ``#N``: a ``#`` with digits that is not part of a word, an HTML entity (``&#39;``), a
  URL (``https://host/page#42``) or a key such as ``RESET#0``;
* another repository's tracker entry, ``owner/repo#N``.

HTTP statuses (``404``), DynamoDB keys (``HOLDS#<n>``, ``PROJECT#p``), Markdown headings and
comment markers (``# 1``) and URL anchors are not citations.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Spelled in pieces so this file's own source does not match what it forbids.
_DESIGN_FILE = "DESIGN" + r"\.md"
_TRACKER_WORDS = r"(?:issues?|tickets?|pull[\s_-]*requests?)"
CITATION = re.compile(
    "|".join(
        [
            rf"\b{_DESIGN_FILE}\b",
            # A tracker word, then a number (optionally after '#', '_' or a line break); not a
            # value such as an idempotency key "ticket-1".
            rf"(?<![A-Za-z]){_TRACKER_WORDS}[\s_]*#?\s*\d+\b",
            # "PR" only with '#': "pr 12" is also a token of the vendored tiktoken ranks.
            r"(?<![A-Za-z])PRs?\s*#\d+\b",
            r"\bGH-\d+\b",
            # owner/repo#N: another repository's issue or pull request.
            r"\b[\w.-]+/[\w.-]+#\d+\b",
            # '#' and digits standing alone: not after a word character, '&' (an HTML entity),
            # '/', '#' or another URL character.
            r"(?<![\w&/#?=%.~-])#\d+\b(?![\w-])",
        ]
    ),
    re.IGNORECASE,
)
URL = re.compile(r"https?://\S+")
VENDORED = ROOT / "console" / "vendor"


def tracked_text_files() -> list[Path]:
    """Every file git tracks in the repository, minus binary ones (a NUL byte in the first 8 KiB)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    files = []
    for name in filter(None, listed):
        path = ROOT / name.decode()
        if not path.is_file():  # deleted in the work tree, not yet committed
            continue
        with path.open("rb") as fh:
            if b"\0" in fh.read(8192):
                continue
        files.append(path)
    return files


def citations(text: str) -> list[tuple[int, str]]:
    """(line number, matched text) of every citation in `text`; URLs are blanked out first, so a
    fragment such as ``page#12`` in a link never counts."""
    blanked = URL.sub(lambda m: " " * len(m.group()), text)
    return [(blanked.count("\n", 0, m.start()) + 1, m.group()) for m in CITATION.finditer(blanked)]


# Built from pieces, for the same reason as the patterns.
ISSUE = "iss" + "ue"
CITED = [
    f"see {ISSUE} 14",
    f"({ISSUE} 7)",
    f"{ISSUE.capitalize()} 12's findings",
    f"{ISSUE}s 4, 16",
    f"test_{ISSUE}_11",
    f"this {ISSUE}\n# 19 asks",
    "fixed in " + "#" + "12",
    "(" + "#" + "3)",
    "per DESIGN" + ".md",
    "ticket " + "#" + "5",
    "PR " + "#" + "9",
    "GH" + "-12",
    "see some-org/some-tool" + "#" + "924",
]
NOT_CITED = [
    "a 404 or a 422, never a 500",
    "sk = HOLD#<len(user)>:<user>#<hold_id>",
    "partition RESET#0..RESET#3 and HOLDS#1",
    "# 1. the budget's own thresholds",
    "## Usage shapes",
    "https://example.com/docs/page#12 and https://github.com/o/r/pull/12#issuecomment-1",
    "an HTML entity &#39; and &#x27;",
    "issued 3 keys; tissue 4",
    "the design decisions (docs/adr/)",
    'idempotency_key="ticket-1"',
]


@pytest.mark.parametrize("text", CITED)
def test_a_citation_is_found(text):
    assert citations(text), text


@pytest.mark.parametrize("text", NOT_CITED)
def test_ordinary_text_is_not_a_citation(text):
    assert citations(text) == []


def test_a_citation_is_reported_on_its_line():
    assert citations(f"one\ntwo {ISSUE} 3\n") == [(2, f"{ISSUE} 3")]


def test_no_tracked_file_cites_a_tracker_number_or_the_design_file():
    files = tracked_text_files()
    assert any(p.name == "template.yaml" for p in files)  # the scan really sees the repository
    hits = []
    for path in files:
        # Third-party code committed as released (checked against its pinned checksum): a
        # colour code in it is not a citation, and it is not ours to reword.
        if path.is_relative_to(VENDORED):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for line, found in citations(text):
            hits.append(f"{path.relative_to(ROOT)}:{line}: {found!r}")
    assert not hits, "say what is meant instead of citing it:\n" + "\n".join(hits)
