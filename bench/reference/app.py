"""A reference point between the floor (bench/bare/app.py) and a function: the bare handler plus
the HTTP stack the API functions used before the service's own router, and nothing of the service's own:
Powertools' REST resolver with pydantic validation, one route with one small body model and a
response model, Powertools' Logger and Metrics, then the same recorded DynamoDB requests. What it
costs over the floor is what that stack costs before any service code is imported.
"""

import json
import os

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from botocore.exceptions import ClientError
from pydantic import BaseModel

with open(os.environ["BENCH_BARE_CALLS"]) as _f:
    CALLS = json.load(_f)  # [[client method name, params], ...]

client = boto3.client("dynamodb")
logger = Logger()
metrics = Metrics()
app = APIGatewayRestResolver(enable_validation=True)


class Body(BaseModel):
    model: str | None = None
    project_name: str | None = None


class Answer(BaseModel):
    requests: int


def _replay() -> Answer:
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
    return app.resolve(event, context)
