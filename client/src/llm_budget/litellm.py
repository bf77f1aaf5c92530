"""``BudgetCallback``: a litellm ``CustomLogger`` that keeps the budget service's books.

Importing this module imports litellm; the rest of ``llm_budget`` never does.

**SDK** (``litellm.callbacks = [BudgetCallback(api_base=..., project=...)]``): each successful
call's cost is recorded for the call's user, once. The user is ``metadata["budget_user"]``, else
the call's ``user``, else the proxy key's end user or user id, else ``default_user``; a call with
none is not recorded. The cost is litellm's own (``response_cost``, what ``completion_cost``
computes) sent as an already-priced ``cost``, or, with ``price_with="service"`` or when litellm
could not price the call, the response's usage priced by the service (per-project prices apply
there). Each record carries the response id as its Idempotency-Key, so a response logged twice
(or a retried request) is charged once.

**LiteLLM Proxy** (``litellm_settings: callbacks: [my_module.budget_callback]``): in
``async_pre_call_hook`` it holds the call's worst case (the service projects the messages plus
``max_tokens``, or ``hold_amount``) for the user (the request's ``user``, else the key's end
user, else the key's user), refusing with ``litellm.BudgetExceededError`` (a 4xx from the proxy)
when any level lacks room; it settles the hold with the call's cost in
``async_log_success_event`` and releases it in ``async_log_failure_event`` (and in
``async_post_call_failure_hook``, should a failure skip the logger). The hold id travels in the
request's metadata, so nothing is kept in process memory.

What the proxy's end user sees: a refusal is litellm's own budget error (``BudgetExceededError``:
type ``budget_exceeded``, status ``litellm.budget_exceeded_status_code``, 422 by default) whose
message names the limit, what is left of it and when it resets; a service that cannot be reached
or does not answer within ``timeout`` seconds is a 503 (``BudgetServiceUnavailable``), or with
``fail_open=True`` the call goes ahead unheld. A hold whose request timed out is released as soon
as the service answers. A request with no user is admitted unrecorded (``missing_user="admit"``,
logged) or refused with a 400 (``"refuse"``), unless ``default_user`` names one; a model the
service cannot price is mapped by ``price_as``, held at ``hold_amount``, or refused with a 500
that says which of those to set.

Logging hooks never raise into litellm (a failed record is logged at ERROR with its user and
key). A record or settle that fails because the service is unavailable goes into a bounded spool
(llm_budget.spool) that retries it until the service is back, and logs what it had to drop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from litellm.exceptions import BudgetExceededError, ServiceUnavailableError
from litellm.integrations.custom_logger import CustomLogger

from llm_budget._routes import Amount, completion_parts, idempotency_key, money
from llm_budget._transport import RetryPolicy
from llm_budget.client import AsyncBudgetClient, BudgetClient
from llm_budget.errors import BudgetError, BudgetExceeded, BudgetNotFound, Unavailable, UnknownModel
from llm_budget.guard import hold_or_release_late
from llm_budget.spool import CostSpool, SpooledRecord

log = logging.getLogger("llm_budget.litellm")

HOLD_METADATA_KEY = "llm_budget_hold"
"""Where the pre-call hook leaves ``{"user", "hold_id"}`` in the request's metadata."""
USER_METADATA_KEY = "budget_user"
"""``metadata={"budget_user": "alice"}`` names the user to charge explicitly."""

UserResolver = Callable[[Mapping[str, Any]], "str | None"]


