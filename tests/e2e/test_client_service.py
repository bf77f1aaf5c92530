"""The Python client (client/, llm_budget) against `make dev`'s server, with the real, pinned
litellm answering from `mock_response` (no network).

- every route the client has, end to end, with Decimal money;
- the drop-in BudgetManager through litellm's own hosted scenario (create, update, a second
  instance sees it), and 16 processes updating one user ending with the exact sum;
- the litellm callback in the SDK: litellm's cost recorded once per response, even logged twice;
- holds: the callback's LiteLLM Proxy hooks (refuse over budget, admit what fits, a failed call
  leaves nothing held), and `guard` under 32 concurrent tasks never admitting past the cap.
"""

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from decimal import Decimal

import litellm
import pytest
from conftest import wait_until
from litellm.integrations.custom_logger import CustomLogger

from llm_budget import (
    AsyncBudgetClient,
    BudgetClient,
    BudgetExceeded,
    BudgetManager,
    BudgetNotFound,
    UnknownModel,
)
from llm_budget.litellm import HOLD_METADATA_KEY, BudgetCallback, BudgetRefused
from localdev.ready_time import ServerProcess
from localdev.template import ROOT

MODEL = "gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "Summarise the quarterly budget report in one line."}]


@pytest.fixture(scope="module")
def url():
    proc = ServerProcess()
    try:
        proc.wait_ready()
        yield proc.url
    finally:
        proc.close()


@pytest.fixture
def project():
    return f"client-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def client(url, project):
    with BudgetClient(url, project=project) as c:
        yield c


async def until(condition, timeout: float = 30.0):
    """``wait_until`` inside an event loop: litellm logs async calls from a worker on the loop
    that made the call, so the loop must keep running until the callback has done its part."""
    deadline = time.monotonic() + timeout
    while True:
        result = await asyncio.to_thread(condition)
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.05)


def litellm_cost(response) -> Decimal:
    """litellm's own price for a response, as the exact decimal of the float it returns."""
    return Decimal(repr(litellm.completion_cost(completion_response=response)))


# ---- the native routes -------------------------------------------------------------------------


def test_budget_routes_round_trip_with_decimal_money(client):
    created = client.put_user("alice", "12.5", "monthly", timezone="Europe/Paris")
    assert created.created is True and created.total_budget == Decimal("12.5")
    assert client.put_user("alice", "12.5", "monthly", timezone="Europe/Paris").created is False
    for amount in ["0.1", "0.2"]:
        result = client.record_cost("alice", model="my-finetune", cost=amount)
        assert result.cost == Decimal(amount) and not result.replayed
    budget = client.get_user("alice")
    # 0.1 + 0.2 in floats is 0.30000000000000004: no float arithmetic on the way, either side.
    assert budget.current_cost == Decimal("0.3")
    assert budget.model_cost == {"my-finetune": Decimal("0.3")}
    assert budget.remaining == Decimal("12.5") - budget.current_cost
    assert budget.timezone == "Europe/Paris" and budget.reset_at > budget.period_start

    usage = client.record_cost("alice", model=MODEL, usage={"prompt_tokens": 1000, "completion_tokens": 100})
    assert usage.priced_as == MODEL and usage.tokens.prompt_tokens == 1000
    text = client.record_cost("alice", model=MODEL, input_text="Hello there", output_text="Hi")
    assert text.tokens.prompt_tokens > 0
    projection = client.projected_cost("alice", model=MODEL, messages=MESSAGES, max_tokens=100)
    assert projection.projected_cost == projection.prompt_cost + projection.completion_cost
    assert projection.within_budget is True

    client.put_user("bob", 1)
    assert sorted(b.user for b in client.iter_users(page_size=1)) == ["alice", "bob"]  # paged
    assert client.reset_user("alice").current_cost == 0
    client.delete_user("bob")
    with pytest.raises(BudgetNotFound):
        client.get_user("bob")
    with pytest.raises(UnknownModel):
        client.record_cost("alice", model="no-such-model-xyz", usage={"prompt_tokens": 1})


