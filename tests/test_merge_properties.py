"""The set_budget merge rules, as properties of the pure merge (litellm_compat)."""

import dataclasses
from decimal import Decimal

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from budget_service.litellm_compat import merge_entry, new_budget_from_entry
from budget_service.models import LitellmEntry
from budget_service.periods import SECONDS_PER_DAY, Duration

NOW = Decimal("1795900000.123456789")
money = st.decimals(min_value=0, max_value=10**6, places=9, allow_nan=False, allow_infinity=False)
models = st.dictionaries(st.sampled_from(["gpt-4o", "gpt-4o-mini", "o3", "claude"]), money, max_size=4)
days = st.sampled_from([Decimal(1), Decimal(7), Decimal(28), Decimal(365), Decimal("0.5")])
offset = st.decimals(min_value=0, max_value=3 * 365 * 86400, places=6)


def entry(total, model_cost, duration=None, stamp=None, current=None):
    return LitellmEntry(
        total_budget=total,
        current_cost=sum(model_cost.values(), Decimal(0)) if current is None else current,
        model_cost=model_cost,
        duration=duration,
        created_at=stamp,
        last_updated_at=stamp,
    )


@st.composite
def stored_rolling(draw):
    """A budget stored by litellm with a rolling period, its spend, and an instant `now`."""
    d = draw(days)
    start = NOW - draw(offset)
    budget = new_budget_from_entry("p", "u", entry(draw(money), draw(models), d, start), start)
    later = start + draw(st.decimals(min_value=0, max_value=d * SECONDS_PER_DAY * 3, places=6))
    return budget, later


@st.composite
def stored_calendar(draw):
    """A native calendar budget with some spend, and an instant `now` after it was written."""
    start = NOW - draw(offset)
    budget = new_budget_from_entry("p", "u", entry(draw(money), draw(models)), start)
    budget = dataclasses.replace(
        budget,
        duration=draw(st.sampled_from(list(Duration))),
        timezone=draw(st.sampled_from([None, "Europe/Paris", "America/New_York", "Asia/Kolkata"])),
    ).with_period_from(start)
    later = start + draw(st.decimals(min_value=0, max_value=400 * 86400, places=6))
    return budget, later


def never_lower(before, after):
    assert after.current_cost >= before.current_cost
    for model, cost in before.model_cost.items():
        assert after.model_cost.get(model, 0) >= cost


@settings(max_examples=300, deadline=None)  # pure functions; a busy machine must not fail them
@given(stored_rolling(), money, models, st.booleans(), st.data())
def test_within_a_period_set_budget_never_lowers_spend(stored_now, total, model_cost, same_duration, data):
    stored, now = stored_now
    current = stored.as_of(now)
    duration = current.duration_days if same_duration else data.draw(days)
    # The entry speaks of the period the server is in (the client loaded it), or has no period.
    stamp = data.draw(st.sampled_from([current.period_start, None]))
    sent = entry(total, model_cost, duration if stamp is not None else None, stamp)
    merged = merge_entry(stored, sent, now)
    never_lower(current, merged.budget)
    if same_duration:  # (a new duration can put the entry's start in an earlier window)
        assert not merged.stale_spend_ignored
    assert merged.budget.total_budget == total


@settings(max_examples=300, deadline=None)  # pure functions; a busy machine must not fail them
@given(stored_calendar(), money, models, st.data())
def test_calendar_budgets_never_lose_spend_to_a_client_in_the_same_period(stored_now, total, model_cost, data):
    stored, now = stored_now
    current = stored.as_of(now)
    # What the client got from get_budget: the period start and its length in days.
    shape = current.to_litellm_entry()
    stamp = current.period_start + data.draw(st.decimals(min_value=0, max_value=now - current.period_start, places=6))
    merged = merge_entry(stored, entry(total, model_cost, shape["duration"], stamp), now)
    never_lower(current, merged.budget)
    assert merged.budget.duration == stored.duration  # the calendar rule survives the round trip
    assert merged.budget.reset_at == current.reset_at


@settings(max_examples=300, deadline=None)  # pure functions; a busy machine must not fail them
@given(stored_rolling(), money, models, st.data())
def test_a_client_side_reset_is_taken(stored_now, total, model_cost, data):
    stored, now = stored_now
    current = stored.as_of(now)
    assume(now > current.period_start)
    # The client reset the period at `stamp` (newer than the stored start) and spent since.
    stamp = data.draw(st.decimals(min_value=current.period_start, max_value=now, places=6))
    assume(stamp > current.period_start)
    merged = merge_entry(stored, entry(total, model_cost, stored.duration_days, stamp), now)
    assert merged.budget.current_cost == sum(model_cost.values(), Decimal(0))
    assert merged.budget.model_cost == model_cost
    assert merged.budget.period_start == stamp
    assert merged.budget.reset_at == stamp + stored.duration_days * SECONDS_PER_DAY


@settings(max_examples=300, deadline=None)  # pure functions; a busy machine must not fail them
@given(stored_rolling(), money, models, st.data())
def test_an_entry_from_a_finished_period_does_not_bring_its_spend_back(stored_now, total, model_cost, data):
    stored, now = stored_now
    current = stored.as_of(now)
    assume(current.period_start > 0)
    stamp = data.draw(st.decimals(min_value=0, max_value=current.period_start, places=6))
    assume(stamp < current.period_start)
    merged = merge_entry(stored, entry(total, model_cost, stored.duration_days, stamp), now)
    assert merged.stale_spend_ignored
    assert merged.budget.current_cost == current.current_cost
    assert merged.budget.model_cost == current.model_cost
    assert merged.budget.period_start == current.period_start
    assert merged.budget.total_budget == total  # settings still apply


@settings(max_examples=200)
@given(stored_calendar(), money, models)
def test_a_calendar_entry_from_an_earlier_period_is_ignored(stored_now, total, model_cost):
    stored, now = stored_now
    current = stored.as_of(now)
    shape = current.to_litellm_entry()
    stamp = current.period_start - 1  # the last second of the previous period
    merged = merge_entry(stored, entry(total, model_cost, shape["duration"], stamp), now)
    assert merged.stale_spend_ignored
    assert (merged.budget.current_cost, merged.budget.model_cost) == (current.current_cost, current.model_cost)


@settings(max_examples=200)
@given(money, models, days, offset)
def test_a_new_entry_whose_period_already_ended_starts_with_no_spend(total, model_cost, d, age):
    stamp = NOW - age
    created = new_budget_from_entry("p", "u", entry(total, model_cost, d, stamp), NOW)
    if stamp + d * SECONDS_PER_DAY <= NOW:
        assert created.current_cost == 0 and created.model_cost == {}
        assert created.period_start <= NOW < created.reset_at
    else:
        assert created.current_cost == sum(model_cost.values(), Decimal(0))
        assert created.period_start == stamp