def _metadata(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The call's metadata as the logging hooks see it (litellm_params.metadata, where litellm
    also merges ``litellm_metadata``)."""
    params = kwargs.get("litellm_params") or {}
    merged: dict[str, Any] = {}
    for source in (kwargs.get("metadata"), params.get("litellm_metadata"), params.get("metadata")):
        if isinstance(source, Mapping):
            merged.update(source)
    return merged


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def call_user(kwargs: Mapping[str, Any]) -> str | None:
    """The user a logged call is charged to: ``metadata["budget_user"]``, the call's ``user``,
    then the proxy key's end user or user id."""
    metadata = _metadata(kwargs)
    optional = kwargs.get("optional_params") or {}
    for candidate in (
        metadata.get(USER_METADATA_KEY),
        kwargs.get("user"),
        optional.get("user") if isinstance(optional, Mapping) else None,
        metadata.get("user_api_key_end_user_id"),
        metadata.get("user_api_key_user_id"),
    ):
        if _text(candidate):
            return str(candidate)
    return None


def request_user(data: Mapping[str, Any], user_api_key_dict: object) -> str | None:
    """The user a proxy request is held for: ``metadata["budget_user"]``, the request's ``user``
    (OpenAI's end-user field), then the key's end user, then the key's user."""
    for field in ("metadata", "litellm_metadata"):
        metadata = data.get(field)
        if isinstance(metadata, Mapping) and _text(metadata.get(USER_METADATA_KEY)):
            return str(metadata[USER_METADATA_KEY])
    for candidate in (
        data.get("user"),
        getattr(user_api_key_dict, "end_user_id", None),
        getattr(user_api_key_dict, "user_id", None),
    ):
        if _text(candidate):
            return str(candidate)
    return None


class BudgetRefused(BudgetExceededError):  # type: ignore[misc,unused-ignore]
    """What the proxy hook raises when a hold is refused: litellm's own ``BudgetExceededError``,
    which the proxy answers as it answers its own budget errors (type ``budget_exceeded``, status
    ``litellm.budget_exceeded_status_code``), carrying the service's refusal in ``error``, the
    refusing levels in ``levels`` and, in ``message``, the end user's terms: which limit, what is
    left of it, and when it resets (``describe``)."""

    type = "budget_exceeded"

    def __init__(self, user: str, error: BudgetError, message: str | None = None) -> None:
        levels = error.levels if isinstance(error, BudgetExceeded) else []
        needed = next((lvl.needed for lvl in levels if lvl.needed is not None), None)
        available = error.available if isinstance(error, BudgetExceeded) else None
        # litellm types these floats and only prints them; our exact amounts stay in `levels`.
        super().__init__(
            current_cost=float(needed) if needed is not None else 0.0,
            max_budget=float(available) if available is not None else 0.0,
            message=message or f"Budget exceeded for user {user!r}: {error.message}",
            entity_type="user",
            entity_id=user,
        )
        self.error = error
        self.levels = levels


class BudgetServiceUnavailable(ServiceUnavailableError):  # type: ignore[misc,unused-ignore]
    """The budget service could not be reached or did not answer within the callback's
    ``timeout``: the proxy answers 503 (type ``service_unavailable``), never a 500."""

    def __init__(self, message: str, model: str | None = None) -> None:
        super().__init__(message=message, llm_provider="llm-budget", model=model or "")
        self.message = message  # without litellm's class-name prefix: this is not the model's error
        self.type = "service_unavailable"


class BudgetConfigurationError(Exception):
    """The proxy's budget setup cannot handle this request (a model the service cannot price,
    a request without a user under ``missing_user="refuse"``); ``status_code`` and ``type`` are
    what the proxy answers, and the message says what to set."""

    def __init__(self, message: str, *, status_code: int, type: str) -> None:  # noqa: A002
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.type = type


def _usd(amount: Decimal | None) -> str:
    if amount is None:
        return "?"
    shown = amount.quantize(Decimal("0.01")) if amount >= 1 else amount.normalize()
    return f"${shown:f}"


def _when(at: datetime | None) -> str:
    return "never (a budget without a period)" if at is None else at.strftime("%Y-%m-%d %H:%M UTC")


