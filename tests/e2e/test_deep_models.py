"""A PyTorch (TorchScript) model with its own code/inference.py, end to end through `router serve`
over real HTTP: its input_fn parses {"instances": [...]} (application/json), and the very same
code answers on the endpoint (InvokeEndpoint) and in batch transform, through the router's job
API, because every SageMaker path sends the model one request shape (docs/architecture.md, "The
model's inference contract")."""

from __future__ import annotations

import hashlib
import json
import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from router.client import ApiError
from sagemaker_jobs.package import build_package
from tests.deep import require_torch, save_torchscript

from .conftest import ALICE, Server, wait_for

pytestmark = pytest.mark.e2e

# The model author's own code: nothing from this project, only what SageMaker's PyTorch image has.
CUSTOM_INFERENCE = textwrap.dedent(
    '''
    import json
    import warnings

    import torch


    def model_fn(model_dir):
        with warnings.catch_warnings():  # torch >= 2.13 deprecates TorchScript
            warnings.filterwarnings("ignore", message=r"`torch\\.jit\\.load` is deprecated", category=DeprecationWarning)
            return torch.jit.load(f"{model_dir}/model.pt", map_location="cpu").eval()


    def input_fn(body, content_type):
        if content_type.split(";")[0].strip() != "application/json":
            raise ValueError(f"this model takes application/json, not {content_type}")
        doc = json.loads(body)  # one JSON document: JSON Lines here fails with "Extra data"
        return torch.tensor(doc["instances"], dtype=torch.float32), doc.get("output", "predict")


    def predict_fn(data, model):
        x, output = data
        with torch.no_grad():
            logits = model(x)
        if output == "proba":
            return torch.softmax(logits, dim=-1).tolist()
        return logits.argmax(dim=-1).tolist()


    def output_fn(prediction, accept):
        return json.dumps({"predictions": prediction}), "application/json"
    '''
)


class Model:
    def __init__(self, torch: Any, root: Path) -> None:
        torch.manual_seed(0)
        self.module = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
        self.torch = torch
        code = root / "code"
        code.mkdir()
        (code / "inference.py").write_text(CUSTOM_INFERENCE)
        pt = save_torchscript(self.module, root / "net.pt")
        self.package = build_package(pt, root / "models" / "net.tar.gz", framework="pytorch", code_dir=code, requirements=[])

    def logits(self, rows: np.ndarray) -> np.ndarray:
        with self.torch.no_grad():
            return np.asarray(self.module(self.torch.tensor(rows, dtype=self.torch.float32)).numpy())


@pytest.fixture(scope="module")
def deep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Model]]:
    torch = require_torch()
    root = tmp_path_factory.mktemp("deep")
    model = Model(torch, root)
    config = {
        "version": 1,
        "storage": {"artifacts": "file://./models", "jobs": "file://./.router/jobs", "job_table": "sqlite:///./.router/jobs.db"},
        "auth": {"api_keys": {ALICE: "alice"}},
        "sagemaker": {"execution_role_arn": "arn:aws:iam::123456789012:role/RouterSageMaker",
                      "batch_transform": {"instance_type": "ml.m5.xlarge", "max_payload_mb": 6, "max_retries": 0}},
        "models": [{
            "name": "net", "framework": "pytorch", "artifact": "file://./models/net.tar.gz",
            "sha256": hashlib.sha256(model.package.path.read_bytes()).hexdigest(),
            "endpoint": {"name": "net-local", "instance_type": "ml.m5.large"},
            "batch_transform": {},
            # Fixed timings: no routing decision depends on how fast this machine is.
            "profile": {"load_s": 1.0, "per_record_ms": 0.01},
        }],
    }
    (root / "operator.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    srv = Server(root / "operator.yaml").start()
    try:
        yield srv, model
    finally:
        srv.stop()


def _rows(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 4)).round(4)


def _predict_when_in_service(srv: Server, rows: list[Any], output: str = "predict") -> Any:
    """The endpoint starts with the server (torch takes a while to import): 422/503 until then."""
    client = srv.client()

    def attempt() -> Any:
        try:
            return client.predict("net", rows, output)
        except ApiError as e:
            if "InService" in e.message:  # "not InService" (422) or "not yet InService" (503) while Creating
                return None
            raise

    return wait_for(attempt, timeout_s=180, interval_s=0.5)


def _download(url: str) -> list[Any]:
    with urllib.request.urlopen(url, timeout=30) as r:
        return [json.loads(line) for line in r.read().splitlines()]


def test_the_same_custom_code_answers_on_the_endpoint(deep: tuple[Server, Model]) -> None:
    srv, model = deep
    rows = _rows(5, 1)
    answer = _predict_when_in_service(srv, rows.tolist())
    assert answer["route"] == "endpoint"
    assert answer["predictions"] == model.logits(rows).argmax(axis=1).tolist()
    proba = srv.client().predict("net", rows.tolist(), "proba")["predictions"]
    assert np.allclose(np.asarray(proba).sum(axis=1), 1.0)
    assert np.asarray(proba).argmax(axis=1).tolist() == answer["predictions"]


@pytest.mark.parametrize("output", ["predict", "proba"])
def test_the_same_custom_code_answers_in_batch_transform(deep: tuple[Server, Model], output: str) -> None:
    srv, model = deep
    rows = _rows(2500, 2)  # more than one request's worth (1000 instances a request)
    client = srv.client()
    job = client.submit_job("net", instances=rows.tolist(), output=output)
    assert job["route"] == "batch-transform"
    done = client.wait(job["job_id"], timeout_s=300, poll_s=0.2)
    assert done["status"] == "succeeded", done.get("error")
    assert done["records"]["done"] == 2500
    got = _download(done["output"]["download_url"])
    logits = model.logits(rows)
    if output == "predict":
        assert got == logits.argmax(axis=1).tolist()  # every record, once, in input order
    else:
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        assert np.allclose(got, shifted / shifted.sum(axis=1, keepdims=True), atol=1e-5)
