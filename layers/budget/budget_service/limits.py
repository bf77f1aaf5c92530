"""Limits and the decimal context, without pydantic: the store, the domain, the authorizer and the
reset job read them, and must not import pydantic (``budget_service.models``) to get them; a
cold start pays for every import (``make bench``). models.py re-exports them.
"""

from decimal import ROUND_HALF_EVEN, Context, Decimal

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
