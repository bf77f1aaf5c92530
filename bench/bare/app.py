"""The floor of a cold start: a bare Lambda handler that imports boto3, creates a DynamoDB client
and makes the same DynamoDB requests the function under test made (recorded from its own run by
bench/cold_start.py, replayed from the file BENCH_BARE_CALLS names). Nothing else: no Powertools,
no pydantic, no validation, no domain code. A request the replay makes fail (a condition that no
longer holds) is still a full round trip, so it counts the same.
"""

import json
import os

import boto3
from botocore.exceptions import ClientError

with open(os.environ["BENCH_BARE_CALLS"]) as _f:
    CALLS = json.load(_f)  # [[client method name, params], ...]

client = boto3.client("dynamodb")


def lambda_handler(event, context):
    for method, params in CALLS:
        try:
            getattr(client, method)(**params)
        except ClientError:
            pass
    return {"statusCode": 200, "body": ""}
