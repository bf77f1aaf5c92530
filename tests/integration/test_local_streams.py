"""make dev's stream event source (localdev/streams.py): records shaped as Lambda delivers them,
batch size, the filter, partial batch failures, bisect, retries and the failure destination."""

import json
import uuid

import boto3
from conftest import TABLE_NAME

from localdev import streams, template
from localdev.dynamodb import client_for


def test_records_are_shaped_as_lambda_delivers_them(dynamodb_server):
    client = client_for(dynamodb_server)
    pk = "PROJECT#shape-" + uuid.uuid4().hex
    key = {"pk": {"S": pk}, "sk": {"S": "USER#alice"}}
    client.put_item(TableName=TABLE_NAME, Item={**key, "current_cost": {"N": "1"}})
    client.update_item(
        TableName=TABLE_NAME,
        Key=key,
        UpdateExpression="SET current_cost = :c",
        ExpressionAttributeValues={":c": {"N": "2"}},
    )
    stream_client = boto3.client("dynamodbstreams", endpoint_url=dynamodb_server)
    arn = client.describe_table(TableName=TABLE_NAME)["Table"]["LatestStreamArn"]
    shard = stream_client.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = stream_client.get_shard_iterator(
        StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )
    # The embedded DynamoDB is shared by the session: read the shard page by page (GetRecords
    # answers at most 1,000 records) until its end, keeping this test's records.
    raw, next_iterator = [], iterator["ShardIterator"]
    for _ in range(10_000):
        page = stream_client.get_records(ShardIterator=next_iterator)
        raw += [r for r in page["Records"] if r["dynamodb"]["Keys"]["pk"]["S"] == pk]
        next_iterator = page.get("NextShardIterator")
        if not page["Records"] or not next_iterator:
            break
    insert, modify = (streams.lambda_record(r, arn) for r in raw)
    sample = json.loads((template.EVENTS_DIR / "budget_changes.json").read_text())["Records"][0]
    assert set(modify) == set(sample) and set(modify["dynamodb"]) == set(sample["dynamodb"])
    assert insert["eventName"] == "INSERT" and "OldImage" not in insert["dynamodb"]
    assert modify["eventSourceARN"] == arn and modify["eventSource"] == "aws:dynamodb"
    assert isinstance(modify["dynamodb"]["ApproximateCreationDateTime"], int)
    assert modify["dynamodb"]["OldImage"]["current_cost"] == {"N": "1"}
    assert modify["dynamodb"]["NewImage"]["current_cost"] == {"N": "2"}
    json.dumps(modify)  # what Lambda hands the function is JSON


def record(seq, sk="USER#a", event="MODIFY"):
    return {
        "eventName": event,
        "dynamodb": {"SequenceNumber": str(seq), "Keys": {"pk": {"S": "PROJECT#p"}, "sk": {"S": sk}}},
    }


def poller(invoke, **props):
    ((function_id, event_id, template_props),) = template.stream_events()
    mapping, notes = streams.StreamMapping.from_template(function_id, event_id, {**template_props, **props})
    assert notes == []
    return streams.StreamPoller(mapping, None, None, TABLE_NAME, invoke, log=lambda _m: None)


def test_the_template_mapping_is_read_with_its_filter():
    p = poller(lambda *_: None)
    assert (p.mapping.batch_size, p.mapping.bisect, p.mapping.report_item_failures) == (100, True, True)
    assert p.mapping.max_retries == 10
    assert p.mapping.wants(record(1)) and p.mapping.wants(record(1, "PROJECT"))
    assert not p.mapping.wants(record(1, "HOLD#h")) and not p.mapping.wants(record(1, event="REMOVE"))


def test_partial_failures_retry_from_the_lowest_failed_record():
    calls = []

    def invoke(_function_id, event):
        seqs = [r["dynamodb"]["SequenceNumber"] for r in event["Records"]]
        calls.append(seqs)
        if len(calls) == 1:
            return {"batchItemFailures": [{"itemIdentifier": "4"}, {"itemIdentifier": "3"}]}
        return {"batchItemFailures": []}

    p = poller(invoke)
    p._deliver([record(i) for i in range(1, 6)], "shard")
    assert calls == [["1", "2", "3", "4", "5"], ["3", "4", "5"]]
    assert p.records_delivered == 5 and p.failures == []


def test_an_unknown_identifier_fails_the_whole_batch():
    calls = []

    def invoke(_function_id, event):
        calls.append(len(event["Records"]))
        return {"batchItemFailures": [{"itemIdentifier": "nope"}]} if len(calls) == 1 else {}

    p = poller(invoke)
    p._deliver([record(i) for i in range(1, 4)], "shard")
    assert calls == [3, 3]


def test_a_function_error_bisects_and_a_poison_record_goes_to_the_failure_destination():
    calls = []

    def invoke(_function_id, event):
        seqs = [r["dynamodb"]["SequenceNumber"] for r in event["Records"]]
        calls.append(seqs)
        if "3" in seqs:
            raise RuntimeError("poison")
        return {"batchItemFailures": []}

    p = poller(invoke, MaximumRetryAttempts=1)
    p._deliver([record(i) for i in range(1, 5)], "shard")
    # the batch fails, is retried split in two; the half with 3 is split again until 3 is alone
    assert calls[0] == ["1", "2", "3", "4"] and ["1", "2"] in calls and ["4"] in calls
    assert [f["startSequenceNumber"] for f in p.failures] == ["3"]
    assert p.failures[0]["shardId"] == "shard" and p.records_delivered == 3


def test_batch_size_and_the_filter_are_applied_when_polling():
    batches = []

    class FakeStreams:
        def describe_stream(self, StreamArn):
            return {"StreamDescription": {"Shards": [{"ShardId": "s1"}]}}

        def get_shard_iterator(self, **kwargs):
            return {"ShardIterator": "it"}

        def get_records(self, ShardIterator, Limit):
            return {"Records": [record(i, "HOLD#h" if i % 3 == 0 else "USER#a") for i in range(1, 11)]}

    p = poller(
        lambda _f, event: batches.append([r["dynamodb"]["SequenceNumber"] for r in event["Records"]]),
        BatchSize=3,
    )
    p.streams, p.stream_arn = FakeStreams(), "arn"
    assert p.poll_once() == 10
    assert batches == [["1", "2", "4"], ["5", "7", "8"], ["10"]]
    assert p.positions == {"s1": "10"}
