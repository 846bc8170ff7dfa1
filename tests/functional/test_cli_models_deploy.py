"""`router models deploy` against moto: the dry run prints the calls and changes nothing; a real
run creates the Model, EndpointConfig and Endpoint; bad invocations are clear exit-2 errors."""

from __future__ import annotations

from pathlib import Path

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


def test_a_model_without_model_tar_gz_on_s3_needs_a_url(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "deploy", str(config), "iris"]) == 2
    assert "router models package" in capsys.readouterr().err
    assert main(["models", "deploy", str(config), "iris", "--model-data-url", "file:///tmp/x.tar.gz"]) == 2
    assert main(["models", "deploy", str(config), "nope"]) == 2
