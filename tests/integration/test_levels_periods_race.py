"""Budget levels: a monthly project cap over daily user budgets (and two team caps) rolls each level
over at its own boundary exactly once while the scheduled job and charges' lazy rollovers race.

The handlers run in process, one Lambda container per thread, on the embedded DynamoDB server
behind the fault proxy (localdev/faults.py), with the service's clock frozen and moved across real
boundaries: a month end (31 Jan -> 1 Feb 2028), a leap day (28 -> 29 Feb -> 1 Mar 2028) and both
DST days of America/New_York (a 23-hour and a 25-hour day). (The proxy is what forces the
interleavings below; ``make dev``'s server would run the job and charges concurrently too, but
in whatever order the machine's timing gives.)

At each boundary the reset job (the ResetBudgetsFunction handler) runs in one thread while two
threads per user charge it. The proxy holds chosen requests or their answers until a condition
holds, so each of these interleavings happens for sure, whatever the machine's speed:

- ``job-loses``: the job reads a level (or a user) it found due, and a charge rolls that level
  over and charges it before the job's conditional write arrives (the job must skip it);
- ``charge-loses``: a charge learns from its cancelled first attempt that its periods ended, and
  the job or other charges roll them over before it repairs them (its roll must be a no-op);
- a late charge (its time is before the boundary; it reaches DynamoDB after some of its levels
  rolled over) must count in one period per level, consistently.

The model: a charge counts, at every level it moves, in the period that contains its effective
time: its own time, or, when it arrives after a level it moves has started a period later than
its time, the latest such period start (store_levels.LevelWriter re-times it). Each level then
has one closed-period record per period it left, whose spend is the sum of the charges counted
in it; the current period holds the rest; the project's spend is the sum of its users'.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from conftest import SERVED_CLIENT_CONFIG, Api, lambda_context, run_threads, wait_until

from budget_service.core import clock as service_clock
from budget_service.store import base as store_module
from budget_service.store.base import RESET_INDEX, BudgetStore
from budget_service.store.history import HistoryStore
from budget_service.store.levels import PROJECT_SK, get_level, team_sk
from localdev import template
from localdev.dynamodb import client_for
from localdev.faults import Fault

NY = "America/New_York"
COST = "/projects/{project}/users/{user}/cost"
MODELS = ("gpt-4o", "claude-3-5-sonnet")

# Users are daily in New York; the team "red" is monthly in New York, "blue" weekly in UTC, the
# project monthly in UTC: the levels of one user roll over at different instants.
TEAMS = {"red": ("monthly", NY), "blue": ("weekly", None)}
PROJECT_RULE = ("monthly", None)
USER_RULE = ("daily", NY)
USERS = {"r0": "red", "r1": "red", "b0": "blue", "b1": "blue", "n0": None}
LATE = "s0"  # charged late at every boundary (team red); nobody else charges it after the start
ALL_USERS = {**USERS, LATE: "red"}

# Each scenario: the instants (UTC) the clock visits; every level's periods are visited in turn.
SCENARIOS = {
    # UTC's month ends 5 hours before New York's (the project first, then red and the users).
    "month-end": ["2028-01-31T20:00:00Z", "2028-02-01T02:00:00Z", "2028-02-01T06:00:00Z"],
    # A leap year: 29 February is a day of its own; March starts in UTC, then in New York.
    "leap-day": [
        "2028-02-28T20:00:00Z",
        "2028-02-29T06:00:00Z",
        "2028-03-01T02:00:00Z",
        "2028-03-01T06:00:00Z",
    ],
    # 12 March 2028 in New York lasts 23 hours; the week (blue, UTC) ends on Monday 13 March.
    "dst-start": ["2028-03-11T20:00:00Z", "2028-03-12T06:00:00Z", "2028-03-13T06:00:00Z"],
    # 5 November 2028 in New York lasts 25 hours; the week ends on Monday 6 November.
    "dst-end": ["2028-11-04T20:00:00Z", "2028-11-05T06:00:00Z", "2028-11-06T06:00:00Z"],
}
MODES = ("job-loses", "charge-loses", "free")


def epoch(text: str) -> Decimal:
    return Decimal(int(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()))


def calendar(rule: tuple[str, str | None], at: Decimal) -> tuple[Decimal, Decimal]:
    """[start, end) of the calendar period containing `at` (computed here with zoneinfo, not by
    the service's periods module)."""
    duration, tz = rule
    zone = ZoneInfo(tz or "UTC")
    day = dt.datetime.fromtimestamp(int(at), zone).date()
    if duration == "daily":
        start, end = day, day + dt.timedelta(days=1)
    elif duration == "weekly":
        start = day - dt.timedelta(days=day.weekday())
        end = start + dt.timedelta(days=7)
    else:
        start = day.replace(day=1)
        end = (start + dt.timedelta(days=32)).replace(day=1)

    def at_midnight(d: dt.date) -> Decimal:
        return Decimal(int(dt.datetime.combine(d, dt.time(), zone).timestamp()))

    return at_midnight(start), at_midnight(end)


@dataclass(frozen=True)
class Level:
    kind: str  # the history's level kind: USER, TEAM, PROJECT
    level_id: str
    sk: str
    rule: tuple[str, str | None]
    users: frozenset[str]


def levels() -> list[Level]:
    out = [Level("PROJECT", "", PROJECT_SK, PROJECT_RULE, frozenset(ALL_USERS))]
    for team, rule in TEAMS.items():
        members = frozenset(u for u, t in ALL_USERS.items() if t == team)
        out.append(Level("TEAM", team, team_sk(team), rule, members))
    out += [Level("USER", u, f"USER#{u}", USER_RULE, frozenset({u})) for u in ALL_USERS]
    return out


@dataclass(frozen=True)
class Charge:
    user: str
    model: str
    amount: Decimal
    effective: Decimal  # the time it counts at (see the module docstring)


class FrozenClock:
    """The service's clock (budget_service.core.clock.use), frozen where the test puts it."""

    def __init__(self) -> None:
        self.now = Decimal(0)

    def __call__(self) -> float:
        return float(self.now)  # whole seconds: exact as a float


@pytest.fixture
def race(faulty_dynamodb, dynamodb_server, monkeypatch):
    """(Api on a fresh table through the fault proxy, a store straight to DynamoDB, the proxy,
    the frozen service clock). A table of its own: the job scans every due budget in it."""
    direct = client_for(dynamodb_server)
    table = f"levels-race-{uuid.uuid4().hex[:10]}"
    template.create_table(direct, table)
    monkeypatch.setenv("TABLE_NAME", table)
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", faulty_dynamodb.url)
    # A long read timeout: answers held on purpose wait for conditions, not for a clock.
    monkeypatch.setattr(store_module, "CLIENT_CONFIG", SERVED_CLIENT_CONFIG)
    store_module.default_store.cache_clear()
    clock = FrozenClock()
    service_clock.use(clock)
    try:
        yield Api(), BudgetStore(table, client=direct), faulty_dynamodb, clock
    finally:
        service_clock.use(None)
        store_module.default_store.cache_clear()


def container() -> str:
    return str(threading.get_ident())


class Race:
    """One scenario on one project: the ledger of charges and the helpers the hooks wait with."""

    def __init__(self, api: Api, store: BudgetStore, proxy, clock: FrozenClock, seed: int) -> None:
        self.api, self.store, self.proxy, self.clock = api, store, proxy, clock
        self.rng = random.Random(seed)
        self.project = f"race-{seed}-{uuid.uuid4().hex[:6]}"
        self.charges: list[Charge] = []
        self.lock = threading.Lock()
        self.levels = levels()
        self.by_sk = {lv.sk: lv for lv in self.levels}
        self.summaries: list[dict] = []
        self.errors: list[BaseException] = []  # what the threads raised

    def thread(self, target: Callable, *args) -> threading.Thread:
        """A thread running `target(*args)` whose failure is kept in `errors`."""

        def run() -> None:
            try:
                target(*args)
            except BaseException as exc:
                with self.lock:
                    self.errors.append(exc)
                raise

        return threading.Thread(target=run)

    # ---- requests, as the proxy sees them -------------------------------------------------------

    def _key_is(self, body: dict, sk: str) -> bool:
        key = body.get("Key") or {}
        return key.get("pk", {}).get("S") == f"PROJECT#{self.project}" and key.get("sk", {}).get("S") == sk

    def moves(self, users: set[str], at: Decimal) -> Callable[[dict], bool]:
        """A TransactWriteItems that charges one of `users` with the time `at`."""
        sks = {f"USER#{u}" for u in users}

        def when(body: dict) -> bool:
            for item in body.get("TransactItems") or []:
                update = item.get("Update") or {}
                now = (update.get("ExpressionAttributeValues") or {}).get(":now", {}).get("N")
                if any(self._key_is(update, sk) for sk in sks):
                    return now is not None and Decimal(now) == at
            return False

        return when

    def reads(self, sk: str) -> Callable[[dict], bool]:
        """The GetItem of one item of the project, or the TransactGetItems of a level's slices
        (only the job reads levels and users here)."""

        def when(body: dict) -> bool:
            gets = [item.get("Get") or {} for item in body.get("TransactItems") or []]
            return self._key_is(gets[0], sk) if gets else self._key_is(body, sk)

        return when

    # ---- conditions, read straight from DynamoDB (not through the proxy) -------------------------

    def item(self, sk: str) -> dict:
        return get_level(self.store, self.project, sk) or {}

    def started(self, sk: str, start: Decimal) -> bool:
        """Level `sk` is in the period starting at `start` (someone rolled it over)."""
        return self.item(sk).get("period_start") == start

    def charged_since(self, sk: str, start: Decimal) -> bool:
        """... and a charge landed on it since."""
        item = self.item(sk)
        return item.get("period_start") == start and item.get("current_cost", 0) > 0

    # ---- what the threads do ---------------------------------------------------------------------

    def charge(self, user: str, at: Decimal, effective: Decimal | None = None) -> None:
        model = self.rng.choice(MODELS)
        with self.lock:
            amount = Decimal(self.rng.randrange(1, 10**6)) / Decimal(10**4)
        body = json.dumps({"model": model, "cost": "__amount__"}).replace('"__amount__"', str(amount))
        answer = self.api.call("POST", COST, {"project": self.project, "user": user}, body=body)
        assert answer.status == 200, (user, answer)
        with self.lock:
            self.charges.append(Charge(user, model, amount, at if effective is None else effective))

    def job(self) -> None:
        handler = template.load_handler("ResetBudgetsFunction", container())
        summary = handler({}, lambda_context("ResetBudgetsFunction"))
        assert (summary["failed"], summary["levels_failed"], summary["complete"]) == (0, 0, True), summary
        with self.lock:
            self.summaries.append(summary)


def test_each_level_rolls_over_once_per_boundary_with_the_job_and_charges_racing(race):
    """See the module docstring; one seed per scenario, the modes rotating over the boundaries."""
    for number, (name, instants) in enumerate(SCENARIOS.items()):
        run_scenario(race, name, [epoch(t) for t in instants], seed=number)
    assert race[0].max_in_flight() > 1  # charges ran at once, each in a container of its own


def run_scenario(fixtures, name: str, times: list[Decimal], seed: int) -> None:
    api, store, proxy, clock = fixtures
    r = Race(api, store, proxy, clock, seed)
    for lv in r.levels:  # the timeline visits every period of every level (none skipped)
        periods = sorted({calendar(lv.rule, t) for t in times})
        assert all(a[1] == b[0] for a, b in zip(periods, periods[1:], strict=False)), (name, lv)

    clock.now = times[0]
    project = {"project": r.project}
    assert api.call("PUT", "/projects/{project}/budget", project, body=_rule(PROJECT_RULE)).status == 201
    for team, rule in TEAMS.items():
        put = api.call("PUT", "/projects/{project}/teams/{team}", {**project, "team": team}, body=_rule(rule))
        assert put.status == 201, put
    for user, team in ALL_USERS.items():
        body = _rule(USER_RULE) | ({"team": team} if team else {})
        put = api.call("PUT", "/projects/{project}/users/{user}", {**project, "user": user}, body=body)
        assert put.status == 201, put
    # Before the first boundary: every user is charged (and each container learns its levels).
    run_threads([r.thread(r.charge, u, times[0]) for u in ALL_USERS for _ in range(2)] + [r.thread(r.job)])
    assert not r.errors, r.errors

    modes = MODES[seed % 3 :] + MODES[: seed % 3]
    for k in range(1, len(times)):
        step(r, times[k - 1], times[k], modes[(k - 1) % len(modes)])
    check(r, name, times)


def _rule(rule: tuple[str, str | None]) -> dict:
    duration, tz = rule
    return {"total_budget": 10**6, "duration": duration} | ({"timezone": tz} if tz else {})


def step(r: Race, before: Decimal, now: Decimal, mode: str) -> None:
    """Move the clock from `before` to `now` (across one or more levels' boundaries) and race
    the job against two charges per user, with the interleaving `mode` forces."""
    crossed = {
        lv.sk: calendar(lv.rule, now)[0]
        for lv in r.levels
        if calendar(lv.rule, before) != calendar(lv.rule, now)
    }
    assert crossed, "every step crosses a boundary"
    charges = {u: [r.thread(r.charge, u, now) for _ in range(2)] for u in USERS}
    job = r.thread(r.job)
    late = None if mode == "job-loses" else send_late_charge(r, before, crossed)
    targets = job_loses(r, now, crossed) if mode == "job-loses" else []
    r.clock.now = now
    started = charge_loses(r, now, crossed, charges) if mode == "charge-loses" else []
    others = [t for ts in charges.values() for t in ts if t not in started]
    r.rng.shuffle(others)
    run_threads([job, *others])
    for t in [*started, *([late] if late else [])]:
        t.join(timeout=120)
        assert not t.is_alive(), "a charge did not finish"
    assert not r.errors and not r.proxy.errors, (r.errors, r.proxy.errors)
    summary = r.summaries[-1]
    if any(sk.startswith("USER#") for sk in targets):
        assert summary["skipped"] >= 1, (targets, summary)  # the job lost the user
    if any(not sk.startswith("USER#") for sk in targets):
        assert summary["levels_skipped"] >= 1, (targets, summary)  # ... and the level
    r.proxy.clear()


def send_late_charge(r: Race, before: Decimal, crossed: dict[str, Decimal]) -> threading.Thread:
    """A charge of LATE timed `before` (the clock has not moved yet), held on its way to DynamoDB
    until every level above LATE that crossed a boundary was rolled over by other charges; the
    job waits for it, so nobody rolls LATE itself over first. Returns its thread, once its
    request is at the proxy."""
    above = [sk for sk in (team_sk("red"), PROJECT_SK) if sk in crossed]
    arrived, done = threading.Event(), threading.Event()

    def hold() -> None:
        arrived.set()
        wait_until(lambda: all(r.started(sk, crossed[sk]) for sk in above), timeout=60)

    r.proxy.add("TransactWriteItems", Fault.DELAY, when=r.moves({LATE}, before), before=hold)
    r.proxy.add(
        "Query",
        Fault.DELAY,
        when=lambda body: body.get("IndexName") == RESET_INDEX,  # the job's first request
        before=lambda: done.wait(timeout=60) or _fail("the late charge did not finish"),
    )
    # It counts at the latest start of a period it finds begun after its time (the model).
    effective = max([before, *(crossed[sk] for sk in above)])

    def charge() -> None:
        try:
            r.charge(LATE, before, effective)
        finally:
            done.set()

    thread = r.thread(charge)
    thread.start()
    wait_until(arrived.is_set)
    return thread


def job_loses(r: Race, now: Decimal, crossed: dict[str, Decimal]) -> list[str]:
    """The job reads a level it found due (and a user outside it) and loses it: the charges of
    its users wait until the job has read it, and the job's answer waits until one of them
    rolled it over and landed. Returns the sks of the levels the job must skip."""
    levels_crossed = [sk for sk in crossed if not sk.startswith("USER#")]
    users_crossed = [u for u in USERS if f"USER#{u}" in crossed]
    targets = [r.rng.choice(levels_crossed)] if levels_crossed else []
    # A user whose charges no other target holds back (or the job could never read the level).
    outside = [u for u in users_crossed if not targets or u not in r.by_sk[targets[0]].users]
    if outside and (not targets or targets[0] != PROJECT_SK):
        targets.append(f"USER#{r.rng.choice(outside)}")
    for sk in targets:
        read = threading.Event()

        def hold_answer(sk: str = sk, read: threading.Event = read) -> None:
            read.set()
            wait_until(lambda: r.charged_since(sk, crossed[sk]), timeout=60)

        # The job reads a user with GetItem, a level's slices with one TransactGetItems.
        operation = "GetItem" if sk.startswith("USER#") else "TransactGetItems"
        r.proxy.add(operation, Fault.DELAY, when=r.reads(sk), then=hold_answer)
        r.proxy.add(
            "TransactWriteItems",
            Fault.DELAY,
            times=None,
            when=r.moves(set(r.by_sk[sk].users) & set(USERS), now),
            before=lambda read=read: read.wait(timeout=60) or _fail("the job never read the level"),
        )
    assert targets
    return targets


def charge_loses(
    r: Race, now: Decimal, crossed: dict[str, Decimal], charges: dict[str, list[threading.Thread]]
) -> list[threading.Thread]:
    """One charge's first attempt is cancelled (its periods ended) before anything else runs;
    its answer waits until the job or other charges have rolled every level it moves over, so
    its own rollovers are stale. Returns its thread, once that attempt was applied."""
    x = r.rng.choice([u for u in USERS if any(u in r.by_sk[sk].users for sk in crossed)])
    its = [sk for sk in crossed if x in r.by_sk[sk].users]
    applied = threading.Event()

    def hold_answer() -> None:
        applied.set()
        wait_until(lambda: all(r.started(sk, crossed[sk]) for sk in its), timeout=60)

    r.proxy.add("TransactWriteItems", Fault.DELAY, when=r.moves({x}, now), then=hold_answer)
    thread = charges[x][0]
    thread.start()
    wait_until(applied.is_set)
    return [thread]


def _fail(message: str):
    raise AssertionError(message)


def check(r: Race, name: str, times: list[Decimal]) -> None:
    history = HistoryStore(r.store)
    total = sum((c.amount for c in r.charges), Decimal(0))
    for lv in r.levels:
        periods = sorted({calendar(lv.rule, t) for t in times})
        records, _ = history.periods_page(r.project, lv.kind, lv.level_id, limit=100)
        records.sort(key=lambda i: i["period_start"])
        # Exactly one record per period left, with exactly the charges counted in it.
        assert [(i["period_start"], i["period_end"]) for i in records] == periods[:-1], (name, lv.sk)
        for (start, end), record in zip(periods, [*records, None], strict=True):
            mine = [c for c in r.charges if c.user in lv.users and start <= c.effective < end]
            spend = sum((c.amount for c in mine), Decimal(0))
            by_model: dict[str, Decimal] = defaultdict(Decimal)
            for c in mine:
                by_model[c.model] += c.amount
            if record is not None:
                assert (record["spend"], record["model_cost"]) == (spend, dict(by_model)), (
                    name,
                    lv.sk,
                    start,
                    mine,
                )
            else:  # the current period
                item = r.item(lv.sk)
                assert item["period_start"] == start and item["reset_at"] == end, (name, lv.sk)
                assert (item["current_cost"], item["model_cost"]) == (spend, dict(by_model)), (name, lv.sk)

    # Nothing lost, nothing twice: the project's spend over all its periods is every charge, and
    # the sum of its users' spend.
    def spent(lv: Level) -> Decimal:
        records, _ = history.periods_page(r.project, lv.kind, lv.level_id, limit=100)
        return sum((i["spend"] for i in records), Decimal(0)) + r.item(lv.sk)["current_cost"]

    project, *rest = r.levels
    assert spent(project) == total == sum(spent(lv) for lv in rest if lv.kind == "USER"), name
