"""The floor of a cold start: a bare Lambda handler that imports boto3, creates a DynamoDB client
and makes the same DynamoDB requests the function under test made (recorded from its own run by
bench/cold_start.py, replayed from the file BENCH_BARE_CALLS names). Nothing else: no Powertools,
no pydantic, no validation, no domain code. A request the replay makes fail (a condition that no
longer holds) is still a full round trip, so it counts the same.

With ``BENCH_BARE_ENCODINGS`` (names, comma-separated) the handler also loads those tiktoken
encodings and counts one token, as the function did when its first call counted tokens: the floor
of a call that must count tokens exactly (tiktoken's own load), measured beside the function.
"""

import json
import os

import boto3
from botocore.exceptions import ClientError

with open(os.environ["BENCH_BARE_CALLS"]) as _f:
    CALLS = json.load(_f)  # [[client method name, params], ...]

client = boto3.client("dynamodb")
ENCODINGS = [name for name in os.environ.get("BENCH_BARE_ENCODINGS", "").split(",") if name]


def lambda_handler(event, context):
    if ENCODINGS:
        import tiktoken

        for name in ENCODINGS:
            tiktoken.get_encoding(name).encode_ordinary("x")
    for method, params in CALLS:
        try:
            getattr(client, method)(**params)
        except ClientError:
            pass
    return {"statusCode": 200, "body": ""}
