"""Project-scoped API keys: the authorizer, the handlers' scope check, revocation,
roles, the admin CLI, and that no minted key ever reaches a log line.

Requests go through the same path as on API Gateway: the template's AuthorizerFunction is
invoked with a TOKEN event by localdev.auth.LocalAuthorizer (the local runtime's gateway, which
caches answers per key for the TTL on a clock the test controls), and the route's handler gets
the authorizer's context in ``requestContext.authorizer`` with ``API_AUTH=on``.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import uuid
from decimal import Decimal

import pytest
from conftest import TABLE_NAME, Response, lambda_context

from budget_service.domain import auth
from budget_service.store.base import API_KEY_SK, ApiKeyStore, api_key_pk
from localdev import template
from localdev.auth import Denied, LocalAuthorizer, from_template
from localdev.dynamodb import client_for
from localdev.events import api_gateway_event
from localdev.template import parameter_defaults

MINTED: list[str] = []  # every key minted in this module; none may appear in any log line

P, U = "{project}", "{user}"
BUDGET_BODY = {"total_budget": 10}
COST_BODY = {"model": "my-model", "cost": 0.5}
PROJECTED_BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
PRICE_BODY = {"input": 0.000001, "output": 0.000002}


def route_request(route: template.ApiRoute, project: str, user: str = "alice"):
    """(path parameters, body) of a valid request for `route` on `project`."""
    params = (
        {"project": project, "user": user}
        if "{user}" in route.path
        else ({"project": project} if "{project}" in route.path else None)
    )
    if "{model}" in route.path:
        params = {**(params or {}), "model": "my-model"}
    if "{team}" in route.path:
        params = {**(params or {}), "team": "research"}
    if "{hold_id}" in route.path:
        params = {**(params or {}), "hold_id": "0" * 32 + "-0.1"}
    body = None
    if route.path == "/get_budget":
        body = {"project_name": project}
    elif route.path == "/set_budget":
        body = {"project_name": project, "user_dict": {user: {"total_budget": 5}}}
    elif route.method == "PUT" and "{model}" in route.path:
        body = PRICE_BODY
    elif route.method == "PUT" and route.path.endswith("/hold-sizing"):
        body = {"max_hold": 0.05}
    elif route.method == "PUT":
        body = BUDGET_BODY
    elif route.path.endswith("/holds"):
        body = {"amount": 0.1}
    elif route.path.endswith("/cost") or route.path.endswith("/settle"):
        body = COST_BODY
    elif route.path.endswith("/projected-cost"):
        body = PROJECTED_BODY
    elif route.path.endswith("/adjustments"):
        body = {"amount": 0.1, "reason": "auth test"}
    return params, body


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Gateway:
    """API Gateway in front of the handlers, in process: the template's authorizer, cached."""

    def __init__(self, ttl: int, clock: Clock) -> None:
        params = parameter_defaults()
        params["AuthCacheTtlSeconds"] = str(ttl)
        spec = from_template(params)
        assert spec is not None and spec.function_id == "AuthorizerFunction"
        self.authorizer = LocalAuthorizer(spec, self._invoke, "us-east-1", "v1", clock=clock)
        self.routes = {(r.method, r.path): r for r in template.api_routes()}

    @staticmethod
    def _invoke(function_id: str, event: dict):
        return template.load_handler(function_id)(event, lambda_context(function_id))

    def call(self, method, resource, params=None, *, body=None, key=None, header=None):
        # An Idempotency-Key on every request: adjustments require one, others ignore it.
        headers = {"Idempotency-Key": f"auth-{uuid.uuid4().hex}"}
        if header is not None:
            headers["Authorization"] = header
        elif key is not None:
            headers["Authorization"] = f"Bearer {key}"
        event = api_gateway_event(method, resource, params, body=body, headers=headers)
        decision = self.authorizer.authorize(event["headers"], method.upper(), event["path"])
        if isinstance(decision, Denied):
            return Response(
                {"statusCode": decision.status, "headers": decision.headers, "body": decision.body}
            )
        event["requestContext"]["authorizer"] = decision
        route = self.routes[(method.upper(), resource)]
        return Response(self._invoke(route.function_id, event))

    def route(self, route: template.ApiRoute, project: str, key: str | None, user: str = "alice"):
        params, body = route_request(route, project, user)
        return self.call(route.method, route.path, params, body=body, key=key)


