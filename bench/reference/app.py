"""The cold-start reference: a handler built from the design's own libraries and no service code.

It imports boto3 and creates its DynamoDB client, Powertools' ``APIGatewayRestResolver`` with
validation (one route with a small pydantic body model and a response model) and Powertools'
Logger and Metrics, as the API functions use them. Its first invocation resolves an API event
through that route (building its validators, as a function's first request does) and makes the
same DynamoDB requests the function under test made (recorded from its own run by
bench/cold_start.py, replayed from the file BENCH_REFERENCE_CALLS names); an event that is not an
API request (the authorizer's, the schedule's) replays the requests without the resolver. A
request the replay makes fail (a condition that no longer holds) is still a full round trip.

With ``BENCH_REFERENCE_ENCODINGS`` (names, comma-separated) it also loads those tiktoken encodings
and counts one token, as the function did when its first call counted tokens: the same
reference plus tiktoken's own load, shown beside it.
"""

import json
import os

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from botocore.exceptions import ClientError
from pydantic import BaseModel

with open(os.environ["BENCH_REFERENCE_CALLS"]) as _f:
    CALLS = json.load(_f)  # [[client method name, params], ...]

client = boto3.client("dynamodb")
logger = Logger()
metrics = Metrics()
app = APIGatewayRestResolver(enable_validation=True)
ENCODINGS = [name for name in os.environ.get("BENCH_REFERENCE_ENCODINGS", "").split(",") if name]


class Body(BaseModel):
    model: str | None = None
    project_name: str | None = None


class Answer(BaseModel):
    requests: int


def _replay() -> Answer:
    if ENCODINGS:
        import tiktoken

        for name in ENCODINGS:
            tiktoken.get_encoding(name).encode_ordinary("x")
    for method, params in CALLS:
        try:
            getattr(client, method)(**params)
        except ClientError:
            pass
    return Answer(requests=len(CALLS))


@app.route("/.+", method=["GET", "POST", "PUT", "DELETE"])
def any_route(body: Body | None = None) -> Answer:
    return _replay()


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
def lambda_handler(event, context):
    if "httpMethod" in event:
        return app.resolve(event, context)
    _replay()
    return {"statusCode": 200, "body": ""}
