"""Spend history, reports, adjustments and the audit ledger: what the history routes
do, in terms of the budget and the store.

- A user's periods: the current one (from the budget item), then the closed ones, newest first.
- A project's spend report: the user-level closed periods that *started* in ``[from, to)``, summed
  per user and per model (one paginated Query of the ``period-history`` index; see README).
- Adjustments: a debit (> 0) or a credit (< 0) to the current period's spend, with a required
  Idempotency-Key, applied in one TransactWriteItems with its Idempotency-Key item and its audit
  entry. A credit larger than the spend is clamped to the spend (spend never goes below zero);
  the answer and the ledger say what was asked and what was applied.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal, localcontext

from budget_service.core.errors import (
    BudgetNotFound,
    Contention,
    IdempotencyKeyReused,
    InvalidInput,
)
from budget_service.core.idempotency import (
    IDEMPOTENCY_TTL_SECONDS,
    check_idempotency_key,
    fingerprint_of,
)
from budget_service.core.numbers import SUM_CONTEXT
from budget_service.core.records import USER_LEVEL, AuditEntry, Budget, iso
from budget_service.domain import budgets
from budget_service.pricing.prices import default_table
from budget_service.schemas import (
    AdjustmentRequest,
    AdjustmentResponse,
    Ledger,
    LedgerEntry,
    PeriodList,
    PeriodRecord,
    SpendReport,
    SpendRow,
)
from budget_service.store.base import BudgetStore, default_store
from budget_service.store.history import HistoryStore, audit_put
from budget_service.store.levels import Cancelled, LevelWriter, Move, SpendBelowCredit

ZERO = Decimal(0)
# A report reads at most this many periods (about 2.5 MB of index reads); a wider range is
# refused with a 422 that says to narrow it.
MAX_REPORT_PERIODS = 10_000


def _cursor(sk: str | None) -> str | None:
    if sk is None:
        return None
    return base64.urlsafe_b64encode(json.dumps({"k": sk}).encode()).decode().rstrip("=")


def _after(cursor: str | None) -> str | None:
    if not cursor:
        return None
    try:
        sk = json.loads(base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode()))["k"]
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise InvalidInput("cursor is not one this API returned") from exc
    if not isinstance(sk, str):
        raise InvalidInput("cursor is not one this API returned")
    return sk


def _plain_json(value):
    """Stored values (Decimal numbers) as JSON values."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_json(v) for v in value]
    return value


def by_priced_model(model_cost) -> dict[str, Decimal]:
    """`model_cost` keyed by the model each name resolves to in the price table (``openai/gpt-4o``
    and ``gpt-4o`` are one ``gpt-4o`` entry); a name the table does not know stays as it is. New
    spend is stored so already; this merges what was stored under the names clients sent (the
    litellm protocol keeps them on the budget item, where its merge compares them)."""
    table = default_table()
    out: dict[str, Decimal] = {}
    with localcontext(SUM_CONTEXT):
        for name, cost in model_cost.items():
            key = table.resolve_name(name) or name
            out[key] = out[key] + cost if key in out else cost
    return out


def _closed_record(item: dict) -> PeriodRecord:
    return PeriodRecord(
        period_start=iso(item["period_start"]) or "",
        period_end=iso(item["period_end"]),
        current=False,
        total_budget=item["total_budget"],
        spend=item["spend"],
        model_cost=by_priced_model(item.get("model_cost", {})),
        held=item.get("held", ZERO),
        closed_by=item.get("closed_by"),
        closed_at=iso(item.get("closed_at")),
    )


def _open_records(budget: Budget, now: Decimal) -> list[PeriodRecord]:
    """The current period, preceded (newest first) by an ended one not rolled over yet."""
    records = []
    current = budget.as_of(now)
    start = current.period_start if current.period_start is not None else current.created_at
    records.append(
        PeriodRecord(
            period_start=iso(start) or "",
            period_end=iso(current.reset_at),
            current=True,
            total_budget=current.total_budget,
            spend=current.current_cost,
            model_cost=by_priced_model(current.model_cost),
            held=current.held,
            closed_by=None,
            closed_at=None,
        )
    )
    if current is not budget:  # the stored period ended and nobody has rolled it over yet
        records.append(
            PeriodRecord(
                period_start=iso(
                    budget.period_start if budget.period_start is not None else budget.created_at
                )
                or "",
                period_end=iso(budget.reset_at),
                current=False,
                total_budget=budget.total_budget,
                spend=budget.current_cost,
                model_cost=by_priced_model(budget.model_cost),
                held=budget.held,
                closed_by="pending",
                closed_at=None,
            )
        )
    return records


def list_periods(
    store: BudgetStore, project: str, user: str, limit: int, cursor: str | None, now: Decimal
) -> PeriodList:
    """The user's periods: on the first page the current one (and an ended one the next write
    will record), then closed ones newest first; `limit` closed ones per page. One GetItem and
    one Query. A deleted user's history is still listed; BudgetNotFound when there is neither."""
    history = HistoryStore(store)
    after = _after(cursor)
    budget = store.get(project, user) if after is None else None
    try:
        items, last = history.periods_page(project, USER_LEVEL, user, limit=limit, after_sk=after)
    except ValueError:
        raise InvalidInput("cursor is not one this API returned") from None
    if after is None and budget is None and not items:
        raise BudgetNotFound.for_user(project, user)
    records = (_open_records(budget, now) if budget is not None else []) + [_closed_record(i) for i in items]
    return PeriodList(project=project, user=user, periods=records, next_cursor=_cursor(last))


