"""template.yaml through the SAM transform, offline (what CloudFormation would receive)."""

import copy
import os

from samtranslator.translator.transform import transform

from localdev import template


def transformed() -> dict:
    """The SAM transform, offline, on the template as `sam package` would upload it."""
    doc = copy.deepcopy(template.plain_values(template.load_template()))
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
