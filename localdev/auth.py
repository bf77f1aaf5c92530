"""API Gateway's Lambda authorizer, locally: what ``AUTH=1 make dev`` puts in front of the routes.

Read from template.yaml (the API's DefaultAuthorizer): which function, which header, its
ValidationExpression and its result TTL (ReauthorizeEvery; ``AUTH_CACHE_TTL`` overrides it). For
each request, as API Gateway does for a TOKEN authorizer:

- no header, or one the ValidationExpression rejects: 401, without invoking the authorizer;
- a cached answer for this exact header value younger than the TTL is reused (0: never cached);
- otherwise the authorizer function is invoked in process with a TOKEN event; raising
  "Unauthorized" is a 401 (not cached), any other failure the AUTHORIZER_FAILURE response;
- the returned policy must Allow (and not Deny) this request's method ARN, or it is a 403;
- the policy's context and principalId go into ``requestContext.authorizer`` of the proxy event.

The 401/403/5xx bodies are the template's GatewayResponses, so clients see what they would see
from the deployed API.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from localdev import template
from localdev.events import ACCOUNT_ID as ACCOUNT

API_ID = "local"

# API Gateway's defaults, for responses the template does not override.
_DEFAULT_RESPONSES = {
    "UNAUTHORIZED": (401, "Unauthorized"),
    "ACCESS_DENIED": (403, "User is not authorized to access this resource"),
    "AUTHORIZER_FAILURE": (500, "Internal server error"),
}


@dataclass(frozen=True)
class AuthorizerSpec:
    function_id: str
    header: str
    validation_expression: str | None
    ttl_seconds: int


def from_template(parameters: dict[str, str]) -> AuthorizerSpec | None:
    """The DefaultAuthorizer of the template's API (a TOKEN authorizer), or None if there is none."""
    for api in template.resources("AWS::Serverless::Api").values():
        auth = (api.get("Properties") or {}).get("Auth") or {}
        name = auth.get("DefaultAuthorizer")
        if not name or name == "AWS_IAM":
            continue
        spec = auth["Authorizers"][name]
        if spec.get("FunctionPayloadType", "TOKEN") != "TOKEN":
            raise ValueError(f"authorizer {name}: only TOKEN authorizers are served locally")
        arn = spec["FunctionArn"]
        if isinstance(arn, dict) and "Fn::GetAtt" in arn:
            target = arn["Fn::GetAtt"]
            function_id = target[0] if isinstance(target, list) else str(target).split(".")[0]
        elif isinstance(arn, dict) and str(arn.get("Ref", "")).endswith(".Alias"):
            function_id = str(arn["Ref"]).removesuffix(".Alias")  # SAM's !Ref <Function>.Alias
        else:
            raise ValueError(
                f"authorizer {name}: FunctionArn must be !GetAtt <Function>.Arn or !Ref <Function>.Alias"
            )
        identity = spec.get("Identity") or {}
        ttl = template.literal(identity.get("ReauthorizeEvery", 300), parameters)
        return AuthorizerSpec(
            function_id=str(function_id),
            header=str(identity.get("Header", "Authorization")),
            validation_expression=(
                str(identity["ValidationExpression"]) if identity.get("ValidationExpression") else None
            ),
            ttl_seconds=int(ttl if ttl is not None else 300),
        )
    return None


def gateway_response(kind: str, message: str | None = None) -> tuple[int, dict[str, str], str]:
    """(status, headers, body) of one of the template API's GatewayResponses."""
    status, default_message = _DEFAULT_RESPONSES.get(kind, (500, "Internal server error"))
    message = message or default_message
    body = json.dumps({"message": message})
    headers: dict[str, str] = {}
    for api in template.resources("AWS::Serverless::Api").values():
        response = ((api.get("Properties") or {}).get("GatewayResponses") or {}).get(kind)
        if not response:
            continue
        status = int(response.get("StatusCode", status))
        for name, value in ((response.get("ResponseParameters") or {}).get("Headers") or {}).items():
            headers[str(name)] = str(value).strip("'")
        body_template = (response.get("ResponseTemplates") or {}).get("application/json")
        if body_template:
            body = str(body_template).replace("$context.error.messageString", json.dumps(message))
    return status, headers, body