def test_a_cost_replayed_with_its_key_is_charged_once(client):
    client.put_user("alice", 5)
    first = client.record_cost("alice", model="m", cost="0.25", idempotency_key="chatcmpl-abc")
    again = client.record_cost("alice", model="m", cost="0.25", idempotency_key="chatcmpl-abc")
    assert (first.replayed, again.replayed) == (False, True)
    assert client.get_user("alice").current_cost == Decimal("0.25")


def test_litellm_compat_routes(client, project):
    assert client.litellm_get_budget() == {}  # an unknown project: nothing stored yet
    entry = {"total_budget": 3.0, "current_cost": 0.5, "model_cost": {MODEL: 0.5}}
    result = client.litellm_set_budget({"carol": entry})
    assert result.written == ["carol"]
    stored = client.litellm_get_budget()["carol"]
    assert stored["current_cost"] == Decimal("0.5") and stored["total_budget"] == 3


def test_async_client_does_the_same(url, project):
    async def scenario():
        async with AsyncBudgetClient(url, project=project) as c:
            await c.put_user("dora", 2, "daily")
            await asyncio.gather(*(c.record_cost("dora", model="m", cost="0.01") for _ in range(20)))
            users = [b.user async for b in c.iter_users()]
            return await c.get_user("dora"), users

    budget, users = asyncio.run(scenario())
    assert budget.current_cost == Decimal("0.20") and users == ["dora"]


# ---- drop-in BudgetManager ----------------------------------------------------------------------

DURATIONS = ["daily", "weekly", "monthly", "yearly", None]


def spend(manager, user: str, n: int = 1) -> list[Decimal]:
    costs = []
    for i in range(n):
        answer = manager.update_cost(
            user=user,
            model=MODEL,
            input_text=f"Summarise the budget report number {i} in one line, please.",
            output_text="Spend is within budget for every user this month." * (i + 1),
        )
        costs.append(answer["user"]["cost"])
    return costs


def test_drop_in_budget_manager_passes_litellms_hosted_scenario(url, project):
    # tests/e2e/test_litellm_hosted.py's scenario, with only the import changed.
    first = BudgetManager(project_name=project, client_type="hosted", api_base=url)
    assert first.get_users() == []
    for duration in DURATIONS:
        entry = first.create_budget(total_budget=10.0, user=f"user-{duration}", duration=duration)
        assert entry["total_budget"] == 10
    spent = {f"user-{d}": sum(spend(first, f"user-{d}", n=2), Decimal(0)) for d in DURATIONS}
    assert first.save_data() == {"status": "success"}  # nothing left to save

    response = litellm.completion(model=MODEL, messages=MESSAGES, mock_response="Within budget.")
    first.update_cost(user="user-daily", completion_obj=response)
    first.update_cost(user="user-daily", completion_obj=response)  # the same response: once
    spent["user-daily"] += litellm_cost(response)

    second = BudgetManager(project_name=project, client_type="hosted", api_base=url)
    assert sorted(second.get_users()) == sorted(first.get_users()) == sorted(spent)
    for duration in DURATIONS:
        user = f"user-{duration}"
        assert second.get_total_budget(user) == 10
        assert second.get_current_cost(user) == first.get_current_cost(user)
        assert second.get_current_cost(user) == pytest.approx(spent[user], abs=Decimal("1e-12"))
        assert second.is_valid_user(user)
    assert second.get_model_cost("user-weekly") == {MODEL: spent["user-weekly"]}
    assert not second.is_valid_user("nobody")
    with pytest.raises(KeyError):
        second.get_total_budget("nobody")  # as litellm's dict lookup raises

    # The second instance keeps spending from where the first left off; the first sees it.
    before = first.get_current_cost("user-daily")
    spend(second, "user-daily")
    assert first.get_current_cost("user-daily") > before
    projected = second.projected_cost(MODEL, MESSAGES, "user-daily")
    assert projected > second.get_current_cost("user-daily")
    # litellm's whole-dict view still reads (e.g. for code that looks at user_dict)
    assert second.user_dict["user-weekly"]["duration"] == 7
    second.reset_cost("user-daily")
    assert first.get_current_cost("user-daily") == 0


