"""Python client for the LLM budget service.

- ``BudgetClient`` / ``AsyncBudgetClient``: one typed method per route (Decimal money, USD).
- ``BudgetManager``: ``litellm.BudgetManager``'s API, each call one per-user request.
- ``client.guard(user, model=..., messages=..., max_tokens=...)``: hold before a call, settle
  after (sync and async context managers).
- ``llm_budget.litellm.BudgetCallback``: a litellm ``CustomLogger`` for the SDK and LiteLLM
  Proxy (imported from its module: it is the only part that needs litellm).
"""

from llm_budget._routes import Amount
from llm_budget._transport import NO_RETRY, RetryPolicy
from llm_budget.client import AsyncBudgetClient, BudgetClient
from llm_budget.errors import (
    AuthenticationFailed,
    BudgetError,
    BudgetExceeded,
    BudgetNotFound,
    Contention,
    HoldNotFound,
    IdempotencyKeyReused,
    NotFound,
    PermissionDenied,
    RefusingLevel,
    Unavailable,
    UnknownModel,
    ValidationFailed,
)
from llm_budget.guard import AsyncGuard, Guard
from llm_budget.manager import BudgetManager
from llm_budget.models import (
    Adjustment,
    Budget,
    CostResult,
    DefaultUserBudget,
    Hold,
    LedgerEntry,
    LevelBudget,
    Page,
    Period,
    Price,
    ProjectedCost,
    Release,
    SetBudgetResult,
    Settlement,
    SpendReport,
    Tokens,
)

__version__ = "0.1.0"

__all__ = [
    "NO_RETRY",
    "Adjustment",
    "Amount",
    "AsyncBudgetClient",
    "AsyncGuard",
    "AuthenticationFailed",
    "Budget",
    "BudgetClient",
    "BudgetError",
    "BudgetExceeded",
    "BudgetManager",
    "BudgetNotFound",
    "Contention",
    "CostResult",
    "DefaultUserBudget",
    "Guard",
    "Hold",
    "HoldNotFound",
    "IdempotencyKeyReused",
    "LedgerEntry",
    "LevelBudget",
    "NotFound",
    "Page",
    "Period",
    "PermissionDenied",
    "Price",
    "ProjectedCost",
    "RefusingLevel",
    "Release",
    "RetryPolicy",
    "SetBudgetResult",
    "Settlement",
    "SpendReport",
    "Tokens",
    "Unavailable",
    "UnknownModel",
    "ValidationFailed",
]