@pytest.fixture(scope="module", autouse=True)
def no_key_in_logs():
    """Every log record of this module (the handlers' Powertools logger, boto, anything through
    logging), formatted as it would be written, must not contain a minted key."""
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            lines.append(self.format(record))
            lines.append(record.getMessage())  # unformatted too: the scrubber must not be what saves us

    from budget_service.observability import logger as service_logger

    collect = Collect(level=logging.DEBUG)
    collect.setFormatter(service_logger.registered_formatter)
    targets = [logging.getLogger(), service_logger._logger]
    for target in targets:
        target.addHandler(collect)
    yield lines
    for target in targets:
        target.removeHandler(collect)
    assert MINTED, "no key was minted"
    assert lines, "nothing was logged: the check would prove nothing"
    leaked = [line for line in lines for key in MINTED if key in line]
    assert leaked == []


@pytest.fixture
def authed(aws, monkeypatch):
    monkeypatch.setenv("API_AUTH", "on")
    clock = Clock()
    keys = ApiKeyStore(TABLE_NAME, client=aws)

    def mint(role: str, *projects: str) -> str:
        minted = auth.mint(keys, list(projects), role, Decimal(1_700_000_000))
        MINTED.append(minted.key)
        return minted.key

    def gateway(ttl: int = 300) -> Gateway:
        return Gateway(ttl, clock)

    return mint, gateway, clock, keys


def seed(gw: Gateway, admin_key: str, project: str, user: str = "alice") -> None:
    response = gw.call(
        "PUT", f"/projects/{P}/users/{U}", {"project": project, "user": user}, body=BUDGET_BODY, key=admin_key
    )
    assert response.status in (200, 201), response


# ---- routes and roles -----------------------------------------------------------------------------


def test_every_template_route_has_a_permission():
    routes = {(r.method, r.path) for r in template.api_routes()}
    assert routes == set(auth.ROUTE_PERMISSIONS)
    assert auth.route_permission("PATCH", "/new/route") is auth.Permission.MANAGE  # fails closed


@pytest.mark.parametrize("role", ["admin", "writer", "reader"])
def test_key_for_project_a_is_refused_on_every_route_for_project_b(authed, role):
    mint, gateway, _, _ = authed
    gw = gateway()
    key_a = mint(role, "project-a")
    seed(gw, mint("admin", "project-b"), "project-b")
    for route in template.api_routes():
        response = gw.route(route, "project-b", key_a)
        assert response.status == 403, (route, response)
        assert response.json()["error"]["code"] == "forbidden"
    # The same key on its own project is let through wherever its role allows the operation.
    seed(gw, mint("admin", "project-a"), "project-a")
    for route in sorted(template.api_routes(), key=lambda r: r.method == "DELETE"):
        allowed = auth.Scope("k", auth.Role(role), frozenset()).allows(
            auth.route_permission(route.method, route.path)
        )
        response = gw.route(route, "project-a", key_a)
        if allowed and response.status == 404:  # let through; the sample hold or level does not exist
            assert response.json()["error"]["code"] in ("hold_not_found", "level_not_found"), (
                route,
                response,
            )
        elif allowed:
            assert response.status < 400, (route, response)
        else:
            assert response.status == 403, (route, response)


def test_a_user_key_reads_its_own_user_and_nothing_else(authed):
    mint, gateway, _, keys = authed
    gw = gateway()
    admin = mint("admin", "project-a")
    for who in ("alice", "bob"):
        seed(gw, admin, "project-a", who)
    minted = auth.mint(keys, ["project-a"], "user", Decimal(1_700_000_000), user="alice")
    MINTED.append(minted.key)
    own = {"project": "project-a", "user": "alice"}
    assert gw.call("GET", f"/projects/{P}/users/{U}", own, key=minted.key).json()["user"] == "alice"
    for route in template.api_routes():
        mine = gw.route(route, "project-a", minted.key, "alice")
        readable = auth.user_route(route.path) and auth.route_permission(route.method, route.path) is (
            auth.Permission.READ
        )
        if readable:
            assert mine.status == 200, (route, mine)
        else:  # a write, or a project-wide route (the project's totals, other users, litellm's)
            assert mine.status == 403 and mine.json()["error"]["code"] == "forbidden", (route, mine)
        # Another user of the same project, and the same user name in another project: refused.
        for project, user in (("project-a", "bob"), ("project-b", "alice")):
            if "{user}" in route.path or project == "project-b":
                other = gw.route(route, project, minted.key, user)
                assert other.status == 403, (route, project, user, other)


