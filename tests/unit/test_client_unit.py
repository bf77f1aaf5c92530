"""The Python client (client/, llm_budget) without a server: its requests, retries, errors,
money and packaging, against httpx.MockTransport. The same client against the local server is
tests/e2e/test_client_service.py."""

import shutil
import subprocess
import sys
import venv
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

import llm_budget
from llm_budget import (
    BudgetClient,
    BudgetExceeded,
    BudgetNotFound,
    IdempotencyKeyReused,
    RetryPolicy,
    Unavailable,
    UnknownModel,
    ValidationFailed,
    _json,
    _transport,
)
from llm_budget._routes import cost_form, money, price_body, settle_form

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "client"
FAST = RetryPolicy(attempts=4, base=0.001, max_backoff=0.002, max_wait=5)


class Recorder:
    """A MockTransport handler that answers from a list and keeps every request."""

    def __init__(self, *answers: httpx.Response) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def client_with(handler, retry: RetryPolicy = FAST) -> BudgetClient:
    http = httpx.Client(base_url="http://budget.test/Prod", transport=httpx.MockTransport(handler))
    return BudgetClient("http://budget.test/Prod", project="acme", http_client=http, retry=retry)


def error(status: int, code: str, message: str = "no", details=None, headers=None) -> httpx.Response:
    body = {"error": {"code": code, "message": message, "details": details}}
    return httpx.Response(status, json=body, headers=headers)


COST_ANSWER = {
    "project": "acme",
    "user": "a b/c",
    "model": "m",
    "cost": 0.1,
    "current_cost": None,
    "total_budget": None,
    "remaining": None,
    "budget_exceeded": None,
    "replayed": False,
}


@pytest.fixture
def no_sleep(monkeypatch):
    waits: list[float] = []
    monkeypatch.setattr(_transport.time, "sleep", waits.append)
    return waits


def test_a_cost_retried_on_503_and_429_keeps_one_idempotency_key_and_honours_retry_after(no_sleep):
    handler = Recorder(
        error(503, "service_unavailable", headers={"Retry-After": "2"}),
        httpx.Response(429, json={"message": "Too Many Requests"}),
        httpx.Response(200, json=COST_ANSWER),
    )
    result = client_with(handler).record_cost("a b/c", model="m", cost="0.1")
    assert result.cost == Decimal("0.1")
    keys = {r.headers["Idempotency-Key"] for r in handler.requests}
    assert len(handler.requests) == 3 and len(keys) == 1  # one logical write, one key
    # the service's Retry-After, never less, plus a jitter bounded by the first backoff
    assert 2.0 <= no_sleep[0] <= 2.0 + FAST.base
    assert 0 <= no_sleep[1] <= FAST.max_backoff  # backoff, bounded
    # the path keeps the stage prefix and percent-encodes the id
    assert handler.requests[0].url.raw_path == b"/Prod/projects/acme/users/a%20b%2Fc/cost"


def test_each_call_gets_its_own_key_and_a_given_key_is_sent_as_is():
    handler = Recorder(*(httpx.Response(200, json=COST_ANSWER) for _ in range(3)))
    client = client_with(handler)
    client.record_cost("u", model="m", cost=1)
    client.record_cost("u", model="m", cost=1)
    client.record_cost("u", model="m", cost=1, idempotency_key="chatcmpl-1")
    first, second, given = (r.headers["Idempotency-Key"] for r in handler.requests)
    assert first != second and given == "chatcmpl-1"


def test_retries_are_bounded_and_a_long_retry_after_is_not_waited_for(no_sleep):
    handler = Recorder(*(error(503, "service_unavailable") for _ in range(4)))
    with pytest.raises(Unavailable) as caught:
        client_with(handler).get_user("u")
    assert len(handler.requests) == FAST.attempts and caught.value.status == 503

    handler = Recorder(error(503, "service_unavailable", headers={"Retry-After": "3600"}))
    with pytest.raises(Unavailable) as caught:
        client_with(handler).get_user("u")
    assert len(handler.requests) == 1 and caught.value.retry_after == 3600.0


