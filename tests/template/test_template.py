"""template.yaml is valid, deployable as written, and every piece of it resolves to real code."""

import json

import pytest
from cfnlint.api import lint_file
from sam_transform import transformed

from localdev import template

ROOT = template.ROOT


def test_cfn_lint_finds_nothing():
    matches = lint_file(template.TEMPLATE)
    assert [str(m) for m in matches] == []


def test_sam_transform_succeeds_offline():
    out = transformed()
    kinds = {res["Type"] for res in out["Resources"].values()}
    assert {
        "AWS::Lambda::Function",
        "AWS::ApiGateway::RestApi",
        "AWS::DynamoDB::Table",
        "AWS::Lambda::LayerVersion",
    } <= kinds
    functions = {k: v for k, v in out["Resources"].items() if v["Type"] == "AWS::Lambda::Function"}
    assert set(functions) == set(template.functions())
    for fn in functions.values():
        assert fn["Properties"]["Runtime"] == "python3.13"
        assert fn["Properties"]["TracingConfig"] == {"Mode": "Active"}


def test_every_function_policy_is_scoped_to_the_table():
    """Least privilege: no function gets dynamodb:* or a wildcard resource."""
    out = transformed()
    roles = [r for r in out["Resources"].values() if r["Type"] == "AWS::IAM::Role"]
    assert roles
    for role in roles:
        for policy in role["Properties"].get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                actions = (
                    statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                )
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
    indexes = {
        i["IndexName"]: [k["AttributeName"] for k in i["KeySchema"]] for i in props["GlobalSecondaryIndexes"]
    }
    assert indexes == {
        "due-for-reset": ["reset_shard", "reset_at"],
        "period-history": ["history_pk", "period_start"],
    }  # the history's index
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


# ---- least privilege, access logs, log retention ----------------------------------------------


def _function_roles(out: dict) -> dict[str, list[dict]]:
    """{function logical id: its role's inline policy statements}, from the transformed template."""
    roles = {}
    for fn_id, fn in out["Resources"].items():
        if fn["Type"] != "AWS::Lambda::Function":
            continue
        role_id = fn["Properties"]["Role"]["Fn::GetAtt"][0]
        policies = out["Resources"][role_id]["Properties"].get("Policies", [])
        roles[fn_id] = [s for p in policies for s in p["PolicyDocument"]["Statement"]]
    return roles


def _leading_keys(statement: dict) -> list[str]:
    condition = statement.get("Condition", {}).get("ForAllValues:StringLike", {})
    return condition.get("dynamodb:LeadingKeys", [])


def _reaches(statement: dict, partition_key: str) -> bool:
    import fnmatch

    return any(fnmatch.fnmatchcase(partition_key, pattern) for pattern in _leading_keys(statement))


def _on_table_items(statement: dict) -> bool:
    """Whether a statement is about the table's items: the table or one of its indexes (not its
    stream, whose actions have no item keys to condition on)."""
    resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
    for resource in resources:
        if resource == {"Fn::GetAtt": [template.TABLE_RESOURCE, "Arn"]}:
            return True
        if isinstance(resource, dict) and f"${{{template.TABLE_RESOURCE}.Arn}}/index/" in str(
            resource.get("Fn::Sub")
        ):
            return True
    return False


def test_every_table_statement_is_held_to_its_partition_keys():
    """dynamodb:LeadingKeys on every statement that touches the table's items or an index, so no
    function reaches items outside its prefixes (with no wildcard-only pattern)."""
    for fn_id, statements in _function_roles(transformed()).items():
        dynamodb = [s for s in statements if _on_table_items(s)]
        for statement in dynamodb:
            keys = _leading_keys(statement)
            assert keys and all(k.endswith("#*") and len(k) > 2 for k in keys), (fn_id, statement)
            assert "dynamodb:Scan" not in statement["Action"], statement
            # Batch deletes only for DELETE ?purge=true (the history), still held to PROJECT#*.
            if "dynamodb:BatchWriteItem" in statement["Action"]:
                assert fn_id == "BudgetsFunction" and keys == ["PROJECT#*"], (fn_id, statement)


def test_only_the_authorizer_reaches_api_key_items():
    roles = _function_roles(transformed())
    for fn_id, statements in roles.items():
        reaches_keys = any(_reaches(s, pk) for s in statements for pk in ("APIKEY#0123abcd", "APIKEYS"))
        assert reaches_keys == (fn_id == "AuthorizerFunction"), fn_id
        reaches_budgets = any(_reaches(s, "PROJECT#acme") for s in statements)
        # The console's function serves static files: it reaches no item at all.
        assert reaches_budgets == (fn_id not in ("AuthorizerFunction", template.CONSOLE_FUNCTION)), fn_id
    assert not [s for s in roles.get(template.CONSOLE_FUNCTION, []) if _on_table_items(s)]
    (authorizer,) = roles["AuthorizerFunction"]
    assert authorizer["Action"] == ["dynamodb:GetItem"]


def test_every_function_logs_to_its_own_group_with_the_retention_parameter():
    tpl = template.load_template()
    resources = tpl["Resources"]
    assert "LogRetentionDays" in tpl["Parameters"]
    for fn_id in template.functions():
        group_ref = resources[fn_id]["Properties"]["LoggingConfig"]["LogGroup"]
        group = resources[template.plain_values(group_ref)["Ref"]]
        assert group["Type"] == "AWS::Logs::LogGroup"
        props = template.plain_values(group["Properties"])
        assert props["RetentionInDays"] == {"Ref": "LogRetentionDays"}
        assert props["LogGroupName"]["Fn::Sub"].startswith("/aws/lambda/${AWS::StackName}-")


def test_the_stage_writes_access_logs_to_a_group_with_retention():
    out = transformed()
    (stage,) = [r for r in out["Resources"].values() if r["Type"] == "AWS::ApiGateway::Stage"]
    setting = stage["Properties"]["AccessLogSetting"]
    group_id = setting["DestinationArn"]["Fn::GetAtt"][0]
    group = out["Resources"][group_id]
    assert group["Type"] == "AWS::Logs::LogGroup"
    assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    fields = json.loads(setting["Format"])
    assert {"requestId", "status", "resourcePath", "ip"} <= set(fields)
    assert not any("header" in v.lower() or "body" in v.lower() for v in fields.values())
    # The account's API Gateway logging role is set before the API (or access logging fails).
    (rest_api,) = [r for r in out["Resources"].values() if r["Type"] == "AWS::ApiGateway::RestApi"]
    assert "ApiGatewayAccount" in rest_api.get("DependsOn", [])