def test_a_user_key_needs_one_project_and_its_user(authed):
    _, _, _, keys = authed
    from budget_service.core.errors import InvalidInput

    for projects, role, user in [
        (["p"], "user", None),
        (["p", "q"], "user", "alice"),
        (["p"], "reader", "alice"),
        (["p"], "user", "bad\x00name"),
    ]:
        with pytest.raises(InvalidInput):
            auth.mint(keys, projects, role, Decimal(1), user=user)
    assert keys.list() == []  # nothing stored


def test_a_user_scope_travels_in_the_authorizer_context():
    scope = auth.Scope("abc", auth.Role.USER, frozenset({"a"}), "alice")
    arn = "arn:aws:execute-api:eu-west-1:111122223333:api123/v1/GET/projects/a/users/alice"
    assert auth.Scope.from_context(auth.allow_policy(scope, arn)["context"]) == scope
    # A user key's context without its user (or another role's with one) is malformed: no scope.
    assert auth.Scope.from_context({**scope.to_context(), "user": None}) is None
    reader = auth.Scope("abc", auth.Role.READER, frozenset({"a"})).to_context()
    assert auth.Scope.from_context({**reader, "user": "alice"}) is None


def test_project_name_in_litellm_bodies_is_checked_and_nothing_is_written(authed, store):
    mint, gateway, _, _ = authed
    gw = gateway()
    key_a = mint("admin", "project-a")
    body = {"project_name": "project-b", "user_dict": {"mallory": {"total_budget": 1e9}}}
    assert gw.call("POST", "/set_budget", body=body, key=key_a).status == 403
    assert gw.call("POST", "/get_budget", body={"project_name": "project-b"}, key=key_a).status == 403
    assert store.get("project-b", "mallory") is None
    # A key listing both projects may use both.
    key_ab = mint("admin", "project-a", "project-b")
    assert gw.call("POST", "/set_budget", body=body, key=key_ab).json()["status"] == "success"


def test_no_key_or_a_wrong_key_is_401_on_every_route(authed):
    mint, gateway, _, _ = authed
    gw = gateway()
    real = mint("admin", "project-a")
    unknown = auth.KEY_PREFIX + "A" * 43  # well-formed, never minted
    headers = [
        None,
        "",
        "Bearer",
        f"Bearer {unknown}",
        f"Basic {real}",
        real,
        f"Bearer {real}x",
        f"Bearer {real[:-1]}",
    ]
    for route in template.api_routes():
        params, body = route_request(route, "project-a")
        for header in headers:
            response = gw.call(route.method, route.path, params, body=body, header=header)
            assert response.status == 401, (route, header, response)
            assert response.json()["error"]["code"] == "unauthorized"


def test_handlers_refuse_a_request_without_authorizer_context(authed, api):
    """Defence in depth: invoked without the authorizer (a misconfigured API), every handler
    answers 401 before reading the body."""
    for route in template.api_routes():
        params, body = route_request(route, "project-a")
        response = api.call(route.method, route.path, params, body=body)
        assert response.status == 401, (route, response)
        assert response.raw["headers"]["WWW-Authenticate"] == "Bearer"
    forged = api_gateway_event("POST", "/get_budget", body={"project_name": "p"})
    forged["requestContext"]["authorizer"] = {"role": "admin", "projects": "not json", "key_id": "x"}
    handler = template.load_handler("GetBudgetFunction")
    assert handler(forged, lambda_context("GetBudgetFunction"))["statusCode"] == 401


