"""The local runtime with auth on (``AUTH=1 make dev``) enforces what API Gateway and the handlers
enforce when deployed, over HTTP, with the real litellm BudgetManager sending
``Authorization: Bearer <key>``; the default ``make dev`` stays open.

The server uses the session's embedded DynamoDB (AWS_ENDPOINT_URL_DYNAMODB), so the test mints
keys into the table the server reads, as ``make key`` would.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

import httpx
import pytest
import requests
from conftest import TABLE_NAME
from litellm import BudgetManager

from budget_service.domain import auth
from budget_service.store.base import ApiKeyStore
from localdev.dynamodb import client_for
from localdev.ready_time import ServerProcess

MINTED: list[str] = []


@pytest.fixture(scope="module")
def keys(dynamodb_server):
    return ApiKeyStore(TABLE_NAME, client=client_for(dynamodb_server))


@pytest.fixture(scope="module")
def secured(dynamodb_server):
    # TTL 0: every request asks the authorizer, so a revocation shows at once.
    proc = ServerProcess(
        env={
            "AUTH": "1",
            "AUTH_CACHE_TTL": "0",
            "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_server,
            "TABLE_NAME": TABLE_NAME,
        }
    )
    try:
        proc.wait_ready()
        yield proc
    finally:
        output = proc.output()
        proc.close()
        assert "auth: on (AuthorizerFunction" in output
        # Nothing the server printed (access log, handler logs) contains a key.
        assert MINTED and not [k for k in MINTED if k in output]


def mint(keys, role: str, *projects: str) -> str:
    key = auth.mint(keys, list(projects), role, Decimal(1_700_000_000)).key
    MINTED.append(key)
    return key


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}


def test_litellm_budget_manager_with_a_key_works_and_is_held_to_its_project(secured, keys):
    project, other = f"lite-{uuid.uuid4().hex[:6]}", f"other-{uuid.uuid4().hex[:6]}"
    key = mint(keys, "admin", project)
    manager = BudgetManager(
        project_name=project, client_type="hosted", api_base=secured.url, headers=bearer(key)
    )
    manager.create_budget(total_budget=10, user="alice", duration="daily")
    manager.update_cost(user="alice", model="gpt-4o-mini", input_text="hello", output_text="hi there")
    assert manager.save_data()["status"] == "success"
    fresh = BudgetManager(
        project_name=project, client_type="hosted", api_base=secured.url, headers=bearer(key)
    )
    assert fresh.get_current_cost("alice") > 0

    # The same key on another project: litellm's client raises on the 403.
    with pytest.raises(httpx.HTTPStatusError) as refused:
        BudgetManager(project_name=other, client_type="hosted", api_base=secured.url, headers=bearer(key))
    assert refused.value.response.status_code == 403
    # Without a key at all: 401.
    with pytest.raises(httpx.HTTPStatusError) as anonymous:
        BudgetManager(project_name=project, client_type="hosted", api_base=secured.url)
    assert anonymous.value.response.status_code == 401


def test_scope_roles_and_revocation_over_http(secured, keys):
    project = f"http-{uuid.uuid4().hex[:6]}"
    admin, reader = mint(keys, "admin", project), mint(keys, "reader", project)
    url = f"{secured.url}/projects/{project}/users/alice"
    assert requests.put(url, json={"total_budget": 5}, headers=bearer(admin), timeout=10).status_code == 201
    assert requests.get(url, headers=bearer(reader), timeout=10).status_code == 200
    # The scheme is case-insensitive (RFC 9110 11.1): the gateway's expression lets it through too.
    for scheme in ("bearer", "BEARER"):
        cased = {"Authorization": f"{scheme} {reader}"}
        assert requests.get(url, headers=cased, timeout=10).status_code == 200, scheme
    refused = requests.put(url, json={"total_budget": 6}, headers=bearer(reader), timeout=10)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    elsewhere = requests.get(
        f"{secured.url}/projects/not-{project}/users/alice", headers=bearer(admin), timeout=10
    )
    assert elsewhere.status_code == 403
    for headers in ({}, {"Authorization": "Bearer nope"}, bearer(auth.KEY_PREFIX + "B" * 43)):
        response = requests.get(url, headers=headers, timeout=10)
        assert response.status_code == 401, headers
        assert response.json()["error"]["code"] == "unauthorized"
        assert response.headers["WWW-Authenticate"] == "Bearer"
    auth.revoke(keys, reader, Decimal(1))
    assert requests.get(url, headers=bearer(reader), timeout=10).status_code == 401
    assert requests.get(url, headers=bearer(admin), timeout=10).status_code == 200
    # The local-only routes stay open.
    assert requests.get(f"{secured.url}/openapi.json", timeout=10).status_code == 200


def test_default_make_dev_is_open(dynamodb_server):
    proc = ServerProcess(env={"AWS_ENDPOINT_URL_DYNAMODB": dynamodb_server, "TABLE_NAME": TABLE_NAME})
    try:
        proc.wait_ready()
        project = f"open-{uuid.uuid4().hex[:6]}"
        response = requests.put(
            f"{proc.url}/projects/{project}/users/alice", json={"total_budget": 5}, timeout=10
        )
        assert response.status_code == 201
        assert "auth: off" in proc.output()
    finally:
        proc.close()