def test_no_answer_is_retried_only_where_repeating_is_safe(no_sleep):
    lost = httpx.ReadTimeout("lost")
    handler = Recorder(lost, httpx.Response(200, json=COST_ANSWER))
    client_with(handler).record_cost("u", model="m", cost=1)  # carries a key: safe to repeat
    assert len(handler.requests) == 2
    assert handler.requests[0].headers["Idempotency-Key"] == handler.requests[1].headers["Idempotency-Key"]

    handler = Recorder(lost)  # a reset repeated could zero spend recorded in between
    with pytest.raises(Unavailable):
        client_with(handler).reset_user("u")
    assert len(handler.requests) == 1


def test_a_delete_whose_answer_was_lost_is_done_when_the_retry_finds_nothing(no_sleep):
    handler = Recorder(httpx.ConnectTimeout("lost"), error(404, "budget_not_found"))
    assert client_with(handler).delete_user("u") is None
    handler = Recorder(error(404, "budget_not_found"))  # a plain 404 is still an error
    with pytest.raises(BudgetNotFound):
        client_with(handler).delete_user("u")


def test_a_503_whose_write_may_have_landed_is_not_repeated_unless_safe(no_sleep):
    unknown = error(503, "service_unavailable", details={"outcome": "unknown"})
    handler = Recorder(unknown)
    with pytest.raises(Unavailable) as caught:
        client_with(handler).reset_user("u")
    assert len(handler.requests) == 1 and caught.value.details == {"outcome": "unknown"}

    handler = Recorder(unknown, httpx.Response(200, json=COST_ANSWER))  # keyed: charged once
    client_with(handler).record_cost("u", model="m", cost=1)
    assert len(handler.requests) == 2

    not_written = error(503, "service_unavailable", details={"outcome": "not_written"})
    handler = Recorder(
        not_written,
        httpx.Response(200, json={**COST_ANSWER, "total_budget": 1, "current_cost": 0, "remaining": 1}),
    )
    client_with(handler).reset_user("u")
    assert len(handler.requests) == 2


@pytest.mark.parametrize(
    ("answer", "raised"),
    [
        (error(404, "budget_not_found"), BudgetNotFound),
        (error(422, "unknown_model"), UnknownModel),
        (error(422, "idempotency_key_reused"), IdempotencyKeyReused),
        (error(422, "validation_error", details=[{"loc": ["cost"]}]), ValidationFailed),
        (error(413, "payload_too_large"), ValidationFailed),
        (error(409, "write_contention"), Unavailable),
    ],
)
def test_errors_are_raised_by_code(answer, raised, no_sleep):
    with pytest.raises(raised):
        client_with(Recorder(answer, answer, answer, answer)).record_cost("u", model="m", cost=1)


def test_budget_exceeded_names_each_refusing_level_exactly():
    details = [
        {"level": "team", "name": "research", "available": 0.04, "needed": 0.1},
        {"level": "project", "name": "acme", "available": 0, "needed": 0.1},
    ]
    handler = Recorder(error(402, "budget_exceeded", "the budget cannot cover 0.1", details))
    with pytest.raises(BudgetExceeded) as caught:
        client_with(handler).hold("u", amount="0.1")
    refusal = caught.value
    assert [(lvl.level, lvl.name) for lvl in refusal.levels] == [("team", "research"), ("project", "acme")]
    assert refusal.levels[0].available == Decimal("0.04") and refusal.available == Decimal(0)
    assert refusal.levels[0].needed == Decimal("0.1")
    assert len(handler.requests) == 1  # a refusal is an answer, never retried


def test_budget_not_found_is_also_a_key_error_like_litellms():
    handler = Recorder(error(404, "budget_not_found", "no budget for user 'x'"))
    with pytest.raises(KeyError) as caught:
        client_with(handler).get_user("x")
    assert str(caught.value) == "no budget for user 'x'"


def test_money_goes_out_and_comes_back_exactly():
    tiny = Decimal("0.0100000000000000000000007")  # more digits than a float keeps
    assert _json.dumps({"cost": tiny}) == '{"cost":0.0100000000000000000000007}'
    assert _json.loads('{"cost": 0.0100000000000000000000007}')["cost"] == tiny
    assert money(0.1) == Decimal("0.1")  # a float by its shortest repr, not its binary value
    for bad in (float("nan"), Decimal("Infinity"), "abc", True):
        with pytest.raises(ValueError):
            money(bad)
    with pytest.raises(ValueError):
        _json.dumps({"x": Decimal("NaN")})