WORKER = """
import json, os, sys, time
from llm_budget import BudgetManager
url, project, user, go, n = sys.argv[1:6]
manager = BudgetManager(project_name=project, client_type="hosted", api_base=url)
deadline = time.monotonic() + 60
while not os.path.exists(go):  # start together
    if time.monotonic() > deadline:
        sys.exit("never told to go")
    time.sleep(0.01)
costs = []
for i in range(int(n)):
    answer = manager.update_cost(user=user, model="gpt-4o-mini", input_text=f"question {i} " * (i + 1),
                                 output_text=f"answer {os.getpid()} " * (i + 2))
    costs.append(str(answer["user"]["cost"]))
print(json.dumps(costs))
"""


def test_16_processes_updating_one_user_end_with_the_exact_sum(url, project, client, tmp_path):
    processes, updates = 16, 8
    client.put_user("hot", 1000)
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "client" / "src")}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, url, project, "hot", str(go), str(updates)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(processes)
    ]
    go.touch()
    charged = []
    for worker in workers:
        out, err = worker.communicate(timeout=240)
        assert worker.returncode == 0, err
        charged += [Decimal(c) for c in json.loads(out)]
    assert len(charged) == processes * updates
    budget = client.get_user("hot")
    assert budget.current_cost == sum(charged, Decimal(0))
    assert budget.model_cost == {MODEL: budget.current_cost}


# ---- the litellm callback in the SDK -------------------------------------------------------------


class Recorder(CustomLogger):
    """Keeps what litellm hands its loggers, to log the same response a second time."""

    def __init__(self):
        super().__init__()
        self.events = []

    def log_success_event(self, kwargs, response_obj, start_time, end_time):
        self.events.append((kwargs, response_obj))

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        self.events.append((kwargs, response_obj))


@pytest.fixture
def callbacks():
    """Sets litellm.callbacks for one test; afterwards removes them from every list litellm
    copied them into (litellm promotes them to its success and failure lists on first use)."""
    saved, installed = list(litellm.callbacks), []

    def install(*cbs):
        installed.extend(cbs)
        litellm.callbacks = list(cbs)

    yield install
    for cb in installed:
        litellm.logging_callback_manager.remove_callback_from_all_lists(cb)
    litellm.callbacks = saved


def test_sdk_callback_records_litellms_cost_once_per_response(url, project, client, callbacks):
    client.put_user("alice", 10)
    client.put_user("bob", 10)
    callback, recorder = BudgetCallback(api_base=url, project=project), Recorder()
    callbacks(callback, recorder)
    expected = Decimal(0)
    for i, reply in enumerate(["Short.", "A longer answer " * 20, "Medium answer " * 5]):
        response = litellm.completion(
            model=MODEL, messages=MESSAGES, mock_response=reply, user="alice", max_tokens=10 * (i + 1)
        )
        expected += litellm_cost(response)
        wait_until(lambda: client.get_user("alice").current_cost == expected)  # noqa: B023
    assert expected > 0
    assert client.get_user("alice").model_cost == {MODEL: expected}

    # The same response logged again (a duplicate logging path, a retried hook) is not charged.
    wait_until(lambda: len(recorder.events) == 3)
    kwargs, response = recorder.events[-1]
    callback.log_success_event(kwargs, response, None, None)
    assert client.get_user("alice").current_cost == expected

    # Async: the user named in metadata, logged through the async hook, twice.
    async def call():
        response = await litellm.acompletion(
            model=MODEL, messages=MESSAGES, mock_response="Async.", metadata={"budget_user": "bob"}
        )
        cost = litellm_cost(response)
        await until(lambda: client.get_user("bob").current_cost == cost)
        kwargs, logged = await until(
            lambda: next((e for e in recorder.events if e[1].id == response.id), None)
        )
        await callback.async_log_success_event(kwargs, logged, None, None)
        return cost

    cost = asyncio.run(call())
    assert client.get_user("bob").current_cost == cost
    assert client.get_user("alice").current_cost == expected


