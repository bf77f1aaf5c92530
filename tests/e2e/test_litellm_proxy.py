"""The real LiteLLM Proxy server (``litellm --config``, from ``.venv-proxy``, which ``make test``
installs at the version pinned in requirements-proxy.txt) with a mock model and the project's
``BudgetCallback``, configured as docs/guide/litellm.md says, against `make dev`'s server.

Between the proxy and the service sits a small TCP relay the test can stop (connection refused)
or make slow, which is how the service "goes away" without losing its data.

- cost recorded once per call and equal to litellm's (the proxy's x-litellm-response-cost);
- a refusal is litellm's budget error: type ``budget_exceeded``, litellm's budget status;
- 20 concurrent calls without max_tokens never spend past the cap;
- an upstream failure leaves nothing held;
- the service stopped, or too slow: a 503 within the configured timeout, and a hold made after
  the timeout is released once the service answers;
- with fail_open, calls let through during an outage are recorded once after the service returns.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from conftest import wait_until

from llm_budget import BudgetClient
from localdev.ready_time import ServerProcess, free_port
from localdev.template import ROOT

PROXY_PYTHON = ROOT / ".venv-proxy" / "bin" / "python"
MASTER_KEY = "sk-budget-test-1234"
TIMEOUT = 8.0  # the callback's timeout (seconds): 20 concurrent holds on a busy 2-core box fit in it
MESSAGES = [{"role": "user", "content": "Summarise the quarterly budget report in one line."}]

pytestmark = pytest.mark.skipif(
    not PROXY_PYTHON.exists(), reason="the LiteLLM Proxy venv is missing: `make test` installs .venv-proxy"
)


class Relay:
    """A TCP relay to the service: ``up`` (forward), ``stopped`` (port closed: refused), or
    ``slow`` (each request waits ``delay`` seconds before it is forwarded). Stopping also cuts
    the connections already open (a pooled keep-alive connection must not outlive the outage)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.delay = 0.0
        self.requests: list[bytes] = []
        self._open: set[socket.socket] = set()
        self._server: socket.socket | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(128)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            try:
                self._server.shutdown(socket.SHUT_RDWR)  # wakes the accept() in progress (Linux)
            except OSError:
                pass
            self._server.close()
            self._server = None
        for conn in list(self._open):
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
        except OSError:
            conn.close()
            return
        self._open.update((conn, upstream))

        def pump(src: socket.socket, dst: socket.socket, log: bool) -> None:
            try:
                while chunk := src.recv(65536):
                    if log:
                        self.requests.append(chunk[:200])
                        if self.delay:
                            time.sleep(self.delay)  # a slow service: what the relay simulates
                    dst.sendall(chunk)
            except OSError:
                pass
            finally:
                for sock in (src, dst):
                    self._open.discard(sock)
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        threading.Thread(target=pump, args=(conn, upstream, True), daemon=True).start()
        pump(upstream, conn, False)


HOOKS = """
from llm_budget.litellm import BudgetCallback

budget_callback = BudgetCallback(
    api_base={api_base!r},
    project={project!r},
    ttl_seconds=600,
    timeout={timeout!r},
    fail_open={fail_open!r},
)
"""

CONFIG = """
model_list:
  - model_name: gpt-4o-mini
    litellm_params:
      model: openai/gpt-4o-mini
      api_key: sk-not-used
      mock_response: "The report says spend is on plan."
  - model_name: broken
    litellm_params:
      model: openai/gpt-4o-mini
      api_key: sk-not-used
      api_base: http://127.0.0.1:9/v1
litellm_settings:
  callbacks: budget_hooks.budget_callback
  num_retries: 0
general_settings:
  master_key: {master_key}
"""


