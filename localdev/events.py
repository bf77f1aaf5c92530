"""API Gateway REST (v1) proxy events, shaped as API Gateway sends them to Lambda."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from urllib.parse import quote

ACCOUNT_ID = "123456789012"  # the AWS account local events and ARNs name


def rest_proxy_event(
    *,
    method: str,
    resource: str,
    path: str,
    headers: dict[str, list[str]],
    query: dict[str, list[str]] | None,
    path_parameters: dict[str, str] | None,
    body: str | None,
    is_base64: bool = False,
    stage: str = "v1",
    request_id: str | None = None,
    domain: str = "localhost",
    source_ip: str = "127.0.0.1",
    protocol: str = "HTTP/1.1",
) -> dict:
    """The REST API (v1) Lambda proxy event, from a request's parts. `path` is percent-encoded,
    as the client sent it; headers and query values are lists, and the single-valued maps take
    the last value of each, as API Gateway does."""
    now = time.time()
    request_id = request_id or str(uuid.uuid4())
    user_agent = next(iter(v[-1] for k, v in headers.items() if k.lower() == "user-agent"), None)
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method.upper(),
        "headers": {k: v[-1] for k, v in headers.items()} or None,
        "multiValueHeaders": headers or None,
        "queryStringParameters": {k: v[-1] for k, v in query.items()} if query else None,
        "multiValueQueryStringParameters": query or None,
        "pathParameters": path_parameters or None,
        "stageVariables": None,
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": "local",
            "resourceId": "local",
            "resourcePath": resource,
            "httpMethod": method.upper(),
            "path": f"/{stage}{path}",
            "stage": stage,
            "protocol": protocol,
            "requestId": request_id,
            "extendedRequestId": request_id,
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "requestTimeEpoch": int(now * 1000),
            "domainName": domain,
            "domainPrefix": domain.split(".")[0].split(":")[0],
            "identity": {
                "sourceIp": source_ip,
                "userAgent": user_agent,
                "accessKey": None,
                "accountId": None,
                "caller": None,
                "user": None,
                "userArn": None,
                "cognitoIdentityId": None,
                "cognitoIdentityPoolId": None,
                "cognitoAuthenticationProvider": None,
                "cognitoAuthenticationType": None,
            },
        },
        "body": body,
        "isBase64Encoded": is_base64,
    }


def api_gateway_event(
    method: str,
    resource: str,
    path_parameters: dict[str, str] | None = None,
    *,
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    body: str | dict | None = None,
    stage: str = "v1",
    source_ip: str = "127.0.0.1",
) -> dict:
    """An event for `method` on the template's `resource` (e.g. /projects/{project}/users)."""
    # API Gateway passes `path` as the client sent it (percent-encoded) and pathParameters decoded.
    path = resource
    for name, value in (path_parameters or {}).items():
        path = path.replace("{" + name + "}", quote(value, safe=""))
    if isinstance(body, dict):
        body = json.dumps(body)
    all_headers = {"Content-Type": "application/json", "Host": "localhost", **(headers or {})}
    return rest_proxy_event(
        method=method,
        resource=resource,
        path=path,
        headers={k: [v] for k, v in all_headers.items()},
        query={k: [v] for k, v in query.items()} if query else None,
        path_parameters=path_parameters,
        body=body,
        stage=stage,
        source_ip=source_ip,
    )


class LambdaContext:
    """The attributes of Lambda's context object that Powertools reads.

    The time left counts down from `timeout_s` on `clock` (seconds; wall time, as in Lambda, by
    default). Tests pass the invoking thread's CPU time instead: a function in Lambda has its
    own CPU, so time that other processes of a loaded test machine take must not use up its
    time (tests/conftest.py says more).
    """

    def __init__(
        self,
        function_name: str,
        timeout_s: float = 15.0,
        memory_mb: int = 512,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = memory_mb
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:{ACCOUNT_ID}:function:{function_name}"
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._clock = clock
        self._deadline = clock() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - self._clock()) * 1000))