def test_sdk_callback_with_service_pricing_and_without_a_user(url, project, client, callbacks):
    client.put_user("erin", 10)
    callback = BudgetCallback(api_base=url, project=project, price_with="service")
    callbacks(callback)
    response = litellm.completion(
        model=MODEL, messages=MESSAGES, mock_response="Priced by the service.", user="erin"
    )
    wait_until(lambda: client.get_user("erin").current_cost > 0)
    assert client.get_user("erin").current_cost == pytest.approx(litellm_cost(response), abs=Decimal("1e-12"))
    # A call that names no user is not recorded (and does not fail the call).
    litellm.completion(model=MODEL, messages=MESSAGES, mock_response="Nobody's.")
    assert [b.user for b in client.iter_users()] == ["erin"]


# ---- holds: the LiteLLM Proxy hooks and guard -----------------------------------------------------


def proxy_request(user: str, max_tokens: int) -> dict:
    """The request dict LiteLLM Proxy hands async_pre_call_hook for a chat completion."""
    return {
        "model": MODEL,
        "messages": MESSAGES,
        "max_tokens": max_tokens,
        "user": user,
        "litellm_call_id": str(uuid.uuid4()),
        "metadata": {"user_api_key_hash": "hashed"},
    }


async def proxy_call(callback, data: dict, mock_response) -> object:
    """What the proxy does after the hook: the litellm call with the hook's data."""
    from litellm.caching.dual_cache import DualCache
    from litellm.proxy._types import UserAPIKeyAuth

    data = await callback.async_pre_call_hook(
        UserAPIKeyAuth(api_key="sk-test"), DualCache(), data, "completion"
    )
    return await litellm.acompletion(
        model=data["model"],
        messages=data["messages"],
        max_tokens=data["max_tokens"],
        user=data["user"],
        metadata=data["metadata"],
        litellm_call_id=data["litellm_call_id"],
        mock_response=mock_response,
    )


def test_proxy_hook_refuses_over_budget_admits_what_fits_and_a_failure_holds_nothing(
    url, project, client, callbacks
):
    # Room for one hold of 300 output tokens of gpt-4o-mini (~$0.00018), not for 100,000 (~$0.06).
    client.put_user("carol", "0.001")
    callback = BudgetCallback(api_base=url, project=project)
    callbacks(callback)

    with pytest.raises(litellm.BudgetExceededError) as refused:
        asyncio.run(proxy_call(callback, proxy_request("carol", 100_000), "never called"))
    assert isinstance(refused.value, BudgetRefused)
    assert [level.level for level in refused.value.levels] == ["user"]
    assert refused.value.levels[0].available == Decimal("0.001")
    budget = client.get_user("carol")
    assert (budget.held, budget.current_cost) == (0, 0)  # a refusal writes nothing

    async def fits():
        data = proxy_request("carol", 300)
        response = await proxy_call(callback, data, "It fits.")
        assert data["metadata"][HOLD_METADATA_KEY]["user"] == "carol"
        cost = litellm_cost(response)
        await until(lambda: (b := client.get_user("carol")).held == 0 and b.current_cost == cost)
        return cost

    cost = asyncio.run(fits())

    async def fails():
        # A failed call: the hold is released, nothing charged, nothing left held.
        data = proxy_request("carol", 300)
        with pytest.raises(Exception, match="provider down"):
            await proxy_call(callback, data, Exception("provider down"))
        assert HOLD_METADATA_KEY in data["metadata"]  # it was held before the call
        await until(lambda: client.get_user("carol").held == 0)

    asyncio.run(fails())
    budget = client.get_user("carol")
    assert budget.current_cost == cost and budget.available == Decimal("0.001") - cost

    # A user with no budget is refused, not admitted unmetered.
    with pytest.raises(BudgetRefused):
        asyncio.run(proxy_call(callback, proxy_request("stranger", 10), "never called"))


