"""template.yaml as data: the table definition, the functions, their handlers and routes.

Tests and the local server take everything from here, so the template and what runs locally
cannot drift apart.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import ModuleType

import yaml

from localdev.events import ACCOUNT_ID, LambdaContext

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
LAYER_DIR = ROOT / "layers" / "budget"
LAMBDA_LAYER_ROOT = "/opt/python"  # where Lambda puts a Python layer's files
TABLE_RESOURCE = "BudgetTable"
EVENTS_DIR = ROOT / "events"


def snake_case(name: str) -> str:
    """LitellmGetBudget -> litellm_get_budget: how events/ names a template event's sample."""
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


@dataclass(frozen=True)
class ApiRoute:
    function_id: str
    event_id: str
    method: str  # upper case
    path: str  # API Gateway resource path, e.g. /projects/{project}/users/{user}

    @property
    def event_file(self) -> Path:
        """The route's sample API Gateway event, for ``sam local invoke -e``."""
        return EVENTS_DIR / f"{snake_case(self.event_id)}.json"


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    code_uri: Path
    handler: str  # module.attribute

    @property
    def module_file(self) -> Path:
        module = self.handler.rsplit(".", 1)[0]
        return self.code_uri / (module.replace(".", "/") + ".py")


@lru_cache(maxsize=1)
def load_template() -> dict:
    """template.yaml as plain data, short-form intrinsics in their long form (``!Ref X`` is
    ``{"Ref": "X"}``, ``!GetAtt A.B`` is ``{"Fn::GetAtt": ["A", "B"]}``), as CloudFormation reads it.
    (PyYAML, not cfn-lint: serving must not need the linter; tests/template/test_template.py lints.)"""
    with TEMPLATE.open(encoding="utf-8") as f:
        template = yaml.load(f, Loader=_CloudFormationLoader)  # noqa: S506 - a SafeLoader subclass
    if not isinstance(template, dict) or "Resources" not in template:
        raise ValueError(f"{TEMPLATE} is not a CloudFormation template")
    return template


class _CloudFormationLoader(yaml.SafeLoader):
    """YAML as CloudFormation reads it: its ``!`` short forms, and no YAML 1.1 dates."""