async def describe(client: AsyncBudgetClient, user: str, error: BudgetError) -> str:
    """A refusal in the end user's terms: for the first refusing level, its limit and period,
    what is left, what the call needed and when the limit resets. Reads that level's budget
    (one GET); without an answer, says what the refusal itself said."""
    if isinstance(error, BudgetNotFound):
        return f"No budget is set for user {user!r}, so this request cannot be paid for: ask for a budget."
    if not isinstance(error, BudgetExceeded) or not error.levels:
        return f"Budget exceeded for user {user!r}: {error.message}"
    level = error.levels[0]
    name = level.name or user
    who = {
        "user": f"your ({name}) budget",
        "team": f"team {name!r}'s budget",
        "project": "the project's budget",
    }.get(level.level, f"{level.level} {name!r}'s budget")
    try:
        if level.level == "team":
            record: Any = await client.get_team(name)
        elif level.level == "project":
            record = await client.get_project_budget()
        else:
            record = await client.get_user(name)
    except BudgetError:
        record = None
    left = level.available if level.available is not None else error.available
    if record is None:
        return (
            f"Budget exceeded: {who} has {_usd(left)} left and this request needs up to {_usd(level.needed)}."
        )
    period = f"{record.duration} " if record.duration else ""
    return (
        f"Budget exceeded: {who} is {_usd(record.total_budget)} {period}and has {_usd(left)} left;"
        f" this request needs up to {_usd(level.needed)}. It resets {_when(record.reset_at)}."
    )


