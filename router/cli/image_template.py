"""The container-image variant of infra/template.yaml: the same stack, its four functions deployed
as `PackageType: Image` from one image (infra/Dockerfile) named by the `ImageUri` parameter, each
with its handler as `ImageConfig.Command`. Written as JSON (CloudFormation and SAM read it), so
the variant is derived from the one template and cannot drift from it."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml

IMAGE_URI_PATTERN = r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/[a-z0-9._/-]+(:[\w.-]+|@sha256:[0-9a-f]{64})$"


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form tags (!Ref, !Sub, !GetAtt, ...) as their long form."""


def _short_form(loader: _CfnLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    else:
        raise yaml.constructor.ConstructorError(None, None, f"unexpected node for !{suffix}", node.start_mark)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _short_form)


def load_template(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.load(path.read_text(encoding="utf-8"), Loader=_CfnLoader)
    return loaded


def image_variant(template: dict[str, Any]) -> dict[str, Any]:
    """The same template with every function built from the ImageUri image."""
    out = copy.deepcopy(template)
    out["Description"] = template.get("Description", "").rstrip() + " Container-image variant (infra/Dockerfile)."
    out["Parameters"] = {
        "ImageUri": {
            "Type": "String",
            "AllowedPattern": IMAGE_URI_PATTERN,
            "Description": "The router image in ECR (docker build -f infra/Dockerfile), e.g. 123456789012.dkr.ecr.us-east-1.amazonaws.com/router:1.",
        },
        **template["Parameters"],
    }
    groups = out.get("Metadata", {}).get("AWS::CloudFormation::Interface", {}).get("ParameterGroups")
    if groups:
        groups.insert(0, {"Label": {"default": "Container image"}, "Parameters": ["ImageUri"]})
    function_globals = out["Globals"]["Function"]
    for key in ("Runtime", "CodeUri", "Handler", "Layers"):
        function_globals.pop(key, None)
    for resource in out["Resources"].values():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        resource.pop("Metadata", None)  # the makefile build is the zip package's
        props = resource["Properties"]
        handler = props.pop("Handler")
        props.pop("Runtime", None)
        props.pop("CodeUri", None)
        props["PackageType"] = "Image"
        props["ImageUri"] = {"Ref": "ImageUri"}
        props["ImageConfig"] = {"Command": [handler]}
    return out


def write_image_template(source: Path, dest: Path) -> dict[str, Any]:
    variant = image_variant(load_template(source))
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(variant, indent=2) + "\n", encoding="utf-8")
    return variant
