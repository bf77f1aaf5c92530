"""Limits and the decimal context, without pydantic: the store, the domain, the authorizer and the
reset job read them, and must not import pydantic (``budget_service.schemas``) to get them; a
cold start pays for every import (``make bench``). models.py re-exports them.
"""

from decimal import ROUND_HALF_EVEN, Context, Decimal, Inexact, InvalidOperation

# Identifiers: project, user, team and model names. No control characters (they break logs and
# keys), and at most ID_MAX_BYTES bytes of UTF-8, the unit DynamoDB counts key and item sizes in
# (a partition key holds at most 2,048 bytes, a sort key 1,024, an item 400 KB). Every key built
# from ids then fits with room to spare (store.py checks each one again before any request):
#   pk  PROJECT#<project>                      8 + 256 =   264 <= 2,048
#   sk  USER#<user>, TEAM#<team>, PRICE#<model>     <= 6 + 256 =   262 <= 1,024
#   sk  EVENT#<len>:<user>#<Idempotency-Key>    6 + 3 + 1 + 256 + 1 + 255 = 522 <= 1,024
# leaving about 500 bytes for what later keys add (HOLD#, PERIOD#..., AUDIT#...). A model name is
# also a key of the model_cost map: 1,000 of them (MAX_MODELS_PER_USER) with their numbers take at
# most 1,000 x (256 + 21 + 1) bytes = 278 KB of an item's 400 KB (store.item_size).
ID_MAX_BYTES = 256
ID_MAX_LENGTH = ID_MAX_BYTES  # characters: a bound the byte limit implies (for JSON Schema's maxLength)
ID_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]+$"


def utf8_size(value: str) -> int:
    """Bytes of `value` in UTF-8, as DynamoDB counts strings. Lone surrogates (a JSON "\\ud800")
    are not text: ValueError, which pydantic reports as a validation error."""
    try:
        return len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (it has a lone surrogate)") from None


def fits_id_bytes(value: str) -> str:
    """`value` if it is at most ID_MAX_BYTES bytes of UTF-8, else ValueError (a pydantic validator)."""
    size = utf8_size(value)
    if size > ID_MAX_BYTES:
        raise ValueError(f"must be at most {ID_MAX_BYTES} bytes of UTF-8 (this one is {size})")
    return value


# set_budget: users per request, and models per user's model_cost. Each user is one item written
# with its own conditional PutItem; 1,000 models of 256 characters keep an item near 300 KB, under
# DynamoDB's 400 KB item limit. 2,000 users at a few ms per write finish well inside the 29 s
# API Gateway allows (and the handler stops early and reports progress if they do not).
MAX_USERS_PER_SET_BUDGET = 2_000
MAX_MODELS_PER_USER = 1_000

# Money: each amount (a cost, a hold, an adjustment, a total_budget, a price) at most 10^12
# dollars, kept to 25 decimal places: every float litellm sends from 1e-9 up (17 significant
# digits) is kept exactly.
MONEY_MAX = Decimal("1e12")
MONEY_QUANTUM = Decimal("1e-25")

# Stored sums. A DynamoDB Number holds at most 38 significant digits. Every amount is
# a multiple of MONEY_QUANTUM, and so is every sum of them, so a stored number fits exactly when
# its magnitude is below STORED_MAX = 10^13 (13 integer digits + 25 decimals = 38). An amount
# does; a sum that atomic writes grow (``SET current_cost = current_cost + :spend``) does not by
# itself: ten costs near MONEY_MAX fill a budget's current_cost, and the next write's result
# would be a DynamoDB ValidationException (a 500). So each budget level item (user, team,
# project) keeps, per period:
#   current_cost, each model_cost entry, held   within [-SPEND_MAX, SPEND_MAX]   enforced
#   total_budget                                within [0, MONEY_MAX]             input bound
#   available = total_budget - current_cost - held
#                                               within [-2 SPEND_MAX, MONEY_MAX + 2 SPEND_MAX]
#                                               = [-8 x 10^12, 9 x 10^12]          follows
# all below STORED_MAX. Every write that adds to one of the three is conditional on its result
# staying within the bound (store_levels.level_update: ``current_cost <= :bound`` with
# ``:bound = SPEND_MAX - spend``, in the same request, no read); one that would not is refused
# with a 422 ``spend_limit_exceeded`` that writes nothing. Whole-item writes (PUT, set_budget,
# a rollover) store only values within the bounds (set_budget checks its merged spend), closed
# periods and audit entries copy them, and sums that are not stored (a report over up to 10,000
# periods, the sum of a litellm entry's models) are computed with SUM_CONTEXT, exactly.
# Spend is >= 0 on a user; a team or project can go below 0 only by a credit of spend made
# before the user joined it, and held only by a hold released against a level re-created since:
# hence the symmetric bound. 4 x MONEY_MAX is the largest whole multiple of it that keeps
# MONEY_MAX + 2 SPEND_MAX below 10^13: four charges of the largest amount per level and period.
#
# A coarser MONEY_QUANTUM would not remove the need: 10^-18 leaves 20 integer digits, which
# 10^8 charges of MONEY_MAX still fill, and it would round the per-token prices and costs
# litellm sends (a float like 3.4567890123456789e-07 needs 23 decimal places). Exactness is the
# service's promise; a ceiling of 4 x 10^12 USD of spend per level and period costs no real user
# anything. So the quantum stays and the ceiling bounds the sums.
STORED_MAX = Decimal("1e13")
SPEND_MAX = 4 * MONEY_MAX
# Epoch seconds, to the nanosecond (a float time.time() keeps all its digits), up to year 5138.
EPOCH_MAX = Decimal("1e11")
EPOCH_QUANTUM = Decimal("1e-9")
# litellm's numeric duration, in days (it sends 1, 7, 28 or 365); at most ten years.
DAYS_MAX = Decimal(3660)
DAYS_QUANTUM = Decimal("1e-12")


# Arithmetic on stored numbers uses DynamoDB's own precision (38 digits), not Python's default 28,
# so that a stored number (below STORED_MAX, at most 13 + 25 digits) is never rounded.
DECIMAL_CONTEXT = Context(prec=38, rounding=ROUND_HALF_EVEN)
# Sums that are not stored (reports over many periods, the sum of an entry's models before it is
# checked against SPEND_MAX): exact. 10,000 periods of SPEND_MAX need 17 + 25 digits; a result
# that would still round raises decimal.Inexact rather than lose a digit.
SUM_CONTEXT = Context(prec=2 * 38, rounding=ROUND_HALF_EVEN, traps=[Inexact, InvalidOperation])


def plain_number(value: Decimal | float | int) -> str:
    """`value` in plain notation, as labels and JSON show numbers: ``30``, ``0.0001``, never
    ``3E+1`` or ``1e-05``. A Decimal is exact; a float gives its shortest round-trip digits (so
    the text parses back to the same float). Raises ValueError for NaN and infinities."""
    number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if not number.is_finite():
        raise ValueError(f"{value!r} is not a finite number")
    text = format(number, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text