class BudgetCallback(CustomLogger):  # type: ignore[misc,unused-ignore]
    """Records (SDK) or holds and settles (Proxy) each call's cost on the budget service.

    ``api_base``, ``api_key``, ``project``: the service, a key with the writer role, and the
    project (or give ``client``/``async_client``). ``default_user``: charged when a call names
    no user (None: such calls are not recorded). ``price_with``: ``"litellm"`` records litellm's
    ``response_cost``; ``"service"`` sends the usage for the service to price. ``hold_amount``:
    hold this fixed amount (USD) in the proxy hook instead of the service's projection (for model
    aliases the service cannot price). ``price_as``: ``{alias: model}``, holds for an alias as
    the service prices ``model`` (a proxy's model group names its own aliases). ``ttl_seconds``:
    the holds' lifetime. ``timeout``: seconds the pre-call hook waits for its hold before the
    call is answered 503 (or, with ``fail_open``, admitted); a hold made after that is released
    when it arrives. ``fail_open``: if the service cannot be reached, admit the call unheld (its
    cost is still recorded after, through the spool if need be) rather than refuse it.
    ``missing_user``: a proxy request with no user (and no ``default_user``) is ``"admit"``-ed
    unheld and unrecorded (logged at WARNING), or ``"refuse"``-d with a 400. ``spool_size``: how
    many unrecorded costs are kept while the service is away (the oldest dropped past it, logged).
    ``user_resolver``: replaces ``call_user`` for logged calls.
    """

    def __init__(
        self,
        api_base: str | None = None,
        api_key: str | None = None,
        project: str | None = None,
        *,
        client: BudgetClient | None = None,
        async_client: AsyncBudgetClient | None = None,
        headers: Mapping[str, str] | None = None,
        default_user: str | None = None,
        price_with: Literal["litellm", "service"] = "litellm",
        hold_amount: Amount | None = None,
        ttl_seconds: int | None = None,
        fail_open: bool = False,
        retry: RetryPolicy | None = None,
        user_resolver: UserResolver | None = None,
        timeout: float = 5.0,
        price_as: Mapping[str, str] | None = None,
        missing_user: Literal["admit", "refuse"] = "admit",
        spool_size: int = 10_000,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        source = client or async_client
        if source is None and (api_base is None or project is None):
            raise ValueError("give api_base and project (and api_key), or a client")
        self.api_base = api_base or (source.api_base if source else "")
        self.project = project or (source.project if source else "")
        self._api_key = api_key
        self._headers = dict(headers or {})
        self._retry = retry
        self._client = client
        self._lock = threading.Lock()
        self._async_client = async_client
        # One AsyncBudgetClient per event loop: httpx's pool is bound to the loop it ran in.
        self._loop_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncBudgetClient] = (
            weakref.WeakKeyDictionary()
        )
        self.default_user = default_user
        self.price_with = price_with
        self.hold_amount = None if hold_amount is None else money(hold_amount)
        self.ttl_seconds = ttl_seconds
        self.fail_open = fail_open
        self.user_resolver = user_resolver or call_user
        if timeout <= 0:
            raise ValueError("timeout must be greater than 0 seconds")
        if missing_user not in ("admit", "refuse"):
            raise ValueError('missing_user is "admit" or "refuse"')
        self.timeout = float(timeout)
        self.price_as = dict(price_as or {})
        self.missing_user = missing_user
        self.spool = CostSpool(lambda: self.client, max_records=spool_size)

    # ---- clients

    @property
    def client(self) -> BudgetClient:
        """The sync client (litellm logs sync calls from several threads: made once)."""
        with self._lock:
            if self._client is None:
                self._client = BudgetClient(
                    self.api_base,
                    self._api_key,
                    project=self.project,
                    headers=self._headers,
                    retry=self._retry,
                )
            return self._client

    def async_client(self) -> AsyncBudgetClient:
        """The async client for the running event loop."""
        if self._async_client is not None:
            return self._async_client
        loop = asyncio.get_running_loop()
        client = self._loop_clients.get(loop)
        if client is None:
            client = AsyncBudgetClient(
                self.api_base,
                self._api_key,
                project=self.project,
                headers=self._headers,
                retry=self._retry,
            )
            self._loop_clients[loop] = client
        return client

    # ---- what to charge

    def _user(self, kwargs: Mapping[str, Any]) -> str | None:
        return self.user_resolver(kwargs) or self.default_user

    def cost_form(self, kwargs: Mapping[str, Any], response_obj: object) -> dict[str, Any]:
        """The record for a logged call: litellm's ``response_cost`` as ``cost`` (with the
        requested model as its name), or the response itself for the service to price."""
        cost = kwargs.get("response_cost")
        if self.price_with == "litellm" and cost is not None:
            model = kwargs.get("model") or _response_model(response_obj) or "unknown"
            return {"model": str(model), "cost": money(cost)}
        return {"completion": response_obj}

    @staticmethod
    def record_key(kwargs: Mapping[str, Any], response_obj: object) -> str | None:
        """The Idempotency-Key of a logged call: its response id, else litellm's call id."""
        response_id = _response_id(response_obj)
        if response_id:
            return idempotency_key("litellm-response", response_id)
        call_id = kwargs.get("litellm_call_id")
        return idempotency_key("litellm-call", str(call_id)) if call_id else None

    # ---- SDK: record each successful call

    def _record(self, kwargs: Mapping[str, Any], response_obj: object) -> SpooledRecord | None:
        """The write that records a successful call (a settle of its hold, or a cost for its
        user), as a spool record; None when the call names no user."""
        hold = _hold_of(kwargs)
        if hold is not None:
            args = self._settle_args(kwargs, response_obj)
            holder, hold_id = hold["user"], hold["hold_id"]
            return SpooledRecord(
                user=holder,
                key=f"hold {hold_id}",
                cost=args.get("cost"),
                send=lambda client: client.settle(holder, hold_id, **args),
            )
        user = self._user(kwargs)
        if user is None:
            log.debug("call %s names no user: not recorded", kwargs.get("litellm_call_id"))
            return None
        form = self.cost_form(kwargs, response_obj)
        key = self.record_key(kwargs, response_obj)
        charged = user
        return SpooledRecord(
            user=user,
            key=key,
            cost=form.get("cost"),
            send=lambda client: client.record_cost(charged, idempotency_key=key, **form),
        )

    def log_success_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        record = None
        try:
            record = self._record(kwargs, response_obj)
            if record is not None:
                record.send(self.client)
        except Unavailable:
            if record is not None:
                self.spool.add(record)
        except (BudgetError, ValueError, TypeError) as exc:
            self._log_failure(kwargs, response_obj, exc)

    async def async_log_success_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        record = None
        try:
            record = self._record(kwargs, response_obj)
            if record is not None:
                await record.send(self.async_client())  # type: ignore[misc]
        except Unavailable:
            if record is not None:
                self.spool.add(record)  # retried with the sync client, from the spool's thread
        except (BudgetError, ValueError, TypeError) as exc:
            self._log_failure(kwargs, response_obj, exc)

    def _settle_args(self, kwargs: Mapping[str, Any], response_obj: object) -> dict[str, Any]:
        form = self.cost_form(kwargs, response_obj)
        if "completion" in form:
            return {"response": form["completion"]}
        args = {"model": form["model"], "cost": form["cost"]}
        output_tokens = _output_tokens(response_obj)
        if output_tokens is not None:
            args["output_tokens"] = output_tokens  # teaches the service's hold sizing
        return args

    def _log_failure(self, kwargs: Mapping[str, Any], response_obj: object, exc: Exception) -> None:
        log.error(
            "llm_budget: could not record the cost of call %s (user %r, key %r): %s",
            kwargs.get("litellm_call_id"),
            self._user(kwargs),
            self.record_key(kwargs, response_obj),
            exc,
        )

    # ---- failures: release a hold taken by the proxy hook

    def log_failure_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        hold = _hold_of(kwargs)
        if hold is not None:
            try:
                self.client.release(hold["user"], hold["hold_id"])
            except BudgetError as exc:
                log.warning("llm_budget: could not release hold %s: %s", hold["hold_id"], exc)

    async def async_log_failure_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        hold = _hold_of(kwargs)
        if hold is not None:
            await self._release(hold)

    async def async_post_call_failure_hook(
        self,
        request_data: dict[str, Any],
        original_exception: Exception,
        user_api_key_dict: Any,
        traceback_str: str | None = None,
    ) -> None:
        hold = _hold_in_request(request_data)
        if hold is not None:
            await self._release(hold)

    async def _release(self, hold: Mapping[str, str]) -> None:
        try:
            await self.async_client().release(hold["user"], hold["hold_id"])
        except BudgetError as exc:  # the hold expires at its TTL anyway
            log.warning("llm_budget: could not release hold %s: %s", hold["hold_id"], exc)

    # ---- LiteLLM Proxy: hold before the call

    async def async_pre_call_hook(
        self,
        user_api_key_dict: Any,
        cache: Any,
        data: dict[str, Any],
        call_type: Any,
    ) -> dict[str, Any]:
        """Hold the call's cost (sized by the service) for its user; raise ``BudgetRefused`` (a
        ``litellm.BudgetExceededError``) when it does not fit or the user has no budget,
        ``BudgetServiceUnavailable`` (503) when the service does not answer within ``timeout``,
        ``BudgetConfigurationError`` for a request the setup cannot price or place."""
        user = request_user(data, user_api_key_dict) or self.default_user
        if user is None:
            if self.missing_user == "refuse":
                raise BudgetConfigurationError(
                    "This request names no user to charge: send the OpenAI `user` field, or use a key"
                    " that belongs to a user (or the proxy sets default_user in its budget callback).",
                    status_code=400,
                    type="invalid_request_error",
                )
            log.warning(
                "llm_budget: a request names no user: admitted unheld and not recorded (set the"
                " request's `user`, key users, default_user=, or missing_user='refuse')"
            )
            return data
        if self.hold_amount is None and not data.get("messages"):
            # Not a chat call (embeddings, ...) and no fixed amount to hold: its cost is still
            # recorded after it, keyed by its response or call id.
            return data
        call_id = data.get("litellm_call_id")
        key = idempotency_key("litellm-hold", str(call_id)) if call_id else None
        client = self.async_client()
        model = str(data.get("model"))
        if self.hold_amount is not None:
            args: dict[str, Any] = {"amount": self.hold_amount}
        else:
            args = {
                "model": self.price_as.get(model, model),
                "messages": data["messages"],
                "max_tokens": data.get("max_tokens") or data.get("max_completion_tokens"),
            }
        try:
            # A request that times out here (or whose caller hangs up) releases its hold once the
            # service answers, rather than leave it reserving the budget until its TTL.
            hold = await asyncio.wait_for(
                hold_or_release_late(client, user, ttl_seconds=self.ttl_seconds, idempotency_key=key, **args),
                timeout=self.timeout,
            )
        except (BudgetExceeded, BudgetNotFound) as exc:
            try:
                message = await asyncio.wait_for(describe(client, user, exc), timeout=self.timeout)
            except (TimeoutError, Unavailable):
                message = None
            raise BudgetRefused(user, exc, message) from exc
        except UnknownModel as exc:
            raise BudgetConfigurationError(
                f"The budget service has no price for model {model!r}, so this request cannot be held"
                f" against a budget. In the proxy's BudgetCallback set price_as={{{model!r}: <a model the"
                f" service prices>}} or hold_amount=<USD>, or give the project a price for it"
                f" (PUT /projects/<project>/prices/{model}).",
                status_code=500,
                type="budget_configuration_error",
            ) from exc
        except (Unavailable, TimeoutError) as exc:
            why = "did not answer in time" if isinstance(exc, TimeoutError) else f"is unavailable ({exc})"
            if self.fail_open:
                log.warning("llm_budget: the budget service %s; admitting a call for %r unheld", why, user)
                return data
            raise BudgetServiceUnavailable(
                f"The budget service {why}: this request was not sent, and nothing was charged;"
                " retry shortly.",
                model=model,
            ) from exc
        field = self._select_metadata_field(data) or "metadata"
        metadata = data.get(field)
        if not isinstance(metadata, dict):
            metadata = {}
            data[field] = metadata
        metadata[HOLD_METADATA_KEY] = {"user": user, "hold_id": hold.hold_id}
        metadata.setdefault(USER_METADATA_KEY, user)
        return data


