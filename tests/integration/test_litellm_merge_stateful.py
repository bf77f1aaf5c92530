"""A stateful property test: the real, pinned litellm hosted client and the scheduled job on one
controlled clock, in random orders, across daily, weekly, monthly and yearly boundaries in UTC and
three IANA zones (America/Santiago skips midnight on 2027-09-05: the day starts at 01:00).

Clients load (get_budget), create_budget, update_cost, save_data, reset_on_duration and
update_budget_all_users; some save every change (litellm's background save, run in line), some
were loaded earlier and save only when told (late). Between them: the job, a manual reset, a PUT
of the rule, and the clock moving (seconds, hours, to just before or after the next boundary).
After every step:

* the stored rule (duration label, timezone) is the last one a caller set explicitly (a PUT, or
  a create_budget that reached the server); nothing a client echoes changes it;
* the spend of the current period plus every closed period equals everything the clients sent
  (each cost counted once, from the first save that carried it; what a client dropped in its own
  reset before saving never reached the server);
* ``current_cost >= sum(model_cost)``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from litellm_harness import client, litellm_in_process, run_job, spend

from budget_service.core import clock as service_clock
from budget_service.store.history import HistoryStore

USER = "/projects/{project}/users/{user}"
WORDS = {"daily": 1, "weekly": 7, "monthly": 28, "yearly": 365}
ZONES = [None, "America/New_York", "Europe/Paris", "America/Santiago"]
# Starting instants a few hours before boundaries worth crossing: a month and year end, and the
# days DST starts or ends in each zone (Santiago's 2027-09-05 has no midnight).
STARTS = [
    "2027-12-31T18:00:00Z",
    "2027-02-28T20:00:00Z",
    "2027-03-13T22:00:00Z",
    "2027-10-30T20:00:00Z",
    "2027-09-04T22:00:00Z",
    "2028-02-28T23:00:00Z",
]
MODELS = ("gpt-4o-mini", "gpt-4o")
TOLERANCE = Decimal("1e-9")  # litellm's float sums, against exact Decimal bookkeeping


def epoch(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def exact(value) -> Decimal:
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


class Client:
    """A BudgetManager and what of its spend reached the server."""

    def __init__(self, manager, autosave: bool) -> None:
        self.manager, self.autosave = manager, autosave
        self.pending = Decimal(0)  # added since its last save, still in its totals

    def saved(self) -> Decimal:
        sent, self.pending = self.pending, Decimal(0)
        return sent


class LitellmAgainstTheJob(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clients: list[Client] = []
        self.sent = Decimal(0)
        self.n = 0

    # ---- setup ---------------------------------------------------------------------------------

    @initialize(
        start=st.sampled_from(STARTS),
        word=st.sampled_from(sorted(WORDS)),
        zone=st.sampled_from(ZONES),
        native=st.booleans(),
    )
    def create(self, start, word, zone, native):
        self.project, self.user = f"sm-{uuid.uuid4().hex[:10]}", "u"
        self.clock.now = epoch(start)
        if native:
            self._put(word, zone)
        else:
            creator = self._load(autosave=True)
            self._create_budget(creator, word)

    # ---- helpers -------------------------------------------------------------------------------

    def _put(self, word, zone):
        body = {"total_budget": 50, "duration": word, "timezone": zone}
        r = self.api.call("PUT", USER, {"project": self.project, "user": self.user}, body=body)
        assert r.status in (200, 201), r
        self.rule = (word, zone)

    def _load(self, autosave: bool) -> Client:
        c = Client(client(self.project, autosave=autosave), autosave)
        self.clients.append(c)
        return c

    def _save(self, c: Client) -> None:
        reply = c.manager.save_data()
        assert reply["status"] == "success", reply
        self.sent += c.saved()

    def _create_budget(self, c: Client, word: str) -> None:
        """An explicit rule from litellm's create_budget, saved at once (its background save)."""
        c.pending = Decimal(0)  # create_budget replaces the entry: unsaved spend is dropped
        # created_at=time.time(), as the guide advises: litellm's default (its import time, one
        # value per process) would make a repeated create_budget indistinguishable from the first
        # one's save arriving late
        self.n += 1
        created_at = self.clock.now - self.n / 1000
        c.manager.create_budget(total_budget=50, user=self.user, duration=word, created_at=created_at)
        self.sent += c.saved()
        stored = getattr(self, "rule", None)
        # Naming the stored calendar rule (or the same rolling days) keeps it; anything else is
        # litellm's rolling period of that many days.
        if stored is None or (stored[0] != word and stored[0] != f"rolling:{WORDS[word]}d"):
            self.rule = (f"rolling:{WORDS[word]}d", None)

    def _holding(self) -> list[Client]:
        return [c for c in self.clients if self.user in c.manager.user_dict]

    def _reset_drops(self, c: Client, action) -> None:
        before = c.manager.user_dict[self.user].get("last_updated_at")
        action()
        if c.manager.user_dict[self.user].get("last_updated_at") != before:
            # litellm zeroed its totals, then (autosave) saved the zeroes
            c.pending = Decimal(0)

    # ---- client actions ------------------------------------------------------------------------

    @rule(autosave=st.booleans())
    def load(self, autosave):
        self._load(autosave)

    @precondition(lambda self: self._holding())
    @rule(data=st.data())
    def update_cost(self, data):
        c = data.draw(st.sampled_from(self._holding()))
        self.n += 1
        cost = spend(c.manager, self.user, MODELS[self.n % 2], self.n)
        c.pending += exact(cost)
        if c.autosave:  # litellm saved it in its background thread (here in line)
            self.sent += c.saved()

    @precondition(lambda self: any(not c.autosave for c in self._holding()))
    @rule(data=st.data())
    def late_save(self, data):
        self._save(data.draw(st.sampled_from([c for c in self._holding() if not c.autosave])))

    @precondition(lambda self: self._holding())
    @rule(data=st.data(), every=st.booleans())
    def client_reset(self, data, every):
        c = data.draw(st.sampled_from(self._holding()))
        if every:
            self._reset_drops(c, c.manager.update_budget_all_users)
        else:
            self._reset_drops(c, lambda: c.manager.reset_on_duration(self.user))

    @precondition(lambda self: any(c.autosave for c in self.clients))
    @rule(data=st.data(), word=st.sampled_from(sorted(WORDS)))
    def create_budget(self, data, word):
        self._create_budget(data.draw(st.sampled_from([c for c in self.clients if c.autosave])), word)

    # ---- server side ---------------------------------------------------------------------------

    @rule()
    def job(self):
        run_job(self.clock, self.store)

    @rule()
    def manual_reset(self):
        r = self.api.call("POST", USER + "/reset", {"project": self.project, "user": self.user})
        assert r.status == 200, r

    @rule(word=st.sampled_from(sorted(WORDS)), zone=st.sampled_from(ZONES))
    def put_rule(self, word, zone):
        self._put(word, zone)

    @rule(step=st.sampled_from(["second", "minutes", "hours", "before", "after"]))
    def tick(self, step):
        reset_at = self.store.get(self.project, self.user).as_of(Decimal(repr(self.clock.now))).reset_at
        if step == "before" and reset_at is not None and float(reset_at) - 1 > self.clock.now:
            self.clock.now = float(reset_at) - 1
        elif step == "after" and reset_at is not None:
            self.clock.now = float(reset_at) + 30
        else:
            self.clock.now += {"second": 1, "minutes": 600, "hours": 5 * 3600}.get(step, 60)

    # ---- what must hold after every step -------------------------------------------------------

    @invariant()
    def the_rule_is_the_last_one_set(self):
        r = self.api.call("GET", USER, {"project": self.project, "user": self.user})
        assert r.status == 200, r
        record = r.json()
        assert (record["duration"], record["timezone"]) == self.rule, record
        # JSON renders each number at a float's precision: the exact check is on the stored item
        assert record["current_cost"] + TOLERANCE >= sum(record["model_cost"].values(), Decimal(0))

    @invariant()
    def every_cost_sent_is_counted_once(self):
        stored = self.store.get(self.project, self.user)  # as stored: an ended period not rolled yet included
        items, more = HistoryStore(self.store).periods_page(self.project, "USER", self.user, limit=1000)
        assert more is None
        closed = sum((item["spend"] for item in items), Decimal(0))
        assert abs(stored.current_cost + closed - self.sent) <= TOLERANCE, (stored, closed, self.sent)
        assert stored.current_cost >= sum(stored.model_cost.values(), Decimal(0))


# Modest counts: about 40 s of CPU; derandomized so CI runs the same sequences.
SETTINGS = settings(
    max_examples=20,
    stateful_step_count=20,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    # Shrinking a sequence of handler calls takes minutes; the failing steps are printed as run.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)


def test_litellm_clients_and_the_job_never_lose_or_double_spend_nor_change_a_rule(api, store):
    with litellm_in_process(api, epoch(STARTS[0])) as (clock, _http):
        LitellmAgainstTheJob.api, LitellmAgainstTheJob.store, LitellmAgainstTheJob.clock = api, store, clock
        machine = LitellmAgainstTheJob.TestCase
        machine.settings = SETTINGS
        try:
            machine().runTest()
        finally:
            service_clock.use(clock.time)


@pytest.fixture(autouse=True)
def _quiet_litellm(monkeypatch):
    monkeypatch.setenv("LITELLM_LOG", "ERROR")
