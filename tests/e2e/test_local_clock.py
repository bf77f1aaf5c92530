"""make dev on a shifted clock: LOCAL_CLOCK_START, GET/POST /_local/clock, and what reads it."""

import time
from datetime import UTC, datetime

import pytest
import requests
from conftest import wait_until

from budget_service.core import clock as service_clock
from budget_service.domain import budgets
from localdev import schedules
from localdev.clock import ClockError, LocalClock, from_environ, parse_instant
from localdev.ready_time import ServerProcess

START = "2027-01-31T23:59:58Z"


class Wall:
    """A wall clock the test moves by hand."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_the_clock_runs_forward_from_where_it_is_put():
    wall = Wall()
    clock = LocalClock(wall)
    assert clock.time() == 1_000.0  # unshifted: the wall clock
    clock.set(parse_instant(START))
    assert clock.time() == parse_instant(START)
    wall.now += 2.5
    assert clock.time() == parse_instant(START) + 2.5  # runs on in real time
    clock.advance(60)
    assert clock.time() == parse_instant(START) + 62.5
    clock.set(parse_instant(START), frozen=True)
    wall.now += 100
    assert clock.time() == parse_instant(START)  # frozen
    clock.advance(1)  # stays frozen unless told otherwise
    wall.now += 100
    assert clock.time() == parse_instant(START) + 1
    assert clock.apply({"advance_seconds": 1, "frozen": False})["frozen"] is False


@pytest.mark.parametrize(
    "body",
    [
        [],
        {},
        {"now": START, "advance_seconds": 1},
        {"now": "tomorrow"},
        {"now": "2027-01-31T23:59:00"},
        {"advance_seconds": "60"},
        {"advance_seconds": True},
        {"now": 5},
        {"now": START, "frozen": "yes"},
        {"now": START, "speed": 2},
    ],
)
def test_a_bad_clock_setting_is_refused_and_changes_nothing(body):
    clock = LocalClock(Wall())
    with pytest.raises(ClockError):
        clock.apply(body)
    assert clock.time() == 1_000.0


def test_the_environment_shifts_the_clock():
    assert from_environ({}).state()["shifted_by_seconds"] == pytest.approx(0, abs=1)
    clock = from_environ({"LOCAL_CLOCK_START": START, "LOCAL_CLOCK_FROZEN": "1"})
    assert clock.state()["now"] == "2027-01-31T23:59:58.000000Z" and clock.state()["frozen"]


def test_the_service_reads_time_through_one_seam():
    shifted = parse_instant(START)
    service_clock.use(lambda: shifted)
    try:
        assert budgets.utc_now() == int(shifted)
    finally:
        service_clock.use(None)
    assert abs(budgets.utc_now() - int(time.time())) < 5


def test_the_scheduler_counts_again_when_the_clock_goes_back():
    schedule = schedules.Schedule("Fn", "Every5", "rate(5 minutes)", "ScheduleV2")
    start = datetime(2027, 2, 1, tzinfo=UTC)
    scheduler = schedules.Scheduler([schedule], lambda *_: None, "us-east-1", now=lambda: start)
    assert schedule.next_run == datetime(2027, 2, 1, 0, 5, tzinfo=UTC)
    earlier = datetime(2027, 1, 1, tzinfo=UTC)
    scheduler.clock_moved(start.timestamp(), earlier.timestamp())
    assert schedule.next_run == datetime(2027, 1, 1, 0, 5, tzinfo=UTC)


def test_make_dev_on_a_shifted_clock_shows_a_rollover_and_a_reset_run_in_seconds():
    proc = ServerProcess(env={"LOCAL_CLOCK_START": START})
    try:
        proc.wait_ready()
        url = proc.url
        state = requests.get(url + "/_local/clock", timeout=10).json()
        assert state["now"].startswith("2027-0") and not state["frozen"]
        budget = f"{url}/projects/clock/users/bob"
        assert requests.put(budget, json={"total_budget": 20, "duration": "monthly"}, timeout=10).ok
        assert requests.post(budget + "/cost", json={"model": "gpt-4o", "cost": 0.00001}, timeout=10).ok
        first = requests.get(budget, timeout=10).json()
        if first["reset_at"] == "2027-02-01T00:00:00Z":  # still January: watch February begin
            assert first["current_cost"] == 0.00001
            wait_until(
                lambda: requests.get(budget, timeout=10).json()["period_start"] == "2027-02-01T00:00:00Z"
            )
            february = requests.get(budget, timeout=10).json()
            assert february["current_cost"] == 0 and february["reset_at"] == "2027-03-01T00:00:00Z"
        else:  # the server took more than two seconds to get here
            assert first["reset_at"] == "2027-03-01T00:00:00Z"
        # Jump to the last seconds of February: the scheduled reset job (rate(5 minutes)) runs
        # on the moved clock and rolls the budget over, as EventBridge Scheduler would.
        moved = requests.post(url + "/_local/clock", json={"now": "2027-03-01T00:04:59Z"}, timeout=10)
        assert moved.ok and moved.json()["now"].startswith("2027-03-01T00:04:59")
        wait_until(lambda: '"reset": 1' in proc.output())
        march = requests.get(budget, timeout=10).json()
        assert march["period_start"] == "2027-03-01T00:00:00Z" and march["duration"] == "monthly"
        bad = requests.post(url + "/_local/clock", json={"now": "soon"}, timeout=10)
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_clock"
    finally:
        proc.close()
