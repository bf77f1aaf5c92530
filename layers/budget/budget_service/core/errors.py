"""Domain errors. Each carries the HTTP status and machine-readable code it maps to.

Handlers never build error responses themselves: `http.py` maps these in one place.
"""

from __future__ import annotations

from http import HTTPStatus

from budget_service.core.numbers import plain_number


class BudgetError(Exception):
    status: HTTPStatus = HTTPStatus.BAD_REQUEST
    code: str = "bad_request"

    def __init__(self, message: str, *, details: object | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidInput(BudgetError):
    status = HTTPStatus.UNPROCESSABLE_ENTITY
    code = "validation_error"


class BudgetNotFound(BudgetError):
    status = HTTPStatus.NOT_FOUND
    code = "budget_not_found"

    @classmethod
    def for_user(cls, project: str, user: str) -> BudgetNotFound:
        return cls(f"no budget for user {user!r} in project {project!r}")


class UnknownModel(BudgetError):
    status = HTTPStatus.UNPROCESSABLE_ENTITY
    code = "unknown_model"


class UnpricedUsage(BudgetError):
    """The usage names something the model's price cannot bill (a service tier, a web search
    without a price): refused rather than charged at another rate; the caller passes ``cost``."""

    status = HTTPStatus.UNPROCESSABLE_ENTITY
    code = "unpriced_usage"


class PriceNotFound(BudgetError):
    """No project price for that model (per-project prices)."""

    status = HTTPStatus.NOT_FOUND
    code = "price_not_found"


class IdempotencyKeyReused(BudgetError):
    """The Idempotency-Key was already used for a different request to this user."""

    status = HTTPStatus.UNPROCESSABLE_ENTITY
    code = "idempotency_key_reused"


class BudgetExceeded(BudgetError):
    """A hold (or a cost with ``if_within_budget``) does not fit a level's headroom; nothing was
    written. ``details`` lists each level that refused: ``{"level", "name", "available",
    "needed"}`` (USD)."""

    status = HTTPStatus.PAYMENT_REQUIRED
    code = "budget_exceeded"

    @classmethod
    def at_level(cls, level: str, name: str, *, available, needed) -> BudgetExceeded:
        return cls.at_levels([{"level": level, "name": name, "available": available, "needed": needed}])

    @classmethod
    def at_levels(cls, refusals: list[dict]) -> BudgetExceeded:
        # Amounts as exact Decimals (the JSON answer writes them in plain notation) and in plain
        # notation in the message: str(Decimal) would say 1E+1 or 9E-7, a float would round.
        details = [{**r, "available": max(r["available"], 0)} for r in refusals]
        shown = "; ".join(
            f"{r['level']} {r['name']!r} has {plain_number(r['available'])} available" for r in details
        )
        return cls(f"the budget cannot cover {plain_number(refusals[0]['needed'])}: {shown}", details=details)


class SpendLimitExceeded(BudgetError):
    """A write would take a budget level's stored spend (``current_cost`` or a ``model_cost``
    entry) or its ``held`` past +-SPEND_MAX (USD, per period), the bound that keeps every stored
    sum within DynamoDB's 38 digits (core/numbers.py); nothing was written. Not "over budget" (402):
    a larger budget does not help; the period's rollover or a reset does. ``details`` lists each
    level and field that refused: ``{"level", "name", "field", "stored", "change", "limit"}``
    (USD, exact)."""

    status = HTTPStatus.UNPROCESSABLE_ENTITY
    code = "spend_limit_exceeded"

    @classmethod
    def at_levels(cls, refusals: list[dict]) -> SpendLimitExceeded:
        from budget_service.core.numbers import plain_number

        shown: dict[tuple, str] = {}
        for r in refusals:  # the first field of each level
            shown.setdefault(
                (r["level"], r["name"]),
                f"{r['level']} {r['name']!r} ({r['field']} {plain_number(r['stored'])}"
                f" {'+' if r['change'] > 0 else '-'} {plain_number(r['change'].copy_abs())})",
            )
        return cls(
            f"this write would take {', '.join(shown.values())} past {plain_number(refusals[0]['limit'])} USD,"
            " the most a budget level keeps per period (every stored sum stays exact in DynamoDB);"
            " nothing was written",
            details=refusals,
        )

    @classmethod
    def in_set_budget(cls, refusals: list[dict]) -> SpendLimitExceeded:
        """set_budget's refusal: ``refusals`` are ``{"level": "user", "name", "field",
        "would_store", "limit"}`` for each user whose merged spend would pass the limit."""
        from budget_service.core.numbers import plain_number

        shown = ", ".join(
            f"{r['name']!r} ({r['field']} {plain_number(r['would_store'])})" for r in refusals[:5]
        )
        more = f" and {len(refusals) - 5} more" if len(refusals) > 5 else ""
        return cls(
            f"set_budget would store spend over {plain_number(refusals[0]['limit'])} USD, the most a"
            f" budget level keeps per period, for user(s) {shown}{more}; nothing was written",
            details=refusals,
        )


class LevelNotFound(BudgetError):
    """No such project budget or team (a budget level)."""

    status = HTTPStatus.NOT_FOUND
    code = "level_not_found"


class HoldNotFound(BudgetError):
    status = HTTPStatus.NOT_FOUND
    code = "hold_not_found"


class PayloadTooLarge(BudgetError):
    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    code = "payload_too_large"


class Contention(BudgetError):
    """Too many concurrent writers on one item outlasted the service's own retries; nothing was
    written. A 503 with Retry-After: the request may be sent again as it was."""

    status = HTTPStatus.SERVICE_UNAVAILABLE
    code = "write_contention"
    retry_after_seconds = 1


# ---- security and robustness -----------------------------------------------------------------------


class Unauthorized(BudgetError):
    """No API key, or one that is unknown, malformed or revoked."""

    status = HTTPStatus.UNAUTHORIZED
    code = "unauthorized"


class Forbidden(BudgetError):
    """A valid key, outside its scope: another project, or an operation its role may not do."""

    status = HTTPStatus.FORBIDDEN
    code = "forbidden"


class ServiceUnavailable(BudgetError):
    """DynamoDB failed (throttled, timed out, 5xx) after the client's retries, or time ran out.

    `details["outcome"]` says what was written: ``not_written``, ``unknown`` (a write may have
    landed), or for a multi-user write ``partially_written``, with the users in `details`.
    """

    status = HTTPStatus.SERVICE_UNAVAILABLE
    code = "service_unavailable"
    retry_after_seconds = 1
