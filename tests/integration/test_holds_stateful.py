"""Holds, settles, releases, expiries and costs in random interleavings, against the
embedded DynamoDB through the fault-injecting endpoint, some with their answers lost: after every
step the budget's ``held`` is the sum of its live holds, its spend the sum of what was settled or
charged, and ``available = total - spend - held``. Nothing leaks, nothing is charged twice."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from budget_service.core.errors import BudgetExceeded
from budget_service.domain import holds
from budget_service.domain.budgets import put_budget
from budget_service.domain.costs import record_cost
from budget_service.schemas import CostRequest, HoldRequest, PutBudgetRequest
from budget_service.store.base import BudgetStore
from budget_service.store.holds import EXPIRED, HoldStore
from localdev.faults import Fault, FaultyDynamoDB

TOTAL = Decimal(5)
T0 = Decimal(1_800_000_000)
amounts = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("2.5"), places=2)
# None: the answer arrives. DROP: applied, answer lost (botocore retries with the same token).
# REFUSE: a 500 before it is applied (botocore retries).
faults = st.sampled_from([None, None, Fault.DROP, Fault.REFUSE])


class Holds(RuleBasedStateMachine):
    """The model: live holds with their amounts and expiries, each hold's state, the spend."""

    # The test's fixtures, set before each run: the fault proxy, a store behind it, a direct store.
    faulty_dynamodb: FaultyDynamoDB
    faulty_store: BudgetStore
    server_store: BudgetStore
    held_ids = Bundle("holds")

    @initialize()
    def budget(self):
        self.project, self.user = "stateful", uuid.uuid4().hex[:12]
        self.now = T0
        put_budget(self.server_store, self.project, self.user, PutBudgetRequest(total_budget=TOTAL), self.now)
        self.live: dict[str, tuple[Decimal, Decimal]] = {}  # hold id -> (amount, expires at)
        self.state: dict[str, str] = {}
        self.spend = Decimal(0)

    def _fault(self, fault):
        if fault is not None:
            self.faulty_dynamodb.add("TransactWriteItems", fault)

    def _held(self) -> Decimal:
        return sum((a for a, _ in self.live.values()), Decimal(0))

    def _available(self) -> Decimal:
        return TOTAL - self.spend - self._held()

    @rule(target=held_ids, amount=amounts, ttl=st.integers(1, 3600), fault=faults)
    def hold(self, amount, ttl, fault):
        if self._available() < amount:  # a refusal first expires what has run out
            for hold_id, (_, expires) in list(self.live.items()):
                if expires <= self.now:
                    del self.live[hold_id]
                    self.state[hold_id] = EXPIRED
        fits = self._available() >= amount
        self._fault(fault)
        try:
            answer = holds.create_hold(
                self.faulty_store,
                self.project,
                self.user,
                HoldRequest(amount=amount, ttl_seconds=ttl),
                self.now,
            )
        except BudgetExceeded as refused:
            assert not fits, refused.details
            return "refused"
        assert fits and not answer.replayed
        self.live[answer.hold_id] = (amount, self.now + ttl)
        self.state[answer.hold_id] = "held"
        return answer.hold_id

    @rule(hold_id=held_ids, cost=amounts, fault=faults)
    def settle(self, hold_id, cost, fault):
        if hold_id == "refused":
            return
        self._fault(fault)
        answer = holds.settle_hold(
            self.faulty_store, self.project, self.user, hold_id, CostRequest(model="m", cost=cost), self.now
        )
        if self.state[hold_id] == "settled":
            assert answer.replayed
            return
        assert not answer.replayed and answer.cost == cost
        assert answer.settled_from == self.state[hold_id]
        self.spend += cost
        self.live.pop(hold_id, None)
        self.state[hold_id] = "settled"

    @rule(hold_id=held_ids, fault=faults)
    def release(self, hold_id, fault):
        if hold_id == "refused":
            return
        self._fault(fault)
        answer = holds.release_hold(self.faulty_store, self.project, self.user, hold_id, self.now)
        assert answer.released == (self.state[hold_id] == "held")
        if answer.released:
            del self.live[hold_id]
            self.state[hold_id] = "released"

    @rule(hold_id=held_ids, fault=faults)
    def expire(self, hold_id, fault):
        """What the scheduled job does to a hold it finds due."""
        if hold_id == "refused":
            return
        self._fault(fault)
        _, changed = HoldStore(self.faulty_store).finish(self.project, self.user, hold_id, self.now, EXPIRED)
        assert changed == (self.state[hold_id] == "held")
        if changed:
            del self.live[hold_id]
            self.state[hold_id] = EXPIRED

    @rule(cost=amounts, fault=faults)
    def charge(self, cost, fault):
        self._fault(fault)
        record_cost(self.faulty_store, self.project, self.user, CostRequest(model="m", cost=cost), self.now)
        self.spend += cost

    @rule(seconds=st.integers(1, 4000))
    def time_passes(self, seconds):
        self.now += seconds

    @invariant()
    def nothing_leaks(self):
        if not hasattr(self, "user"):
            return
        budget = self.server_store.get(self.project, self.user)
        assert budget.current_cost == self.spend
        assert budget.held == self._held()
        assert budget.available == TOTAL - self.spend - self._held()


def test_holds_in_any_interleaving_keep_held_and_spend_exact(faulty_dynamodb, faulty_store, server_store):
    Holds.faulty_dynamodb, Holds.faulty_store, Holds.server_store = (
        faulty_dynamodb,
        faulty_store,
        server_store,
    )
    run_state_machine_as_test(
        Holds,
        settings=settings(
            max_examples=12,
            stateful_step_count=14,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )
    lost = faulty_dynamodb.faults("TransactWriteItems")
    assert Fault.DROP in lost and Fault.REFUSE in lost  # the runs did meet lost answers


@pytest.mark.parametrize("fault", [Fault.DROP, Fault.LATE, Fault.REFUSE])
def test_a_deleted_users_hold_frees_the_project_once_when_its_answer_is_lost(
    faulty_dynamodb, faulty_store, server_store, fault
):
    # The hold of a deleted user is finished by its own transaction (the hold and each level
    # still there); a lost or late answer is retried with the same token, a refused attempt wrote
    # nothing: either way the project's held goes back exactly once, never below zero.
    from budget_service.domain import levels
    from budget_service.domain.budgets import delete_budget
    from budget_service.schemas import LevelRequest
    from budget_service.store.levels import PROJECT_SK, get_level

    project = f"orphan-{uuid.uuid4().hex[:8]}"
    levels.put(server_store, project, "project", None, LevelRequest(total_budget=Decimal(10)), T0)
    put_budget(server_store, project, "u", PutBudgetRequest(total_budget=TOTAL), T0)
    hold_id = holds.create_hold(server_store, project, "u", HoldRequest(amount=Decimal(4)), T0).hold_id
    assert get_level(server_store, project, PROJECT_SK)["held"] == 4
    delete_budget(server_store, project, "u", T0)

    faulty_dynamodb.add("TransactWriteItems", fault)
    answer = holds.release_hold(faulty_store, project, "u", hold_id, T0)
    assert answer.released is True
    assert fault in faulty_dynamodb.faults("TransactWriteItems")
    project_level = get_level(server_store, project, PROJECT_SK)
    assert (project_level["held"], project_level["available"]) == (0, 10)
    assert holds.release_hold(faulty_store, project, "u", hold_id, T0).released is False
    assert get_level(server_store, project, PROJECT_SK)["held"] == 0
