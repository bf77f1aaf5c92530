"""The real, pinned litellm BudgetManager(client_type="hosted") against the handlers in process.

litellm posts through ``litellm.module_level_client``; here that reaches the template's functions
(conftest.Api, in-process moto) instead of a socket, so a test drives hundreds of client calls in
seconds. One clock serves both sides: the service's (budget_service.core.clock) and litellm's
``time.time()``. litellm saves from a background thread after create_budget, update_cost and its
own reset (``_save_data_thread``); the harness runs that save in line, or not at all for a client
told to save late, so every step is deterministic.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from decimal import Decimal
from types import SimpleNamespace
from unittest import mock

import litellm
import litellm.budget_manager
from litellm import BudgetManager

from budget_service.core import clock as service_clock
from budget_service.domain.resets import update_budget_all_users


class SharedClock:
    """The instant both sides read (epoch seconds, float), moved by the test."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


class _Reply:
    def __init__(self, status: int, text: str) -> None:
        self.status_code, self.text = status, text

    def json(self):
        return json.loads(self.text)


class InProcessHttp:
    """What litellm's BudgetManager calls (``post(url, headers=, json=)``), answered by the
    handlers; every reply is kept (``replies``) for checks on the answers."""

    def __init__(self, api) -> None:
        self.api = api
        self.replies: list[tuple[str, dict]] = []

    def post(self, url: str, headers=None, json=None):  # noqa: A002 - httpx's keyword
        import json as _json

        path = "/" + url.rsplit("/", 1)[1]
        response = self.api.call("POST", path, body=_json.dumps(json))
        assert response.status == 200, response
        self.replies.append((path, _json.loads(response.text)))
        return _Reply(response.status, response.text)


def _save_in_line(self: BudgetManager) -> None:
    if getattr(self, "autosave", True):
        self.save_data()


@contextmanager
def litellm_in_process(api, start: float):
    """Patch litellm to reach `api` in process on a shared clock starting at `start`; yields
    (clock, http)."""
    clock = SharedClock(start)
    http = InProcessHttp(api)
    service_clock.use(clock.time)
    try:
        with (
            mock.patch.object(litellm, "module_level_client", http),
            mock.patch.object(litellm.budget_manager, "time", SimpleNamespace(time=clock.time)),
            mock.patch.object(BudgetManager, "_save_data_thread", _save_in_line),
        ):
            yield clock, http
    finally:
        service_clock.use(None)


def client(project: str, *, autosave: bool = True) -> BudgetManager:
    manager = BudgetManager(project_name=project, client_type="hosted", api_base="http://in-process")
    manager.autosave = autosave
    return manager


def run_job(clock: SharedClock, store):
    """The scheduled reset job (update_budget_all_users) at the shared clock's instant."""
    return update_budget_all_users(Decimal(repr(clock.now)), store, workers=1)


def spend(manager: BudgetManager, user: str, model: str = "gpt-4o-mini", n: int = 0) -> float:
    """One litellm update_cost; returns the cost it added."""
    before = manager.user_dict[user].get("current_cost", 0)
    manager.update_cost(
        user=user,
        model=model,
        input_text=f"Summarise budget report {n} for {user}.",
        output_text="Spend is within budget this period. " * (1 + n % 3),
    )
    return manager.user_dict[user]["current_cost"] - before
