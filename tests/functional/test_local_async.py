"""The local SageMaker emulator's asynchronous inference endpoints: InvokeEndpointAsync on the file
store, the real model code answering, SageMaker's success/error SNS notifications, adoption of a
repeated InferenceId, resume after a restart and scale to zero after idle."""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from router.adapters.file_store import FileObjectStore
from router.async_inference import inference_id, parse_notifications
from router.config import RouterConfig
from router.jobs import new_job_id
from router.local.sagemaker_emulator import LocalAsyncEndpoints
from tests.fakes import FakeClock

ENDPOINT = "router-clf-async"


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, Any]:
    d = tmp_path_factory.mktemp("model")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    est = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
    path = d / "clf.joblib"
    joblib.dump(est, path)
    return path, hashlib.sha256(path.read_bytes()).hexdigest(), est


def config(model_file: tuple[Path, str, Any], tmp_path: Path, **spec: Any) -> RouterConfig:
    path, sha, _ = model_file
    return RouterConfig.model_validate({
        "storage": {"jobs": f"file://{tmp_path}/jobs"},
        "models": [{"name": "clf", "framework": "sklearn", "artifact": f"file://{path}", "sha256": sha, "inline": False,
                    "async_inference": spec}],
    })


class Notifications:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.cond = threading.Condition()

    def __call__(self, event: dict[str, Any]) -> None:
        with self.cond:
            self.events.append(event)
            self.cond.notify_all()

    def wait(self, n: int, timeout: float = 60) -> list[dict[str, Any]]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.events) >= n, timeout), self.events
            return list(self.events)


@pytest.fixture
def store() -> FileObjectStore:
    return FileObjectStore(secrets.token_bytes(32), None)


def emulator(cfg: RouterConfig, store: FileObjectStore, tmp_path: Path, sink: Notifications) -> LocalAsyncEndpoints:
    return LocalAsyncEndpoints(cfg, store, tmp_path / "sm", on_event=sink, startup_s=0.05)


@pytest.fixture
def running(model_file: tuple[Path, str, Any], store: FileObjectStore, tmp_path: Path) -> Iterator[tuple[LocalAsyncEndpoints, Notifications]]:
    sink = Notifications()
    emu = emulator(config(model_file, tmp_path), store, tmp_path, sink)
    emu.start()
    yield emu, sink
    emu.close()


def stage(store: FileObjectStore, tmp_path: Path, doc: Any) -> str:
    uri = f"file://{tmp_path}/jobs/{secrets.token_hex(4)}/async-input.json"
    store.put_bytes(uri, json.dumps(doc).encode(), "application/json")
    return uri


def an_id() -> str:
    return inference_id(new_job_id(FakeClock().now()))


def test_a_request_is_answered_in_s3_and_notified_like_sagemaker(
    running: tuple[LocalAsyncEndpoints, Notifications], store: FileObjectStore, tmp_path: Path, model_file: tuple[Path, str, Any]
) -> None:
    emu, sink = running
    rows = np.random.default_rng(1).normal(size=(50, 3))
    iid = an_id()
    assert emu.in_service(ENDPOINT) is False  # min_instances 0: scaled to zero until a request comes
    got = emu.invoke(ENDPOINT, stage(store, tmp_path, {"instances": rows.tolist(), "output": "predict"}), iid, invocation_timeout_s=60)
    assert got.inference_id == iid and got.output_uri.endswith(f"{iid}.out")
    [event] = sink.wait(1)
    assert event["Records"][0]["EventSource"] == "aws:sns"
    assert event["Records"][0]["Sns"]["TopicArn"].endswith(f":{ENDPOINT}-success")
    [outcome] = parse_notifications(event)
    assert outcome.status == "Completed" and outcome.output_uri == got.output_uri
    answer = json.loads(store.get_bytes(got.output_uri))
    assert answer["predictions"] == model_file[2].predict(rows).tolist()
    assert emu.in_service(ENDPOINT) is True and emu.instance_count(ENDPOINT) == 1


def test_a_repeated_inference_id_is_adopted_not_run_again(
    running: tuple[LocalAsyncEndpoints, Notifications], store: FileObjectStore, tmp_path: Path
) -> None:
    emu, sink = running
    iid = an_id()
    uri = stage(store, tmp_path, {"instances": [[0.1, 0.2, 0.3]], "output": "proba"})
    first = emu.invoke(ENDPOINT, uri, iid, invocation_timeout_s=60)
    sink.wait(1)
    assert emu.invoke(ENDPOINT, uri, iid, invocation_timeout_s=60) == first
    with sink.cond:
        assert not sink.cond.wait_for(lambda: len(sink.events) > 1, 0.5)  # no second run, no second notification


def test_a_model_error_writes_the_failure_and_notifies_the_error_topic(
    model_file: tuple[Path, str, Any], store: FileObjectStore, tmp_path: Path
) -> None:
    sink = Notifications()
    topic = "arn:aws:sns:us-east-1:123456789012:router-errors"
    emu = emulator(config(model_file, tmp_path, error_topic=topic), store, tmp_path, sink)
    emu.start()
    try:
        got = emu.invoke(ENDPOINT, stage(store, tmp_path, {"instances": [[1.0, 2.0]], "output": "predict"}), an_id(), invocation_timeout_s=60)
        [event] = sink.wait(1)
    finally:
        emu.close()
    assert event["Records"][0]["Sns"]["TopicArn"] == topic
    [outcome] = parse_notifications(event)
    assert outcome.status == "Failed" and outcome.output_uri is None and outcome.failure_uri == got.failure_uri
    assert outcome.failure_reason is not None and "Received client error (400)" in outcome.failure_reason
    assert got.failure_uri is not None and json.loads(store.get_bytes(got.failure_uri))["error"]["code"] == "invalid_input"
    assert not store.exists(got.output_uri)


def test_a_restart_resumes_queued_requests(model_file: tuple[Path, str, Any], store: FileObjectStore, tmp_path: Path) -> None:
    cfg = config(model_file, tmp_path)
    before = emulator(cfg, store, tmp_path, Notifications())  # never started: the request stays queued on disk
    iid = an_id()
    got = before.invoke(ENDPOINT, stage(store, tmp_path, {"instances": [[0.0, 0.0, 1.0]], "output": "predict"}), iid, invocation_timeout_s=60)
    sink = Notifications()
    after = emulator(cfg, store, tmp_path, sink)
    after.start()
    try:
        [event] = sink.wait(1)
    finally:
        after.close()
    assert parse_notifications(event)[0].inference_id == iid
    assert store.exists(got.output_uri)
    assert (after.request(iid) or {})["Status"] == "Completed"


def test_an_idle_endpoint_scales_to_zero(model_file: tuple[Path, str, Any], store: FileObjectStore, tmp_path: Path) -> None:
    sink = Notifications()
    emu = emulator(config(model_file, tmp_path, scale_to_zero_after_s=0.2), store, tmp_path, sink)
    emu.start()
    try:
        emu.invoke(ENDPOINT, stage(store, tmp_path, {"instances": [[0.0, 0.0, 1.0]], "output": "predict"}), an_id(), invocation_timeout_s=60)
        sink.wait(1)
        stop = threading.Event()
        for _ in range(1200):  # polls until it happens (at most a minute): no duration is asserted
            if emu.instance_count(ENDPOINT) == 0 or stop.wait(0.05):
                break
        assert emu.instance_count(ENDPOINT) == 0 and emu.in_service(ENDPOINT) is False
    finally:
        emu.close()
