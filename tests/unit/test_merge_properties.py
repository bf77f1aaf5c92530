"""The cautious set_budget merge (litellm.merge.legacy_merge), for entries whose client copy
the server has no record of (served by an earlier version of the service), as properties of the
pure function; and new users. Saves of recorded copies: test_litellm_merge*.py."""

from decimal import Decimal

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from budget_service.core.periods import SECONDS_PER_DAY, Duration
from budget_service.litellm.merge import create_from_entry, new_budget_from_entry, rule_lengths
from budget_service.litellm.merge import legacy_merge as merge_entry
from budget_service.schemas import LitellmEntry

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
    budget = budget._replace(
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
def test_calendar_budgets_never_lose_spend_to_a_client_in_the_same_period(
    stored_now, total, model_cost, data
):
    stored, now = stored_now
    current = stored.as_of(now)
    # What the client got from get_budget: the period start and its length in days.
    shape = current.to_litellm_entry()
    stamp = current.period_start + data.draw(
        st.decimals(min_value=0, max_value=now - current.period_start, places=6)
    )
    merged = merge_entry(stored, entry(total, model_cost, shape["duration"], stamp), now)
    never_lower(current, merged.budget)
    assert merged.budget.duration == stored.duration  # the calendar rule survives the round trip
    assert merged.budget.reset_at == current.reset_at


@settings(max_examples=300, deadline=None)  # pure functions; a busy machine must not fail them
@given(stored_rolling(), money, models, st.data())
def test_a_client_side_reset_restarts_the_rolling_period_and_keeps_the_larger_spend(
    stored_now, total, model_cost, data
):
    stored, now = stored_now
    current = stored.as_of(now)
    assume(now > current.period_start)
    # The client reset the period at `stamp` (newer than the stored start) and spent since.
    stamp = data.draw(st.decimals(min_value=current.period_start, max_value=now, places=6))
    assume(stamp > current.period_start)
    merged = merge_entry(stored, entry(total, model_cost, stored.duration_days, stamp), now)
    # litellm's rule: the period restarts at the client's reset ...
    assert merged.budget.period_start == stamp
    assert merged.budget.reset_at == stamp + stored.duration_days * SECONDS_PER_DAY
    # ... and nothing recorded since the server's own period start is dropped (another client's
    # spend, or spend recorded through the native API, may be in it).
    never_lower(current, merged.budget)
    for model, cost in model_cost.items():
        assert merged.budget.model_cost[model] >= cost
    assert not merged.stale_spend_ignored and not merged.uncertain_spend_kept


@settings(max_examples=300, deadline=None)  # pure functions; a busy machine must not fail them
@given(stored_rolling(), money, models, st.data())
def test_an_entry_from_a_finished_period_does_not_bring_its_spend_back(stored_now, total, model_cost, data):
    stored, now = stored_now
    current = stored.as_of(now)
    # The entry's own period (from its last_updated_at, of its duration) ended by the time the
    # server's current period began: litellm's own reset would drop that spend too.
    latest = current.period_start - stored.duration_days * SECONDS_PER_DAY
    assume(latest > 0)
    stamp = data.draw(st.decimals(min_value=0, max_value=latest, places=6))
    merged = merge_entry(stored, entry(total, model_cost, stored.duration_days, stamp), now)
    assert merged.stale_spend_ignored
    assert merged.budget.current_cost == current.current_cost
    assert merged.budget.model_cost == current.model_cost
    assert merged.budget.period_start == current.period_start
    assert merged.budget.total_budget == total  # settings still apply


@settings(max_examples=200)
@given(stored_rolling(), money, models, st.data())
def test_a_rolling_entry_that_straddles_the_current_start_keeps_its_spend(
    stored_now, total, model_cost, data
):
    """Two clients that reset at different moments: the one that reset first sends an entry
    whose period began before the server's (re-anchored) start but has not ended."""
    stored, now = stored_now
    current = stored.as_of(now)
    length = stored.duration_days * SECONDS_PER_DAY
    stamp = data.draw(
        st.decimals(min_value=max(current.period_start - length, 0), max_value=current.period_start, places=6)
    )
    assume(current.period_start - length + 1 < stamp < current.period_start - 1)
    merged = merge_entry(stored, entry(total, model_cost, stored.duration_days, stamp), now)
    assert merged.uncertain_spend_kept
    never_lower(current, merged.budget)
    for model, cost in model_cost.items():
        assert merged.budget.model_cost[model] >= cost


@settings(max_examples=200)
@given(stored_calendar(), money, models, st.integers(min_value=1, max_value=3))
def test_a_calendar_entry_of_a_closed_period_is_ignored(stored_now, total, model_cost, back):
    stored, now = stored_now
    current = stored.as_of(now)
    # What get_budget handed out `back` periods ago: that period's start and length.
    closed = current.period_at(current.period_start - 1)
    for _ in range(back - 1):
        closed = current.period_at(closed.start - 1)
    merged = merge_entry(stored, entry(total, model_cost, closed.length_days, closed.start), now)
    assert merged.stale_spend_ignored and not merged.uncertain_spend_kept
    assert (merged.budget.current_cost, merged.budget.model_cost) == (
        current.current_cost,
        current.model_cost,
    )
    assert (merged.budget.duration, merged.budget.timezone) == (stored.duration, stored.timezone)


@settings(max_examples=200)
@given(stored_calendar(), money, models, st.data())
def test_a_calendar_entry_straddling_the_boundary_keeps_its_spend_and_says_so(
    stored_now, total, model_cost, data
):
    """A client that reset itself in an earlier period, with a period length that runs past the
    server's boundary (one loaded in a 31-day month, reset in February): the server cannot tell
    which of its spend was recorded after the boundary, so it keeps all of it."""
    stored, now = stored_now
    current = stored.as_of(now)
    previous = current.period_at(current.period_start - 1)
    stamp = data.draw(st.decimals(min_value=previous.start + 1, max_value=current.period_start - 1, places=6))
    length = data.draw(st.sampled_from(sorted(rule_lengths(stored.duration, stored.timezone, now))))
    assume(stamp + length > current.period_start + 1)
    merged = merge_entry(stored, entry(total, model_cost, Decimal(length) / SECONDS_PER_DAY, stamp), now)
    assert merged.uncertain_spend_kept and not merged.stale_spend_ignored
    never_lower(current, merged.budget)
    for model, cost in model_cost.items():
        assert merged.budget.model_cost[model] >= cost
    assert (merged.budget.duration, merged.budget.timezone) == (stored.duration, stored.timezone)
    assert (merged.budget.period_start, merged.budget.reset_at) == (current.period_start, current.reset_at)


@settings(max_examples=200)
@given(stored_calendar(), money, models, st.data())
def test_any_period_length_of_the_calendar_rule_keeps_the_rule(stored_now, total, model_cost, data):
    """A client keeps the length of the period it loaded (31 in January) and sends it back in
    February, before or after its own reset: the calendar rule stays."""
    stored, now = stored_now
    current = stored.as_of(now)
    length = data.draw(st.sampled_from(sorted(rule_lengths(stored.duration, stored.timezone, now))))
    stamp = data.draw(st.decimals(min_value=current.period_start, max_value=now, places=6))
    merged = merge_entry(stored, entry(total, model_cost, Decimal(length) / SECONDS_PER_DAY, stamp), now)
    assert (merged.budget.duration, merged.budget.timezone) == (stored.duration, stored.timezone)
    assert (merged.budget.period_start, merged.budget.reset_at) == (current.period_start, current.reset_at)
    never_lower(current, merged.budget)
    assert not merged.stale_spend_ignored and not merged.uncertain_spend_kept


@settings(max_examples=300)
@given(st.one_of(stored_calendar(), stored_rolling()), money, models, st.data())
def test_after_any_merge_current_cost_is_at_least_the_sum_of_model_cost(stored_now, total, model_cost, data):
    stored, now = stored_now
    # A stored total below its models (e.g. written by an older version) and an entry whose
    # current_cost is anything, e.g. two stale clients that each added to a different model.
    stored = stored._replace(current_cost=data.draw(money), model_cost=data.draw(models))
    current = stored.as_of(now)
    shape = current.to_litellm_entry()
    stamp = data.draw(st.sampled_from([None, shape.get("last_updated_at"), now]))
    sent = entry(
        total,
        model_cost,
        shape.get("duration") if stamp is not None else None,
        stamp,
        current=data.draw(money),
    )
    merged = merge_entry(stored, sent, now).budget
    assert merged.current_cost >= sum(merged.model_cost.values(), Decimal(0))


def test_two_stale_clients_on_different_models_add_up():
    """Finding 3: both loaded {a: 1, b: 1} (total 2); one added 1 to a, the other 1 to b."""
    start = NOW - 10
    stored = new_budget_from_entry("p", "u", entry(Decimal(10), {"a": Decimal(1), "b": Decimal(1)}), start)
    first = merge_entry(stored, entry(Decimal(10), {"a": Decimal(2), "b": Decimal(1)}), NOW).budget
    both = merge_entry(first, entry(Decimal(10), {"a": Decimal(1), "b": Decimal(2)}), NOW).budget
    assert both.model_cost == {"a": Decimal(2), "b": Decimal(2)}
    assert both.current_cost == Decimal(4)


def test_a_client_loaded_before_a_manual_reset_does_not_bring_the_spend_back():
    start = NOW - 1000
    stored = new_budget_from_entry("p", "u", entry(Decimal(10), {"a": Decimal(5)}, Decimal(7), start), start)
    handed_out = stored.to_litellm_entry()
    reset = (
        stored.with_spend_zeroed()
        ._replace(period_start=NOW - 10, previous_period_start=stored.period_start)
        .with_period_from(NOW - 10)
    )
    merged = merge_entry(
        reset,
        entry(Decimal(10), {"a": Decimal(6)}, handed_out["duration"], handed_out["last_updated_at"]),
        NOW,
    )
    assert merged.stale_spend_ignored
    assert merged.budget.current_cost == 0


def test_rolling_labels_are_plain_numbers():
    for days in ("30", "10", "90", "180", "0.5", "1E+1", "3.0E+1"):
        budget = new_budget_from_entry("p", "u", entry(Decimal(1), {}, Decimal(days).normalize(), NOW), NOW)
        assert budget.duration_label() == f"rolling:{Decimal(days).normalize():f}d".replace(".0d", "d")
        assert "E" not in budget.duration_label()


@settings(max_examples=200)
@given(money, models, days, offset)
def test_a_new_entry_keeps_its_spend_and_says_so_when_its_period_already_ended(total, model_cost, d, age):
    stamp = NOW - age
    created = create_from_entry("p", "u", entry(total, model_cost, d, stamp), NOW)
    spent = sum(model_cost.values(), Decimal(0))
    assert created.budget.current_cost == spent and created.budget.model_cost == model_cost
    assert created.budget.period_start <= NOW < created.budget.reset_at
    if stamp + d * SECONDS_PER_DAY <= NOW:  # counted in the current window, which the answer says
        assert created.uncertain_spend_kept == (spent > 0)
    else:
        assert created.budget.period_start == stamp and not created.uncertain_spend_kept
    assert created.lineage is not None and created.lineage.counted[0].current_cost == spent
