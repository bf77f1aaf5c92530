"""Budget periods: calendar-aligned (UTC or an IANA timezone) and litellm's rolling days.

Named boundaries first (month ends in leap and common years, year end, a weekly budget created on
a Sunday, DST changes both ways, including zones whose midnight is skipped or repeated), then
properties over many instants and zones: the period contains `now`, periods tile without gaps
or overlaps, and every boundary is the first instant of a local day on the right weekday/day.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from moments import at, utc

from budget_service.core.periods import (
    SECONDS_PER_DAY,
    Duration,
    Period,
    calendar_period,
    rolling_period,
    to_datetime,
)
from budget_service.core.records import Budget

UTC = dt.UTC


def period(duration: Duration, now: Decimal, tz: str | None = None) -> Period:
    return calendar_period(duration, tz, now)


# ---- month ends ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("year", "march_first"),
    [(2024, "2024-03-01T00:00:00"), (2023, "2023-03-01T00:00:00"), (2100, "2100-03-01T00:00:00")],
    ids=["leap", "common", "century-common"],
)
def test_monthly_budget_created_31_january_resets_1_february_then_1_march(year, march_first):
    created = utc(f"{year}-01-31T18:30:00")
    january = period(Duration.MONTHLY, created)
    assert (january.start, january.end) == (utc(f"{year}-01-01T00:00:00"), utc(f"{year}-02-01T00:00:00"))
    # Not "31 January + 1 month" (which would be 2 or 3 March): February is a whole period.
    february = period(Duration.MONTHLY, january.end)
    assert (february.start, february.end) == (utc(f"{year}-02-01T00:00:00"), utc(march_first))
    last_second_of_february = february.end - Decimal("0.000001")
    assert period(Duration.MONTHLY, last_second_of_february) == february
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    assert february.length_days == (29 if leap else 28)


def test_a_nanosecond_before_a_boundary_is_still_the_old_period():
    # Epochs are kept below float precision: the last nanosecond of January is in January.
    boundary = utc("2024-02-01T00:00:00")
    just_before = boundary - Decimal("0.000000001")
    assert float(just_before) == float(boundary)  # what a float-based calculation would see
    assert period(Duration.MONTHLY, just_before) == Period(utc("2024-01-01T00:00:00"), boundary)
    assert period(Duration.DAILY, just_before, "Europe/Berlin").end == utc("2024-01-31T23:00:00") + 86400


def test_leap_day_is_in_february_and_the_day_after_is_march():
    assert period(Duration.DAILY, utc("2024-02-29T12:00:00")).end == utc("2024-03-01T00:00:00")
    assert period(Duration.MONTHLY, utc("2024-02-29T23:59:59.999999")).end == utc("2024-03-01T00:00:00")
    assert period(Duration.MONTHLY, utc("2024-03-01T00:00:00")).start == utc("2024-03-01T00:00:00")


@pytest.mark.parametrize(
    ("now", "start", "end"),
    [
        ("2024-04-30T23:59:59", "2024-04-01T00:00:00", "2024-05-01T00:00:00"),  # 30-day month
        ("2024-05-31T00:00:00", "2024-05-01T00:00:00", "2024-06-01T00:00:00"),  # 31-day month
        ("2024-12-31T23:59:59.999999", "2024-12-01T00:00:00", "2025-01-01T00:00:00"),
        ("2025-01-01T00:00:00", "2025-01-01T00:00:00", "2025-02-01T00:00:00"),
    ],
)
def test_month_ends(now, start, end):
    assert period(Duration.MONTHLY, utc(now)) == Period(utc(start), utc(end))


# ---- year end ------------------------------------------------------------------------------------


def test_year_end_for_every_duration():
    last = utc("2024-12-31T23:59:59.999999")
    first = utc("2025-01-01T00:00:00")
    assert period(Duration.DAILY, last) == Period(utc("2024-12-31T00:00:00"), first)
    assert period(Duration.MONTHLY, last).end == first
    assert period(Duration.YEARLY, last) == Period(utc("2024-01-01T00:00:00"), first)
    assert period(Duration.YEARLY, first) == Period(first, utc("2026-01-01T00:00:00"))
    # A week does not stop at the year's end: Monday 30 December 2024 to Monday 6 January 2025.
    assert period(Duration.WEEKLY, last) == Period(utc("2024-12-30T00:00:00"), utc("2025-01-06T00:00:00"))
    assert period(Duration.WEEKLY, first) == period(Duration.WEEKLY, last)
    assert period(Duration.YEARLY, utc("2024-06-01T00:00:00")).length_days == 366
    assert period(Duration.YEARLY, utc("2025-06-01T00:00:00")).length_days == 365


def test_year_end_in_a_timezone_is_local_new_year():
    # New Year in Tokyo is 15:00 UTC on 31 December.
    assert period(Duration.YEARLY, utc("2024-12-31T15:00:00"), "Asia/Tokyo").start == utc(
        "2024-12-31T15:00:00"
    )
    assert period(Duration.YEARLY, utc("2024-12-31T14:59:59"), "Asia/Tokyo").end == utc("2024-12-31T15:00:00")


# ---- weeks ---------------------------------------------------------------------------------------


def test_weekly_budget_created_on_a_sunday_resets_the_next_monday():
    sunday = utc("2024-03-10T09:15:00")
    assert to_datetime(sunday).weekday() == 6
    budget = Budget(
        project="p",
        user="u",
        total_budget=Decimal(10),
        created_at=sunday,
        updated_at=sunday,
        duration=Duration.WEEKLY,
    ).with_period_from(sunday)
    # Its first period is the week it was created in, Monday to Monday: it resets hours later.
    assert budget.period_start == utc("2024-03-04T00:00:00")
    assert budget.reset_at == utc("2024-03-11T00:00:00")
    assert to_datetime(budget.reset_at).weekday() == 0
    # And every 7 days after, always on a Monday.
    following = budget.as_of(budget.reset_at)
    assert (following.period_start, following.reset_at) == (
        utc("2024-03-11T00:00:00"),
        utc("2024-03-18T00:00:00"),
    )


def test_weekly_period_on_a_monday_starts_that_monday():
    monday = utc("2024-03-11T00:00:00")
    assert period(Duration.WEEKLY, monday).start == monday
    assert period(Duration.WEEKLY, monday - 1).end == monday


# ---- DST -----------------------------------------------------------------------------------------


def test_daily_new_york_across_spring_forward_is_23_hours():
    # 10 March 2024: 02:00 EST -> 03:00 EDT.
    tz = "America/New_York"
    day = period(Duration.DAILY, at("2024-03-10T12:00:00", tz), tz)
    assert day.start == utc("2024-03-10T05:00:00")  # 00:00 EST
    assert day.end == utc("2024-03-11T04:00:00")  # 00:00 EDT
    assert day.end - day.start == 23 * 3600
    assert period(Duration.DAILY, day.end, tz).start == day.end


def test_daily_new_york_across_fall_back_is_25_hours():
    # 3 November 2024: 02:00 EDT -> 01:00 EST; 01:30 happens twice, both on the same day.
    tz = "America/New_York"
    first_130 = utc("2024-11-03T05:30:00")
    second_130 = utc("2024-11-03T06:30:00")
    day = period(Duration.DAILY, first_130, tz)
    assert period(Duration.DAILY, second_130, tz) == day
    assert (day.start, day.end) == (utc("2024-11-03T04:00:00"), utc("2024-11-04T05:00:00"))
    assert day.end - day.start == 25 * 3600


def test_weekly_and_monthly_london_across_both_dst_changes():
    tz = "Europe/London"
    # Clocks go forward 31 March 2024 (a Sunday): the week of 25 March ends at 00:00 BST on 1 April.
    week = period(Duration.WEEKLY, utc("2024-03-31T12:00:00"), tz)
    assert (week.start, week.end) == (utc("2024-03-25T00:00:00"), utc("2024-03-31T23:00:00"))
    assert week.end - week.start == 7 * 86400 - 3600
    march = period(Duration.MONTHLY, utc("2024-03-15T00:00:00"), tz)
    assert (march.start, march.end) == (utc("2024-03-01T00:00:00"), utc("2024-03-31T23:00:00"))
    # Clocks go back 27 October 2024: October's budget runs to 00:00 GMT on 1 November.
    october = period(Duration.MONTHLY, utc("2024-10-27T01:30:00"), tz)
    assert (october.start, october.end) == (utc("2024-09-30T23:00:00"), utc("2024-11-01T00:00:00"))


def test_santiago_spring_forward_skips_midnight_so_the_day_starts_at_the_jump():
    # Chile, 8 September 2024: 00:00 -04 does not exist; clocks jump to 01:00 -03 (04:00 UTC).
    tz = "America/Santiago"
    jump = utc("2024-09-08T04:00:00")
    saturday = period(Duration.DAILY, jump - 1, tz)
    sunday = period(Duration.DAILY, jump, tz)
    assert saturday == Period(utc("2024-09-07T04:00:00"), jump)
    assert sunday == Period(jump, utc("2024-09-09T03:00:00"))
    assert to_datetime(sunday.start).astimezone(ZoneInfo(tz)).time() == dt.time(1, 0)
    # The week containing that Sunday still ends at local midnight on Monday 9 September.
    assert period(Duration.WEEKLY, jump, tz).end == utc("2024-09-09T03:00:00")


def test_santiago_fall_back_repeats_the_last_hour_of_saturday():
    # Chile, 6/7 April 2024: 24:00 -03 -> 23:00 -04. Saturday has 25 hours; Sunday starts 04:00 UTC.
    tz = "America/Santiago"
    saturday = period(Duration.DAILY, utc("2024-04-07T03:30:00"), tz)  # 23:30, the second time
    assert saturday == Period(utc("2024-04-06T03:00:00"), utc("2024-04-07T04:00:00"))
    assert saturday.end - saturday.start == 25 * 3600


def test_havana_fall_back_repeats_midnight_and_the_day_starts_at_the_first_one():
    # Cuba, 3 November 2024: 01:00 -04 -> 00:00 -05; local midnight happens twice.
    tz = "America/Havana"
    sunday = period(Duration.DAILY, utc("2024-11-03T05:30:00"), tz)  # 00:30 the second time
    assert sunday.start == utc("2024-11-03T04:00:00")  # the first 00:00
    assert sunday.end == utc("2024-11-04T05:00:00")
    assert period(Duration.DAILY, sunday.start - 1, tz).end == sunday.start


def test_budget_in_a_timezone_resets_at_local_midnight_across_dst():
    tz = "America/New_York"
    created = at("2024-03-09T20:00:00", tz)
    budget = Budget(
        project="p",
        user="u",
        total_budget=Decimal(5),
        created_at=created,
        updated_at=created,
        duration=Duration.DAILY,
        timezone=tz,
    ).with_period_from(created)
    instants = []
    for _ in range(3):
        instants.append(budget.reset_at)
        budget = budget.as_of(budget.reset_at)
    # Local midnight each night; the UTC instant moves by an hour after the change.
    assert instants == [utc("2024-03-10T05:00:00"), utc("2024-03-11T04:00:00"), utc("2024-03-12T04:00:00")]


# ---- rolling (litellm's numeric duration) --------------------------------------------------------


def test_rolling_periods_are_back_to_back_from_the_anchor():
    anchor = utc("2024-01-31T10:00:00")
    p = rolling_period(anchor, Decimal(28), anchor + 28 * SECONDS_PER_DAY)
    assert p.start == anchor + 28 * SECONDS_PER_DAY
    # litellm's rule: ended when now - start >= duration days.
    assert rolling_period(anchor, Decimal(28), p.start - Decimal("0.000001")).start == anchor


# ---- properties ----------------------------------------------------------------------------------

ZONES = [
    None,
    "UTC",
    "America/New_York",
    "Europe/London",
    "Europe/Berlin",
    "Australia/Lord_Howe",  # 30-minute DST
    "America/Santiago",  # DST at midnight: midnight skipped in spring
    "America/Havana",  # DST at midnight: midnight repeated in autumn
    "Asia/Beirut",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Pacific/Chatham",
    "Pacific/Apia",  # skipped 30 December 2011 entirely
    "America/St_Johns",
    "Pacific/Kiritimati",
]

instants = st.builds(
    lambda s, us: Decimal(s) + Decimal(us) / Decimal(10**6),
    st.integers(min_value=int(utc("1971-01-01T00:00:00")), max_value=int(utc("2099-12-31T00:00:00"))),
    st.integers(min_value=0, max_value=999_999),
)
# Instants near DST changes and month ends are where bugs live: aim some draws at them.
near_boundaries = st.builds(
    lambda base, offset: base + offset,
    st.sampled_from(
        [
            utc(t)
            for t in (
                "2024-03-10T07:00:00",
                "2024-11-03T06:00:00",
                "2024-09-08T04:00:00",
                "2024-04-07T04:00:00",
                "2024-11-03T05:00:00",
                "2011-12-30T10:00:00",
                "2024-03-31T01:00:00",
                "2024-10-27T01:00:00",
                "2024-12-31T12:00:00",
                "2024-02-29T12:00:00",
                "2023-02-28T12:00:00",
                "2024-03-29T22:00:00",
            )
        ]
    ),
    st.integers(min_value=-2 * 86400, max_value=2 * 86400).map(Decimal),
)
moments = st.one_of(instants, near_boundaries)


def local(epoch: Decimal, tz: str | None) -> dt.datetime:
    return to_datetime(epoch).astimezone(ZoneInfo(tz) if tz else UTC)


def is_start_of_local_day(epoch: Decimal, tz: str | None) -> bool:
    """True when `epoch` is the first second of its local day (00:00, or the jump past it)."""
    return epoch == int(epoch) and local(epoch - 1, tz).date() < local(epoch, tz).date()


@settings(max_examples=400, deadline=None)
@given(duration=st.sampled_from(list(Duration)), tz=st.sampled_from(ZONES), now=moments)
def test_calendar_period_contains_now_and_tiles(duration, tz, now):
    p = calendar_period(duration, tz, now)
    assert p.start <= now < p.end
    # No gap and no overlap with the neighbours.
    assert calendar_period(duration, tz, p.end).start == p.end
    assert calendar_period(duration, tz, p.start - Decimal("0.000001")).end == p.start
    # Every instant of the period maps to the same period.
    assert calendar_period(duration, tz, p.end - Decimal("0.000001")) == p
    assert calendar_period(duration, tz, p.start) == p


@settings(max_examples=400, deadline=None)
@given(duration=st.sampled_from(list(Duration)), tz=st.sampled_from(ZONES), now=moments)
def test_calendar_boundaries_are_local_midnights_on_the_right_day(duration, tz, now):
    p = calendar_period(duration, tz, now)
    for boundary in (p.start, p.end):
        assert is_start_of_local_day(boundary, tz), (boundary, local(boundary, tz))
        moment = local(boundary, tz)
        # Local midnight, unless that zone skipped midnight on that day (then the jump past it).
        if moment.time() != dt.time(0, 0):
            assert local(boundary - 1, tz).time() >= dt.time(23, 0), moment
        if duration is Duration.WEEKLY:
            assert moment.weekday() == 0, moment
        elif duration is Duration.MONTHLY:
            assert moment.day == 1, moment
        elif duration is Duration.YEARLY:
            assert (moment.month, moment.day) == (1, 1), moment
    hours = (p.end - p.start) / 3600
    nominal = {
        Duration.DAILY: (1, 1),
        Duration.WEEKLY: (7, 7),
        Duration.MONTHLY: (28, 31),
        Duration.YEARLY: (365, 366),
    }[duration]
    # DST moves a boundary by at most an hour; Apia's skipped day shortens one period by a day.
    assert nominal[0] * 24 - 25 <= hours <= nominal[1] * 24 + 1


@settings(max_examples=300, deadline=None)
@given(
    anchor=instants,
    days=st.sampled_from([Decimal(1), Decimal(7), Decimal(28), Decimal(30), Decimal(365), Decimal("0.5")]),
    offset=st.integers(min_value=0, max_value=3000 * 86400).map(Decimal),
)
def test_rolling_period_contains_now_and_tiles(anchor, days, offset):
    now = anchor + offset
    p = rolling_period(anchor, days, now)
    assert p.start <= now < p.end
    assert p.end - p.start == days * SECONDS_PER_DAY
    assert (p.start - anchor) % (days * SECONDS_PER_DAY) == 0
    assert rolling_period(anchor, days, p.end).start == p.end
    if p.start > anchor:
        assert rolling_period(anchor, days, p.start - Decimal("0.000001")).end == p.start
