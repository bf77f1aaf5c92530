"""Project-scoped API keys: minting, checking a key (the Lambda authorizer), and the scope that
every handler enforces.

A key looks like ``llmb_<43 url-safe characters>`` (256 random bits). Only its SHA-256 is stored
(store.ApiKeyStore), with the projects it may touch and a role:

- ``reader``: read budgets (GET routes, ``/get_budget``, projected cost);
- ``writer``: read, and record costs (``POST .../cost``) and hold, settle and release;
- ``admin``: everything, including creating, replacing, resetting and deleting budgets and
  litellm's ``/set_budget`` (which replaces budget settings, so litellm's BudgetManager needs an
  admin key);
- ``user``: one end user's self-service key (the web console's own view): it reads that one
  user of that one project (the routes with ``{user}`` in their path that need ``read``) and
  nothing project-wide, so one user never sees another's spend or the project's totals.

API Gateway caches the authorizer's answer per key for the TTL and across routes, so the
authorizer allows the whole API and hands the scope (projects, role) to the handlers in its
context; ``http.py`` refuses anything outside it, for every route, in one place.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from decimal import Decimal
from enum import StrEnum
from functools import lru_cache
from typing import NamedTuple

from budget_service.core.errors import Forbidden, InvalidInput, Unauthorized

KEY_PREFIX = "llmb_"
KEY_RANDOM_BYTES = 32  # token_urlsafe(32): 43 characters
KEY_PATTERN = re.compile(r"^llmb_[A-Za-z0-9_-]{43}$")
# API Gateway checks the header against this before invoking the authorizer (template.yaml).
HEADER_PATTERN = r"^Bearer llmb_[A-Za-z0-9_-]{43}$"
KEY_ID_HEX = 16  # the key id: this many hex digits of the hash (not secret)
MAX_PROJECTS_PER_KEY = 100


class Role(StrEnum):
    READER = "reader"
    WRITER = "writer"
    ADMIN = "admin"
    USER = "user"


class Permission(StrEnum):
    READ = "read"
    RECORD_COST = "record_cost"
    MANAGE = "manage"


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.READER: frozenset({Permission.READ}),
    Role.WRITER: frozenset({Permission.READ, Permission.RECORD_COST}),
    Role.ADMIN: frozenset(Permission),
    # Read, and only on its own user's routes (Scope.allows_route, check).
    Role.USER: frozenset({Permission.READ}),
}

# What each API route needs, by its API Gateway resource path. A route missing here needs
# MANAGE (fail closed); tests check that every template route is listed.
ROUTE_PERMISSIONS: dict[tuple[str, str], Permission] = {
    ("POST", "/get_budget"): Permission.READ,
    ("POST", "/set_budget"): Permission.MANAGE,
    ("GET", "/projects/{project}/users"): Permission.READ,
    ("GET", "/projects/{project}/users/{user}"): Permission.READ,
    ("PUT", "/projects/{project}/users/{user}"): Permission.MANAGE,
    ("DELETE", "/projects/{project}/users/{user}"): Permission.MANAGE,
    ("POST", "/projects/{project}/users/{user}/reset"): Permission.MANAGE,
    ("POST", "/projects/{project}/users/{user}/cost"): Permission.RECORD_COST,
    ("POST", "/projects/{project}/users/{user}/projected-cost"): Permission.READ,
    # Per-project prices: admin only, reading included (prices can be negotiated terms).
    ("PUT", "/projects/{project}/prices/{model}"): Permission.MANAGE,
    ("GET", "/projects/{project}/prices/{model}"): Permission.MANAGE,
    ("DELETE", "/projects/{project}/prices/{model}"): Permission.MANAGE,
    ("GET", "/projects/{project}/prices"): Permission.MANAGE,
    # Holds reserve and charge spend: what a writer key (an app) does per call.
    ("POST", "/projects/{project}/users/{user}/holds"): Permission.RECORD_COST,
    ("POST", "/projects/{project}/users/{user}/holds/{hold_id}/settle"): Permission.RECORD_COST,
    ("DELETE", "/projects/{project}/users/{user}/holds/{hold_id}"): Permission.RECORD_COST,
    ("GET", "/projects/{project}/hold-sizing"): Permission.READ,
    ("PUT", "/projects/{project}/hold-sizing"): Permission.MANAGE,
    # History: reading it is a read; an adjustment corrects spend by hand: admin.
    ("GET", "/projects/{project}/users/{user}/periods"): Permission.READ,
    ("GET", "/projects/{project}/spend"): Permission.READ,
    ("GET", "/projects/{project}/users/{user}/ledger"): Permission.READ,
    ("POST", "/projects/{project}/users/{user}/adjustments"): Permission.MANAGE,
    # Budget levels: an admin creates, changes and deletes them; a reader reads them.
    ("PUT", "/projects/{project}/budget"): Permission.MANAGE,
    ("GET", "/projects/{project}/budget"): Permission.READ,
    ("DELETE", "/projects/{project}/budget"): Permission.MANAGE,
    ("PUT", "/projects/{project}/teams/{team}"): Permission.MANAGE,
    ("GET", "/projects/{project}/teams/{team}"): Permission.READ,
    ("DELETE", "/projects/{project}/teams/{team}"): Permission.MANAGE,
    ("GET", "/projects/{project}/teams"): Permission.READ,
}


def route_permission(method: str, resource: str) -> Permission:
    return ROUTE_PERMISSIONS.get((method.upper(), resource), Permission.MANAGE)


def user_route(resource: str) -> bool:
    """True for a route about one user (``{user}`` in its API Gateway resource path): the only
    routes a ``user`` key may reach."""
    return "/users/{user}" in resource


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_id_of(digest: str) -> str:
    return digest[:KEY_ID_HEX]


class Scope(NamedTuple):
    """What a key may do: its role, on these projects; a ``user`` key also names its one user."""

    key_id: str
    role: Role
    projects: frozenset[str]
    user: str | None = None

    def allows(self, permission: Permission) -> bool:
        return permission in ROLE_PERMISSIONS[self.role]

    def allows_route(self, method: str, resource: str) -> bool:
        """Whether the role may call this route at all (before its path's values are known): its
        permission, and for a ``user`` key, a route about one user."""
        if not self.allows(route_permission(method, resource)):
            return False
        return self.role is not Role.USER or user_route(resource)

    def to_context(self) -> dict[str, str]:
        """The authorizer context (API Gateway allows only strings, numbers and booleans)."""
        context = {
            "key_id": self.key_id,
            "role": self.role.value,
            "projects": json.dumps(sorted(self.projects)),
        }
        if self.user is not None:
            context["user"] = self.user
        return context

    @classmethod
    def from_context(cls, context: object) -> Scope | None:
        """The scope the authorizer handed over; None when absent or malformed."""
        if not isinstance(context, dict):
            return None
        try:
            projects = json.loads(context["projects"])
            role = Role(context["role"])
            key_id = context["key_id"]
        except (KeyError, TypeError, ValueError):
            return None
        if not isinstance(projects, list) or not all(isinstance(p, str) for p in projects):
            return None
        if not isinstance(key_id, str):
            return None
        user = context.get("user")
        # A user key without its user (or any other key with one) is malformed: refuse it.
        if (role is Role.USER) != isinstance(user, str):
            return None
        return cls(key_id=key_id, role=role, projects=frozenset(projects), user=user)


def check(
    scope: Scope, permission: Permission, project: str | None, user: str | None = None, *, resource: str = ""
) -> None:
    """Forbidden unless `scope` may do `permission` on `project` (None: no project, refused).

    A ``user`` key also needs `resource` to be a route about one user and `user` (the request's
    ``{user}``) to be its own."""
    if not scope.allows(permission):
        raise Forbidden(f"a {scope.role.value} key may not do this ({permission.value} is needed)")
    if project is None or project not in scope.projects:
        raise Forbidden("this key is not valid for this project")
    if scope.role is Role.USER:
        if not user_route(resource):
            raise Forbidden("a user key reads its own user only, not project-wide routes")
        if user is None or user != scope.user:
            raise Forbidden("a user key reads its own user only")


# ---- minting and revoking (the admin CLI, budget_service.api.keys) ----------------------------------


@lru_cache(maxsize=1)
def _project_id():
    """The project-name validator, built on first use: minting is the admin CLI's, and the
    authorizer, which imports this module on every cold start, never needs pydantic."""
    from pydantic import TypeAdapter

    from budget_service.schemas import Identifier

    return TypeAdapter(Identifier)


class MintedKey(NamedTuple):
    key: str  # shown once, never stored
    key_id: str
    role: Role
    projects: tuple[str, ...]
    user: str | None = None


def mint(
    key_store,
    projects: list[str],
    role: str,
    now: Decimal,
    label: str | None = None,
    user: str | None = None,
) -> MintedKey:
    """Create a key for `projects` with `role`; store only its hash. A ``user`` key needs exactly
    one project and `user` (the end user it may read); other roles take no `user`.
    InvalidInput otherwise, with nothing stored."""
    from budget_service.store.base import KeyExists

    try:
        role_ = Role(role)
    except ValueError:
        raise InvalidInput(f"role must be one of {', '.join(r.value for r in Role)}") from None
    if not projects:
        raise InvalidInput("give at least one project")
    if role_ is Role.USER and (user is None or len(set(projects)) != 1):
        raise InvalidInput("a user key needs exactly one project and its user")
    if role_ is not Role.USER and user is not None:
        raise InvalidInput("only a user key names a user")
    if len(projects) > MAX_PROJECTS_PER_KEY:
        raise InvalidInput(f"at most {MAX_PROJECTS_PER_KEY} projects per key")
    from pydantic import ValidationError

    try:
        names = tuple(sorted({_project_id().validate_python(p) for p in projects}))
        if user is not None:
            user = _project_id().validate_python(user)
    except ValidationError as exc:
        raise InvalidInput(f"invalid project name: {exc.errors()[0]['msg']}") from None
    for _ in range(3):  # a repeated id (64 bits) is astronomically unlikely; mint again if so
        key = KEY_PREFIX + secrets.token_urlsafe(KEY_RANDOM_BYTES)
        digest = hash_key(key)
        attributes = {"role": role_.value, "projects": list(names), "created_at": now, "revoked": False}
        if label:
            attributes["label"] = label
        if user is not None:
            attributes["user"] = user
        try:
            key_store.put(digest, key_id_of(digest), attributes)
        except KeyExists:
            continue
        return MintedKey(key=key, key_id=key_id_of(digest), role=role_, projects=names, user=user)
    raise RuntimeError("could not mint a key with a fresh id")


def revoke(key_store, key_or_id: str, now: Decimal) -> dict | None:
    """Revoke by key id (or by the key itself). None: no such key."""
    key_id = key_id_of(hash_key(key_or_id)) if key_or_id.startswith(KEY_PREFIX) else key_or_id
    return key_store.revoke(key_id, now)


# ---- the authorizer -------------------------------------------------------------------------------


def bearer_key(header: str | None) -> str | None:
    """The key in an ``Authorization: Bearer <key>`` header, or None if it has none."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not KEY_PATTERN.match(value):
        return None
    return value


def authenticate(key_store, header: str | None) -> Scope:
    """The scope of the key in the Authorization header; Unauthorized if there is no valid one."""
    key = bearer_key(header)
    if key is None:
        raise Unauthorized("send an API key: Authorization: Bearer <key>")
    digest = hash_key(key)
    record = key_store.get(digest)
    if record is None or record.get("revoked"):
        raise Unauthorized("the API key is not valid (unknown or revoked)")
    try:
        scope = Scope(
            key_id=key_id_of(digest),
            role=Role(record["role"]),
            projects=frozenset(record["projects"]),
            user=record.get("user"),
        )
    except (KeyError, TypeError, ValueError):
        raise Unauthorized("the API key is not valid") from None
    if (scope.role is Role.USER) != isinstance(scope.user, str):
        raise Unauthorized("the API key is not valid")
    return scope


def api_wide_resource(method_arn: str) -> str:
    """``arn:...:<api>/<stage>/<method>/<path>`` -> ``arn:...:<api>/<stage>/*``: the cached
    policy must allow every route, since API Gateway reuses it for the key's next requests."""
    prefix, _, path = method_arn.partition(":execute-api:")
    parts = path.split("/")
    if not prefix or len(parts) < 2:
        raise ValueError("not an execute-api method ARN")
    return f"{prefix}:execute-api:{parts[0]}/{parts[1]}/*"


def allow_policy(scope: Scope, method_arn: str) -> dict:
    return {
        "principalId": scope.key_id,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Action": "execute-api:Invoke",
                    "Effect": "Allow",
                    "Resource": api_wide_resource(method_arn),
                }
            ],
        },
        "context": scope.to_context(),
    }
