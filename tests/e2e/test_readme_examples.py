"""The API examples of the README and of the docs pages run as written, against a fresh local
server per page, and answer exactly what the page shows.

An example is a ```bash block followed directly by a ```json block. The bash blocks of one page
run in order in one shell (so a variable set in one block is there in the next) with ``API`` set
to the server; each request's answer is compared with the next line of the json block. The whole
answer is compared: the same fields, no more and no fewer, and equal values (numbers as
Decimals). Only what depends on when or where the examples run (times, dates, epochs, generated
ids) is compared by presence alone. A bash block with no json block after it is not run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest

from localdev import template
from localdev.ready_time import ServerProcess

# Present in the answer, value not compared: they depend on the clock or are random.
VOLATILE = {
    "created_at",
    "updated_at",
    "period_start",
    "reset_at",
    "last_updated_at",
    "hold_id",
    "expires_at",
    "settled_at",
}
ROOT = template.ROOT
# The pages whose examples run; each must have at least one.
PAGES = [
    "README.md",
    "docs/litellm-protocol.md",
    "docs/guide/budgets.md",
    "docs/guide/costs.md",
    "docs/guide/holds.md",
    "docs/guide/levels.md",
]


def api_examples(page: str) -> list[tuple[str, list[str]]]:
    """[(bash block, [expected answer lines])] of one page, in order."""
    text = (ROOT / page).read_text()
    # A fence's body never contains ```, so a bash block followed by prose is not an example.
    body = r"((?:(?!```).)*)"
    pairs = re.findall(rf"```bash\n{body}```\s*```json\n{body}```", text, flags=re.S)
    return [(code, [line for line in answers.splitlines() if line.strip()]) for code, answers in pairs]


def same(expected, actual, where: str = "") -> None:
    """Assert `actual` is `expected` whole: dicts with the same keys, lists of the same length,
    numbers equal as Decimals; VOLATILE keys only need to be there."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), (where, actual)
        assert set(actual) == set(expected), f"{where}: fields differ: {sorted(set(actual) ^ set(expected))}"
        for key, value in expected.items():
            if key not in VOLATILE:
                same(value, actual[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), (where, actual)
        for n, (e, a) in enumerate(zip(expected, actual, strict=True)):
            same(e, a, f"{where}[{n}]")
    elif isinstance(expected, Decimal | int) and not isinstance(expected, bool):
        assert isinstance(actual, Decimal | int) and not isinstance(actual, bool), (where, actual)
        assert Decimal(actual) == Decimal(expected), (where, expected, actual)
    else:
        assert actual == expected, (where, expected, actual)


def test_same_compares_whole_answers():
    same({"a": 1, "created_at": "x"}, {"a": Decimal("1.0"), "created_at": "y"})
    with pytest.raises(AssertionError):
        same({"a": 1}, {"a": 1, "b": 2})  # a field the page does not show
    with pytest.raises(AssertionError):
        same({"a": 1, "created_at": "x"}, {"a": 1})  # a volatile field must still be there
    with pytest.raises(AssertionError):
        same({"a": [1]}, {"a": [1, 2]})


def run_examples(page: str, server: ServerProcess) -> None:
    examples = api_examples(page)
    assert examples, f"{page} has no example"
    # One shell for all blocks; each request's answer on its own line.
    script = 'curl() { command curl "$@"; echo; }\n' + "".join(
        f"{code}\necho '=== end of example {n} ==='\n" for n, (code, _) in enumerate(examples)
    )
    run = subprocess.run(
        ["bash", "-c", script],
        env={"API": server.url, "PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    outputs = re.split(r"=== end of example \d+ ===\n", run.stdout)
    for n, (code, expected_lines) in enumerate(examples):
        answers = [line for line in outputs[n].splitlines() if line.strip()]
        assert len(answers) == len(expected_lines), f"{page}, example {n}:\n{code}\ngot:\n{outputs[n]}"
        for expected, actual in zip(expected_lines, answers, strict=True):
            parse = {"parse_float": Decimal}
            same(json.loads(expected, **parse), json.loads(actual, **parse), f"{page}, example {n}")


@pytest.mark.parametrize("page", PAGES)
def test_the_examples_run_in_order_and_answer_as_shown(page):
    assert (ROOT / page).is_file()
    table = "examples-" + Path(page).stem
    proc = ServerProcess(env={"TABLE_NAME": table})  # its own embedded DynamoDB: a fresh start
    try:
        proc.wait_ready()
        run_examples(page, proc)
    finally:
        proc.close()


def test_every_page_with_examples_is_run():
    pages = ["README.md", *(str(p.relative_to(ROOT)) for p in sorted((ROOT / "docs").rglob("*.md")))]
    with_examples = [p for p in pages if api_examples(p)]
    assert sorted(with_examples) == sorted(PAGES)
