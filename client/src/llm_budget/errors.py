"""Exceptions for the service's answers.

The service answers errors as ``{"error": {"code", "message", "details"}}`` with a 4xx or 5xx
status. Each is raised as the class for its ``code`` (or, for a code this client does not know,
for its status), all subclasses of ``BudgetError``:

- ``BudgetExceeded`` (402 ``budget_exceeded``): a hold, or a cost with ``if_within_budget``, did
  not fit; ``levels`` names each level that refused. Nothing was written.
- ``NotFound`` (404): ``BudgetNotFound`` (also a ``KeyError``, as litellm's BudgetManager raises
  for an unknown user), ``HoldNotFound``.
- ``ValidationFailed`` (400, 413, 422): ``UnknownModel`` (pass ``cost`` instead), the request was
  wrong and nothing was written; ``IdempotencyKeyReused``: the key was used for another body.
- ``AuthenticationFailed`` (401), ``PermissionDenied`` (403).
- ``Unavailable`` (503, 429, or no answer at all after the client's retries), with
  ``retry_after`` in seconds when the service said; ``Contention`` (503 ``write_contention``).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any


class BudgetError(Exception):
    """Any error the service answered (or a failure to reach it).

    ``status`` is the HTTP status (0 when no answer came), ``code`` the service's machine-readable
    code, ``message`` its human message and ``details`` its details (a list or dict, or None).
    """

    status: int = 0
    code: str = "error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.details = details

    def __str__(self) -> str:  # KeyError's own __str__ would repr the message
        return self.message


class ValidationFailed(BudgetError):
    """The request was malformed or out of range (400, 413, 422); nothing was written."""

    status = 422
    code = "validation_error"


class UnknownModel(ValidationFailed):
    """The service has no price for the model; pass ``cost`` (already priced) instead."""

    code = "unknown_model"


class IdempotencyKeyReused(ValidationFailed):
    """The Idempotency-Key was already used for a different request to this user."""

    code = "idempotency_key_reused"


class NotFound(BudgetError):
    status = 404
    code = "not_found"


class BudgetNotFound(NotFound, KeyError):
    """No such budget (user, team or project). Also a ``KeyError``, which is what
    ``litellm.BudgetManager`` raises for a user it does not know."""

    code = "budget_not_found"


class HoldNotFound(NotFound):
    code = "hold_not_found"


class AuthenticationFailed(BudgetError):
    """No API key, or one that is unknown, malformed or revoked (401)."""

    status = 401
    code = "unauthorized"


class PermissionDenied(BudgetError):
    """The key may not touch this project, or its role may not do this (403)."""

    status = 403
    code = "forbidden"


class Unavailable(BudgetError):
    """The service could not do it now (503, 429) or did not answer; the client already retried.

    ``retry_after``: seconds the service asked to wait (from ``Retry-After``), or None.
    """

    status = 503
    code = "service_unavailable"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        details: Any = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, code=code, details=details)
        self.retry_after = retry_after


class Contention(Unavailable):
    """Concurrent writers on one budget item outlasted the service's own retries (503
    ``write_contention`` with Retry-After; older services answered 409); nothing was written."""

    status = 503
    code = "write_contention"


@dataclass(frozen=True)
class RefusingLevel:
    """One budget level that refused a hold or cost: ``level`` is ``user``, ``team`` or
    ``project``, ``name`` its id, ``available`` what it could still grant and ``needed`` what was
    asked (USD)."""

    level: str
    name: str | None
    available: Decimal | None
    needed: Decimal | None


class BudgetExceeded(BudgetError):
    """A hold, or a cost with ``if_within_budget``, does not fit (402); nothing was written.

    ``levels`` lists each level that refused, with what it had available.
    """

    status = 402
    code = "budget_exceeded"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(message, status=status, code=code, details=details)
        self.levels: list[RefusingLevel] = _refusing_levels(details)

    @property
    def available(self) -> Decimal | None:
        """The least any refusing level had available (USD), or None if the service said none."""
        amounts = [level.available for level in self.levels if level.available is not None]
        return min(amounts) if amounts else None


def _decimal_or_none(value: object) -> Decimal | None:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, (int, str)) and not isinstance(value, bool):
        try:
            return Decimal(value)
        except ArithmeticError:
            return None
    return None


def _refusing_levels(details: Any) -> list[RefusingLevel]:
    # The service sends a list of {"level", "name", "available", "needed"}; accept a dict with
    # "levels" too, and one refusal given as a bare object.
    if isinstance(details, dict):
        details = details.get("levels", [details])
    if not isinstance(details, list):
        return []
    levels = []
    for item in details:
        if isinstance(item, dict):
            name = item.get("name")
            levels.append(
                RefusingLevel(
                    level=str(item.get("level", "user")),
                    name=None if name is None else str(name),
                    available=_decimal_or_none(item.get("available")),
                    needed=_decimal_or_none(item.get("needed", item.get("amount"))),
                )
            )
    return levels


# code -> class, for the codes the service documents; otherwise the status decides.
_BY_CODE: dict[str, type[BudgetError]] = {
    cls.code: cls
    for cls in (
        ValidationFailed,
        UnknownModel,
        IdempotencyKeyReused,
        BudgetNotFound,
        HoldNotFound,
        AuthenticationFailed,
        PermissionDenied,
        Unavailable,
        Contention,
        BudgetExceeded,
    )
}
_BY_STATUS: dict[int, type[BudgetError]] = {
    400: ValidationFailed,
    401: AuthenticationFailed,
    402: BudgetExceeded,
    403: PermissionDenied,
    404: NotFound,
    409: BudgetError,
    413: ValidationFailed,
    422: ValidationFailed,
    429: Unavailable,
    502: Unavailable,
    503: Unavailable,
    504: Unavailable,
}


def error_for(
    status: int, code: str | None, message: str, details: Any, retry_after: float | None
) -> BudgetError:
    """The exception for an error answer (``status``, the body's ``code``, ...)."""
    cls = _BY_CODE.get(code or "") or _BY_STATUS.get(status) or BudgetError
    if issubclass(cls, Unavailable):
        return cls(message, status=status, code=code, details=details, retry_after=retry_after)
    return cls(message, status=status, code=code, details=details)


# A project or team level the project does not have: a budget that is not there, as for users.
_BY_CODE["level_not_found"] = BudgetNotFound