def test_records_parse_money_as_decimal_and_keep_unknown_fields():
    answer = {
        "project": "acme",
        "user": "u",
        "total_budget": 10,
        "current_cost": 0.30000000000000004,
        "remaining": 9.7,
        "model_cost": {"m": 0.1},
        "held": 0.2,
        "available": 9.5,
        "duration": "monthly",
        "timezone": None,
        "period_start": "2026-11-01T00:00:00Z",
        "reset_at": "2026-12-01T00:00:00Z",
        "created_at": "2026-11-02T10:00:00Z",
        "updated_at": "2026-11-02T10:00:00Z",
        "alert_thresholds": [0.8, 1],
    }
    budget = client_with(Recorder(httpx.Response(200, json=answer))).get_user("u")
    assert budget.current_cost == Decimal("0.30000000000000004")
    assert budget.model_cost == {"m": Decimal("0.1")} and budget.held == Decimal("0.2")
    assert budget.reset_at.isoformat() == "2026-12-01T00:00:00+00:00"
    assert budget.extra == {"alert_thresholds": [Decimal("0.8"), 1]}


def test_cost_forms_send_a_completions_model_and_usage_only():
    completion = {
        "id": "chatcmpl-1",
        "model": "gpt-4o-mini",
        "choices": [{"message": {"content": "secret"}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4},
    }
    assert cost_form(completion=completion) == {
        "completion": {"model": "gpt-4o-mini", "usage": {"prompt_tokens": 3, "completion_tokens": 4}}
    }
    assert settle_form({"prompt_tokens": 3}, model="m") == {"model": "m", "usage": {"prompt_tokens": 3}}
    assert settle_form({"input_tokens": 3, "output_tokens": 1}, model="m")["usage"] == {
        "input_tokens": 3,
        "output_tokens": 1,
    }
    with pytest.raises(ValueError, match="exactly one"):
        cost_form(model="m", cost=1, usage={"prompt_tokens": 1})
    with pytest.raises(ValueError, match="model is required"):
        cost_form(cost=1)


@pytest.mark.integration  # a fresh interpreter
def test_the_package_does_not_import_litellm():
    code = "import sys, llm_budget; assert 'litellm' not in sys.modules, 'litellm imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.integration  # mypy in a subprocess
def test_mypy_strict_passes_on_the_package():
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", "pyproject.toml"],
        cwd=CLIENT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success" in result.stdout


@pytest.mark.integration  # pip and a venv in subprocesses
def test_pip_builds_the_package_and_installs_it_into_a_fresh_venv_offline(tmp_path):
    # What `pip install ./client` does, without the network: build the wheel with the test
    # venv's setuptools (a copy of client/, so no build/ is left in the checkout), install it into
    # a fresh venv with --no-index. httpx, its one dependency, comes from PyPI in real use; here
    # the test venv's site-packages stand in for it.
    source = tmp_path / "client"
    shutil.copytree(CLIENT, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            str(tmp_path / "dist"),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = (tmp_path / "dist").glob("llm_budget_client-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", str(wheel)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    show = subprocess.run(
        [str(python), "-m", "pip", "show", "-f", "llm-budget-client"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "Requires: httpx" in show.stdout
    assert "llm_budget/py.typed" in show.stdout
    check = subprocess.run(
        [str(python), "-c", "import llm_budget; print(llm_budget.__version__, llm_budget.__file__)"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={"PYTHONPATH": str(Path(httpx.__file__).parents[1])},
    )
    assert check.returncode == 0, check.stderr
    version, location = check.stdout.split()
    assert version == llm_budget.__version__
    assert Path(location).is_relative_to(env_dir)  # the copy pip installed, not the checkout


def test_a_price_body_sends_rates_as_exact_decimals_and_keeps_counts_and_words():
    body = price_body(
        {
            "input": 0.000002,
            "output": "0.000008",
            "provider": "xai",
            "free": None,
            "tiers": [{"above": 200_000, "input": "0.000004"}],
            "web_search": {"low": 0.025},
            "web_search_unit": "per_query",
        }
    )
    assert body == {
        "input": Decimal("0.000002"),
        "output": Decimal("0.000008"),
        "provider": "xai",
        "free": None,
        "tiers": [{"above": 200_000, "input": Decimal("0.000004")}],
        "web_search": {"low": Decimal("0.025")},
        "web_search_unit": "per_query",
    }


def test_settle_reads_an_openai_response_object_and_a_litellm_usage():
    from litellm.types.utils import Usage
    from openai.types.chat import ChatCompletion

    response = ChatCompletion.model_validate(
        {
            "id": "chatcmpl-9",
            "object": "chat.completion",
            "created": 0,
            "model": "gpt-4o-2024-08-06",
            "choices": [
                {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "x"}}
            ],
            "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
        }
    )
    assert settle_form(response) == {
        "completion": {
            "model": "gpt-4o-2024-08-06",
            "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
        }
    }
    usage = settle_form(Usage(prompt_tokens=3, completion_tokens=4), model="gpt-4o-mini")
    assert usage["model"] == "gpt-4o-mini"
    assert (usage["usage"]["prompt_tokens"], usage["usage"]["completion_tokens"]) == (3, 4)


@pytest.mark.parametrize("response_id", ["chatcmpl-1", "resp 1", "rés-1", "a,b", "x" * 300])
def test_update_cost_keys_a_completion_of_any_id_with_a_valid_idempotency_key(response_id):
    # The service takes 1 to 255 visible ASCII characters other than ","; litellm's own manager
    # charges a completion whatever its id, so ours must send a key the service accepts (the id
    # itself when it fits, else its hash), the same key each time.
    import re

    from llm_budget import BudgetManager
    from llm_budget.litellm import idempotency_key

    recorder = Recorder(*[httpx.Response(200, json=COST_ANSWER) for _ in range(2)])
    manager = BudgetManager("acme", client=client_with(recorder))
    completion = {"id": response_id, "model": "gpt-4o-mini", "usage": {"prompt_tokens": 3}}
    assert manager.update_cost(user="u", completion_obj=completion)["user"]["cost"] == Decimal("0.1")
    manager.update_cost(user="u", completion_obj=completion)
    keys = [request.headers["Idempotency-Key"] for request in recorder.requests]
    assert keys[0] == keys[1] and re.fullmatch(r"[\x21-\x2b\x2d-\x7e]{1,255}", keys[0])
    assert (keys[0] == f"completion:{response_id}") == (response_id == "chatcmpl-1")
    assert re.fullmatch(r"[\x21-\x2b\x2d-\x7e]{1,255}", idempotency_key("litellm-response", response_id))


HOLD_ANSWER = {"hold_id": "h1", "amount": 0.1, "state": "held"}


def test_a_guard_holds_once_a_second_block_raises_before_holding():
    # Its exit returns at once when settled, so a second block's hold was never settled nor
    # released: it reserved the budget until its TTL.
    recorder = Recorder(
        httpx.Response(201, json=HOLD_ANSWER),
        httpx.Response(200, json={"hold_id": "h1", "cost": 0.05, "amount": 0.1, "released": 0.05}),
    )
    guard = client_with(recorder).guard("u", amount="0.1")
    with guard:
        guard.settle(model="m", cost="0.05")
    with pytest.raises(RuntimeError, match="holds once"):
        with guard:
            pass
    assert [r.method for r in recorder.requests] == ["POST", "POST"]


class SlowHoldService:
    """A MockTransport handler whose hold answer waits for the test's word (``answer``): a hold
    the service makes after its caller was cancelled. Release requests are kept in order."""

    def __init__(self) -> None:
        import asyncio

        self.requests: list[tuple[str, str]] = []
        self.asked = asyncio.Event()  # the hold request has reached the service
        self.answer = asyncio.Event()  # the test lets the service answer it
        self.released = asyncio.Event()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((request.method, request.url.path))
        if request.method == "POST":
            self.asked.set()
            await self.answer.wait()
            return httpx.Response(201, json=HOLD_ANSWER)
        self.released.set()
        return httpx.Response(200, json={"released": True, "state": "released"})

    def client(self):
        from llm_budget import AsyncBudgetClient

        http = httpx.AsyncClient(base_url="http://budget.test", transport=httpx.MockTransport(self))
        return AsyncBudgetClient("http://budget.test", project="acme", http_client=http, retry=FAST)


async def cancel_while_holding(service: SlowHoldService, holding) -> None:
    """Cancel `holding` (a coroutine that asks for a hold) once its hold request reached the
    service, see the cancel finish before the service answers (it is not delayed by it), then
    let the service answer and wait until the hold it made is released."""
    import asyncio

    task = asyncio.create_task(holding)
    await asyncio.wait_for(service.asked.wait(), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 30)
    assert not service.answer.is_set() and len(service.requests) == 1  # cancelled before the answer
    service.answer.set()
    await asyncio.wait_for(service.released.wait(), 30)
    assert service.requests == [
        ("POST", "/projects/acme/users/u/holds"),
        ("DELETE", "/projects/acme/users/u/holds/h1"),
    ]


def test_an_async_guard_cancelled_while_holding_releases_the_hold_when_it_answers():
    # A task cancelled during __aenter__ (a client gone, a wait_for timeout) never saw its hold,
    # which the service still made: the guard releases it once the answer comes.
    import asyncio

    async def main() -> None:
        service = SlowHoldService()

        async def guarded() -> None:
            async with service.client().guard("u", amount="0.1"):
                raise AssertionError("the block must not run")

        await cancel_while_holding(service, guarded())

    asyncio.run(main())


def test_a_proxy_request_cancelled_while_holding_releases_the_hold_when_it_answers():
    # LiteLLM Proxy cancels the request's task when its caller hangs up, possibly during the
    # pre-call hook's hold: the hold is released once the service answers, not left to its TTL.
    import asyncio

    from llm_budget.litellm import BudgetCallback

    async def main() -> None:
        service = SlowHoldService()
        callback = BudgetCallback(project="acme", async_client=service.client(), hold_amount="0.1")
        data = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "user": "u"}
        await cancel_while_holding(service, callback.async_pre_call_hook(None, None, data, "completion"))

    asyncio.run(main())


def test_an_answer_that_cannot_be_decoded_is_a_budget_error_not_an_httpx_one():
    # A gateway that labels a plain body gzip: httpx raises DecodingError (not a TransportError)
    # while reading it; the README promises errors under BudgetError.
    def garbled(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Encoding": "gzip"}, stream=httpx.ByteStream(b"not gzip"))

    with pytest.raises(llm_budget.BudgetError, match="unexpected answer"):
        client_with(garbled).get_user("u")


@pytest.mark.parametrize("api_base", ["127.0.0.1:3000", "localhost", "ftp://budget.test", "http://"])
def test_an_api_base_that_is_not_an_http_url_is_refused_at_once(api_base):
    # Not a URL httpx can send to: every call was retried, then "no answer from the service".
    from llm_budget import AsyncBudgetClient

    for make in (BudgetClient, AsyncBudgetClient):
        with pytest.raises(ValueError, match="http"):
            make(api_base, project="acme")


# ---- one description serves both clients: parity ------------------------------------------------

import asyncio  # noqa: E402
import inspect  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import types  # noqa: E402
from collections.abc import AsyncIterator, Iterator  # noqa: E402

from llm_budget import AsyncBudgetClient  # noqa: E402
from llm_budget import _routes as routes  # noqa: E402

# Where the two clients differ by design: closing, and the context-manager protocols.
ASYNC_NAME = {"close": "aclose", "__enter__": "__aenter__", "__exit__": "__aexit__"}
NOT_REQUESTS = {"guard", "for_project", "close"}

MESSAGES = [{"role": "user", "content": "Hi"}]
# One call per public request method (several where the method sends different shapes), with
# every optional part that changes the request.
CALLS: list[tuple[str, tuple, dict]] = [
    ("put_user", ("a b/c", "12.5", "monthly"), {"timezone": "Europe/Paris", "team": "t"}),
    ("put_user", ("u", 3), {}),
    ("get_user", ("u",), {}),
    ("delete_user", ("u",), {"purge": True}),
    ("list_users", (10, "c1"), {}),
    ("iter_users", (5,), {}),
    ("reset_user", ("u",), {}),
    ("record_cost", ("u",), {"model": "m", "usage": {"prompt_tokens": 3}, "if_within_budget": True}),
    ("record_cost", ("u",), {"model": "m", "cost": "0.1", "idempotency_key": "chatcmpl-1"}),
    ("record_cost", ("u",), {"model": "m", "input_text": "a", "output_text": "b"}),
    ("projected_cost", ("u",), {"model": "m", "messages": MESSAGES, "max_tokens": 5}),
    ("hold", ("u",), {"model": "m", "messages": MESSAGES, "max_tokens": 5, "ttl_seconds": 60}),
    ("hold", ("u",), {"amount": "0.1"}),
    ("settle", ("u", "h/1", {"prompt_tokens": 3}), {"model": "m"}),
    ("release", ("u", "h1"), {}),
    (
        "put_project_budget",
        ("1.00", "monthly"),
        {"timezone": "UTC", "default_user_budget": {"total_budget": "0.5", "duration": "daily"}},
    ),
    ("get_project_budget", (), {}),
    ("delete_project_budget", (), {}),
    ("put_team", ("t", "0.3", "weekly"), {"timezone": "UTC"}),
    ("get_team", ("t",), {}),
    ("delete_team", ("t",), {}),
    ("list_teams", (2, "c"), {}),
    ("list_periods", ("u", 2, "c"), {}),
    ("spend_report", ("2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z"), {}),
    ("spend_report_csv", (), {"to": "2026-02-01T00:00:00Z"}),
    ("adjust", ("u", "-0.25", "refund"), {"model": "m", "idempotency_key": "ticket-1"}),
    ("ledger", ("u", 3, "c"), {}),
    ("put_price", ("m/x",), {"input": "0.000002", "output": 0.000008, "tiers": [{"above": 9, "input": "1"}]}),
    ("get_price", ("m",), {}),
    ("delete_price", ("m",), {}),
    ("list_prices", (), {}),
    ("litellm_get_budget", (), {}),
    ("litellm_set_budget", ({"alice": {"total_budget": 10, "current_cost": 0.5}},), {}),
]

RECORD = {
    "project": "acme",
    "user": "u",
    "model": "m",
    "total_budget": 10,
    "current_cost": 0.25,
    "cost": 0.1,
    "projected_cost": 0.2,
    "hold_id": "h1",
    "amount": 0.1,
    "status": "success",
    "data": {"u": {"total_budget": 10}},
}
PAGES = {"list_users": "users", "list_teams": "teams", "list_periods": "periods", "ledger": "entries"}


def public(cls) -> set[str]:
    """Public methods, and the context-manager protocol the class has."""
    protocols = {"__enter__", "__exit__", "__aenter__", "__aexit__"}
    return {name for name in dir(cls) if not name.startswith("_")} | (protocols & set(dir(cls)))


def endpoint_of(request: httpx.Request) -> routes.Endpoint:
    """The description a request was made from (by method, path template and Accept)."""
    path = request.url.raw_path.decode().split("?")[0].removeprefix("/Prod")
    found = [
        e
        for e in routes.ENDPOINTS
        if e.method == request.method
        and re.fullmatch(re.sub(r"\{\w+\}", "[^/]+", e.path), path)
        and ("Accept" in e.headers) == (request.headers.get("Accept") == "text/csv")
    ]
    assert len(found) == 1, (request.method, path, [e.name for e in found])
    return found[0]


class Recording:
    """A MockTransport handler (sync or async) that keeps each request and answers 200 with a
    body every result type can read."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def answer(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        name = endpoint_of(request).name
        if name in PAGES:
            return httpx.Response(200, json={PAGES[name]: [RECORD], "next_cursor": None})
        if name == "list_prices":
            return httpx.Response(200, json={"prices": [RECORD]})
        return httpx.Response(200, json=RECORD)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        return self.answer(request)


class AsyncRecording(Recording):
    async def __call__(self, request: httpx.Request) -> httpx.Response:
        return self.answer(request)


def wire(request: httpx.Request) -> tuple:
    return (request.method, str(request.url), sorted(request.headers.items()), request.content)


def test_the_async_client_has_every_public_method_of_the_sync_one_with_the_same_signature():
    assert {ASYNC_NAME.get(n, n) for n in public(BudgetClient)} == public(AsyncBudgetClient)
    for name in public(BudgetClient):
        sync, aio = getattr(BudgetClient, name), getattr(AsyncBudgetClient, ASYNC_NAME.get(name, name))
        sync_sig, async_sig = inspect.signature(sync), inspect.signature(aio)
        assert sync_sig.parameters == async_sig.parameters, name
        assert sync.__doc__ == aio.__doc__ or name in ASYNC_NAME, name
        if name == "iter_users":  # an async iterator of what the sync one yields
            assert inspect.isasyncgenfunction(aio) and not inspect.isasyncgenfunction(sync)
            (item,) = sync_sig.return_annotation.__args__
            assert sync_sig.return_annotation == Iterator[item]
            assert async_sig.return_annotation == AsyncIterator[item]
        elif name in ("guard", "for_project"):  # a guard or a client of the client's own kind
            assert not inspect.iscoroutinefunction(aio) and sync is aio
        else:
            assert inspect.iscoroutinefunction(aio) and not inspect.iscoroutinefunction(sync), name
            assert sync_sig.return_annotation == async_sig.return_annotation, name
        if name not in ASYNC_NAME and name != "for_project":
            assert sync.__doc__ and len(sync.__doc__) > 40, f"{name} needs a docstring"


def test_both_clients_send_identical_requests_and_read_identical_results(monkeypatch):
    monkeypatch.setattr(routes, "new_key", lambda: "generated-key")
    sync_calls, async_calls = Recording(), AsyncRecording()
    client = BudgetClient(
        "http://budget.test/Prod",
        "llmb_key",
        project="acme",
        http_client=httpx.Client(
            base_url="http://budget.test/Prod", transport=httpx.MockTransport(sync_calls)
        ),
    )
    aclient = AsyncBudgetClient(
        "http://budget.test/Prod",
        "llmb_key",
        project="acme",
        http_client=httpx.AsyncClient(
            base_url="http://budget.test/Prod", transport=httpx.MockTransport(async_calls)
        ),
    )
    assert {name for name, _, _ in CALLS} == public(BudgetClient) - NOT_REQUESTS - set(ASYNC_NAME)

    async def run_async(name: str, args: tuple, kwargs: dict):
        result = getattr(aclient, name)(*args, **kwargs)
        if isinstance(result, types.AsyncGeneratorType):
            return [item async for item in result]
        return await result

    used: dict[str, routes.Endpoint] = {}
    for name, args, kwargs in CALLS:
        before = len(sync_calls.requests)
        result = getattr(client, name)(*args, **kwargs)
        if isinstance(result, types.GeneratorType):
            result = list(result)
        assert asyncio.run(run_async(name, args, kwargs)) == result, name
        sent = sync_calls.requests[before:]
        assert [wire(r) for r in sent] == [wire(r) for r in async_calls.requests[before:]], name
        for request in sent:
            endpoint = used[name] = endpoint_of(request)
            # the errors particular to the request are the ones its docstring names
            for error_class in endpoint.errors:
                assert error_class.__name__ in getattr(BudgetClient, name).__doc__, (name, error_class)
    assert len(sync_calls.requests) == len(async_calls.requests)
    assert {e.name for e in used.values()} == {e.name for e in routes.ENDPOINTS}  # none unused
    # the wire form of a few, pinned: encoded ids, exact money, the keys
    first = sync_calls.requests[0]
    assert first.url.raw_path == b"/Prod/projects/acme/users/a%20b%2Fc"
    assert json.loads(first.content) == {
        "total_budget": 12.5,
        "duration": "monthly",
        "timezone": "Europe/Paris",
        "team": "t",
    }
    keys = [r.headers.get("Idempotency-Key") for r in sync_calls.requests if r.method == "POST"]
    assert {"generated-key", "chatcmpl-1", "ticket-1"} <= set(keys)


# ---- every description against openapi.json ------------------------------------------------------

OPENAPI = json.loads((ROOT / "openapi.json").read_text())
# Operations of openapi.json the client deliberately does not describe, with the reason. None
# today: every operation has a method on both clients.
EXCLUDED: dict[tuple[str, str], str] = {
    ("GET", "/projects/{project}/hold-sizing"): "a project setting an admin reads with curl, not a call path",
    (
        "PUT",
        "/projects/{project}/hold-sizing",
    ): "a project setting an admin sets once with curl, not a call path",
}


def operation(endpoint: routes.Endpoint) -> dict:
    return OPENAPI["paths"][endpoint.path][endpoint.method.lower()]


def resolve(schema: dict) -> dict:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = OPENAPI["components"]["schemas"][name]
    return schema


def parameters(op: dict, where: str) -> set[str]:
    return {
        p["name"].lower() if where == "header" else p["name"]
        for p in op.get("parameters", [])
        if p["in"] == where
    }


@pytest.mark.parametrize("endpoint", routes.ENDPOINTS, ids=lambda e: e.name)
def test_each_described_request_is_an_operation_of_openapi_json_as_described(endpoint):
    assert endpoint.path in OPENAPI["paths"], endpoint.path
    assert endpoint.method.lower() in OPENAPI["paths"][endpoint.path], (endpoint.method, endpoint.path)
    op = operation(endpoint)
    assert parameters(op, "path") == set(endpoint.path_params)
    assert set(endpoint.query) <= parameters(op, "query")
    assert {h.lower() for h in endpoint.headers} <= parameters(op, "header")
    assert endpoint.keyed == ("idempotency-key" in parameters(op, "header"))
    request = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
    if endpoint.body is None:
        assert request is None
    else:
        schema = resolve(request)
        sent = endpoint.body.__required_keys__ | endpoint.body.__optional_keys__
        assert sent <= set(schema["properties"]), sent - set(schema["properties"])
        assert set(schema.get("required", ())) <= endpoint.body.__required_keys__
    for error_class in endpoint.errors:  # each error it may raise is an answer the operation has
        assert str(error_class.status) in op["responses"], (endpoint.name, error_class)


def test_every_operation_of_openapi_json_is_described_or_excluded_with_a_reason():
    operations = {
        (method.upper(), path)
        for path, item in OPENAPI["paths"].items()
        for method in item
        if method in ("get", "put", "post", "delete", "patch")
    }
    described = {(e.method, e.path) for e in routes.ENDPOINTS}
    assert operations - described == set(EXCLUDED)
    assert not described - operations
    assert all(reason for reason in EXCLUDED.values())


def test_a_price_body_names_every_field_of_the_services_price():
    # put_price passes the caller's fields through; PriceBody is what they may be.
    schema = resolve(operation(routes.PUT_PRICE)["requestBody"]["content"]["application/json"]["schema"])
    assert routes.PriceBody.__required_keys__ | routes.PriceBody.__optional_keys__ == set(
        schema["properties"]
    )


# ---- 503 with Retry-After, as the service answers sustained write contention ------------------------


def contention_then_ok() -> list[httpx.Response]:
    busy = error(503, "write_contention_sustained", details={"outcome": "not_written"})
    busy.headers["Retry-After"] = "1"
    return [busy, httpx.Response(200, json=COST_ANSWER)]


@pytest.mark.parametrize(("jitter", "expected"), [("low", 1.0), ("high", 1.0 + FAST.base)])
def test_a_503_with_retry_after_is_retried_after_the_header_plus_a_bounded_jitter(
    monkeypatch, jitter, expected
):
    # The jitter is drawn from [0, backoff]: at its lowest the wait is the header's, never less.
    monkeypatch.setattr(_transport.random, "uniform", lambda low, high: low if jitter == "low" else high)
    waits: list[float] = []
    monkeypatch.setattr(_transport.time, "sleep", waits.append)
    sync_answers = Recorder(*contention_then_ok())
    assert client_with(sync_answers).record_cost("u", model="m", cost="0.1").cost == Decimal("0.1")

    async_waits: list[float] = []

    async def record_wait(seconds: float) -> None:
        async_waits.append(seconds)

    monkeypatch.setattr(_transport, "asyncio", types.SimpleNamespace(sleep=record_wait))
    async_answers = Recorder(*contention_then_ok())

    async def async_handler(request: httpx.Request) -> httpx.Response:
        return async_answers(request)

    http = httpx.AsyncClient(base_url="http://budget.test/Prod", transport=httpx.MockTransport(async_handler))
    aclient = AsyncBudgetClient("http://budget.test/Prod", project="acme", http_client=http, retry=FAST)
    assert asyncio.run(aclient.record_cost("u", model="m", cost="0.1")).cost == Decimal("0.1")

    assert waits == async_waits == [expected]
    for answers in (sync_answers, async_answers):
        first, second = answers.requests
        assert wire(first) == wire(second)  # the same request, its Idempotency-Key included


def test_retry_after_waits_are_bounded_per_wait_and_in_number(monkeypatch):
    waits: list[float] = []
    monkeypatch.setattr(_transport.time, "sleep", waits.append)
    busy = [error(503, "service_unavailable", headers={"Retry-After": "5"}) for _ in range(FAST.attempts)]
    handler = Recorder(*busy)
    with pytest.raises(Unavailable) as caught:
        client_with(handler).get_user("u")
    assert caught.value.retry_after == 5.0 and len(handler.requests) == FAST.attempts
    assert len(waits) == FAST.attempts - 1
    assert all(5.0 <= w <= 5.0 + FAST.max_backoff for w in waits)
