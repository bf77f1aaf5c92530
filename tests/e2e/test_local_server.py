"""The local runtime (`make dev`): template routes over HTTP, local routes, schedules, shutdown.

Most tests run `python -m localdev.server` as a subprocess and talk HTTP to it; the event and
result mapping and the schedule parsing are also checked in process, where every field is visible.
"""

import base64
import json
import re
import signal
import threading
import uuid
from datetime import UTC, datetime
from urllib.parse import urlencode

import pytest
import requests
from openapi_spec_validator import validate
from sample_events import with_hold_id
from werkzeug.test import Client

from localdev import openapi, schedules, server, template
from localdev.dynamodb import client_for
from localdev.ready_time import ServerProcess

ROOT = template.ROOT
ROUTE_ORDER = {"PUT": 0, "POST": 1, "GET": 2, "PATCH": 3, "DELETE": 9}  # create first, delete last


@pytest.fixture(scope="module")
def local():
    proc = ServerProcess()
    try:
        seconds = proc.wait_ready()
        print(f"\nlocal server ready in {seconds:.2f}s")
        yield proc
    finally:
        proc.close()


def request_from_event(base_url: str, event: dict) -> requests.Response:
    """Replay a sample API Gateway event (events/*.json) as the HTTP request it came from."""
    query = event.get("multiValueQueryStringParameters") or {
        k: [v] for k, v in (event.get("queryStringParameters") or {}).items()
    }
    url = base_url + event["path"] + ("?" + urlencode(query, doseq=True) if query else "")
    skip = {"host", "content-length", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-port"}
    headers = {k: v for k, v in (event.get("headers") or {}).items() if k.lower() not in skip}
    body = event.get("body")
    if body is not None and event.get("isBase64Encoded"):
        body = base64.b64decode(body)
    return requests.request(event["httpMethod"], url, headers=headers, data=body, timeout=30)


# ---- every template route, through the server --------------------------------------------------


def test_every_template_route_answers(local):
    routes = sorted(template.api_routes(), key=lambda r: ROUTE_ORDER.get(r.method, 5))
    assert routes, "template.yaml declares no Api routes"
    hold_id = None
    for route in routes:
        event = with_hold_id(json.loads(route.event_file.read_text()), hold_id)
        response = request_from_event(local.url, event)
        if route.event_id == "CreateHold":
            hold_id = response.json()["hold_id"]
        assert 200 <= response.status_code < 300, (route, response.status_code, response.text)
        assert response.headers.get("x-amzn-RequestId")


def test_unknown_route_is_404_json(local):
    response = requests.get(local.url + "/no/such/route", timeout=10)
    assert response.status_code == 404
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json()["error"]["code"] == "not_found"
    assert response.json()["error"]["message"]


def test_wrong_method_is_405_json_with_allow(local):
    for route in template.api_routes():
        allowed = {r.method for r in template.api_routes() if r.path == route.path}
        wrong = next(m for m in ["PATCH", "OPTIONS", "HEAD"] if m not in allowed)
        path = route.path.replace("{project}", "acme").replace("{user}", "alice")
        response = requests.request(wrong, local.url + path, timeout=10)
        assert response.status_code == 405, (wrong, path, response.text)
        assert set(response.headers["Allow"].split(", ")) == allowed
        if wrong != "HEAD":  # a HEAD answer carries no body
            assert response.json()["error"]["code"] == "method_not_allowed"


def test_native_api_round_trip_and_query_parameters(local):
    project = f"p-{uuid.uuid4().hex[:8]}"
    for user in ["u1", "u2", "u3"]:
        put = requests.put(
            f"{local.url}/projects/{project}/users/{user}",
            json={"total_budget": 5, "duration": "weekly"},
            timeout=10,
        )
        assert put.status_code == 201, put.text
    got = requests.get(f"{local.url}/projects/{project}/users/u2", timeout=10)
    assert got.status_code == 200 and got.json()["duration"] == "weekly"
    page = requests.get(f"{local.url}/projects/{project}/users", params={"limit": 2}, timeout=10)
    assert page.status_code == 200, page.text
    assert len(page.json()["users"]) == 2 and page.json()["next_cursor"]
    rest = requests.get(
        f"{local.url}/projects/{project}/users",
        params={"limit": 2, "cursor": page.json()["next_cursor"]},
        timeout=10,
    )
    users = [u["user"] for u in page.json()["users"] + rest.json()["users"]]
    assert sorted(users) == ["u1", "u2", "u3"]
    bad = requests.get(f"{local.url}/projects/{project}/users", params={"limit": 0}, timeout=10)
    assert bad.status_code == 422
    gone = requests.delete(f"{local.url}/projects/{project}/users/u1", timeout=10)
    assert gone.status_code == 204
    assert requests.get(f"{local.url}/projects/{project}/users/u1", timeout=10).status_code == 404


def test_concurrent_clients_are_all_served(local):
    project = f"c-{uuid.uuid4().hex[:8]}"
    statuses: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def client(n: int) -> None:
        start.wait()
        with requests.Session() as s:
            for i in range(3):
                r = s.put(
                    f"{local.url}/projects/{project}/users/user{n}-{i}",
                    json={"total_budget": 1, "duration": None},
                    timeout=60,
                )
                with lock:
                    statuses.append(r.status_code)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [201] * 24
    listed = requests.get(f"{local.url}/projects/{project}/users", params={"limit": 100}, timeout=10)
    assert len(listed.json()["users"]) == 24


# ---- local-only routes ---------------------------------------------------------------------------


def test_local_invoke_returns_the_handler_result(local):
    event = json.loads((template.EVENTS_DIR / "litellm_get_budget.json").read_text())
    response = requests.post(local.url + "/_local/invoke/GetBudgetFunction", json=event, timeout=30)
    assert response.status_code == 200
    assert "X-Amz-Function-Error" not in response.headers
    result = response.json()
    assert result["statusCode"] == 200
    assert json.loads(result["body"])["status"] in ("success", "error")


def test_local_invoke_runs_scheduled_functions_with_the_scheduler_event(local):
    found, _ = schedules.from_template(template.scheduled_events(), template.parameter_defaults())
    for schedule in found:
        event = schedule.event(datetime.now(UTC), "us-east-1")
        response = requests.post(f"{local.url}/_local/invoke/{schedule.function_id}", json=event, timeout=120)
        assert response.status_code == 200
        assert "X-Amz-Function-Error" not in response.headers, response.text


def test_local_invoke_errors(local):
    unknown = requests.post(local.url + "/_local/invoke/NoSuchFunction", json={}, timeout=10)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "function_not_found"
    bad = requests.post(local.url + "/_local/invoke/GetBudgetFunction", data="{not json", timeout=10)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_json"
    # An event the handler cannot take is a function error, reported the way Lambda's Invoke does.
    failed = requests.post(local.url + "/_local/invoke/GetBudgetFunction", json=[1, 2], timeout=10)
    assert failed.status_code == 200
    assert failed.headers["X-Amz-Function-Error"] == "Unhandled"
    assert failed.json()["errorType"] and "errorMessage" in failed.json()
    wrong = requests.get(local.url + "/_local/invoke/GetBudgetFunction", timeout=10)
    assert wrong.status_code == 405 and wrong.headers["Allow"] == "POST"


def test_openapi_json_is_valid_and_lists_every_template_route(local):
    response = requests.get(local.url + "/openapi.json", timeout=30)
    assert response.status_code == 200
    doc = response.json()
    validate(doc)  # raises if it is not a valid OpenAPI 3 document
    assert doc["openapi"].startswith("3.")
    for route in template.api_routes():
        assert route.method.lower() in doc["paths"].get(route.path, {}), route
    assert doc["servers"] == [{"url": local.url, "description": "this server"}]


def test_docs_is_swagger_ui_on_the_document_and_works_offline(local):
    """/docs is Swagger UI (from the pinned swagger-ui-py package) on /openapi.json: every file the
    page loads comes from this server, and nothing points it at the network."""
    response = requests.get(local.url + "/docs", timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    page = response.text
    assert "SwaggerUIBundle(" in page and 'url: "/openapi.json"' in page
    assert "validatorUrl: null" in page  # Swagger UI's default badge calls an online validator
    assert "http://" not in page and "https://" not in page
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert {"/docs/static/swagger-ui-bundle.js", "/docs/static/swagger-ui.css"} <= set(assets)
    for asset in assets:
        assert asset.startswith("/docs/static/"), asset
        loaded = requests.get(local.url + asset, timeout=30)
        assert loaded.status_code == 200 and loaded.content, asset
    bundle = requests.get(local.url + "/docs/static/swagger-ui-bundle.js", timeout=30)
    assert "javascript" in bundle.headers["Content-Type"] and b"SwaggerUIBundle" in bundle.content
    assert requests.get(local.url + "/docs/static/..%2Fcore.py", timeout=30).status_code == 404
    assert requests.get(local.url + "/docs/static/nope.js", timeout=30).status_code == 404


def test_committed_openapi_json_is_up_to_date():
    committed = (ROOT / "openapi.json").read_text()
    assert committed == openapi.render(openapi.build_document()), (
        "openapi.json is out of date: run `make openapi`"
    )


# ---- shutdown, and another DynamoDB ----------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_the_server_cleanly(sig):
    proc = ServerProcess()
    try:
        proc.wait_ready()
        assert proc.stop(sig) == 0, proc.output()
        assert "Traceback" not in proc.output()
    finally:
        proc.close()


def test_external_dynamodb_endpoint_is_used_and_table_created(dynamodb_server):
    table = f"external-{uuid.uuid4().hex[:8]}"
    proc = ServerProcess(env={"AWS_ENDPOINT_URL_DYNAMODB": dynamodb_server, "TABLE_NAME": table})
    try:
        proc.wait_ready()
        assert f"table {table} (created)" in proc.output()
        put = requests.put(proc.url + "/projects/ext/users/bob", json={"total_budget": 3}, timeout=10)
        assert put.status_code == 201, put.text
        item = client_for(dynamodb_server).get_item(
            TableName=table, Key={"pk": {"S": "PROJECT#ext"}, "sk": {"S": "USER#bob"}}
        )
        assert item["Item"]["total_budget"] == {"N": "3"}
    finally:
        proc.close()
    # A second start finds the table and keeps its data.
    again = ServerProcess(env={"AWS_ENDPOINT_URL_DYNAMODB": dynamodb_server, "TABLE_NAME": table})
    try:
        again.wait_ready()
        assert f"table {table} (existing)" in again.output()
        assert requests.get(again.url + "/projects/ext/users/bob", timeout=10).status_code == 200
    finally:
        again.close()


def test_port_in_use_is_a_clear_error():
    holder = ServerProcess()
    try:
        holder.wait_ready()
        clash = ServerProcess(port=holder.port)
        try:
            assert clash.proc.wait(timeout=60) == 1
            assert f"{holder.port} is in use" in clash.output()
        finally:
            clash.close()
    finally:
        holder.close()


def test_env_json_covers_every_function_for_sam_local():
    env = json.loads((ROOT / "env.json").read_text())
    assert set(env) == set(template.functions())
    for values in env.values():
        assert values["TABLE_NAME"] and values["AWS_ENDPOINT_URL_DYNAMODB"].startswith("http")
    # sam local only overrides variables that the template declares.
    declared = template.load_template()["Globals"]["Function"]["Environment"]["Variables"]
    for values in env.values():
        assert set(values) <= set(declared)


# ---- the gateway in process: the event handlers receive, and the HTTP response they produce ----


OK = {"statusCode": 200, "body": "{}"}


class Recorder:
    def __init__(self, result=OK, error: Exception | None = None) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.result = result
        self.error = error

    def __call__(self, function_id, event):
        self.calls.append((function_id, event))
        if self.error:
            raise self.error
        return self.result


def gateway(recorder: Recorder) -> Client:
    app = server.LocalGateway(
        server.RouteTable(template.api_routes()),
        recorder,
        set(template.functions()),
        "v1",
        openapi=lambda: {},
        docs_page=lambda doc: "",
    )
    return Client(app)


def test_proxy_event_is_what_api_gateway_sends():
    recorder = Recorder()
    response = gateway(recorder).get(
        "/projects/team%20a/users/b%2Fc?limit=5&tag=x&tag=y%2Bz&plus=a+b&flag",
        headers={"X-Custom": "one", "User-Agent": "tests/1"},
    )
    function_id, event = recorder.calls[0]
    assert function_id == "BudgetsFunction"
    assert event["resource"] == "/projects/{project}/users/{user}"
    assert event["path"] == "/projects/team%20a/users/b%2Fc"  # REST APIs pass it still encoded
    assert event["httpMethod"] == "GET"
    assert event["pathParameters"] == {"project": "team a", "user": "b/c"}
    assert event["queryStringParameters"] == {"limit": "5", "tag": "y+z", "plus": "a+b", "flag": ""}
    assert event["multiValueQueryStringParameters"]["tag"] == ["x", "y+z"]
    assert event["headers"]["X-Custom"] == "one"
    assert event["multiValueHeaders"]["X-Custom"] == ["one"]
    assert event["headers"]["X-Forwarded-Proto"] == "http"
    assert event["body"] is None and event["isBase64Encoded"] is False
    ctx = event["requestContext"]
    assert ctx["stage"] == "v1" and ctx["path"] == "/v1/projects/team%20a/users/b%2Fc"
    assert ctx["resourcePath"] == event["resource"] and ctx["httpMethod"] == "GET"
    assert ctx["identity"]["userAgent"] == "tests/1" and ctx["identity"]["sourceIp"]
    assert response.headers["x-amzn-RequestId"] == ctx["requestId"]
    uuid.UUID(ctx["requestId"])
    assert abs(ctx["requestTimeEpoch"] / 1000 - datetime.now(UTC).timestamp()) < 3600


def test_bodies_text_and_binary():
    recorder = Recorder()
    client = gateway(recorder)
    client.post("/set_budget", data='{"a": "é"}', content_type="application/json")
    assert recorder.calls[-1][1]["body"] == '{"a": "é"}'
    assert recorder.calls[-1][1]["isBase64Encoded"] is False
    client.post("/set_budget", data=b"\xff\x00\xfe", content_type="application/octet-stream")
    event = recorder.calls[-1][1]
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == b"\xff\x00\xfe"


def test_proxy_result_becomes_the_http_response():
    recorder = Recorder(
        {
            "statusCode": 418,
            "headers": {"X-One": "h", "X-Both": "from-headers"},
            "multiValueHeaders": {"X-Both": ["m1", "m2"], "Set-Cookie": ["a=1", "b=2"]},
            "body": base64.b64encode(b"\x00binary").decode(),
            "isBase64Encoded": True,
        }
    )
    response = gateway(recorder).post("/get_budget", json={})
    assert response.status_code == 418
    assert response.data == b"\x00binary"
    assert response.headers["X-One"] == "h"
    assert response.headers.getlist("X-Both") == ["m1", "m2"]
    assert response.headers.getlist("Set-Cookie") == ["a=1", "b=2"]
    assert response.headers["Content-Type"] == "application/json"  # API Gateway's default


@pytest.mark.parametrize("result", [None, {"body": "no status"}, "text", {"statusCode": "200"}])
def test_malformed_proxy_result_is_502(result):
    response = gateway(Recorder(result)).post("/get_budget", json={})
    assert response.status_code == 502
    assert response.get_json() == {"message": "Internal server error"}


def test_handler_exception_is_502():
    response = gateway(Recorder(error=RuntimeError("boom"))).post("/get_budget", json={})
    assert response.status_code == 502
    assert response.get_json() == {"message": "Internal server error"}


def test_route_precedence_literal_then_parameter_then_greedy():
    route = template.ApiRoute
    table = server.RouteTable(
        [
            route("Greedy", "G", "ANY", "/files/{proxy+}"),
            route("Param", "P", "GET", "/files/{name}"),
            route("Literal", "L", "GET", "/files/latest"),
        ]
    )
    assert table.find("GET", "/files/latest")[0].route.function_id == "Literal"
    assert table.find("GET", "/files/x%20y")[0].path_parameters == {"name": "x y"}
    deep = table.find("POST", "/files/a/b%2Fc")[0]
    assert deep.route.function_id == "Greedy" and deep.path_parameters == {"proxy": "a/b/c"}
    assert table.find("GET", "/files")[0] is None and table.find("GET", "/files")[1] == []
    assert table.find("GET", "/other") == (None, [])


# ---- schedules ---------------------------------------------------------------------------------


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_rate_and_cron_next_run():
    rate = schedules.Schedule("F", "E", "rate(5 minutes)", "ScheduleV2")
    assert rate.next_after(at("2026-01-01T00:00:00")) == at("2026-01-01T00:05:00")
    assert schedules.Schedule("F", "E", "rate(1 day)", "Schedule").next_after(
        at("2026-01-01T10:00:00")
    ) == at("2026-01-02T10:00:00")
    weekdays = schedules.Schedule("F", "E", "cron(0 12 ? * MON-FRI *)", "ScheduleV2")
    assert weekdays.next_after(at("2026-01-03T13:00:00")) == at("2026-01-05T12:00:00")  # Sat -> Mon
    steps = schedules.Schedule("F", "E", "cron(0/15 * * * ? *)", "ScheduleV2")
    assert steps.next_after(at("2026-01-01T00:14:59")) == at("2026-01-01T00:15:00")
    monthly = schedules.Schedule("F", "E", "cron(5 0 1 * ? *)", "ScheduleV2")
    assert monthly.next_after(at("2026-01-31T23:00:00")) == at("2026-02-01T00:05:00")
    paris = schedules.Schedule(
        "F", "E", "cron(0 0 * * ? *)", "ScheduleV2", timezone=schedules.ZoneInfo("Europe/Paris")
    )
    assert paris.next_after(at("2026-06-01T12:00:00")) == at("2026-06-01T22:00:00")
    once = schedules.Schedule("F", "E", "at(2026-05-01T08:30:00)", "ScheduleV2")
    assert once.next_after(at("2026-01-01T00:00:00")) == at("2026-05-01T08:30:00")
    assert once.next_after(at("2026-06-01T00:00:00")) is None


@pytest.mark.parametrize(
    "expression", ["cron(0 0 L * ? *)", "cron(0 0 * *)", "every day", "rate(0 minutes)", "cron(99 * * * ? *)"]
)
def test_schedules_we_cannot_run_are_refused(expression):
    with pytest.raises(ValueError):
        schedules.Schedule("F", "E", expression, "ScheduleV2")


def test_every_template_schedule_can_run_locally():
    found, skipped = schedules.from_template(template.scheduled_events(), template.parameter_defaults())
    assert skipped == []
    assert len(found) == len(template.scheduled_events())


def test_scheduler_runs_due_functions_with_scheduler_events():
    clock = [at("2026-01-01T00:00:00")]
    calls = []
    plain = schedules.Schedule("Reset", "Tick", "rate(5 minutes)", "ScheduleV2", name="tick")
    templated = schedules.Schedule(
        "Reset",
        "Input",
        "rate(10 minutes)",
        "ScheduleV2",
        name="with-input",
        input='{"arn": "<aws.scheduler.schedule-arn>", "at": "<aws.scheduler.scheduled-time>"}',
    )
    rule = schedules.Schedule("Old", "Rule", "rate(5 minutes)", "Schedule", name="rule")
    scheduler = schedules.Scheduler(
        [plain, templated, rule],
        lambda f, e: calls.append((f, e)) or {"ok": True},
        "eu-west-1",
        now=lambda: clock[0],
        log=lambda _m: None,
    )
    assert scheduler.run_due(clock[0]) == []
    clock[0] = at("2026-01-01T00:05:00")
    assert scheduler.run_due(clock[0]) == [plain, rule]
    event = calls[0][1]
    assert event["source"] == "aws.scheduler" and event["detail-type"] == "Scheduled Event"
    assert event["time"] == "2026-01-01T00:05:00Z" and event["region"] == "eu-west-1"
    assert event["resources"] == ["arn:aws:scheduler:eu-west-1:123456789012:schedule/default/tick"]
    assert calls[1][1]["source"] == "aws.events"
    clock[0] = at("2026-01-01T00:10:00")
    ran = scheduler.run_due(clock[0])
    assert ran == [plain, templated, rule]
    sent = [e for f, e in calls if "arn" in e][0]
    assert sent == {
        "arn": "arn:aws:scheduler:eu-west-1:123456789012:schedule/default/with-input",
        "at": "2026-01-01T00:10:00Z",
    }


def test_a_failing_scheduled_run_does_not_stop_the_schedule():
    clock = [at("2026-01-01T00:00:00")]
    logs = []

    def fail(_f, _e):
        raise RuntimeError("boom")

    s = schedules.Schedule("F", "E", "rate(1 minute)", "ScheduleV2")
    scheduler = schedules.Scheduler([s], fail, "us-east-1", now=lambda: clock[0], log=logs.append)
    clock[0] = at("2026-01-01T00:01:00")
    assert scheduler.run_due(clock[0]) == [s]
    assert "boom" in logs[-1] and s.next_run == at("2026-01-01T00:02:00")