def test_reader_cannot_write_and_writer_cannot_manage(authed, store):
    mint, gateway, _, _ = authed
    gw = gateway()
    seed(gw, mint("admin", "p"), "p")
    before = store.get("p", "alice")
    reader, writer = mint("reader", "p"), mint("writer", "p")
    user = {"project": "p", "user": "alice"}
    refused_reader = [
        ("PUT", f"/projects/{P}/users/{U}", BUDGET_BODY),
        ("DELETE", f"/projects/{P}/users/{U}", None),
        ("POST", f"/projects/{P}/users/{U}/reset", None),
        ("POST", f"/projects/{P}/users/{U}/cost", COST_BODY),
    ]
    for method, resource, body in refused_reader:
        assert gw.call(method, resource, user, body=body, key=reader).status == 403, resource
    set_body = {"project_name": "p", "user_dict": {"alice": {"total_budget": 99}}}
    assert gw.call("POST", "/set_budget", body=set_body, key=reader).status == 403
    assert gw.call("POST", "/set_budget", body=set_body, key=writer).status == 403
    for method, resource, body in refused_reader[:3]:
        assert gw.call(method, resource, user, body=body, key=writer).status == 403, resource
    assert store.get("p", "alice") == before  # nothing written by any refused request
    # What they may do.
    assert gw.call("GET", f"/projects/{P}/users/{U}", user, key=reader).status == 200
    assert gw.call("GET", f"/projects/{P}/users", {"project": "p"}, key=reader).status == 200
    assert (
        gw.call(
            "POST", f"/projects/{P}/users/{U}/projected-cost", user, body=PROJECTED_BODY, key=reader
        ).status
        == 200
    )
    assert gw.call("POST", f"/projects/{P}/users/{U}/cost", user, body=COST_BODY, key=writer).status == 200
    assert store.get("p", "alice").current_cost == Decimal("0.5")


# ---- caching and revocation -------------------------------------------------------------------------


def test_a_cached_key_costs_no_key_read_and_revocation_lands_within_the_ttl(authed):
    mint, gateway, clock, keys = authed
    gw = gateway(ttl=300)
    key = mint("reader", "p")
    for _ in range(5):
        assert gw.call("POST", "/get_budget", body={"project_name": "p"}, key=key).status == 200
    assert gw.authorizer.invocations == 1  # one DynamoDB read of the key for five requests

    assert auth.revoke(keys, auth.key_id_of(auth.hash_key(key)), Decimal(1))["revoked"] is True
    clock.now += 299  # API Gateway may still use its cached answer inside the TTL
    assert gw.call("POST", "/get_budget", body={"project_name": "p"}, key=key).status == 200
    clock.now += 1  # the TTL is over: the authorizer reads the key again and refuses it
    response = gw.call("POST", "/get_budget", body={"project_name": "p"}, key=key)
    assert response.status == 401
    assert gw.authorizer.invocations == 2


def test_with_ttl_zero_a_revoked_key_stops_at_once(authed):
    mint, gateway, _, keys = authed
    gw = gateway(ttl=0)
    key = mint("admin", "p")
    assert gw.call("POST", "/get_budget", body={"project_name": "p"}, key=key).status == 200
    auth.revoke(keys, key, Decimal(1))  # by the key itself
    assert gw.call("POST", "/get_budget", body={"project_name": "p"}, key=key).status == 401


def test_only_the_hash_is_stored(authed, aws):
    mint, _, _, keys = authed
    key = mint("writer", "p", "q")
    digest = auth.hash_key(key)
    stored = keys.get(digest)
    assert stored["role"] == "writer" and sorted(stored["projects"]) == ["p", "q"]
    assert stored["revoked"] is False
    every_item = aws.scan(TableName=TABLE_NAME)["Items"]
    assert every_item and key not in json.dumps(every_item)
    assert {"pk": {"S": api_key_pk(digest)}, "sk": {"S": API_KEY_SK}}.items() <= keys.client.get_item(
        TableName=TABLE_NAME, Key={"pk": {"S": api_key_pk(digest)}, "sk": {"S": API_KEY_SK}}
    )["Item"].items()


def test_mint_rejects_bad_input(authed):
    _, _, _, keys = authed
    from budget_service.core.errors import InvalidInput

    for projects, role in [
        ([], "admin"),
        (["p"], "root"),
        (["bad\x00name"], "reader"),
        (["x" * 300], "reader"),
    ]:
        with pytest.raises(InvalidInput):
            auth.mint(keys, projects, role, Decimal(1))


def test_authorizer_policy_allows_the_whole_stage_and_carries_the_scope():
    scope = auth.Scope("abc", auth.Role.WRITER, frozenset({"b", "a"}))
    arn = "arn:aws:execute-api:eu-west-1:111122223333:api123/v1/POST/projects/a/users/u/cost"
    policy = auth.allow_policy(scope, arn)
    assert policy["policyDocument"]["Statement"][0]["Resource"] == (
        "arn:aws:execute-api:eu-west-1:111122223333:api123/v1/*"
    )
    assert auth.Scope.from_context(policy["context"]) == scope
    assert all(isinstance(v, str) for v in policy["context"].values())


