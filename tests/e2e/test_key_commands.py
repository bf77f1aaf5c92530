"""The ``make key`` command ``AUTH=1 make dev`` prints, and ``make keys`` and
``make revoke-key`` with the same settings, work as printed on a machine with no AWS
configuration: no region, no credentials, no ~/.aws (HOME is an empty directory here).

Make runs with ``-o <serving stamp>`` so it uses the virtualenv as it is instead of installing.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess

import pytest
import requests

from budget_service.api.keys import local_endpoint
from localdev import template
from localdev.ready_time import ServerProcess


@pytest.fixture(scope="module")
def secured_server():
    # Its own embedded DynamoDB (conftest unsets AWS_ENDPOINT_URL_DYNAMODB): the command it
    # prints must reach that one.
    proc = ServerProcess(env={"AUTH": "1", "AUTH_CACHE_TTL": "0", "TABLE_NAME": "llm-budget-local"})
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.close()


def printed_key_command(output: str) -> str:
    found = re.search(r"mint a key: (.*make key PROJECT=<project> ROLE=admin)", output)
    assert found, output
    return found.group(1)


def bare_environment(home) -> dict[str, str]:
    """PATH and an empty HOME: no AWS variables, no ~/.aws/config or credentials."""
    return {"PATH": os.environ["PATH"], "HOME": str(home), "LANG": "C.UTF-8"}


def run_make(command: str, home) -> subprocess.CompletedProcess:
    stamp = subprocess.run(
        ["make", "-s", "--no-print-directory", "print-DEV_STAMP"],
        cwd=template.ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return subprocess.run(
        ["bash", "-c", f"{command} -s -o {shlex.quote(stamp)}"],
        cwd=template.ROOT,
        env=bare_environment(home),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_printed_key_commands_work_without_aws_configuration(secured_server, tmp_path):
    printed = printed_key_command(secured_server.output())
    settings = printed.split(" make key ")[0]
    assert "AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:" in settings

    minted = run_make(printed.replace("<project>", "demo"), tmp_path)
    assert minted.returncode == 0, minted.stderr
    key = minted.stdout.strip()
    assert key.startswith("llmb_") and "\n" not in key
    url = f"{secured_server.url}/projects/demo/users/alice"
    headers = {"Authorization": f"Bearer {key}"}
    assert requests.put(url, json={"total_budget": 5}, headers=headers, timeout=10).status_code == 201

    listed = run_make(f"{settings} make keys", tmp_path)
    assert listed.returncode == 0, listed.stderr
    key_id = re.search(r'"key_id": "([^"]+)"', listed.stdout).group(1)
    assert key not in listed.stdout and '"projects": ["demo"]' in listed.stdout

    revoked = run_make(f"{settings} make revoke-key KEY_ID={key_id}", tmp_path)
    assert revoked.returncode == 0, revoked.stderr
    assert requests.get(url, headers=headers, timeout=10).status_code == 401


def test_without_a_local_endpoint_it_still_needs_real_configuration(tmp_path):
    """Placeholder credentials are only ever used against a local endpoint."""
    assert local_endpoint({"AWS_ENDPOINT_URL_DYNAMODB": "http://127.0.0.1:8000"})
    assert local_endpoint({"AWS_ENDPOINT_URL_DYNAMODB": "http://localhost:8000"})
    assert not local_endpoint({"AWS_ENDPOINT_URL_DYNAMODB": "https://dynamodb.eu-west-1.amazonaws.com"})
    assert not local_endpoint({})
    failed = run_make("TABLE_NAME=t make keys", tmp_path)
    assert failed.returncode != 0
    assert "NoRegionError" in failed.stderr or "region" in failed.stderr.lower()
