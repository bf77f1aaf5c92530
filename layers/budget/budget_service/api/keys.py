"""Admin CLI for API keys: mint, revoke, list. ``make key`` / ``make revoke-key`` / ``make keys``.

    python -m budget_service.api.keys mint --project team-a [--project team-b] --role writer [--label ci]
    python -m budget_service.api.keys mint --project team-a --role user --user alice
    python -m budget_service.api.keys revoke <key id or key>
    python -m budget_service.api.keys list

Talks to the table named by ``TABLE_NAME`` (``--table``) with the usual AWS credentials;
``AWS_ENDPOINT_URL_DYNAMODB`` points it at a local DynamoDB (``AUTH=1 make dev`` prints the
command). Against a local endpoint no AWS configuration is needed: without a region it uses
us-east-1 (what ``make dev`` uses), and without credentials placeholder ones (local DynamoDB
servers take any). ``mint`` prints the key once, on stdout, and nothing else there: only its SHA-256 is
stored, so a lost key cannot be shown again (revoke it and mint another). Everything else goes to
stderr. Keys: ``admin`` (budgets and costs), ``writer`` (record costs, read), ``reader`` (read),
``user`` (one end user's own budget, read only: ``--role user --project acme --user alice``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import MutableMapping
from urllib.parse import urlsplit

from budget_service.core.errors import BudgetError
from budget_service.domain import auth
from budget_service.domain.budgets import utc_now

LOCAL_REGION = "us-east-1"  # localdev.server's default region
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0", "host.docker.internal"}


def local_endpoint(environ: MutableMapping[str, str] = os.environ) -> bool:
    """True when DynamoDB requests go to a local server (make dev, DynamoDB Local)."""
    endpoint = environ.get("AWS_ENDPOINT_URL_DYNAMODB") or environ.get("AWS_ENDPOINT_URL") or ""
    host = urlsplit(endpoint).hostname or ""
    return host in _LOCAL_HOSTS or host.endswith(".localhost")


def use_local_defaults(environ: MutableMapping[str, str] = os.environ) -> None:
    """For a local endpoint, fill in what boto3 would otherwise fail without: a region
    (NoRegionError) and credentials (NoCredentialsError). Configured ones are kept (DynamoDB
    Local keeps a database per access key and region unless started with -sharedDb)."""
    if not local_endpoint(environ):
        return
    from budget_service.store.base import aws_configuration

    # No instance-metadata lookups for credentials that no local server checks (a slow timeout).
    environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    has_region, has_credentials = aws_configuration()
    if not has_region:
        environ["AWS_DEFAULT_REGION"] = LOCAL_REGION
    if not has_credentials:
        environ["AWS_ACCESS_KEY_ID"], environ["AWS_SECRET_ACCESS_KEY"] = "local", "local"


def _store(table: str | None):
    from budget_service.store.base import ApiKeyStore

    name = table or os.environ.get("TABLE_NAME")
    if not name:
        raise SystemExit("set TABLE_NAME (or --table) to the budget table's name")
    return ApiKeyStore(name)


def _shown(entry: dict) -> dict:
    """A key's registry entry without its hash (not secret, but of no use to a reader)."""
    return {
        "key_id": entry["key_id"],
        "role": entry["role"],
        "projects": list(entry["projects"]),
        "user": entry.get("user"),
        "label": entry.get("label"),
        "created_at": str(entry["created_at"]),
        "revoked": bool(entry.get("revoked")),
        "revoked_at": str(entry["revoked_at"]) if entry.get("revoked_at") is not None else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m budget_service.api.keys",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--table", help="the budget table (default: $TABLE_NAME)")
    commands = parser.add_subparsers(dest="command", required=True)
    mint = commands.add_parser("mint", help="create a key; prints it once")
    mint.add_argument(
        "--project",
        action="append",
        required=True,
        help="a project the key may use (repeat, or comma-separate)",
    )
    mint.add_argument("--role", required=True, choices=[r.value for r in auth.Role])
    mint.add_argument("--label", help="a note stored with the key (who or what uses it)")
    mint.add_argument("--user", help="the one user a `user` key may read (that role only)")
    revoke = commands.add_parser("revoke", help="revoke a key by its id (or the key itself)")
    revoke.add_argument("key")
    commands.add_parser("list", help="every key's id, role, projects and state (never the key)")
    args = parser.parse_args(argv)

    use_local_defaults()
    store = _store(args.table)
    try:
        if args.command == "mint":
            projects = [p.strip() for arg in args.project for p in arg.split(",") if p.strip()]
            minted = auth.mint(store, projects, args.role, utc_now(), args.label, args.user)
            print(
                f"minted key {minted.key_id}: role {minted.role.value}, projects "
                f"{', '.join(minted.projects)}"
                f"{f', user {minted.user}' if minted.user else ''}. It is shown once, below; store it now.",
                file=sys.stderr,
            )
            print(minted.key, flush=True)
            return 0
        if args.command == "revoke":
            entry = auth.revoke(store, args.key, utc_now())
            if entry is None:
                print(f"no key with id {args.key!r}", file=sys.stderr)
                return 1
            print(
                f"revoked key {entry['key_id']} (cached authorizations end within the "
                "AuthCacheTtlSeconds of the deployed API)",
                file=sys.stderr,
            )
            return 0
        for entry in store.list():
            print(json.dumps(_shown(entry)))
        return 0
    except BudgetError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
