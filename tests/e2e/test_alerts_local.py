"""Alerts through `make dev`'s runtime: the table's stream, AlertsFunction invoked as
Lambda's event source mapping does, the local EventBridge bus and its webhook, received here by
a small HTTP server. Every wait is on a condition with a deadline."""

import json
import re
import threading
import time
import uuid
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from conftest import run_threads

from localdev.dynamodb import client_for
from localdev.ready_time import ServerProcess

SECRET = "s3cret-" + uuid.uuid4().hex
HEADER = "X-Budget-Alert-Secret"
DEADLINE_S = 60


class Receiver:
    """The webhook: records every POST (headers and JSON body), in arrival order."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.received.append({"headers": dict(self.headers), "event": json.loads(body)})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def events(self, project: str) -> list[dict]:
        with self.lock:
            return [r["event"] for r in self.received if r["event"]["detail"]["project"] == project]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def runtime():
    receiver = Receiver()
    proc = ServerProcess(
        env={
            "ALERT_WEBHOOK_URL": receiver.url,
            "ALERT_WEBHOOK_SECRET": SECRET,
            "ALERT_DEFAULT_THRESHOLDS": "0.8,1",
        }
    )
    try:
        proc.wait_ready()
        yield proc, receiver
    finally:
        proc.close()
        receiver.close()


def wait_for(condition, what: str, timeout: float = DEADLINE_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)  # the interval between checks of the condition
    raise AssertionError(f"timed out waiting for {what}")


def settle(url: str) -> None:
    """Wait until the stream poller has caught up with every write made so far (two whole polls
    that started after this call found nothing new) and no webhook delivery is pending."""
    (start,) = requests.get(url + "/_local/streams", timeout=10).json()["mappings"]

    def caught_up():
        (now,) = requests.get(url + "/_local/streams", timeout=10).json()["mappings"]
        return now["polls"] >= start["polls"] + 3 and now["idle_polls"] >= 2

    wait_for(caught_up, "the stream poller to catch up")
    wait_for(
        lambda: all(
            e.get("delivery", {}).get("status") != "pending"
            for e in requests.get(url + "/_local/events", timeout=10).json()["events"]
        ),
        "webhook deliveries",
    )


def cost(url, project, user, amount):
    response = requests.post(
        f"{url}/projects/{project}/users/{user}/cost", json={"model": "gpt-4o", "cost": amount}, timeout=30
    )
    assert response.status_code == 200, response.text
    return response.json()


def put_budget(url, project, user, **body):
    response = requests.put(f"{url}/projects/{project}/users/{user}", json=body, timeout=30)
    assert response.status_code in (200, 201), response.text
    return response.json()


def test_80_then_100_percent_two_events_in_order_none_more_then_one_after_a_rollover(runtime):
    proc, receiver = runtime
    url, project = proc.url, "p-" + uuid.uuid4().hex[:8]
    budget = put_budget(url, project, "alice", total_budget=10, duration="daily")
    assert budget["alert_thresholds"] is None  # the service default applies: 0.8, 1

    cost(url, project, "alice", 5)
    cost(url, project, "alice", 3.5)  # 8.5 of 10: past 80 %
    wait_for(lambda: len(receiver.events(project)) == 1, "the 80 % event")
    cost(url, project, "alice", 2)  # 10.5: past 100 %
    wait_for(lambda: len(receiver.events(project)) == 2, "the 100 % event")
    cost(url, project, "alice", 1)  # more spend, same period
    settle(url)

    first, second = receiver.events(project)
    assert [first["detail"]["threshold"], second["detail"]["threshold"]] == [0.8, 1]
    assert [first["detail"]["spend"], second["detail"]["spend"]] == [8.5, 10.5]
    for event in (first, second):
        assert event["source"] == "llm-budget" and event["detail-type"] == "Budget Threshold Crossed"
        assert event["detail"]["total_budget"] == 10
        assert (event["detail"]["level"], event["detail"]["id"]) == ("user", "alice")
        assert event["detail"]["period_start"] == budget["period_start"]
        assert event["detail"]["period_end"] == budget["reset_at"]
    assert first["detail"]["alert_id"] != second["detail"]["alert_id"]
    with receiver.lock:
        assert all(r["headers"].get(HEADER) == SECRET for r in receiver.received)
    assert len(receiver.events(project)) == 2  # nothing for the spend past 100 %

    # A day later (the local clock moves; the next write rolls the period over lazily).
    assert requests.post(url + "/_local/clock", json={"advance_seconds": 86400}, timeout=10).ok
    cost(url, project, "alice", 8.5)
    wait_for(lambda: len(receiver.events(project)) == 3, "the 80 % event of the new period")
    settle(url)
    events = receiver.events(project)
    assert len(events) == 3
    third = events[2]["detail"]
    assert (third["threshold"], third["spend"]) == (0.8, 8.5)
    assert third["period_start"] > budget["period_start"]
    assert third["alert_id"] not in {first["detail"]["alert_id"], second["detail"]["alert_id"]}
    local = [
        e
        for e in requests.get(url + "/_local/events", timeout=10).json()["events"]
        if e["detail"]["project"] == project
    ]
    assert [e["detail"] for e in local] == [e["detail"] for e in events]
    assert all(e["delivery"]["status"] == "delivered" for e in local)


def test_concurrent_costs_that_cross_together_produce_one_event_per_threshold(runtime):
    proc, receiver = runtime
    url, project = proc.url, "c-" + uuid.uuid4().hex[:8]
    put_budget(url, project, "bob", total_budget=10, duration="monthly", alert_thresholds=[0.5, 0.8])
    cost(url, project, "bob", 4.5)
    threads = [threading.Thread(target=cost, args=(url, project, "bob", 0.5)) for _ in range(8)]
    run_threads(threads)  # 4.5 + 8 x 0.5 = 8.5: all cross 50 % and 80 % together
    settle(url)
    events = receiver.events(project)
    assert sorted(e["detail"]["threshold"] for e in events) == [0.5, 0.8]
    assert len({e["detail"]["alert_id"] for e in events}) == 2


def test_a_lost_put_answer_is_retried_with_the_same_alert_id(runtime):
    """PutEvents keeps the events but the answer is lost, three times over: boto3 retries, the
    record fails, the event source mapping retries it. Every event has the one alert id."""
    proc, receiver = runtime
    url, project = proc.url, "r-" + uuid.uuid4().hex[:8]
    put_budget(url, project, "carol", total_budget=10, alert_thresholds=[0.8])
    settle(url)
    assert requests.post(url + "/_local/events/faults", json={"fail_after_put": 3}, timeout=10).ok
    invocations = requests.get(url + "/_local/streams", timeout=10).json()["mappings"][0]["invocations"]
    cost(url, project, "carol", 9)
    wait_for(lambda: len(receiver.events(project)) >= 4, "the put after the lost answers")
    settle(url)
    events = receiver.events(project)
    assert len({e["detail"]["alert_id"] for e in events}) == 1
    assert len({json.dumps(e["detail"], sort_keys=True) for e in events}) == 1
    assert len(events) == 4  # three answers lost, then one answered
    (status,) = requests.get(url + "/_local/streams", timeout=10).json()["mappings"]
    assert status["invocations"] >= invocations + 2 and status["failures"] == []
    cost(url, project, "carol", 1)  # later spend: nothing more for 80 %
    settle(url)
    assert len(receiver.events(project)) == 4


def test_team_and_project_level_items_alert_the_same_way(runtime):
    """Level items written straight to the table (the team/project routes are another issue)."""
    proc, receiver = runtime
    url, project = proc.url, "t-" + uuid.uuid4().hex[:8]
    endpoint = re.search(r"DynamoDB: embedded \(moto\) at (\S+),", proc.output()).group(1)
    client = client_for(endpoint)
    table = re.search(r"table (\S+)\n", proc.output()).group(1)
    now = Decimal(int(time.time()))
    for sk in ("TEAM#ml", "PROJECT", "HOLD#h1"):
        client.put_item(
            TableName=table,
            Item={
                "pk": {"S": f"PROJECT#{project}"},
                "sk": {"S": sk},
                "total_budget": {"N": "100"},
                "current_cost": {"N": "0"},
                "held": {"N": "0"},
                "available": {"N": "100"},
                "period_start": {"N": str(now - 60)},
                "reset_at": {"N": str(now + 86400)},
                "created_at": {"N": str(now - 60)},
                "version": {"N": "1"},
            },
        )
        client.update_item(
            TableName=table,
            Key={"pk": {"S": f"PROJECT#{project}"}, "sk": {"S": sk}},
            UpdateExpression="SET current_cost = current_cost + :c ADD version :one",
            ExpressionAttributeValues={":c": {"N": "85"}, ":one": {"N": "1"}},
        )
    wait_for(lambda: len(receiver.events(project)) == 2, "the team and project events")
    settle(url)
    events = receiver.events(project)
    assert sorted((e["detail"]["level"], e["detail"]["id"], e["detail"]["threshold"]) for e in events) == [
        ("project", project, 0.8),
        ("team", "ml", 0.8),
    ]
