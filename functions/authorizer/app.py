"""API Gateway TOKEN authorizer: checks ``Authorization: Bearer <key>`` and hands the key's scope
(projects, role) to the handlers. API Gateway caches the answer per key for the template's
AuthCacheTtlSeconds, so a key in use costs no DynamoDB read per request.

An unknown, malformed or revoked key: raise "Unauthorized", which API Gateway turns into a 401
(the only way a TOKEN authorizer can ask for one). Neither the key nor the event is logged.
"""

from budget_service.core.errors import Unauthorized
from budget_service.domain.auth import allow_policy, authenticate
from budget_service.observability import logger, tracer
from budget_service.store.base import default_key_store


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event, context):
    try:
        scope = authenticate(default_key_store(), event.get("authorizationToken"))
    except Unauthorized as exc:
        logger.info("API key refused", extra={"reason": exc.message})
        raise Exception("Unauthorized") from None  # noqa: TRY002 - API Gateway's contract
    logger.info("API key accepted", extra={"key_id": scope.key_id, "role": scope.role.value})
    return allow_policy(scope, event["methodArn"])
