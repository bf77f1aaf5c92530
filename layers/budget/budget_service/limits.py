"""Limits and the decimal context, without pydantic: the store, the domain, the authorizer and the
reset job read them, and must not import pydantic (``budget_service.models``) to get them; a
cold start pays for every import (``make bench``). models.py re-exports them.
"""

from decimal import ROUND_HALF_EVEN, Context, Decimal

# Identifiers: project, user and model names. No control characters (they break logs and keys).
ID_MAX_LENGTH = 256
ID_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]+$"

# set_budget: users per request, and models per user's model_cost. Each user is one item written
# with its own conditional PutItem; 1,000 models of 256 characters keep an item near 300 KB, under
# DynamoDB's 400 KB item limit. 2,000 users at a few ms per write finish well inside the 29 s
# API Gateway allows (and the handler stops early and reports progress if they do not).
MAX_USERS_PER_SET_BUDGET = 2_000
MAX_MODELS_PER_USER = 1_000

# Money: below 10^12 dollars, kept to 25 decimal places: 12 + 25 digits fit DynamoDB's 38, and
# every float litellm sends from 1e-9 up (17 significant digits) is kept exactly.
MONEY_MAX = Decimal("1e12")
MONEY_QUANTUM = Decimal("1e-25")
# Epoch seconds, to the nanosecond (a float time.time() keeps all its digits), up to year 5138.
EPOCH_MAX = Decimal("1e11")
EPOCH_QUANTUM = Decimal("1e-9")
# litellm's numeric duration, in days (it sends 1, 7, 28 or 365); at most ten years.
DAYS_MAX = Decimal(3660)
DAYS_QUANTUM = Decimal("1e-12")


# Arithmetic on stored numbers uses DynamoDB's own precision (38 digits), not Python's default 28,
# so that a quantized amount (up to 13 + 24 digits) is never rounded.
DECIMAL_CONTEXT = Context(prec=38, rounding=ROUND_HALF_EVEN)
