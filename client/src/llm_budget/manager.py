"""``llm_budget.BudgetManager``: litellm's ``BudgetManager``, one per-user request per call.

Switching is a change of import::

    # from litellm import BudgetManager
    from llm_budget import BudgetManager

    budget_manager = BudgetManager(project_name="my-app", client_type="hosted", api_base=API_URL)

litellm's hosted manager loads the whole project at start, keeps it in process memory, and sends
it all back on every save (from a background thread): it slows down as a project grows, and
concurrent processes overwrite each other's spend. This one keeps nothing: every method is one
request about one user (``get_users`` lists the project), every cost is an atomic, idempotent
update on the service, and ``save_data`` has nothing left to save.

Differences a caller may notice (README "Drop-in BudgetManager"):

- Money comes back as ``Decimal`` (it compares with floats; do arithmetic with Decimals).
- ``duration`` periods are calendar periods (a day from 00:00 UTC, a week from Monday, the
  calendar month, the year), not litellm's rolling 1/7/28/365 days, and the service rolls them
  over itself: ``reset_on_duration`` and ``update_budget_all_users`` have nothing to do.
- An unknown user raises ``BudgetNotFound``, a ``KeyError`` as litellm raises.
- ``update_cost`` with the same ``completion_obj`` twice charges it once (keyed by its id).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, Literal

from llm_budget._routes import Amount, completion_parts, idempotency_key
from llm_budget.client import BudgetClient
from llm_budget.errors import BudgetNotFound
from llm_budget.models import Budget

DurationName = Literal["daily", "weekly", "monthly", "yearly"]

# litellm's day counts for its duration names (litellm.constants), for the entries it returns.
LITELLM_DAYS: dict[str, int] = {"daily": 1, "weekly": 7, "monthly": 28, "yearly": 365}
_DURATIONS = frozenset(LITELLM_DAYS)


def _request_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """litellm passes ``headers={"Authorization": "Bearer ...", "Content-Type": ...}``: keep all
    but the content type, which the client sets on the requests that have a body."""
    return {k: v for k, v in (headers or {}).items() if k.lower() != "content-type"}


class BudgetManager:
    """``litellm.BudgetManager``'s constructor and methods on the budget service's native API.

    ``project_name``: the project; ``client_type``: accepted for compatibility (only "hosted"
    makes sense: there is no local file); ``api_base``: the service URL (required);
    ``headers``: sent on every request (litellm's way to pass ``Authorization``); ``api_key``:
    alternatively, the key itself; ``client``: a ``BudgetClient`` to use instead.
    """

    def __init__(
        self,
        project_name: str,
        client_type: str = "hosted",
        api_base: str | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        api_key: str | None = None,
        client: BudgetClient | None = None,
    ) -> None:
        self.project_name = project_name
        self.client_type = client_type
        if client is None:
            if not api_base:
                raise ValueError("api_base is required: the budget service's URL")
            client = BudgetClient(api_base, api_key, project=project_name, headers=_request_headers(headers))
        self.api_base = client.api_base
        self.client = client

    # litellm calls this from its constructor; there is nothing to load.
    def load_data(self) -> None:
        """Nothing to load: every call reads the service."""

    @property
    def user_dict(self) -> dict[str, dict[str, Any]]:
        """Every user's entry in litellm's shape, read now (``get_budget``: the whole project).
        Read-only: changing it changes nothing on the service."""
        return self.client.litellm_get_budget()

    def create_budget(
        self,
        total_budget: Amount,
        user: str,
        duration: DurationName | None = None,
        created_at: float | None = None,
    ) -> dict[str, Any]:
        """Create or replace ``user``'s budget (USD per calendar ``duration``); spend already
        recorded in the current period is kept. ``created_at`` is accepted and ignored (the
        service keeps its own times). Returns the entry as litellm does."""
        if duration is not None and duration not in _DURATIONS:
            raise ValueError('duration needs to be one of ["daily", "weekly", "monthly", "yearly"]')
        budget = self.client.put_user(user, total_budget, duration)
        return self._entry(budget, include_spend=False)

    def projected_cost(self, model: str, messages: Sequence[Mapping[str, Any]], user: str) -> Decimal:
        """The user's current spend plus the prompt's cost (USD), no output tokens, as litellm's
        sum. The prompt is counted as the service counts chat messages (OpenAI's per-message
        overhead included), where litellm counts the contents joined as one text: a few tokens
        more here, the number the call will really be billed."""
        projection = self.client.projected_cost(user, model=model, messages=messages)
        # Without max_tokens the projection is the prompt alone: projected_total is litellm's sum.
        if projection.projected_total is not None:
            return projection.projected_total
        return (projection.current_cost or Decimal(0)) + projection.projected_cost

    def get_total_budget(self, user: str) -> Decimal:
        return self.client.get_user(user).total_budget

    def update_cost(
        self,
        user: str,
        completion_obj: object = None,
        model: str | None = None,
        input_text: str | None = None,
        output_text: str | None = None,
    ) -> dict[str, Any]:
        """Add a call's cost to ``user``'s spend, atomically on the service: from
        ``completion_obj`` (priced from its model and usage, charged once per response id) or
        from ``model``, ``input_text`` and ``output_text`` (counted by the service).

        Returns ``{"user": entry}`` with what the answer carries: ``cost`` (this call, USD),
        ``model``, and ``current_cost``/``total_budget`` where the service returned them.
        """
        if model and input_text and output_text:
            result = self.client.record_cost(
                user, model=model, input_text=input_text, output_text=output_text
            )
        elif completion_obj:
            _, _, response_id = completion_parts(completion_obj)
            key = idempotency_key("completion", response_id) if response_id else None
            result = self.client.record_cost(user, completion=completion_obj, idempotency_key=key)
        else:
            raise ValueError("Either a chat completion object or the text response needs to be passed in.")
        entry: dict[str, Any] = {"cost": result.cost, "model": result.model}
        if result.current_cost is not None:
            entry["current_cost"] = result.current_cost
        if result.total_budget is not None:
            entry["total_budget"] = result.total_budget
        return {"user": entry}

    def get_current_cost(self, user: str) -> Decimal:
        return self.client.get_user(user).current_cost

    def get_model_cost(self, user: str) -> dict[str, Decimal]:
        return dict(self.client.get_user(user).model_cost)

    def is_valid_user(self, user: str) -> bool:
        try:
            self.client.get_user(user)
        except BudgetNotFound:
            return False
        return True

    def get_users(self) -> list[str]:
        """Every user of the project (paged listing)."""
        return [budget.user for budget in self.client.iter_users(page_size=1000)]

    def reset_cost(self, user: str) -> dict[str, Any]:
        """Zero ``user``'s spend now and start a new period (litellm keeps the old period's
        start; the service starts a new one, so the reset cannot be undone by a stale client)."""
        return {"user": self._entry(self.client.reset_user(user))}

    def reset_on_duration(self, user: str) -> None:
        """Nothing to do: the service rolls each period over at its boundary, exactly once."""

    def update_budget_all_users(self) -> None:
        """Nothing to do: the service's scheduled job and its lazy rollover reset periods."""

    def save_data(self) -> dict[str, str]:
        """Nothing to save: every change was written when it was made."""
        return {"status": "success"}

    @staticmethod
    def _entry(budget: Budget, include_spend: bool = True) -> dict[str, Any]:
        entry: dict[str, Any] = {"total_budget": budget.total_budget}
        if include_spend:
            entry["current_cost"] = budget.current_cost
            entry["model_cost"] = dict(budget.model_cost)
        days = LITELLM_DAYS.get(budget.duration or "")
        if days is not None:
            entry["duration"] = days
            start = budget.period_start or budget.created_at
            created = budget.created_at or start
            if created is not None:
                entry["created_at"] = created.timestamp()
            if start is not None:
                entry["last_updated_at"] = start.timestamp()
        return entry
