import os

# Before anything imports boto3, Powertools or litellm.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "TABLE_NAME": "budgets-test",
        "POWERTOOLS_SERVICE_NAME": "llm-budget-test",
        "POWERTOOLS_METRICS_NAMESPACE": "LlmBudgetTest",
        "POWERTOOLS_TRACE_DISABLED": "1",
        "POWERTOOLS_DEV": "0",
        # Handlers enforce API keys unless told otherwise; tests/integration/test_auth.py turns it on.
        "API_AUTH": "off",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    }
)
os.environ.pop("AWS_ENDPOINT_URL_DYNAMODB", None)
os.environ.pop("AWS_ENDPOINT_URL", None)

import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402
from decimal import Decimal  # noqa: E402
from pathlib import Path  # noqa: E402

import boto3  # noqa: E402
import botocore.endpoint  # noqa: E402
import pytest  # noqa: E402
from botocore.config import Config  # noqa: E402
from moto import mock_aws  # noqa: E402

from budget_service.store import base as store_module
from localdev import template  # noqa: E402
from localdev.containers import ContainerPool, InFlight  # noqa: E402
from localdev.contention import ContentionModel  # noqa: E402
from localdev.dynamodb import client_for, exact_numbers  # noqa: E402
from localdev.events import api_gateway_event  # noqa: E402
from localdev.faults import FaultyDynamoDB  # noqa: E402

TABLE_NAME = os.environ["TABLE_NAME"]

# The tiers, by folder: every test gets its folder's marker (pytest.ini registers them), so
# `pytest -m unit` (make test-fast) selects the unit tier wherever a test is run from. A test
# that carries a tier marker of its own keeps it (a server test in an integration module).
TIERS = ("unit", "integration", "e2e", "template", "browser")
TESTS_DIR = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        if any(item.get_closest_marker(tier) for tier in TIERS):
            continue
        folder = item.path.resolve().relative_to(TESTS_DIR).parts[0]
        if folder not in TIERS:
            raise pytest.UsageError(
                f"{item.nodeid}: a test module belongs in one of tests/{{{','.join(TIERS)}}}/"
            )
        item.add_marker(folder)


exact_numbers()  # in-process moto does DynamoDB's number arithmetic (see localdev.dynamodb)


# DynamoDB's contention (localdev/contention.py) in front of the in-process moto, as the embedded
# DynamoDB has it: on unless LOCAL_DYNAMODB_CONFLICTS=0 (the embedded server, a child process,
# reads the same variables). Tests read its counters and may retune it (restoring it after).
IN_PROCESS_CONTENTION = ContentionModel.from_environ()


def _in_process_moto_one_at_a_time() -> None:
    """In-process moto applies requests from threads without DynamoDB's per-request atomicity, and
    its TransactWriteItems deep-copies whole tables (not thread-safe, and slow on big tables).
    Apply requests one at a time, as the embedded DynamoDB does, which makes backing up only the
    items a transaction names sound (localdev.dynamodb.back_up_items_only). DynamoDB requests
    that moto answers go through IN_PROCESS_CONTENTION first, inside the same lock; a
    transaction's answer waits out its in-flight window outside it (as in the embedded server)."""
    from urllib.parse import urlsplit

    from botocore.awsrequest import AWSResponse
    from moto.core.botocore_stubber import BotocoreStubber, MockRawResponse

    from localdev.dynamodb import back_up_items_only

    if getattr(BotocoreStubber.__call__, "one_at_a_time", False):
        return
    lock = threading.RLock()
    call = BotocoreStubber.__call__
    model = IN_PROCESS_CONTENTION

    def one_at_a_time(self, event_name, request, **kwargs):
        admission = None
        with lock:
            operation = event_name.rpartition(".")[2]
            # Only what moto answers here: a client pointed at the embedded server passes through.
            mocked = self.enabled and (urlsplit(request.url).hostname or "").endswith(".amazonaws.com")
            if model is not None and mocked and event_name.startswith("before-send.dynamodb."):
                try:
                    body = json.loads(request.body or b"{}")
                except ValueError:
                    body = None
                refusal, admission = model.admit(operation, body)
                if refusal is not None:
                    headers = {"Content-Type": "application/x-amz-json-1.0"}
                    return AWSResponse(request.url, 400, headers, MockRawResponse(refusal.payload()))
            response = call(self, event_name, request, **kwargs)
        if model is not None:
            model.finish(admission)
        return response

    one_at_a_time.one_at_a_time = True
    BotocoreStubber.__call__ = one_at_a_time
    back_up_items_only()