def list_ledger(store: BudgetStore, project: str, user: str, limit: int, cursor: str | None) -> Ledger:
    """The user's audit entries, newest first (one Query per page)."""
    try:
        items, last = HistoryStore(store).audit_page(
            project, USER_LEVEL, user, limit=limit, after_sk=_after(cursor)
        )
    except ValueError:
        raise InvalidInput("cursor is not one this API returned") from None
    if cursor is None and not items and store.get(project, user) is None:
        raise BudgetNotFound.for_user(project, user)
    entries = [
        LedgerEntry(
            action=i["action"],
            at=iso(i["at"]) or "",
            key_id=i.get("key_id"),
            details=_plain_json(i.get("details", {})),
        )
        for i in items
    ]
    return Ledger(project=project, user=user, entries=entries, next_cursor=_cursor(last))


# ---- the spend report ----------------------------------------------------------------------------


def spend_report(store: BudgetStore, project: str, start: Decimal, end: Decimal) -> SpendReport:
    """Spend per user and per model over the user-level closed periods that started in
    ``[start, end)`` (epoch seconds), with totals: the sum of exactly those periods. A range with
    more than MAX_REPORT_PERIODS periods is refused (InvalidInput: narrow it)."""
    if end <= start:
        raise InvalidInput("'to' must be after 'from'")
    items, complete = HistoryStore(store).periods_started(
        project, USER_LEVEL, start, end, max_items=MAX_REPORT_PERIODS
    )
    if not complete:
        raise InvalidInput(f"the range holds more than {MAX_REPORT_PERIODS} periods; narrow it")
    per_user: dict[str, dict] = defaultdict(
        lambda: {
            "spend": ZERO,
            "models": defaultdict(Decimal),
            "periods": 0,
            "model_periods": defaultdict(int),
        }
    )
    models: dict[str, Decimal] = defaultdict(Decimal)
    model_periods: dict[str, int] = defaultdict(int)
    total = ZERO
    # Exact: up to MAX_REPORT_PERIODS periods of up to SPEND_MAX each need more than 38 digits
    # (the sums are answered, never stored).
    with localcontext(SUM_CONTEXT):
        for item in items:
            row = per_user[item["level_id"]]
            row["spend"] += item["spend"]
            row["periods"] += 1
            total += item["spend"]
            for model, cost in by_priced_model(item.get("model_cost", {})).items():
                row["models"][model] += cost
                models[model] += cost
                row["model_periods"][model] += 1
                model_periods[model] += 1
    users = [
        SpendRow(
            user=user,
            spend=row["spend"],
            model_cost=dict(sorted(row["models"].items())),
            periods=row["periods"],
            model_periods=dict(sorted(row["model_periods"].items())),
        )
        for user, row in sorted(per_user.items())
    ]
    return SpendReport(
        project=project,
        range_from=iso(start) or "",
        range_to=iso(end) or "",
        total=total,  # type: ignore[call-arg]
        model_cost=dict(sorted(models.items())),
        periods=len(items),
        model_periods=dict(sorted(model_periods.items())),
        users=users,
    )


