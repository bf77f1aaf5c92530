"""How a described request is sent: one retry plan, run by a sync and by an async transport.

``Call`` is one logical request (built once, so an Idempotency-Key is the same on every try).
``attempts`` is the retry rule as a generator that never does I/O itself: it yields ``SEND``
(send the call, hand back the response or the ``httpx.TransportError``) or a number of seconds to
wait. ``send`` (``httpx.Client``, ``time.sleep``) and ``send_async`` (``httpx.AsyncClient``,
``asyncio.sleep``) each drive it, so the two clients cannot drift apart.

Retry rule:

- 503 (``service_unavailable``, ``write_contention``), 429, 502, 504, and the 409
  ``write_contention`` of older services, are retried: nothing was written, or the
  request is safe to repeat (a write that may have landed carries an Idempotency-Key, so a retry
  is charged once). A 503 whose ``details.outcome`` is ``unknown`` (a write may have landed) is
  not retried for a request that is not safe to repeat (a reset).
- The wait after an answer with ``Retry-After`` (seconds or an HTTP date) is that long plus a
  jitter of up to the backoff below, so clients told the same thing come back spread out rather
  than together; a ``Retry-After`` above ``max_wait`` is not waited for (the error is raised with
  its ``retry_after``). Without the header it is exponential backoff with full jitter.
- No answer at all (connection refused, reset, timeout) is retried only for requests that are safe
  to repeat: reads, PUT/DELETE, and writes that carry an Idempotency-Key.
- After ``attempts`` tries the last error is raised (``Unavailable`` for the retryable ones).
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Generic, TypeVar

import httpx

from llm_budget import _json
from llm_budget.errors import BudgetError, Contention, Unavailable, error_for

T = TypeVar("T")

RETRY_STATUSES = frozenset({429, 502, 503, 504})
USER_AGENT = "llm-budget-client/0.1"


@dataclass(frozen=True)
class RetryPolicy:
    """How the client retries: at most ``attempts`` tries in all; backoff ``base * 2**n`` seconds
    (full jitter) capped at ``max_backoff``; a ``Retry-After`` is honoured up to ``max_wait``
    seconds (a longer one is not waited for: the error is raised with its ``retry_after``), and
    waited for in full plus a jitter of up to the backoff. So one call waits at most
    ``(attempts - 1) * (max_wait + max_backoff)`` seconds in all."""

    attempts: int = 4
    base: float = 0.1
    max_backoff: float = 2.0
    max_wait: float = 10.0

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based) without a Retry-After:
        uniform in [0, min(max_backoff, base * 2**(attempt - 1))]."""
        return random.uniform(0, min(self.max_backoff, self.base * 2 ** (attempt - 1)))


NO_RETRY = RetryPolicy(attempts=1)