def _intrinsic(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict:
    value: object
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{tag_suffix}": value}


_CloudFormationLoader.add_multi_constructor("!", _intrinsic)
# CloudFormation keeps 2012-10-17 a string (YAML 1.1 would make it a date).
_CloudFormationLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def resources(kind: str) -> dict[str, dict]:
    return {name: res for name, res in load_template()["Resources"].items() if res.get("Type") == kind}


def table_properties() -> dict:
    return load_template()["Resources"][TABLE_RESOURCE]["Properties"]


def create_table(client, table_name: str) -> None:
    """Create `table_name` with the key schema, indexes and TTL that template.yaml declares."""
    props = table_properties()
    kwargs = {
        "TableName": table_name,
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": props["BillingMode"],
    }
    if props.get("GlobalSecondaryIndexes"):
        kwargs["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
    if props.get("StreamSpecification"):
        kwargs["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
        from localdev import moto_streams

        moto_streams.install()  # moto copies a stream's records on every transaction otherwise
    client.create_table(**plain_values(kwargs))
    client.get_waiter("table_exists").wait(TableName=table_name)
    ttl = props.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled"):
        client.update_time_to_live(
            TableName=table_name,
            TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
        )


def plain_values(value):
    """A YAML document read by cfn-lint (dict/str subclasses) as plain dicts, lists and strings,
    which boto3 and the SAM transform want."""
    if isinstance(value, dict):
        return {str(k): plain_values(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain_values(v) for v in value]
    if isinstance(value, str):
        return str(value)
    return value


def functions() -> dict[str, FunctionSpec]:
    specs = {}
    for name, res in resources("AWS::Serverless::Function").items():
        props = res["Properties"]
        specs[name] = FunctionSpec(name, ROOT / props["CodeUri"], props["Handler"])
    return specs


def parameter_defaults() -> dict[str, str]:
    params = load_template().get("Parameters") or {}
    return {name: str(p["Default"]) for name, p in params.items() if "Default" in p}


def function_setting(function_id: str, key: str, default):
    """A function's property (e.g. Timeout), else the Globals' one, else `default`."""
    tpl = load_template()
    props = tpl["Resources"][function_id].get("Properties", {})
    value = props.get(key, tpl.get("Globals", {}).get("Function", {}).get(key, default))
    return value if isinstance(value, (int, float, str)) else default


def lambda_context(function_id: str, clock: Callable[[], float] = time.monotonic) -> LambdaContext:
    """A context for one invocation of the template's function, as Lambda gives it: its Timeout
    (the time it has left starts there, counted on `clock`) and MemorySize."""
    return LambdaContext(
        function_id,
        timeout_s=float(function_setting(function_id, "Timeout", 3)),
        memory_mb=int(function_setting(function_id, "MemorySize", 128)),
        clock=clock,
    )


def function_environment(table_name: str, function_ids: list[str] | None = None) -> dict[str, str]:
    """The Environment the template gives functions (Globals, then each function's own; None:
    every function), resolved for local use: the table's Ref is `table_name`, parameters take
    their defaults, and the layer's /opt/python is layers/budget."""
    tpl = load_template()
    defaults = parameter_defaults()
    ids = list(resources("AWS::Serverless::Function")) if function_ids is None else function_ids
    scopes = [tpl.get("Globals", {}).get("Function", {})]
    scopes += [tpl["Resources"][function_id].get("Properties", {}) for function_id in ids]
    env: dict[str, str] = {}
    for scope in scopes:
        for name, value in ((scope.get("Environment") or {}).get("Variables") or {}).items():
            if isinstance(value, dict) and "Ref" in value:
                ref = value["Ref"]
                value = table_name if ref == TABLE_RESOURCE else defaults.get(ref)
            if isinstance(value, (str, int, float, bool)) and str(value) != "":
                env[str(name)] = _local_path(str(value))
    return env


def _local_path(value: str) -> str:
    if value == LAMBDA_LAYER_ROOT or value.startswith(LAMBDA_LAYER_ROOT + "/"):
        return str(LAYER_DIR) + value[len(LAMBDA_LAYER_ROOT) :]
    return value


def literal(value, parameters: dict[str, str], region: str = "us-east-1"):
    """A template value as a plain string: Refs to parameters take their default and Fn::Sub
    fills parameters and pseudo parameters (stack "local"); anything else gives None."""
    if isinstance(value, (str, int, float)):
        return str(value)
    if isinstance(value, dict) and set(value) == {"Ref"}:
        return parameters.get(value["Ref"])
    if isinstance(value, dict) and set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
        names = {
            **parameters,
            "AWS::StackName": "local",
            "AWS::Region": region,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::Partition": "aws",
        }
        text = value["Fn::Sub"]
        for ref in re.findall(r"\$\{([^}!]+)\}", text):
            if ref not in names:
                return None
            text = text.replace("${" + ref + "}", names[ref])
        return text
    return None


def stream_events() -> list[tuple[str, str, dict]]:
    """(function id, event id, event properties) of every DynamoDB stream event."""
    found = []
    for name, res in resources("AWS::Serverless::Function").items():
        for event_id, event in (res["Properties"].get("Events") or {}).items():
            if event.get("Type") == "DynamoDB":
                found.append((name, event_id, plain_values(event["Properties"])))
    return found


# The web console's function: its routes serve static files, not the JSON API (no permission, no
# OpenAPI entry, no sample event); localdev.server serves the same files itself at /console.
CONSOLE_FUNCTION = "ConsoleFunction"


def api_routes() -> list[ApiRoute]:
    """The JSON API's routes: every ``Api`` event of the template's functions but the console's."""
    routes = []
    for name, res in resources("AWS::Serverless::Function").items():
        if name == CONSOLE_FUNCTION:
            continue
        for event_id, event in (res["Properties"].get("Events") or {}).items():
            if event.get("Type") == "Api":
                props = event["Properties"]
                routes.append(ApiRoute(name, event_id, props["Method"].upper(), props["Path"]))
    return routes


def scheduled_events() -> list[tuple[str, str, dict]]:
    """(function id, event id, event properties) of every Schedule/ScheduleV2 event."""
    found = []
    for name, res in resources("AWS::Serverless::Function").items():
        for event_id, event in (res["Properties"].get("Events") or {}).items():
            if event.get("Type") in ("Schedule", "ScheduleV2"):
                found.append((name, event_id, plain_values(event["Properties"])))
    return found


_loaded: dict[tuple[str, str | None], ModuleType] = {}


def load_module(function_id: str, container: str | None = None) -> ModuleType:
    """Import a function's handler module as Lambda would, with the layer on sys.path.

    Each function's module gets its own name (they are all called app.py). A `container` name
    loads a copy of its own, as each Lambda container has: a handler's resolver keeps the event
    it is handling in the module, so callers that invoke a function from several threads at once
    give each thread its own container (one event at a time per container, as in Lambda).
    """
    if (function_id, container) in _loaded:
        return _loaded[(function_id, container)]
    spec = functions()[function_id]
    if str(LAYER_DIR) not in sys.path:
        sys.path.insert(0, str(LAYER_DIR))
    module_name = f"_fn_{function_id}" + (f"_{container}" if container is not None else "")
    import_spec = importlib.util.spec_from_file_location(module_name, spec.module_file)
    if import_spec is None or import_spec.loader is None:
        raise ImportError(f"cannot import {spec.module_file}")
    module = importlib.util.module_from_spec(import_spec)
    sys.modules[module_name] = module
    import_spec.loader.exec_module(module)
    _loaded[(function_id, container)] = module
    return module


def load_handler(function_id: str, container: str | None = None):
    """The function's handler (see load_module for `container`)."""
    spec = functions()[function_id]
    return getattr(load_module(function_id, container), spec.handler.rsplit(".", 1)[1])
