"""`router models deploy` against moto: the dry run prints the calls and changes nothing; a real
run creates the Model, EndpointConfig and Endpoint; bad invocations are clear exit-2 errors."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from router.cli import main

SHA = "ef" * 32
CONFIG = f"""
sagemaker:
  execution_role_arn: arn:aws:iam::123456789012:role/RouterSageMaker
  region: us-east-1
models:
  - name: embedder
    framework: pytorch
    artifact: s3://models-bucket/embedder/model.tar.gz
    sha256: {SHA}
    size_bytes: 1000000
    endpoint: {{name: embedder-prod, instance_type: ml.g4dn.xlarge}}
  - name: iris
    framework: sklearn
    artifact: s3://models-bucket/iris.joblib
    sha256: {SHA}
    size_bytes: 1000
"""
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.3-cpu-py311"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    p = tmp_path / "operator.yaml"
    p.write_text(CONFIG)
    return p


@mock_aws
def test_dry_run_then_deploy(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sm = boto3.client("sagemaker", region_name="us-east-1")
    assert main(["models", "deploy", str(config), "embedder", "--image-uri", IMAGE, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "CreateModel" in out and "CreateEndpoint" in out and "Dry run" in out
    assert sm.list_endpoints()["Endpoints"] == []
    assert main(["models", "deploy", str(config), "embedder", "--image-uri", IMAGE]) == 0
    endpoint = sm.describe_endpoint(EndpointName="embedder-prod")
    assert endpoint["EndpointConfigName"]
    model = sm.list_models()["Models"]
    assert len(model) == 1


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No credentials anywhere, and SageMaker's endpoint a closed port: any AWS call would fail."""
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SECURITY_TOKEN", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")


def _calls(out: str) -> dict[str, dict[str, Any]]:
    """The plan's calls by operation, parsed back from the dry-run text."""
    calls: dict[str, dict[str, Any]] = {}
    for block in re.split(r"^\d+\. sagemaker ", out, flags=re.M)[1:]:
        op, _, rest = block.partition("\n")
        calls[op] = json.loads(rest[: rest.index("\n   }") + 5])
    return calls


@pytest.mark.usefixtures("offline")
def test_dry_run_is_offline_with_the_given_image(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "deploy", str(config), "embedder", "--image-uri", IMAGE, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "no AWS call" in out
    calls = _calls(out)
    assert list(calls) == ["CreateModel", "CreateEndpointConfig", "CreateEndpoint"]
    container = calls["CreateModel"]["PrimaryContainer"]
    assert container["Image"] == IMAGE and container["ModelDataUrl"] == "s3://models-bucket/embedder/model.tar.gz"
    assert calls["CreateModel"]["ExecutionRoleArn"] == "arn:aws:iam::123456789012:role/RouterSageMaker"
    variant = calls["CreateEndpointConfig"]["ProductionVariants"][0]
    assert variant["InstanceType"] == "ml.g4dn.xlarge" and variant["ModelName"] == calls["CreateModel"]["ModelName"]
    assert calls["CreateEndpoint"] == {**calls["CreateEndpoint"], "EndpointName": "embedder-prod",
                                       "EndpointConfigName": calls["CreateEndpointConfig"]["EndpointConfigName"]}
    assert "UpdateEndpoint" in out  # says what changes when the endpoint already exists


@pytest.mark.usefixtures("offline")
def test_dry_run_without_an_image_or_the_sdk_shows_a_marked_placeholder(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "deploy", str(config), "embedder", "--dry-run"]) == 0
    out = capsys.readouterr().out
    image = _calls(out)["CreateModel"]["PrimaryContainer"]["Image"]
    if importlib.util.find_spec("sagemaker") is None:
        assert image.startswith("<IMAGE NOT RESOLVED") and "--image-uri" in out
    else:  # the SDK resolves from its bundled table, offline too
        assert ".dkr.ecr.us-east-1.amazonaws.com/" in image


def test_a_model_without_model_tar_gz_on_s3_needs_a_url(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "deploy", str(config), "iris"]) == 2
    assert "router models package" in capsys.readouterr().err
    assert main(["models", "deploy", str(config), "iris", "--model-data-url", "file:///tmp/x.tar.gz"]) == 2
    assert main(["models", "deploy", str(config), "nope"]) == 2