class Proxy:
    def __init__(self, api_base: str, project: str, *, fail_open: bool) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="litellm-proxy-"))
        (self.dir / "budget_hooks.py").write_text(
            HOOKS.format(api_base=api_base, project=project, timeout=TIMEOUT, fail_open=fail_open)
        )
        (self.dir / "config.yaml").write_text(CONFIG.format(master_key=MASTER_KEY))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(self.dir / "proxy.log", "w")  # noqa: SIM115 - closed in close()
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(self.dir), str(ROOT / "client" / "src")]),
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        }
        self.proc = subprocess.Popen(
            [
                str(PROXY_PYTHON),
                "-m",
                "litellm.proxy.proxy_cli",
                "--config",
                "config.yaml",
                "--port",
                str(self.port),
            ],
            cwd=self.dir,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_until(self._ready, timeout=180)

    def _ready(self) -> bool:
        assert self.proc.poll() is None, (self.dir / "proxy.log").read_text()[-3000:]
        try:
            return httpx.get(f"{self.url}/health/liveliness", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def chat(url: str, user: str, model: str = "gpt-4o-mini", **extra) -> httpx.Response:
    body = {"model": model, "user": user, "messages": MESSAGES, **extra}
    return httpx.post(
        f"{url}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        timeout=60,
    )


@pytest.fixture(scope="module")
def service():
    proc = ServerProcess()
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.close()


@pytest.fixture(scope="module")
def project():
    return f"proxy-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def relay(service):
    relay = Relay(service.port)
    yield relay
    relay.stop()


@pytest.fixture(scope="module")
def proxy(relay, project):
    proxy = Proxy(relay.url, project, fail_open=False)
    yield proxy
    proxy.close()


@pytest.fixture
def budgets(service, project):
    with BudgetClient(service.url, project=project) as client:
        yield client


@pytest.fixture(autouse=True)
def relay_up(request):
    yield
    if "relay" in request.fixturenames:
        relay = request.getfixturevalue("relay")
        relay.delay = 0.0
        if relay._server is None:
            relay.start()


def settled(budgets: BudgetClient, user: str, spent: Decimal):
    def check():
        record = budgets.get_user(user)
        return record if record.held == 0 and record.current_cost == spent else None

    return wait_until(check)


def test_cost_is_recorded_once_per_call_and_equal_to_litellms(proxy, budgets):
    budgets.put_user("ana", 5)
    costs = []
    for max_tokens in (None, 64, None):
        response = chat(proxy.url, "ana", **({"max_tokens": max_tokens} if max_tokens else {}))
        assert response.status_code == 200, response.text
        costs.append(Decimal(response.headers["x-litellm-response-cost"]))
    record = settled(budgets, "ana", sum(costs))
    assert record.model_cost and sum(record.model_cost.values()) == sum(costs)


def test_a_refusal_is_litellms_budget_error_in_the_end_users_terms(proxy, budgets):
    budgets.put_user("ben", Decimal("0.0001"), "monthly")
    response = chat(proxy.url, "ben")
    error = response.json()["error"]
    proxy_status = int(
        subprocess.run(  # litellm's own status for budget errors, as installed
            [str(PROXY_PYTHON), "-c", "import litellm; print(litellm.budget_exceeded_status_code)"],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
        ).stdout
    )
    assert response.status_code == proxy_status, response.text
    assert error["type"] == "budget_exceeded"
    assert "your (ben) budget is $0.0001 monthly and has $0.0001 left" in error["message"]
    assert "It resets" in error["message"] and "UTC" in error["message"]
    assert budgets.get_user("ben").held == 0


def test_20_concurrent_calls_without_max_tokens_never_spend_past_the_cap(proxy, budgets):
    # Without history a hold reserves the model's maximum output (16,384 tokens: ~$0.0098), so
    # $0.05 admits about 5 calls at a time; the real calls cost far less.
    cap = Decimal("0.05")
    budgets.put_user("cai", cap)

    async def burst():
        async with httpx.AsyncClient(timeout=120) as client:
            body = {"model": "gpt-4o-mini", "user": "cai", "messages": MESSAGES}
            headers = {"Authorization": f"Bearer {MASTER_KEY}"}
            return await asyncio.gather(
                *(
                    client.post(f"{proxy.url}/v1/chat/completions", json=body, headers=headers)
                    for _ in range(20)
                )
            )

    responses = asyncio.run(burst())
    statuses = sorted(r.status_code for r in responses)
    ok = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code != 200]
    assert ok and all(r.json()["error"]["type"] == "budget_exceeded" for r in refused), statuses
    spent = sum(Decimal(r.headers["x-litellm-response-cost"]) for r in ok)
    record = settled(budgets, "cai", spent)
    assert record.current_cost <= cap


def test_an_upstream_failure_leaves_nothing_held(proxy, budgets):
    budgets.put_user("dee", 5)
    response = chat(proxy.url, "dee", model="broken")
    assert response.status_code >= 500 or response.status_code in (400, 404), response.text
    settled(budgets, "dee", Decimal(0))


def test_the_service_stopped_or_slow_is_a_503_within_the_timeout(proxy, relay, budgets):
    budgets.put_user("eve", 5)
    relay.stop()
    started = time.monotonic()
    response = chat(proxy.url, "eve")
    elapsed = time.monotonic() - started
    assert response.status_code == 503, response.text
    assert response.json()["error"]["type"] == "service_unavailable"
    assert "budget service" in response.json()["error"]["message"]
    assert elapsed < TIMEOUT, elapsed
    relay.start()
    # Slow: the hold arrives after the timeout; the call is a 503 and the hold is released.
    relay.delay = TIMEOUT + 1
    relay.requests.clear()
    started = time.monotonic()
    response = chat(proxy.url, "eve")
    elapsed = time.monotonic() - started
    assert response.status_code == 503, response.text
    assert elapsed < TIMEOUT + 1.5, elapsed  # the timeout, plus the proxy's own work
    wait_until(lambda: any(r.startswith(b"DELETE ") for r in relay.requests))
    relay.delay = 0.0
    settled(budgets, "eve", Decimal(0))


def test_with_fail_open_an_outage_is_recorded_once_after_the_service_returns(service, project, budgets):
    relay = Relay(service.port)
    proxy = Proxy(relay.url, project, fail_open=True)
    try:
        budgets.put_user("fay", 5)
        relay.stop()
        costs = []
        for _ in range(3):
            response = chat(proxy.url, "fay")
            assert response.status_code == 200, response.text
            costs.append(Decimal(response.headers["x-litellm-response-cost"]))
        assert budgets.get_user("fay").current_cost == 0  # nothing reached the service yet
        relay.start()
        settled(budgets, "fay", sum(costs))
        # Once: the spool is empty and a later read still says the same.
        wait_until(lambda: "every spooled cost is recorded" in (proxy.dir / "proxy.log").read_text())
        assert budgets.get_user("fay").current_cost == sum(costs)
    finally:
        proxy.close()
        relay.stop()


def test_the_documented_config_is_the_one_tested():
    page = (ROOT / "docs" / "guide" / "litellm.md").read_text()
    assert "callbacks: budget_hooks.budget_callback" in page and "master_key" in page
    pinned = (ROOT / "requirements-proxy.txt").read_text()
    assert "litellm[proxy]==" in pinned
    version = pinned.split("litellm[proxy]==")[1].split()[0]
    assert version in page, "the docs name the proxy version the test runs"
