"""A reference point between the floor (bench/bare/app.py) and a function: the bare handler plus
pydantic and nothing else. It imports pydantic, defines one small body model and one response
model (as the API functions define theirs), validates the event's body with the first and
serializes the second, then makes the same recorded DynamoDB requests. No Powertools, no service
code: what it costs over the floor is what the validation library the service is built on costs on its
own, the share of a function's ratio that no change to the service's code can remove.
"""

import json
import os

import boto3
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field

with open(os.environ["BENCH_BARE_CALLS"]) as _f:
    CALLS = json.load(_f)  # [[client method name, params], ...]

client = boto3.client("dynamodb")


class Body(BaseModel):
    # Whatever the sample event's body holds (the functions' bodies differ): one optional field
    # checked, the rest ignored, as the litellm models do.
    model_config = ConfigDict(extra="ignore", defer_build=True)

    project_name: str | None = Field(default=None, min_length=1, max_length=256)


class Answer(BaseModel):
    model_config = ConfigDict(defer_build=True)

    requests: int


def lambda_handler(event, context):
    try:
        Body.model_validate(json.loads(event.get("body") or "{}"))
    except ValueError:  # not JSON, or out of shape: the floor's requests are replayed all the same
        pass
    for method, params in CALLS:
        try:
            getattr(client, method)(**params)
        except ClientError:
            pass
    return {"statusCode": 200, "body": Answer(requests=len(CALLS)).model_dump_json()}