_in_process_moto_one_at_a_time()


def lambda_context(function_id: str):
    """The context Lambda gives the template's function (its Timeout and MemorySize), for tests.

    Its time runs on the invoking thread's CPU time, not the wall clock: in Lambda a function
    has its own CPU, while on a loaded test machine (a 2-core CI box running two suites) a
    handler's wall time stretches with everyone else's work, and a handler that stops early
    when little time is left (set_budget, the reset job) would answer 503 for no reason of its
    own. Tests of that stopping give a short timeout or a large reserve explicitly.
    """
    return template.lambda_context(function_id, clock=time.thread_time)


def run_threads(threads, timeout: float = 120) -> None:
    """Start every thread, then wait for all of them; a thread still running is a failure."""
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)
    assert not any(t.is_alive() for t in threads), "a thread did not finish in time"


@pytest.fixture
def aws():
    """In-process moto with the table template.yaml declares."""
    with mock_aws():
        client = boto3.client("dynamodb")
        template.create_table(client, TABLE_NAME)
        store_module.default_store.cache_clear()
        yield client
        store_module.default_store.cache_clear()


@pytest.fixture
def store(aws):
    return store_module.BudgetStore(TABLE_NAME, client=aws)


@pytest.fixture(scope="session")
def dynamodb_server():
    """The embedded DynamoDB (moto server) in its own process, with the template's table.

    Its own process: in-process moto mocks elsewhere in the suite cannot touch it, and requests
    from threads here race for real.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "localdev.dynamodb", "--table", TABLE_NAME],
        cwd=template.ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("READY "), f"embedded DynamoDB did not start: {line!r}"
        yield line.split()[1]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# The service's client settings with a read timeout no loaded machine reaches: the embedded
# DynamoDB applies requests one at a time, and 16 racing threads on a busy 2-core box can wait
# longer than the service's 2 s for their turn. Tests that race writes test the races; lost
# and late answers are tested on purpose, with the fault proxy (`faulty_api`).
SERVED_CLIENT_CONFIG = store_module.CLIENT_CONFIG.merge(Config(read_timeout=60))


@pytest.fixture
def served_api(dynamodb_server, monkeypatch):
    """Handlers invoked in process (from any thread) on the embedded DynamoDB server, with
    SERVED_CLIENT_CONFIG."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_server)
    monkeypatch.setattr(store_module, "CLIENT_CONFIG", SERVED_CLIENT_CONFIG)
    store_module.default_store.cache_clear()
    yield Api()
    store_module.default_store.cache_clear()


@pytest.fixture
def server_store(dynamodb_server):
    """A BudgetStore on the embedded DynamoDB server, for tests that race over HTTP."""
    return store_module.BudgetStore(TABLE_NAME, client=client_for(dynamodb_server))


@pytest.fixture
def backoff(monkeypatch):
    """botocore's retry delays, recorded instead of slept (the retries themselves still happen)."""
    delays: list[float] = []
    monkeypatch.setattr(botocore.endpoint, "time", types.SimpleNamespace(sleep=delays.append))
    return delays


# The service's client settings with a short read timeout, so a late answer (which the fault
# proxy holds until the client gives up) costs a test one second per attempt, not two.
FAULT_CLIENT_CONFIG = store_module.CLIENT_CONFIG.merge(Config(read_timeout=1))


