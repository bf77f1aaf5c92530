"""template.yaml's alerts: the stream, AlertsFunction's event source, the bus, least
privilege, and the optional webhook, lint-clean with and without it."""

import json

from cfnlint.api import lint_file
from sam_transform import transformed

from localdev import template
from localdev.eventbridge import pattern_matches


def resources():
    return template.load_template()["Resources"]


def test_the_table_streams_new_and_old_images():
    assert template.table_properties()["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}


def test_alerts_function_reads_the_stream_with_partial_failures_bisect_retries_and_a_failure_queue():
    ((function_id, event_id, props),) = template.stream_events()
    assert function_id == "AlertsFunction"
    assert props["Stream"] == {"Fn::GetAtt": ["BudgetTable", "StreamArn"]}
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["BisectBatchOnFunctionError"] is True
    assert 0 < props["MaximumRetryAttempts"] <= 20 and 1 <= props["BatchSize"] <= 1000
    assert props["DestinationConfig"]["OnFailure"] == {
        "Type": "SQS",
        "Destination": {"Fn::GetAtt": ["AlertFailuresQueue", "Arn"]},
    }
    assert (template.EVENTS_DIR / f"{template.snake_case(event_id)}.json").is_file()


def _record(event_name, sk, pk="PROJECT#acme"):
    return {"eventName": event_name, "dynamodb": {"Keys": {"pk": {"S": pk}, "sk": {"S": sk}}}}


def test_the_filter_lets_only_writes_to_budget_levels_invoke_the_function():
    ((_f, _e, props),) = template.stream_events()
    patterns = [json.loads(f["Pattern"]) for f in props["FilterCriteria"]["Filters"]]

    def invokes(record):
        return any(pattern_matches(p, record) for p in patterns)

    for sk in ("USER#alice", "TEAM#ml", "PROJECT"):
        assert invokes(_record("MODIFY", sk)) and invokes(_record("INSERT", sk))
        assert not invokes(_record("REMOVE", sk))
    for sk in ("HOLD#h1", "EVENT#5:alice#k", "PERIOD#x", "AUDIT#y", "ALERT#a", "PRICE#m", "PROJECTS"):
        assert not invokes(_record("MODIFY", sk)), sk
    assert not invokes(_record("INSERT", "APIKEY", pk="APIKEY#abc"))


def test_alerts_function_may_put_events_only_on_its_bus_and_touch_only_the_table():
    statements = resources()["AlertsFunction"]["Properties"]["Policies"][0]["Statement"]
    by_action = {a: s["Resource"] for s in statements for a in s["Action"]}
    assert by_action == {
        "dynamodb:GetItem": {"Fn::GetAtt": ["BudgetTable", "Arn"]},
        "dynamodb:PutItem": {"Fn::GetAtt": ["BudgetTable", "Arn"]},
        "events:PutEvents": {"Fn::GetAtt": ["AlertBus", "Arn"]},
    }
    env = resources()["AlertsFunction"]["Properties"]["Environment"]["Variables"]
    assert env["ALERT_BUS_NAME"] == {"Ref": "AlertBus"}
    assert resources()["AlertBus"]["Type"] == "AWS::Events::EventBus"


def test_the_webhook_is_optional_and_complete_when_asked_for():
    res = resources()
    webhook = {name: r for name, r in res.items() if r.get("Condition") == "HasAlertWebhook"}
    assert {r["Type"] for r in webhook.values()} == {
        "AWS::Events::Connection",
        "AWS::Events::ApiDestination",
        "AWS::Events::Rule",
        "AWS::IAM::Role",
        "AWS::SQS::QueuePolicy",
    }
    connection = res["AlertWebhookConnection"]["Properties"]
    assert connection["AuthorizationType"] == "API_KEY"
    assert connection["AuthParameters"]["ApiKeyAuthParameters"]["ApiKeyValue"] == {
        "Ref": "AlertWebhookSecret"
    }
    rule = res["AlertWebhookRule"]["Properties"]
    assert rule["EventBusName"] == {"Ref": "AlertBus"}
    assert rule["EventPattern"] == {"source": ["llm-budget"], "detail-type": ["Budget Threshold Crossed"]}
    role = res["AlertWebhookRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    assert role == [
        {
            "Effect": "Allow",
            "Action": "events:InvokeApiDestination",
            "Resource": {"Fn::GetAtt": ["AlertWebhookDestination", "Arn"]},
        }
    ]
    params = template.load_template()["Parameters"]
    assert params["AlertWebhookUrl"]["Default"] == "" and params["AlertWebhookSecret"]["NoEcho"] is True


def test_cfn_lint_is_clean_with_the_webhook_turned_on(tmp_path):
    text = template.TEMPLATE.read_text()
    text = text.replace(
        '  AlertWebhookUrl:\n    Type: String\n    Default: ""',
        '  AlertWebhookUrl:\n    Type: String\n    Default: "https://hooks.example.com/budget"',
    )
    text = text.replace(
        "    Default: none\n    NoEcho: true", "    Default: a-long-enough-secret\n    NoEcho: true"
    )
    assert "hooks.example.com" in text and "a-long-enough-secret" in text
    enabled = tmp_path / "template.yaml"
    enabled.write_text(text)
    assert [str(m) for m in lint_file(enabled)] == []


def test_sam_transform_keeps_the_alert_resources():
    out = transformed()
    kinds = {r["Type"] for r in out["Resources"].values()}
    assert {
        "AWS::Lambda::EventSourceMapping",
        "AWS::Events::EventBus",
        "AWS::Events::Connection",
        "AWS::Events::ApiDestination",
        "AWS::Events::Rule",
    } <= kinds
    (mapping,) = [r for r in out["Resources"].values() if r["Type"] == "AWS::Lambda::EventSourceMapping"]
    props = mapping["Properties"]
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert json.loads(props["FilterCriteria"]["Filters"][0]["Pattern"])["dynamodb"]["Keys"]["sk"]