def test_guard_under_32_concurrent_tasks_never_admits_past_the_cap(url, project, client):
    client.put_user("hot", "1.00")
    tasks, hold = 32, Decimal("0.10")

    async def scenario():
        attempted, admitted, refused = [0], [], []
        everyone_tried = asyncio.Event()

        async def task(i: int, c: AsyncBudgetClient) -> None:
            try:
                async with c.guard("hot", amount=hold) as guard:
                    attempted[0] += 1
                    if attempted[0] == tasks:
                        everyone_tried.set()
                    admitted.append(i)
                    # Hold on until every task has tried: all admitted holds are live at once.
                    await asyncio.wait_for(everyone_tried.wait(), timeout=60)
                    await guard.settle(model=MODEL, cost=hold)
            except BudgetExceeded as exc:
                attempted[0] += 1
                if attempted[0] == tasks:
                    everyone_tried.set()
                refused.append(exc)

        async with AsyncBudgetClient(url, project=project) as c:
            await asyncio.gather(*(task(i, c) for i in range(tasks)))
        return admitted, refused

    admitted, refused = asyncio.run(scenario())
    assert len(admitted) == 10 and len(refused) == 22
    assert all(exc.levels and exc.levels[0].available < hold for exc in refused)
    budget = client.get_user("hot")
    assert budget.current_cost == Decimal("1.00") and budget.held == 0


def test_guard_with_litellm_calls_settles_their_cost_and_releases_on_error(url, project, client):
    client.put_user("gwen", "0.002")
    max_tokens = 1000  # each hold ~$0.0006: three fit, the rest are refused until one settles

    async def scenario():
        outcomes = []

        async def task(c: AsyncBudgetClient) -> None:
            try:
                async with c.guard("gwen", model=MODEL, messages=MESSAGES, max_tokens=max_tokens) as guard:
                    response = await litellm.acompletion(
                        model=MODEL, messages=MESSAGES, max_tokens=max_tokens, mock_response="Guarded."
                    )
                    await guard.settle(response)
                    outcomes.append(litellm_cost(response))
            except BudgetExceeded:
                outcomes.append(None)

        async with AsyncBudgetClient(url, project=project) as c:
            await asyncio.gather(*(task(c) for _ in range(32)))
        return outcomes

    outcomes = asyncio.run(scenario())
    charged = [o for o in outcomes if o is not None]
    budget = client.get_user("gwen")
    assert charged and None in outcomes
    assert budget.current_cost == pytest.approx(sum(charged, Decimal(0)), abs=Decimal("1e-12"))
    assert budget.current_cost <= budget.total_budget and budget.held == 0

    # sync guard: an exception releases; a block that never settles is charged what it held
    with pytest.raises(RuntimeError):
        with client.guard("gwen", amount="0.0001"):
            raise RuntimeError("the call failed")
    assert client.get_user("gwen").held == 0
    before = client.get_user("gwen").current_cost
    with client.guard("gwen", amount="0.0001") as guard:
        pass
    assert guard.settlement.cost == Decimal("0.0001")
    assert client.get_user("gwen").current_cost == before + Decimal("0.0001")


# ---- levels, prices and history ----------------------------------------------------------------


def test_levels_refuse_a_hold_naming_the_level_and_move_together(client):
    project = client.put_project_budget(
        "1.00", "monthly", default_user_budget={"total_budget": "0.50", "duration": "daily"}
    )
    assert project.total_budget == Decimal("1.00") and project.default_user_budget.total_budget == Decimal(
        "0.50"
    )
    team = client.put_team("research", "0.30", "monthly")
    assert team.team == "research"
    client.put_user("ann", "10", team="research")
    with pytest.raises(BudgetExceeded) as refused:
        client.hold("ann", amount="0.40")  # fits ann (10), not her team (0.30)
    assert [(lvl.level, lvl.name) for lvl in refused.value.levels] == [("team", "research")]
    assert refused.value.levels[0].available == Decimal("0.30")
    client.record_cost("ann", model="m", cost="0.10")
    assert client.get_team("research").current_cost == Decimal("0.10")
    assert client.get_project_budget().current_cost == Decimal("0.10")
    assert [t.team for t in client.list_teams().items] == ["research"]
    # a user the project has not seen gets the default budget on first spend
    client.record_cost("newcomer", model="m", cost="0.01")
    assert client.get_user("newcomer").total_budget == Decimal("0.50")
    client.delete_user("ann")
    client.delete_team("research")
    client.delete_project_budget()
    with pytest.raises(BudgetNotFound):
        client.get_project_budget()