@pytest.fixture
def faulty_dynamodb(dynamodb_server):
    """A fault-injecting proxy (localdev.faults.FaultyDynamoDB) in front of the embedded DynamoDB:
    ``faulty_dynamodb.add("PutItem", Fault.LATE)``; its ``url`` is the endpoint to use."""
    proxy = FaultyDynamoDB(dynamodb_server).start()
    yield proxy
    proxy.stop()
    assert not proxy.errors, f"a fault rule's `then` failed: {proxy.errors!r}"


@pytest.fixture
def faulty_api(faulty_dynamodb, monkeypatch, backoff):
    """Handlers invoked in process whose DynamoDB is the fault proxy: FAULT_CLIENT_CONFIG (standard
    retries, 1 s read timeout), botocore's backoff recorded in `backoff` rather than slept."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", faulty_dynamodb.url)
    monkeypatch.setattr(store_module, "CLIENT_CONFIG", FAULT_CLIENT_CONFIG)
    store_module.default_store.cache_clear()
    yield Api()
    store_module.default_store.cache_clear()


@pytest.fixture
def faulty_client(faulty_dynamodb, backoff):
    """A DynamoDB client whose endpoint is the fault proxy (settings as in `faulty_api`), marking
    what its failed calls may have written (store.track_write_outcomes)."""
    return store_module.track_write_outcomes(client_for(faulty_dynamodb.url, FAULT_CLIENT_CONFIG))


@pytest.fixture
def faulty_store(faulty_client):
    """A BudgetStore whose DynamoDB is the fault proxy (settings as in `faulty_api`)."""
    return store_module.BudgetStore(TABLE_NAME, client=faulty_client)


# The handlers' containers for every Api: a call takes a free one or loads a new one (no limit),
# so concurrent calls never share a handler module (localdev.containers), and warm ones are reused.
CONTAINERS = ContainerPool(max_containers=None)


class Api:
    """Invokes the template's functions in process with API Gateway proxy events, each call in a
    container of its own while it runs (CONTAINERS). ``in_flight`` counts this Api's calls: how
    many run now and the most that ran at once (``api.in_flight.snapshot()["max_in_flight"]``)."""

    def __init__(self) -> None:
        self.routes = {(r.method, r.path): r for r in template.api_routes()}
        self.in_flight = InFlight()

    def call(self, method, resource, path_parameters=None, *, body=None, query=None, headers=None):
        route = self.routes[(method.upper(), resource)]
        event = api_gateway_event(method, resource, path_parameters, body=body, query=query, headers=headers)
        with self.in_flight.track():
            result = CONTAINERS.invoke(route.function_id, event, lambda_context(route.function_id))
        return Response(result)

    def max_in_flight(self) -> int:
        """The most calls of this Api that ran at once."""
        return self.in_flight.snapshot()["max_in_flight"]

    def get_budget(self, project):
        return self.call("POST", "/get_budget", body={"project_name": project})

    def set_budget(self, project, user_dict):
        return self.call(
            "POST", "/set_budget", body=json.dumps({"project_name": project, "user_dict": user_dict})
        )


class Response:
    def __init__(self, raw: dict) -> None:
        self.raw = raw
        self.status = raw["statusCode"]
        self.text = raw.get("body") or ""

    def json(self):
        return json.loads(self.text, parse_float=Decimal)

    def __repr__(self) -> str:
        return f"<{self.status} {self.text[:300]}>"


@pytest.fixture
def api(aws):
    return Api()


# A frozen service clock for the handlers' `budgets.utc_now`, moved by the test (`clock.now = ...`).
CLOCK_START = Decimal("1800000000")  # 2027-01-15T08:00:00Z


class Clock:
    def __init__(self, now: Decimal = CLOCK_START) -> None:
        self.now = now

    def __call__(self) -> Decimal:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    from budget_service.domain import budgets

    clock = Clock()
    monkeypatch.setattr(budgets, "utc_now", clock)
    return clock


def wait_until(condition, timeout: float = 30.0):
    """Poll `condition` until it returns something truthy; return it. AssertionError after
    `timeout` seconds (a bound for a busy machine, never a measure of speed)."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.05)  # poll interval between checks of the condition