def _cell(value: str) -> str:
    # A cell a spreadsheet would run as a formula (CSV injection) is kept as text.
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def report_csv(report: SpendReport) -> str:
    """The report as CSV: ``user,model,spend,periods``; one row per user and model (``periods``: the
    user's periods with spend on that model), one per user with an empty model (the user's total,
    which includes adjustments without a model), and a last row with empty user and model (the
    project's total)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["user", "model", "spend", "periods"])
    for row in report.users:
        for model, cost in row.model_cost.items():
            writer.writerow(
                [_cell(row.user), _cell(model), format(cost, "f"), row.model_periods.get(model, 0)]
            )
        writer.writerow([_cell(row.user), "", format(row.spend, "f"), row.periods])
    writer.writerow(["", "", format(report.total, "f"), report.periods])
    return out.getvalue()


# ---- adjustments ---------------------------------------------------------------------------------


def adjust(
    store: BudgetStore,
    project: str,
    user: str,
    request: AdjustmentRequest,
    now: Decimal,
    idempotency_key: str | None,
    key_id: str | None,
) -> AdjustmentResponse:
    """Apply a debit or credit to the user's current-period spend, once per Idempotency-Key.

    One TransactWriteItems: the level Update (spend, ``model_cost[model]`` when given, and
    ``available``), the Idempotency-Key's item (only if new) and the audit entry. A DynamoDB
    update cannot clamp, so a credit first reads the budget (one GetItem), computes what it can
    apply (at most the spend, and the model's spend when a model is named), and writes it
    conditional on the spend still being at least that much; when a concurrent credit lowered it,
    it reads again. A replayed key answers the first result (``replayed``); the same key with
    another body is a 422. Errors: InvalidInput (no key), BudgetNotFound, Contention.
    """
    key = check_idempotency_key(idempotency_key)
    if key is None:
        raise InvalidInput(
            "an adjustment needs an Idempotency-Key header",
            details=[{"field": "Idempotency-Key", "problem": "missing"}],
        )
    digest = fingerprint_of(request.model_dump(mode="json", exclude_none=True))
    writer = LevelWriter(store)
    budget = store.get(project, user) if request.amount < 0 else None
    for _ in range(8):
        applied = request.amount
        if request.amount < 0:
            if budget is None:
                budget = store.get(project, user)
            if budget is None:
                raise BudgetNotFound.for_user(project, user)
            current = budget.as_of(now)
            spend = current.current_cost
            if request.model is not None:
                spend = min(spend, current.model_cost.get(request.model, ZERO))
            applied = max(request.amount, spend.copy_negate())
        result = {
            "amount": request.amount,
            "applied": applied,
            "clamped": applied != request.amount,
            "model": request.model,
            "reason": request.reason,
            "key_id": key_id,
            "created_at": now,
        }
        ledger = {
            "key": key,
            "kind": "adjustment",
            "fingerprint": digest,
            "result": result,
            "created_at": now,
            "expires_at": int(now) + IDEMPOTENCY_TTL_SECONDS,
        }
        audit = AuditEntry(
            project, USER_LEVEL, user, "adjustment", now, key_id, {**result, "idempotency_key": key}
        )
        move = Move(
            spend=applied,
            model=request.model if applied else None,
            floor=applied.copy_negate() if applied < 0 else None,
        )
        try:
            writer.write(
                project,
                user,
                move,
                now,
                extra=lambda levels, ledger=ledger, audit=audit: [  # type: ignore[misc]
                    {"Put": store._ledger_put(project, user, ledger)},
                    audit_put(store.table_name, audit),
                ],
            )
            return _adjustment(project, user, result, key)
        except SpendBelowCredit:
            budget = None  # a concurrent write lowered the spend: read it again
            continue
        except Cancelled as cancelled:
            first = cancelled.reasons[0][1]
        if first is None:
            continue
        if first.get("fingerprint") != digest:
            raise IdempotencyKeyReused(
                f"Idempotency-Key {key!r} was already used for a different request to this user;"
                " use a new key for a new adjustment"
            )
        return _adjustment(project, user, first["result"], key, replayed=True)
    raise Contention(f"budget {project}/{user}: its spend keeps changing; retry")


def _adjustment(
    project: str, user: str, result: dict, key: str, *, replayed: bool = False
) -> AdjustmentResponse:
    return AdjustmentResponse(
        project=project,
        user=user,
        amount=result["amount"],
        applied=result["applied"],
        clamped=bool(result["clamped"]),
        model=result.get("model"),
        reason=result["reason"],
        key_id=result.get("key_id"),
        idempotency_key=key,
        created_at=iso(result["created_at"]) or "",
        replayed=replayed,
    )


# ---- what each route does: the service's store and clock, the rule above, the answer's model ----

JSON = "application/json"
CSV = "text/csv; charset=utf-8"


def user_periods(project: str, user: str, limit: int, cursor: str | None) -> PeriodList:
    """``GET .../users/{user}/periods``: list_periods as of now."""
    return list_periods(default_store(), project, user, limit, cursor, budgets.utc_now())


def user_ledger(project: str, user: str, limit: int, cursor: str | None) -> Ledger:
    """``GET .../users/{user}/ledger``: list_ledger."""
    return list_ledger(default_store(), project, user, limit, cursor)


def _epoch(moment: datetime | None, default: Decimal, name: str) -> Decimal:
    """`moment` in epoch seconds (`default` when absent; a time without an offset is UTC).
    InvalidInput (a 422) for one outside years 1-9999 once in UTC
    (``9999-12-31T23:59:59-14:00``), which the report could not write back."""
    if moment is None:
        return default
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:
        raise InvalidInput(f"'{name}' is outside years 1 to 9999 in UTC") from None
    return Decimal(str(moment.timestamp()))


def project_spend(
    project: str, range_from: datetime | None, range_to: datetime | None, accept: str | None
) -> tuple[str, str]:
    """``GET /projects/{project}/spend``: the spend report over ``[from, to)`` (default: from the
    beginning to now) as (text, content type): CSV (report_csv) when `accept` asks for
    ``text/csv``, else the report's JSON."""
    report = spend_report(
        default_store(),
        project,
        _epoch(range_from, ZERO, "from"),
        _epoch(range_to, budgets.utc_now(), "to"),
    )
    if accept and "text/csv" in accept.lower():
        return report_csv(report), CSV
    return report.model_dump_json(by_alias=True), JSON


def adjust_user(
    project: str,
    user: str,
    request: AdjustmentRequest,
    idempotency_key: str | None,
    key_id: str | None,
) -> AdjustmentResponse:
    """``POST .../users/{user}/adjustments``: adjust now (``replayed`` on a repeated key)."""
    return adjust(default_store(), project, user, request, budgets.utc_now(), idempotency_key, key_id)
