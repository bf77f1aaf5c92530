"""The real, pinned litellm BudgetManager(client_type="hosted") across period boundaries.

The local server (``make dev``'s, as a subprocess) runs on its shifted clock, frozen where the test
puts it (``POST /_local/clock``); litellm's ``time.time()`` is patched to read the same instant,
so client and server agree on what time it is, as two machines with synchronised clocks would.
Boundaries: every month end of 2027 (common year) and 2028 (leap year), year ends, a week end, and
the first and last midnight of the days DST starts and ends in America/New_York, Europe/Paris and
America/Santiago (where 2027-09-05 00:00 does not exist: the day starts at 01:00), for native
calendar budgets and for litellm's own rolling budgets.

Two clients per case: ``a`` saves after every change, as litellm does (its background save, run
here in line so each step is deterministic); ``b`` was loaded earlier and saves only when told to
(a client whose saves land late). After every step:

* the stored rule (duration label, timezone) is the one the budget was created with;
* the period is the one the rule puts now in (calendar), or a window of the rule's length that
  contains now (rolling: a client's reset may restart it, as litellm's rule says);
* no spend recorded in the current period is missing: for each client, the spend it recorded at
  or after the period's start, while its own period was still running (as litellm reckons it:
  ``now - last_updated_at < duration``), and that it has saved, is in the stored spend (per model
  and in total);
* ``current_cost >= sum(model_cost)``;
* every number in the JSON answers and the label is in plain notation.

Spend a client records after its own period ended and before it ran its reset belongs, in
litellm's own rule, to that ended period (its next reset drops it); the server does the same.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from types import SimpleNamespace
from unittest import mock

import litellm.budget_manager
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litellm import BudgetManager

from budget_service.core.periods import Duration, calendar_period
from localdev.ready_time import ServerProcess

MODELS = ("gpt-4o-mini", "gpt-4o")
LITELLM_DAYS = {"daily": 1, "weekly": 7, "monthly": 28, "yearly": 365}
UTC = dt.UTC


def epoch(text: str) -> int:
    return int(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


@dataclass(frozen=True)
class Case:
    """One budget and one boundary to cross: `boundary` and `next_boundary` are epoch seconds."""

    name: str
    duration: str  # daily/weekly/monthly/yearly
    timezone: str | None
    rolling: bool  # created by litellm's create_budget (rolling days) instead of the native PUT
    boundary: int
    next_boundary: int

    @property
    def label(self) -> str:
        return f"rolling:{LITELLM_DAYS[self.duration]}d" if self.rolling else self.duration


def _calendar_case(name: str, duration: str, timezone: str | None, inside: str) -> Case:
    """The boundary that ends the period containing the instant `inside`, and the next one."""
    rule = Duration(duration)
    period = calendar_period(rule, timezone, Decimal(epoch(inside)))
    following = calendar_period(rule, timezone, period.end)
    return Case(name, duration, timezone, False, int(period.end), int(following.end))


def _rolling_case(name: str, duration: str, boundary: str) -> Case:
    days = LITELLM_DAYS[duration] * 86400
    return Case(name, duration, None, True, epoch(boundary), epoch(boundary) + days)


CASES = (
    # every month end of a common year and of a leap year (December's is the year end)
    [
        _calendar_case(f"monthly-{y}-{m:02d}", "monthly", None, f"{y}-{m:02d}-15T12:00:00Z")
        for y in (2027, 2028)
        for m in range(1, 13)
    ]
    + [_calendar_case(f"yearly-{y}", "yearly", None, f"{y}-06-01T00:00:00Z") for y in (2027, 2028)]
    + [_calendar_case("weekly-2027-03", "weekly", None, "2027-03-03T12:00:00Z")]
    # the days DST starts and ends, both of their midnights, in three zones
    + [
        _calendar_case(f"daily-{zone}-{inside}", "daily", zone, inside)
        for zone, days in {
            "America/New_York": ("2027-03-14", "2027-11-07"),
            "Europe/Paris": ("2027-03-28", "2027-10-31"),
            "America/Santiago": ("2027-04-04", "2027-09-05"),
        }.items()
        for day in days
        for inside in (
            # the day before (its end is the DST day's first midnight), and the DST day itself
            (dt.date.fromisoformat(day) - dt.timedelta(days=1)).isoformat() + "T18:00:00Z",
            day + "T18:00:00Z",
        )
    ]
    + [
        _calendar_case("weekly-Santiago-dst", "weekly", "America/Santiago", "2027-09-01T12:00:00Z"),
        _calendar_case("monthly-Paris-dst", "monthly", "Europe/Paris", "2027-10-15T12:00:00Z"),
    ]
    # litellm's own rolling budgets (create_budget's words: 1, 7, 28, 365 days)
    + [
        _rolling_case(f"rolling-{d}-{b[:10]}", d, b)
        for d, b in (
            ("daily", "2027-03-01T00:00:00Z"),
            ("weekly", "2027-12-27T00:00:00Z"),
            ("monthly", "2028-02-29T00:00:00Z"),
            ("yearly", "2029-01-01T00:00:00Z"),
        )
    ]
)


class Clock:
    """The instant shared by the test process (litellm's time.time) and the server."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.now = 0.0

    def set(self, instant: float) -> None:
        if instant == self.now:
            return  # frozen there already
        text = dt.datetime.fromtimestamp(instant, UTC).isoformat().replace("+00:00", "Z")
        reply = requests.post(self.url + "/_local/clock", json={"now": text, "frozen": True}, timeout=10)
        reply.raise_for_status()
        assert reply.json()["epoch"] == pytest.approx(instant, abs=1e-3)
        self.now = instant

    def time(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def server():
    proc = ServerProcess(env={"LOCAL_CLOCK_START": "2027-01-01T00:00:00Z", "LOCAL_CLOCK_FROZEN": "1"})
    try:
        proc.wait_ready()
        clock = Clock(proc.url)
        # litellm reads time.time() through its module's `time`; its saves run in a thread
        # (_save_data_thread): run them in line, or not at all for a client whose saves are late.
        with (
            mock.patch.object(litellm.budget_manager, "time", SimpleNamespace(time=clock.time)),
            mock.patch.object(BudgetManager, "_save_data_thread", _save_in_line),
        ):
            yield proc.url, clock
    finally:
        proc.close()


def _save_in_line(self: BudgetManager) -> None:
    harness = getattr(self, "harness", None)
    if harness is None or harness.autosave:
        self.save_data()


@dataclass
class Spend:
    at: float
    model: str
    cost: float
    in_period: bool  # recorded while the client's own period was running
    in_view: bool = True  # still part of the client's current_cost (no reset since)
    saved: bool = False


@dataclass
class Client:
    """A BudgetManager and the spend it recorded, for the "nothing missing" check."""

    name: str
    manager: BudgetManager
    user: str
    autosave: bool
    spends: list[Spend] = field(default_factory=list)
    replies: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.manager.harness = self
        original = self.manager.save_data

        def save_data():
            reply = original()
            self.replies.append(reply)
            for s in self.spends:
                s.saved = s.saved or s.in_view
            return reply

        self.manager.save_data = save_data

    @property
    def entry(self) -> dict:
        return self.manager.user_dict[self.user]

    def _running(self, now: float) -> bool:
        entry = self.entry
        return now - entry["last_updated_at"] < entry["duration"] * 86400

    def _after(self, before: float) -> None:
        if self.entry["last_updated_at"] != before:  # the client reset its period
            for s in self.spends:
                s.in_view = False

    def update_cost(self, now: float, model: str, n: int) -> None:
        before = self.manager.user_dict[self.user].get("current_cost", 0)
        spend = Spend(now, model, 0.0, self._running(now))
        self.spends.append(spend)
        self.manager.update_cost(
            user=self.user,
            model=model,
            input_text=f"Summarise budget report {n} for {self.user}.",
            output_text="Spend is within budget this period. " * (1 + n % 3),
        )
        spend.cost = self.entry["current_cost"] - before
        assert spend.cost > 0
        if self.autosave:
            spend.saved = True

    def update_budget_all_users(self) -> None:
        before = self.entry["last_updated_at"]
        self.manager.update_budget_all_users()
        self._after(before)

    def reset_on_duration(self) -> None:
        before = self.entry["last_updated_at"]
        self.manager.reset_on_duration(self.user)
        self._after(before)

    def save(self) -> None:
        self.manager.save_data()


def _plain(text: str) -> None:
    """Every number token in the JSON text is in plain notation."""

    def number(token: str) -> Decimal:
        assert "e" not in token.lower(), f"{token} in exponent notation: {text[:300]}"
        return Decimal(token)

    json.loads(text, parse_float=number, parse_int=number)


def check(url: str, case: Case, project: str, user: str, clients: list[Client], now: float) -> None:
    response = requests.get(f"{url}/projects/{project}/users/{user}", timeout=10)
    assert response.status_code == 200, response.text
    _plain(response.text)
    record = json.loads(response.text, parse_float=Decimal)
    assert "e" not in record["duration"].removeprefix("rolling:").lower() or not case.rolling
    # the rule is the one the budget was created with
    assert (record["duration"], record["timezone"]) == (case.label, case.timezone), case
    start, end = _iso_epoch(record["period_start"]), _iso_epoch(record["reset_at"])
    # the period is the one the rule puts now in
    if case.rolling:
        assert start <= now < end and end - start == LITELLM_DAYS[case.duration] * 86400
    else:
        period = calendar_period(Duration(case.duration), case.timezone, Decimal(repr(now)))
        assert (start, end) == (period.start, period.end), (record, now)
    # current_cost covers its models
    models: dict[str, Decimal] = record["model_cost"]
    slack = Decimal("1e-12")
    assert record["current_cost"] + slack >= sum(models.values(), Decimal(0))
    # no spend recorded (and saved) in the current period is missing
    for client in clients:
        owed: dict[str, Decimal] = {}
        for s in client.spends:
            if s.saved and s.in_period and Decimal(repr(s.at)) >= start:
                owed[s.model] = owed.get(s.model, Decimal(0)) + Decimal(repr(s.cost))
        for model, cost in owed.items():
            assert models.get(model, Decimal(0)) + slack >= cost, (client.name, model, record)
        assert record["current_cost"] + slack >= sum(owed.values(), Decimal(0)), (client.name, record)
    # every set_budget answer in plain notation (and get_budget's, at the end of each run)
    for client in clients:
        for reply in client.replies:
            assert reply["status"] == "success", reply
            _plain(json.dumps(reply))


def _iso_epoch(text: str) -> Decimal:
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return Decimal(int(moment.timestamp())) + Decimal(moment.microsecond) / 10**6


# The instants a case's steps happen at, relative to its boundaries.
def _points(case: Case) -> list[float]:
    b, n = case.boundary, case.next_boundary
    return [b - 1800, b - 1, b, b + 30, b + 600, n - 1, n, n + 45]


ACTIONS = ("cost_a", "cost_b", "all_a", "all_b", "one_a", "one_b", "save_a", "save_b")


def run(url: str, clock: Clock, case: Case, steps: list[tuple[int, str]]) -> list[Client]:
    project, user = f"edge-{uuid.uuid4().hex[:10]}", "bob"
    clock.set(case.boundary - 3600)
    if case.rolling:
        creator = BudgetManager(project_name=project, client_type="hosted", api_base=url)
        creator.create_budget(
            total_budget=50.0,
            user=user,
            duration=case.duration,
            created_at=case.boundary - LITELLM_DAYS[case.duration] * 86400,
        )
    else:
        body = {"total_budget": 50, "duration": case.duration, "timezone": case.timezone}
        assert requests.put(f"{url}/projects/{project}/users/{user}", json=body, timeout=10).ok
    # b loads first and saves late; a loads next and saves every change
    b = Client("b", BudgetManager(project_name=project, client_type="hosted", api_base=url), user, False)
    a = Client("a", BudgetManager(project_name=project, client_type="hosted", api_base=url), user, True)
    clients = [a, b]
    points = _points(case)
    check(url, case, project, user, clients, clock.now)
    for n, (index, action) in enumerate(steps):
        clock.set(points[index])
        client = a if action.endswith("_a") else b
        if action.startswith("cost"):
            client.update_cost(clock.now, MODELS[n % 2 if client is a else (n + 1) % 2], n)
        elif action.startswith("all"):
            client.update_budget_all_users()
        elif action.startswith("one"):
            client.reset_on_duration()
        else:
            client.save()
        check(url, case, project, user, clients, clock.now)
    loaded = requests.post(url + "/get_budget", json={"project_name": project}, timeout=10)
    _plain(loaded.text)
    return clients


# litellm's documented pattern on both sides of each boundary, and b's late saves.
SCRIPT = [
    (0, "cost_a"),
    (0, "cost_b"),
    (1, "all_a"),  # before the boundary (no reset yet)
    (2, "all_a"),
    (3, "cost_a"),  # a resets at the boundary and spends
    (4, "cost_b"),
    (4, "save_b"),  # b (loaded earlier) spends without a reset, saves late
    (4, "all_b"),
    (4, "cost_b"),
    (4, "save_b"),  # then resets, spends, saves
    (6, "cost_a"),
    (6, "one_a"),
    (7, "cost_b"),
    (7, "save_b"),  # the next boundary
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_litellm_keeps_the_rule_and_the_spend_across_the_boundary(server, case):
    url, clock = server
    clients = run(url, clock, case, SCRIPT)
    a, b = clients
    assert a.entry["last_updated_at"] >= case.boundary  # a's own reset fired at the boundary
    assert any(s.saved for s in b.spends)


steps = st.lists(
    st.tuples(st.integers(min_value=0, max_value=7), st.sampled_from(ACTIONS)), min_size=3, max_size=12
).map(sorted)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=st.sampled_from(CASES), script=steps)
def test_any_order_of_litellm_calls_keeps_the_rule_and_the_spend(server, case, script):
    url, clock = server
    run(url, clock, case, script)