@dataclass(frozen=True)
class Call(Generic[T]):
    """One logical call: the HTTP request and how to read its answer.

    Built once per call, so its Idempotency-Key (in ``headers``) is the same on every retry.
    ``path`` is relative to the client's base URL, its segments already percent-encoded.
    ``repeatable``: safe to resend when no answer came (the server may have applied it).
    """

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    body: object = None
    params: Mapping[str, str] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    repeatable: bool = True
    gone_ok: bool = False
    """A DELETE: a 404 after a try whose answer was lost means that try deleted it."""

    def build(self, client: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        """The ``httpx.Request`` for one try (JSON body as exact numbers, see ``_json``)."""
        content = None if self.body is None else _json.dumps(self.body).encode()
        headers = dict(self.headers)
        if content is not None:
            headers["Content-Type"] = "application/json"
        return client.build_request(
            self.method, self.path, content=content, params=self.params, headers=headers
        )


def retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (from seconds or an HTTP date), or None."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def error_from(response: httpx.Response) -> BudgetError:
    """The exception for an error answer: ``{"error": {"code", "message", "details"}}``, or, for a
    body not in that shape (a gateway's own error), one chosen by status."""
    code: str | None = None
    message = f"HTTP {response.status_code}"
    details: Any = None
    try:
        body = _json.loads(response.content) if response.content else None
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            code = error.get("code") if isinstance(error.get("code"), str) else None
            message = str(error.get("message") or message)
            details = error.get("details")
        elif isinstance(body.get("message"), str):  # API Gateway: {"message": "..."}
            message = body["message"]
    elif response.text:
        message = f"HTTP {response.status_code}: {response.text[:200]}"
    return error_for(response.status_code, code, message, details, retry_after(response))


def _outcome_unknown(error: BudgetError) -> bool:
    # A 503's details.outcome: "not_written", or "unknown" when a write may have landed.
    details = error.details
    return isinstance(details, dict) and details.get("outcome") not in (None, "not_written")


def _retryable(error: BudgetError, call: Call[Any]) -> bool:
    if isinstance(error, Contention):
        return True
    if not isinstance(error, Unavailable) or error.status not in RETRY_STATUSES:
        return False
    return call.repeatable or not _outcome_unknown(error)


def _wait(policy: RetryPolicy, attempt: int, error: BudgetError | None) -> float | None:
    """Seconds to wait before the next try, or None to give up (and raise)."""
    if attempt >= policy.attempts:
        return None
    after = error.retry_after if isinstance(error, Unavailable) else None
    if after is None:
        return policy.backoff(attempt)
    if after > policy.max_wait:
        return None
    # Never sooner than the service asked; the jitter keeps the clients it turned away together
    # from all coming back in the same instant.
    return after + policy.backoff(attempt)


def _no_answer(call: Call[Any], exc: httpx.TransportError) -> Unavailable:
    return Unavailable(f"{call.method} {call.path}: no answer from the service ({exc!r})", status=0)


def _unreadable(call: Call[Any], exc: httpx.RequestError) -> BudgetError:
    return BudgetError(f"{call.method} {call.path}: unexpected answer ({exc!r})")


def _result(call: Call[T], response: httpx.Response) -> T:
    if response.status_code >= 400:
        raise error_from(response)
    try:
        return call.parse(response)
    except (ValueError, KeyError, TypeError) as exc:
        raise BudgetError(
            f"{call.method} {call.path}: unexpected answer ({exc})", status=response.status_code
        ) from exc


SEND: Final = None
"""What ``attempts`` yields for "send the call now"; otherwise it yields seconds to wait."""

Outcome = httpx.Response | httpx.TransportError | None
Plan = Generator[float | None, Outcome, T]


def attempts(call: Call[T], policy: RetryPolicy) -> Plan[T]:
    """The retry rule for ``call`` (see the module), as steps: yields ``SEND`` and is sent the
    response (or the ``httpx.TransportError`` when no answer came), or yields seconds to wait and
    is sent None. Returns the parsed result; raises the ``BudgetError`` to give up with."""
    attempt, lost = 0, False
    while True:
        attempt += 1
        outcome = yield SEND
        if isinstance(outcome, httpx.TransportError):
            error: BudgetError = _no_answer(call, outcome)
            delay = _wait(policy, attempt, error) if call.repeatable else None
            if delay is None:
                raise error from outcome
            lost = True
            yield delay
            continue
        if outcome is None:
            raise RuntimeError("the transport sent no outcome for SEND")
        if lost and call.gone_ok and outcome.status_code == 404:
            return call.parse(outcome)
        if outcome.status_code >= 400:
            error = error_from(outcome)
            delay = _wait(policy, attempt, error) if _retryable(error, call) else None
            if delay is None:
                raise error
            yield delay
            continue
        return _result(call, outcome)


def send(client: httpx.Client, call: Call[T], policy: RetryPolicy) -> T:
    """Send ``call`` with ``client``, retrying per ``policy`` (waits with ``time.sleep``); its
    parsed result. Raises the ``BudgetError`` for the last answer."""
    plan = attempts(call, policy)
    step = next(plan)
    while True:
        outcome: Outcome = None
        if step is SEND:
            try:
                outcome = client.send(call.build(client))
            except httpx.TransportError as exc:
                outcome = exc
            except httpx.RequestError as exc:  # an answer that could not be read (a bad encoding)
                raise _unreadable(call, exc) from exc
        else:
            time.sleep(step)
        try:
            step = plan.send(outcome)
        except StopIteration as done:
            result: T = done.value
            return result


async def send_async(client: httpx.AsyncClient, call: Call[T], policy: RetryPolicy) -> T:
    """``send`` for an ``httpx.AsyncClient``: the same plan, waiting with ``asyncio.sleep``."""
    plan = attempts(call, policy)
    step = next(plan)
    while True:
        outcome: Outcome = None
        if step is SEND:
            try:
                outcome = await client.send(call.build(client))
            except httpx.TransportError as exc:
                outcome = exc
            except httpx.RequestError as exc:  # an answer that could not be read (a bad encoding)
                raise _unreadable(call, exc) from exc
        else:
            await asyncio.sleep(step)
        try:
            step = plan.send(outcome)
        except StopIteration as done:
            result: T = done.value
            return result
