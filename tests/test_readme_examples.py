"""The README's API examples run top to bottom as written, against a fresh local server, and
answer what the README shows.

Every ```bash block of the README's "## API" section runs, in order, in one shell (so a variable
set in one block is there in the next) with ``API`` set to the server; each request's answer is
compared with the next line of the ```json block that follows the bash block. Times and dates
(which depend on when the examples run) are not compared, and fields the README does not show
are allowed; everything shown must be equal.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from decimal import Decimal

import pytest

from localdev import template
from localdev.ready_time import ServerProcess

VOLATILE = {"created_at", "updated_at", "period_start", "reset_at", "last_updated_at"}


def api_examples() -> list[tuple[str, list[str]]]:
    """[(bash block, [expected answer lines])] of the README's "## API" section, in order."""
    readme = (template.ROOT / "README.md").read_text()
    section = readme.split("\n## API\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(bash|json)\n(.*?)```", section, flags=re.S)
    examples = []
    for i, (kind, text) in enumerate(blocks):
        if kind != "bash":
            continue
        assert i + 1 < len(blocks) and blocks[i + 1][0] == "json", f"no answers after:\n{text}"
        examples.append((text, [line for line in blocks[i + 1][1].splitlines() if line.strip()]))
    return examples


def same(expected, actual, where: str = "") -> None:
    if isinstance(expected, dict):
        assert isinstance(actual, dict), (where, actual)
        for key, value in expected.items():
            if key in VOLATILE:
                continue
            assert key in actual, f"{where}.{key} missing: {actual}"
            same(value, actual[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), (where, actual)
        for n, (e, a) in enumerate(zip(expected, actual, strict=True)):
            same(e, a, f"{where}[{n}]")
    elif isinstance(expected, Decimal | int) and not isinstance(expected, bool):
        assert isinstance(actual, Decimal | int) and Decimal(actual) == Decimal(expected), (where, actual)
    else:
        assert actual == expected, (where, expected, actual)


@pytest.fixture(scope="module")
def fresh_server():
    proc = ServerProcess(env={"TABLE_NAME": "readme-examples"})  # its own embedded DynamoDB
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.close()


def test_the_readme_api_examples_run_in_order_and_answer_as_shown(fresh_server):
    examples = api_examples()
    assert len(examples) >= 5
    # One shell for all blocks; each request's answer on its own line.
    script = 'curl() { command curl "$@"; echo; }\n' + "".join(
        f"{code}\necho '=== end of example {n} ==='\n" for n, (code, _) in enumerate(examples)
    )
    run = subprocess.run(
        ["bash", "-c", script],
        env={"API": fresh_server.url, "PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    outputs = re.split(r"=== end of example \d+ ===\n", run.stdout)
    for n, (code, expected_lines) in enumerate(examples):
        answers = [line for line in outputs[n].splitlines() if line.strip()]
        assert len(answers) == len(expected_lines), f"example {n}:\n{code}\ngot:\n{outputs[n]}"
        for expected, actual in zip(expected_lines, answers, strict=True):
            parse = {"parse_float": Decimal}
            same(json.loads(expected, **parse), json.loads(actual, **parse), f"example {n}")