@dataclass(frozen=True)
class Denied:
    status: int
    headers: dict[str, str]
    body: str


def _arn_matches(pattern: str, arn: str) -> bool:
    regex = "".join(".*" if c == "*" else ("." if c == "?" else re.escape(c)) for c in pattern)
    return re.fullmatch(regex, arn) is not None


def _statements(policy: dict) -> list[dict]:
    statements = (policy.get("policyDocument") or {}).get("Statement") or []
    return statements if isinstance(statements, list) else [statements]


def policy_allows(policy: dict, method_arn: str) -> bool:
    """IAM evaluation of an authorizer's policy for one method ARN: an explicit Deny wins, then
    an Allow is needed."""
    allowed = False
    for statement in _statements(policy):
        actions = statement.get("Action", [])
        actions = actions if isinstance(actions, list) else [actions]
        if not any(_arn_matches(a, "execute-api:Invoke") for a in actions):
            continue
        resources = statement.get("Resource", [])
        resources = resources if isinstance(resources, list) else [resources]
        if not any(_arn_matches(str(r), method_arn) for r in resources):
            continue
        if statement.get("Effect") == "Deny":
            return False
        if statement.get("Effect") == "Allow":
            allowed = True
    return allowed


class LocalAuthorizer:
    def __init__(
        self,
        spec: AuthorizerSpec,
        invoke: Callable[[str, object], object],
        region: str,
        stage: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spec = spec
        self.invoke = invoke
        self.region = region
        self.stage = stage
        self.clock = clock
        self.invocations = 0
        self._cache: dict[str, tuple[float, dict]] = {}
        self._lock = threading.Lock()

    def method_arn(self, method: str, path: str) -> str:
        return (
            f"arn:aws:execute-api:{self.region}:{ACCOUNT}:{API_ID}/{self.stage}/{method}/{path.lstrip('/')}"
        )

    def _policy(self, token: str, method_arn: str) -> dict | Denied:
        now = self.clock()
        with self._lock:
            cached = self._cache.get(token)
            if cached and now < cached[0]:
                return cached[1]
            self._cache.pop(token, None)
        event = {"type": "TOKEN", "authorizationToken": token, "methodArn": method_arn}
        self.invocations += 1
        try:
            policy = self.invoke(self.spec.function_id, event)
        except Exception as exc:  # the authorizer's failure, as API Gateway reports it
            if str(exc) == "Unauthorized":
                return Denied(*gateway_response("UNAUTHORIZED"))
            print(f"authorizer {self.spec.function_id} failed: {type(exc).__name__}", flush=True)
            return Denied(*gateway_response("AUTHORIZER_FAILURE"))
        if not isinstance(policy, dict) or "policyDocument" not in policy:
            return Denied(*gateway_response("AUTHORIZER_FAILURE"))
        if self.spec.ttl_seconds > 0:
            with self._lock:
                self._cache[token] = (now + self.spec.ttl_seconds, policy)
        return policy

    def authorize(self, headers, method: str, path: str) -> dict | Denied:
        """``requestContext.authorizer`` for this request, or the response that refuses it."""
        token = headers.get(self.spec.header)
        if not token:
            return Denied(*gateway_response("UNAUTHORIZED"))
        if self.spec.validation_expression and not re.fullmatch(self.spec.validation_expression, token):
            return Denied(*gateway_response("UNAUTHORIZED"))
        method_arn = self.method_arn(method, path)
        policy = self._policy(token, method_arn)
        if isinstance(policy, Denied):
            return policy
        if not policy_allows(policy, method_arn):
            return Denied(*gateway_response("ACCESS_DENIED"))
        context = {k: v for k, v in (policy.get("context") or {}).items()}
        return {**context, "principalId": policy.get("principalId"), "integrationLatency": 0}
