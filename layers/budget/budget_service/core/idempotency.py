"""Idempotency-Key rules shared by every keyed write (cost, hold, adjustment): the key's form and
how long a key is remembered, and the fingerprint a replay must repeat. Without pydantic or the
pricing rules, so routes that only need these (history) do not load the cost domain."""

from __future__ import annotations

import hashlib
import json
import re

from budget_service.core.errors import InvalidInput

IDEMPOTENCY_TTL_SECONDS = 7 * 24 * 3600
IDEMPOTENCY_KEY_MAX = 255
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x2b\x2d-\x7e]+$")  # visible ASCII but "," (how proxies join copies)


def check_idempotency_key(key: str | None) -> str | None:
    """`key` if it is a valid Idempotency-Key (1 to 255 visible ASCII characters other than ","),
    None when absent. Raises InvalidInput (HTTP 400)."""
    if key is None:
        return None
    if not (1 <= len(key) <= IDEMPOTENCY_KEY_MAX) or not _IDEMPOTENCY_KEY.match(key):
        raise InvalidInput(
            f"Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_MAX} visible ASCII characters other than ','",
            details=[{"field": "Idempotency-Key", "problem": "invalid header value"}],
        )
    return key


def fingerprint_of(body: dict) -> str:
    """A request body (as validated, JSON values), hashed: what a replay must repeat."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()