def test_a_project_price_wins_for_its_project_until_deleted(client):
    created = client.put_price("my-finetune", input="0.000002", output="0.000008")
    assert created.created is True and created.price["input"] == Decimal("0.000002")
    assert [p.model for p in client.list_prices()] == ["my-finetune"]
    client.put_user("pat", 10)
    result = client.record_cost(
        "pat", model="my-finetune", usage={"prompt_tokens": 1000, "completion_tokens": 100}
    )
    assert result.cost == Decimal("0.0028") and result.priced_as == created.priced_as
    client.delete_price("my-finetune")
    with pytest.raises(UnknownModel):
        client.record_cost("pat", model="my-finetune", usage={"prompt_tokens": 1})


def test_adjustments_apply_once_and_periods_and_ledger_read_back(client):
    client.put_user("quinn", 10, "monthly")
    client.record_cost("quinn", model="m", cost="1.00")
    first = client.adjust("quinn", "-0.25", "refund of a failed call", idempotency_key="ticket-1")
    again = client.adjust("quinn", "-0.25", "refund of a failed call", idempotency_key="ticket-1")
    assert not first.replayed and again.replayed
    assert client.get_user("quinn").current_cost == Decimal("0.75")
    client.reset_user("quinn")
    periods = client.list_periods("quinn").items
    assert len(periods) >= 2 and any(p.spend == Decimal("0.75") for p in periods)
    assert client.ledger("quinn").items
    assert client.spend_report().extra or client.spend_report().total is not None
    assert "quinn" in client.spend_report_csv()


# ---- the docs' client snippets run as written -----------------------------------------------------

# The pages whose ```python blocks are client snippets, in the order they run.
SNIPPET_PAGES = ["docs/guide/python-client.md", "docs/guide/litellm.md"]


def readme_snippets() -> list[str]:
    """Every ```python block of the client's docs pages, in page order."""
    blocks = []
    for page in SNIPPET_PAGES:
        text = (ROOT / page).read_text()
        blocks += [block.split("```", 1)[0] for block in text.split("```python\n")[1:]]
    return blocks


def test_readme_client_snippets_run_against_the_local_server(url):
    snippets = readme_snippets()
    assert len(snippets) == 5
    # Each snippet in its own namespace, in one process (litellm is imported once), as written
    # but for the server's address.
    script = "import sys\nfor code in sys.argv[1:]:\n    exec(compile(code, 'docs', 'exec'), {})\n"
    run = subprocess.run(
        [sys.executable, "-c", script, *(s.replace("http://127.0.0.1:3000", url) for s in snippets)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "charged" in run.stdout
    acme = BudgetClient(url, project="acme")
    assert acme.get_user("alice").current_cost > 0
    assert acme.get_user("bob").current_cost > 0 and acme.get_user("bob").held == 0
    wait_until(lambda: acme.get_user("carol").current_cost > 0)  # the callback's record
    assert BudgetClient(url, project="my-app").get_user("alice@example.com").current_cost > 0


def test_the_client_readme_example_runs_against_the_local_server(url):
    text = (ROOT / "client" / "README.md").read_text()
    (example,) = [block.split("```", 1)[0] for block in text.split("```python\n")[1:]]
    run = subprocess.run(
        [sys.executable, "-c", example.replace("http://127.0.0.1:3000", url)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    spend, refusal = run.stdout.splitlines()
    budget = BudgetClient(url, project="acme").get_user("dana")
    assert spend.split() == [str(budget.current_cost), str(budget.remaining), str(budget.available)]
    assert budget.current_cost > 0 and budget.held == 0  # the refused hold wrote nothing
    assert refusal == str([("user", budget.available)])
