"""template.yaml is valid, deployable as written, and every piece of it resolves to real code."""

import copy
import json
import os

import pytest
from cfnlint.api import lint_file
from samtranslator.translator.transform import transform

from localdev import template

ROOT = template.ROOT


def test_cfn_lint_finds_nothing():
    matches = lint_file(template.TEMPLATE)
    assert [str(m) for m in matches] == []


def _transformed() -> dict:
    """The SAM transform, offline, on the template as `sam package` would upload it."""
    doc = copy.deepcopy(template._plain(template.load_template()))
    for res in doc["Resources"].values():
        props = res.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if isinstance(props.get(key), str):
                props[key] = f"s3://artifacts/{props[key].strip('/')}.zip"

    class NoManagedPolicies:  # our policies are inline; nothing to look up in IAM
        def load(self):
            return {}

    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    return transform(doc, {}, NoManagedPolicies())


def test_sam_transform_succeeds_offline():
    out = _transformed()
    kinds = {res["Type"] for res in out["Resources"].values()}
    assert {"AWS::Lambda::Function", "AWS::ApiGateway::RestApi", "AWS::DynamoDB::Table",
            "AWS::Lambda::LayerVersion"} <= kinds
    functions = {k: v for k, v in out["Resources"].items() if v["Type"] == "AWS::Lambda::Function"}
    assert set(functions) == set(template.functions())
    for fn in functions.values():
        assert fn["Properties"]["Runtime"] == "python3.13"
        assert fn["Properties"]["TracingConfig"] == {"Mode": "Active"}


def test_every_function_policy_is_scoped_to_the_table():
    """Least privilege: no function gets dynamodb:* or a wildcard resource."""
    out = _transformed()
    roles = [r for r in out["Resources"].values() if r["Type"] == "AWS::IAM::Role"]
    assert roles
    for role in roles:
        for policy in role["Properties"].get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                assert all(not a.endswith("*") for a in actions), statement
                assert statement.get("Resource") != "*", statement


@pytest.mark.parametrize("function_id", sorted(template.functions()))
def test_handler_resolves_to_a_callable(function_id):
    spec = template.functions()[function_id]
    assert spec.module_file.is_file(), spec.module_file
    assert callable(template.load_handler(function_id))


def test_table_is_what_the_design_says():
    props = template.table_properties()
    resource = template.load_template()["Resources"][template.TABLE_RESOURCE]
    assert resource["DeletionPolicy"] == "Retain" and resource["UpdateReplacePolicy"] == "Retain"
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert props["TimeToLiveSpecification"]["Enabled"] is True
    assert [k["AttributeName"] for k in props["KeySchema"]] == ["pk", "sk"]
    indexes = {i["IndexName"]: [k["AttributeName"] for k in i["KeySchema"]] for i in props["GlobalSecondaryIndexes"]}
    assert indexes == {"due-for-reset": ["reset_shard", "reset_at"],
                       "period-history": ["history_pk", "period_start"]}  # issue 17
    assert "DeletionProtectionEnabled" in props
    assert "TableDeletionProtection" in template.load_template()["Parameters"]


def test_outputs_give_the_api_url_and_table():
    outputs = template.load_template()["Outputs"]
    assert {"ApiUrl", "TableName"} <= set(outputs)


def test_every_route_has_an_event_file():
    for route in template.api_routes():
        path = route.event_file
        assert path.is_file(), f"{route.function_id}.{route.event_id}: missing {path.name}"
        event = json.loads(path.read_text())
        assert event["httpMethod"] == route.method
        assert event["resource"] == route.path
