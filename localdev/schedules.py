"""The template's Schedule/ScheduleV2 events, run locally on their schedule.

Supports ``rate(N minute|minutes|hour|hours|day|days)``, ``cron(min hour dom month dow year)``
in EventBridge syntax (``*``, ``?``, lists, ranges, steps and names; not ``L``, ``W`` or ``#``)
and ScheduleV2's one-time ``at(yyyy-mm-ddThh:mm:ss)``, in ``ScheduleExpressionTimezone``.
Each run gets the event EventBridge would deliver (or the event's ``Input``).
"""

from __future__ import annotations

import json
import re
import threading
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from localdev.events import ACCOUNT_ID as ACCOUNT
from localdev.template import literal

_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_CRON = re.compile(r"^cron\((.+)\)$")
_AT = re.compile(r"^at\((\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
_MONTHS = {
    m: i
    for i, m in enumerate(
        ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], 1
    )
}
# EventBridge numbers days of the week 1-7 from Sunday.
_DAYS = {d: i for i, d in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"], 1)}


class UnsupportedSchedule(ValueError):
    pass


def _field(text: str, low: int, high: int, names: dict[str, int] | None = None) -> frozenset[int] | None:
    """The values a cron field allows; None for ``*``/``?`` (anything)."""
    if text in ("*", "?"):
        return None
    if any(ch in text for ch in "LW#"):
        raise UnsupportedSchedule(f"cron field {text!r}: L, W and # are not supported locally")
    values: set[int] = set()
    for part in text.split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            step = int(step_text)
        if part == "*":
            start, end = low, high
        elif "-" in part:
            a, b = part.split("-", 1)
            start, end = _value(a, names), _value(b, names)
        else:
            start = _value(part, names)
            end = high if step != 1 else start
        if not (low <= start <= high and low <= end <= high) or step < 1:
            raise UnsupportedSchedule(f"cron field {text!r} is out of range {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


def _value(text: str, names: dict[str, int] | None) -> int:
    if names and text.upper() in names:
        return names[text.upper()]
    return int(text)


@dataclass(frozen=True)
class Cron:
    minutes: frozenset[int] | None
    hours: frozenset[int] | None
    days: frozenset[int] | None
    months: frozenset[int] | None
    weekdays: frozenset[int] | None  # 1 = Sunday
    years: frozenset[int] | None

    @classmethod
    def parse(cls, body: str) -> Cron:
        parts = body.split()
        if len(parts) != 6:
            raise UnsupportedSchedule(f"cron({body}) needs 6 fields")
        return cls(
            _field(parts[0], 0, 59),
            _field(parts[1], 0, 23),
            _field(parts[2], 1, 31),
            _field(parts[3], 1, 12, _MONTHS),
            _field(parts[4], 1, 7, _DAYS),
            _field(parts[5], 1970, 2199),
        )

    def next_after(self, after: datetime) -> datetime | None:
        """The first matching minute strictly after `after` (aware, in the schedule's zone)."""
        t = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
        # Jump field by field; bounded so an impossible expression (31 February) ends.
        for _ in range(100_000):
            if self.years is not None and t.year not in self.years:
                later = [y for y in self.years if y > t.year]
                if not later:
                    return None
                t = t.replace(year=min(later), month=1, day=1, hour=0, minute=0)
            elif self.months is not None and t.month not in self.months:
                t = _next_month(t)
            elif not self._day_matches(t):
                t = (t + timedelta(days=1)).replace(hour=0, minute=0)
            elif self.hours is not None and t.hour not in self.hours:
                t = (t + timedelta(hours=1)).replace(minute=0)
            elif self.minutes is not None and t.minute not in self.minutes:
                t = t + timedelta(minutes=1)
            else:
                return t
        return None

    def _day_matches(self, t: datetime) -> bool:
        weekday = t.isoweekday() % 7 + 1  # isoweekday: Monday 1 .. Sunday 7
        return (self.days is None or t.day in self.days) and (
            self.weekdays is None or weekday in self.weekdays
        )


def _next_month(t: datetime) -> datetime:
    year, month = (t.year + 1, 1) if t.month == 12 else (t.year, t.month + 1)
    return t.replace(year=year, month=month, day=1, hour=0, minute=0)


@dataclass
class Schedule:
    """One Schedule/ScheduleV2 event of a function."""

    function_id: str
    event_id: str
    expression: str
    kind: str  # "Schedule" (EventBridge rule) or "ScheduleV2" (EventBridge Scheduler)
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    input: str | None = None
    name: str = ""
    next_run: datetime | None = None

    def __post_init__(self) -> None:
        self.name = self.name or f"{self.function_id}{self.event_id}"
        expr = self.expression.strip()
        self._rate = self._cron = self._at = None
        if m := _RATE.match(expr):
            self._rate = timedelta(seconds=int(m[1]) * _UNIT_SECONDS[m[2].rstrip("s")])
            if self._rate <= timedelta(0):
                raise UnsupportedSchedule(f"{expr}: the rate must be positive")
        elif m := _CRON.match(expr):
            self._cron = Cron.parse(m[1])
        elif (m := _AT.match(expr)) and self.kind == "ScheduleV2":
            self._at = datetime.fromisoformat(m[1]).replace(tzinfo=self.timezone)
        else:
            raise UnsupportedSchedule(f"cannot run schedule expression {expr!r} locally")

    def next_after(self, after: datetime) -> datetime | None:
        if self._rate is not None:
            return after + self._rate
        if self._cron is not None:
            found = self._cron.next_after(after.astimezone(self.timezone))
            return found.astimezone(UTC) if found else None
        at = self._at
        return at.astimezone(UTC) if at is not None and at > after else None

    def event(self, when: datetime, region: str) -> dict:
        """What EventBridge delivers: the configured Input, else its scheduled event."""
        time = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event_id = str(uuid.uuid4())
        if self.kind == "ScheduleV2":
            arn = f"arn:aws:scheduler:{region}:{ACCOUNT}:schedule/default/{self.name}"
            if self.input is not None:
                # Scheduler's context attributes, substituted as the service does.
                text = (
                    self.input.replace("<aws.scheduler.schedule-arn>", arn)
                    .replace("<aws.scheduler.scheduled-time>", time)
                    .replace("<aws.scheduler.execution-id>", event_id)
                    .replace("<aws.scheduler.attempt-number>", "1")
                )
                return json.loads(text)
            return {
                "version": "0",
                "id": event_id,
                "detail-type": "Scheduled Event",
                "source": "aws.scheduler",
                "account": ACCOUNT,
                "time": time,
                "region": region,
                "resources": [arn],
                "detail": "{}",
            }
        if self.input is not None:
            return json.loads(self.input)
        return {
            "version": "0",
            "id": event_id,
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": ACCOUNT,
            "time": time,
            "region": region,
            "resources": [f"arn:aws:events:{region}:{ACCOUNT}:rule/{self.name}"],
            "detail": {},
        }


def from_template(
    events: list[tuple[str, str, dict]], parameters: dict[str, str]
) -> tuple[list[Schedule], list[str]]:
    """Schedules from localdev.template.scheduled_events(); and why any were left out."""
    schedules, skipped = [], []
    for function_id, event_id, props in events:
        kind = "ScheduleV2" if "ScheduleExpression" in props else "Schedule"
        expression = literal(props.get("ScheduleExpression") or props.get("Schedule"), parameters)
        state = (literal(props.get("State", "ENABLED"), parameters) or "ENABLED").upper()
        if state == "DISABLED" or props.get("Enabled") is False:
            skipped.append(f"{function_id}.{event_id}: disabled in the template")
            continue
        if expression is None:
            skipped.append(f"{function_id}.{event_id}: cannot resolve its schedule expression")
            continue
        raw_input = props.get("Input")
        event_input = literal(raw_input, parameters) if raw_input is not None else None
        if raw_input is not None and event_input is None:
            skipped.append(f"{function_id}.{event_id}: cannot resolve its Input")
            continue
        try:
            schedules.append(
                Schedule(
                    function_id,
                    event_id,
                    expression,
                    kind,
                    timezone=ZoneInfo(literal(props.get("ScheduleExpressionTimezone"), parameters) or "UTC"),
                    input=event_input,
                    name=literal(props.get("Name"), parameters) or "",
                )
            )
        except (UnsupportedSchedule, ValueError) as exc:
            skipped.append(f"{function_id}.{event_id}: {exc}")
    return schedules, skipped


class Scheduler:
    """Runs due schedules on a background thread until stopped."""

    def __init__(
        self,
        schedules: list[Schedule],
        invoke: Callable[[str, dict], object],
        region: str,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        log: Callable[[str], None] = print,
    ) -> None:
        self.schedules = schedules
        self.invoke = invoke
        self.region = region
        self.now = now
        self.log = log
        self._stop = threading.Event()
        self._wake = threading.Event()
        # Held while a run is under way: a clock moved back waits for it (see clock_moved).
        self._running = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
        start = now()
        for s in schedules:
            s.next_run = s.next_after(start)

    def run_due(self, now: datetime) -> list[Schedule]:
        """Invoke every schedule whose time has come; returns them."""
        ran = []
        for s in self.schedules:
            if s.next_run is None or s.next_run > now:
                continue
            due, s.next_run = s.next_run, s.next_after(max(s.next_run, now))
            ran.append(s)
            with self._running:
                try:
                    result = self.invoke(s.function_id, s.event(due, self.region))
                    self.log(
                        f"schedule {s.name} ran {s.function_id}: {json.dumps(result, default=str)[:500]}"
                    )
                except Exception:  # a failing run must not stop the schedule (as in AWS)
                    self.log(f"schedule {s.name} failed in {s.function_id}:\n{traceback.format_exc()}")
        return ran

    def clock_moved(self, old: float, new: float) -> None:
        """The local clock jumped (localdev/clock.py): forward, the loop wakes and runs what is now
        due (once, as a late EventBridge run would); back, each schedule's next run is counted
        again from the new time."""
        if new < old:
            # A run still under way read the later time when it began (the reset job reads the
            # clock once): let it finish before the caller writes anything at the earlier time,
            # or it would roll what is written now by a time that no longer is. (Real time never
            # goes back; this keeps a test's jumps from racing the job.)
            with self._running:
                pass
            moved = datetime.fromtimestamp(new, UTC)
            for s in self.schedules:
                s.next_run = s.next_after(moved)
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.run_due(self.now())
            upcoming = [s.next_run for s in self.schedules if s.next_run is not None]
            if not upcoming:
                return
            delay = (min(upcoming) - self.now()).total_seconds()
            # Wake at least every minute, so a suspended laptop catches up soon after resuming;
            # and at once when the local clock is moved.
            self._wake.wait(timeout=min(max(delay, 0.0), 60.0))
            self._wake.clear()

    def start(self) -> Scheduler:
        if self.schedules:
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