# ---- the admin CLI ---------------------------------------------------------------------------------


def run_keys(dynamodb_server, *args):
    import os

    env = {
        **os.environ,
        "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_server,
        "TABLE_NAME": TABLE_NAME,
        "PYTHONPATH": str(template.LAYER_DIR),
    }
    return subprocess.run(
        [sys.executable, "-m", "budget_service.api.keys", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=template.ROOT,
    )


def test_cli_prints_the_key_once_and_revokes_by_id(dynamodb_server):
    minted = run_keys(
        dynamodb_server, "mint", "--project", "cli-a,cli-b", "--role", "writer", "--label", "ci"
    )
    assert minted.returncode == 0, minted.stderr
    key = minted.stdout.strip()
    MINTED.append(key)
    assert auth.KEY_PATTERN.match(key) and minted.stdout == key + "\n"
    assert key not in minted.stderr
    keys = ApiKeyStore(TABLE_NAME, client=client_for(dynamodb_server))
    key_id = auth.key_id_of(auth.hash_key(key))
    assert key_id in minted.stderr
    assert sorted(keys.get(auth.hash_key(key))["projects"]) == ["cli-a", "cli-b"]

    listed = run_keys(dynamodb_server, "list")
    assert listed.returncode == 0 and key not in listed.stdout
    entry = next(
        json.loads(line) for line in listed.stdout.splitlines() if json.loads(line)["key_id"] == key_id
    )
    assert entry["role"] == "writer" and entry["revoked"] is False and entry["label"] == "ci"

    revoked = run_keys(dynamodb_server, "revoke", key_id)
    assert revoked.returncode == 0, revoked.stderr
    assert keys.get(auth.hash_key(key))["revoked"] is True
    assert run_keys(dynamodb_server, "revoke", "no-such-id").returncode == 1
    bad = run_keys(dynamodb_server, "mint", "--project", "p", "--role", "root")
    assert bad.returncode != 0 and bad.stdout == ""

    # A user key: one project and its user, shown in the list; without --user it is refused.
    mine = run_keys(dynamodb_server, "mint", "--project", "cli-a", "--role", "user", "--user", "alice")
    assert mine.returncode == 0, mine.stderr
    MINTED.append(mine.stdout.strip())
    assert keys.get(auth.hash_key(mine.stdout.strip()))["user"] == "alice"
    assert "user alice" in mine.stderr
    listed = [json.loads(line) for line in run_keys(dynamodb_server, "list").stdout.splitlines()]
    assert {"role": "user", "user": "alice"}.items() <= next(e for e in listed if e["role"] == "user").items()
    nobody = run_keys(dynamodb_server, "mint", "--project", "cli-a", "--role", "user")
    assert nobody.returncode == 2 and nobody.stdout == "" and "exactly one project" in nobody.stderr


def test_sample_events_carry_an_authorizer_context_and_pass_with_auth_on(aws, monkeypatch):
    """events/*.json are what API Gateway sends after the authorizer allowed an admin key for
    acme, so ``sam local invoke -e`` works with the template's API_AUTH=on."""
    from sample_events import DOCUMENTED, invoke, with_hold_id

    monkeypatch.setenv("API_AUTH", "on")
    routes = {r.event_id: r for r in template.api_routes()}
    hold_id = None
    for event_id, status in DOCUMENTED:
        route = routes[event_id]
        event = with_hold_id(json.loads(route.event_file.read_text()), hold_id)
        response = invoke(route, event)
        assert response.status == status, (event_id, response)
        if event_id == "CreateHold":
            hold_id = response.json()["hold_id"]
        event["requestContext"]["authorizer"]["projects"] = '["someone-else"]'
        refused = invoke(route, event)
        assert refused.status == 403, (event_id, refused)


def test_the_authorizer_sample_event_is_refused_as_unknown(aws):
    event = json.loads((template.EVENTS_DIR / "authorizer.json").read_text())
    with pytest.raises(Exception, match="^Unauthorized$"):
        template.load_handler("AuthorizerFunction")(event, lambda_context("AuthorizerFunction"))