def _output_tokens(response_obj: object) -> int | None:
    usage = (
        response_obj.get("usage")
        if isinstance(response_obj, Mapping)
        else getattr(response_obj, "usage", None)
    )
    value = (
        usage.get("completion_tokens")
        if isinstance(usage, Mapping)
        else getattr(usage, "completion_tokens", None)
    )
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _response_id(response_obj: object) -> str | None:
    try:
        return completion_parts(response_obj)[2]
    except TypeError:
        value = getattr(response_obj, "id", None)
        return value if isinstance(value, str) else None


def _response_model(response_obj: object) -> str | None:
    value = (
        response_obj.get("model")
        if isinstance(response_obj, Mapping)
        else getattr(response_obj, "model", None)
    )
    return value if isinstance(value, str) else None


def _valid_hold(value: object) -> dict[str, str] | None:
    if isinstance(value, Mapping) and _text(value.get("user")) and _text(value.get("hold_id")):
        return {"user": str(value["user"]), "hold_id": str(value["hold_id"])}
    return None


def _hold_of(kwargs: Mapping[str, Any]) -> dict[str, str] | None:
    return _valid_hold(_metadata(kwargs).get(HOLD_METADATA_KEY))


def _hold_in_request(data: Mapping[str, Any]) -> dict[str, str] | None:
    for field in ("metadata", "litellm_metadata"):
        metadata = data.get(field)
        if isinstance(metadata, Mapping):
            hold = _valid_hold(metadata.get(HOLD_METADATA_KEY))
            if hold is not None:
                return hold
    return None


__all__ = [
    "BudgetCallback",
    "BudgetConfigurationError",
    "BudgetRefused",
    "BudgetServiceUnavailable",
    "call_user",
    "describe",
    "idempotency_key",
    "request_user",
]
