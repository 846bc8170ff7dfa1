"""The local SageMaker emulator: transform-job lifecycle (InProgress -> Completed | Failed |
Stopped) with SageMaker's events, adoption of a repeated submission, resume after a restart, and
endpoints as local model-server processes. It runs the real model code (sagemaker_jobs)."""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from router.adapters.file_store import FileObjectStore
from router.config import RouterConfig
from router.domain import Job, JobStatus, OutputKind, Route
from router.errors import BackendError, BackendUnavailable, ModelRejectedInput
from router.jobs import new_job_id
from router.local.sagemaker_emulator import LocalBatch, LocalEndpoints
from router.sagemaker_names import transform_job_name
from router.transform_events import parse_state_change_event
from sagemaker_jobs.package import build_package
from tests.fakes import FakeClock


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, Any]:
    d = tmp_path_factory.mktemp("model")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    est = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
    path = d / "clf.joblib"
    joblib.dump(est, path)
    return path, hashlib.sha256(path.read_bytes()).hexdigest(), est


def config(model_file: tuple[Path, str, Any], **extra: Any) -> RouterConfig:
    path, sha, _ = model_file
    return RouterConfig.model_validate({
        "sagemaker": {"batch_transform": {"max_retries": 1}},
        "models": [{"name": "clf", "framework": "sklearn", "artifact": f"file://{path}", "sha256": sha,
                    "inline": False, "endpoint": {"name": "clf-local"}, **extra}],
    })


def job_for(input_uri: str, output: OutputKind = OutputKind.PREDICT) -> Job:
    now = FakeClock().now()
    return Job(job_id=new_job_id(now), owner="a", model="clf", status=JobStatus.QUEUED, route=Route.BATCH_TRANSFORM,
               reason="r", created_at=now, updated_at=now, input_uri=input_uri, output_kind=output)


class Events:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.cond = threading.Condition()

    def __call__(self, event: dict[str, Any]) -> None:
        with self.cond:
            self.events.append(event)
            self.cond.notify_all()

    def statuses(self) -> list[str]:
        return [e["detail"]["TransformJobStatus"] for e in self.events]

    def wait_for(self, status: str, timeout: float = 30) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: status in self.statuses(), timeout), self.statuses()


def write_input(tmp_path: Path, rows: np.ndarray, per_request: int = 7) -> str:
    """The input as the router stages it: one {"instances": [...]} request document per line."""
    p = tmp_path / "in" / "requests.jsonl"
    p.parent.mkdir(parents=True, exist_ok=True)
    listed = rows.tolist()
    chunks = [listed[i : i + per_request] for i in range(0, len(listed), per_request)]
    p.write_text("".join(json.dumps({"instances": c, "output": "predict"}) + "\n" for c in chunks))
    return f"file://{p}"


def answers(path: Path) -> list[Any]:
    """The predictions in a `.out`: one {"predictions": [...]} answer per line (AssembleWith=Line)."""
    return [p for line in path.read_text().splitlines() for p in json.loads(line)["predictions"]]


def test_transform_job_lifecycle_and_output_in_order(tmp_path: Path, model_file: tuple[Path, str, Any]) -> None:
    cfg = config(model_file)
    events = Events()
    batch = LocalBatch(cfg, FileObjectStore(secrets.token_bytes(16)), tmp_path / "emu", on_event=events, startup_s=0.0, batch_records=7)
    rows = np.random.default_rng(1).normal(size=(103, 3)).round(3)
    job = job_for(write_input(tmp_path, rows))
    out = f"file://{tmp_path}/out/"
    name = batch.submit(job, cfg.models[0], cfg.batch_settings(cfg.models[0]), job.input_uri, out)  # type: ignore[arg-type]
    assert name == transform_job_name(job.job_id)
    events.wait_for("Completed")
    assert events.statuses() == ["InProgress", "Completed"]
    for e in events.events:  # AWS's EventBridge shape, parseable by the events handler
        assert parse_state_change_event(e).name == name
    out_file = tmp_path / "out" / "requests.jsonl.out"
    assert out_file.read_text().count("\n") == 15  # ceil(103 / 7) requests, one answer line each
    assert answers(out_file) == model_file[2].predict(rows).tolist()
    assert batch.describe(name).status == "Completed"  # type: ignore[union-attr]
    # A repeated submission adopts the finished job instead of running a second one.
    assert batch.submit(job, cfg.models[0], cfg.batch_settings(cfg.models[0]), job.input_uri, out) == name  # type: ignore[arg-type]
    assert events.statuses() == ["InProgress", "Completed"]
    batch.close()


def test_bad_input_fails_with_a_reason(tmp_path: Path, model_file: tuple[Path, str, Any]) -> None:
    cfg = config(model_file)
    events = Events()
    batch = LocalBatch(cfg, FileObjectStore(secrets.token_bytes(16)), tmp_path / "emu", on_event=events, startup_s=0.0)
    p = tmp_path / "bad.jsonl"
    p.write_text('{"instances": [[1, 2]], "output": "predict"}\n')  # 2 features, the model wants 3
    job = job_for(f"file://{p}")
    name = batch.submit(job, cfg.models[0], cfg.batch_settings(cfg.models[0]), job.input_uri, f"file://{tmp_path}/out/")  # type: ignore[arg-type]
    events.wait_for("Failed")
    state = batch.describe(name)
    assert state is not None and state.status == "Failed" and state.failure_reason
    batch.close()


def test_stop_during_startup_and_unknown_stop(tmp_path: Path, model_file: tuple[Path, str, Any]) -> None:
    cfg = config(model_file)
    events = Events()
    batch = LocalBatch(cfg, FileObjectStore(secrets.token_bytes(16)), tmp_path / "emu", on_event=events, startup_s=30.0)
    job = job_for(write_input(tmp_path, np.zeros((5, 3))))
    name = batch.submit(job, cfg.models[0], cfg.batch_settings(cfg.models[0]), job.input_uri, f"file://{tmp_path}/out/")  # type: ignore[arg-type]
    batch.stop(name)
    events.wait_for("Stopped")
    assert batch.describe(name).status == "Stopped"  # type: ignore[union-attr]
    batch.stop(name)  # stopping a stopped job is harmless
    batch.stop("router-job-unknown")
    batch.close()


def test_resume_after_restart(tmp_path: Path, model_file: tuple[Path, str, Any]) -> None:
    cfg = config(model_file)
    store = FileObjectStore(secrets.token_bytes(16))
    first = LocalBatch(cfg, store, tmp_path / "emu", on_event=Events(), startup_s=30.0)
    job = job_for(write_input(tmp_path, np.ones((4, 3))))
    name = first.submit(job, cfg.models[0], cfg.batch_settings(cfg.models[0]), job.input_uri, f"file://{tmp_path}/out/")  # type: ignore[arg-type]
    first.close()  # "router serve" stops while the job is provisioning
    assert first.describe(name).status == "InProgress"  # type: ignore[union-attr]
    events = Events()
    second = LocalBatch(cfg, store, tmp_path / "emu", on_event=events, startup_s=0.0)
    second.resume()
    events.wait_for("Completed")
    assert len(answers(tmp_path / "out" / "requests.jsonl.out")) == 4
    second.close()


def test_endpoint_process_serves_the_model(tmp_path: Path, model_file: tuple[Path, str, Any]) -> None:
    cfg = config(model_file)
    eps = LocalEndpoints(cfg, FileObjectStore(secrets.token_bytes(16)), tmp_path / "emu", invoke_timeout_s=20)
    assert not eps.in_service("clf-local")
    eps.start()
    try:
        assert eps.wait_ready(60)
        rows = [[0.5, 0.1, 0.2], [-1.0, 0.0, 0.0]]
        body = json.dumps({"instances": rows}).encode()
        got = json.loads(eps.invoke("clf-local", body))["predictions"]
        assert got == model_file[2].predict(np.array(rows)).tolist()
        # The model's own code refuses the row: 422 model_error, as InvokeEndpoint's 4xx ModelError is.
        with pytest.raises(ModelRejectedInput) as info:
            eps.invoke("clf-local", json.dumps({"instances": [[1, 2]]}).encode())
        assert (info.value.status, info.value.code) == (422, "model_error")
        assert info.value.message == "the model on endpoint 'clf-local' refused the input: expected 3 features per record, got 2"
        assert info.value.details == {"endpoint": "clf-local", "aws_error": "ModelError", "model_status": 400}
    finally:
        eps.close()
    assert not eps.in_service("clf-local")
    time.sleep(0)


CRASHING_CODE = """
import joblib
import numpy as np


def model_fn(model_dir):
    return joblib.load(model_dir + "/model.joblib")


def predict_fn(data, model):
    x = np.asarray(data.records, dtype=float)
    if (x == 13).any():
        raise RuntimeError("secret internals of the model")
    return model.predict(x).tolist()
"""


def test_endpoint_model_that_crashes_is_502_without_its_message(tmp_path: Path, model_file: tuple[Path, str, Any]) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "inference.py").write_text(CRASHING_CODE)
    info = build_package(model_file[0], tmp_path / "model.tar.gz", framework="sklearn", code_dir=code)
    cfg = config((info.path, info.sha256, model_file[2]))
    eps = LocalEndpoints(cfg, FileObjectStore(secrets.token_bytes(16)), tmp_path / "emu", invoke_timeout_s=20)
    eps.start()
    try:
        assert eps.wait_ready(60)
        assert json.loads(eps.invoke("clf-local", b'{"instances": [[1, 2, 3]]}'))["predictions"] == [1]
        with pytest.raises(BackendError) as crash:
            eps.invoke("clf-local", b'{"instances": [[1, 13, 3]]}')
        assert type(crash.value) is BackendError and crash.value.status == 502
        assert "secret" not in crash.value.message
        assert crash.value.details == {"endpoint": "clf-local", "aws_error": "ModelError", "model_status": 500}
        with pytest.raises(ModelRejectedInput):  # input_fn (the default one) still judges the body
            eps.invoke("clf-local", b'{"instances": [[1, 2, 3]], "bogus": 1}')
    finally:
        eps.close()


def test_a_file_planted_in_a_prepared_model_folder_never_loads(tmp_path: Path, model_file: tuple[Path, str, Any]) -> None:
    import os
    import subprocess
    import sys

    from router.local.sagemaker_emulator import prepare_model_dir

    cfg = config(model_file)
    spec = cfg.models[0]
    objects = FileObjectStore(secrets.token_bytes(16))
    root = tmp_path / "models"
    marker = tmp_path / "planted-ran"

    class Planted:
        def __reduce__(self) -> tuple[Any, ...]:
            return (os.mkdir, (str(marker),))  # what a hostile pickle could do on load

    # An earlier `router serve` prepared the folder; then someone swapped the pickle in it.
    code = "import sys, secrets; from pathlib import Path; from router.config import RouterConfig; " \
           "from router.adapters.file_store import FileObjectStore; from router.local.sagemaker_emulator import prepare_model_dir; " \
           "cfg = RouterConfig.model_validate_json(sys.argv[1]); print(prepare_model_dir(cfg.models[0], FileObjectStore(secrets.token_bytes(16)), Path(sys.argv[2])))"
    folder = Path(subprocess.run([sys.executable, "-c", code, cfg.model_dump_json(), str(root)], capture_output=True, text=True, check=True).stdout.strip())
    joblib.dump(Planted(), folder / "model.joblib")
    (folder / "code").mkdir()
    (folder / "code" / "inference.py").write_text("raise SystemExit('planted')\n")

    again = prepare_model_dir(spec, objects, root)  # this run verified nothing yet: rebuilt from the artifact
    assert again == folder and hashlib.sha256((folder / "model.joblib").read_bytes()).hexdigest() == spec.sha256
    assert not (folder / "code").exists()
    # Planted after this run verified it: caught the same way, before anything loads it.
    joblib.dump(Planted(), folder / "model.joblib")
    assert prepare_model_dir(spec, objects, root) == folder
    assert hashlib.sha256((folder / "model.joblib").read_bytes()).hexdigest() == spec.sha256
    assert isinstance(joblib.load(folder / "model.joblib"), LogisticRegression)
    assert not marker.exists()


def test_a_killed_model_server_is_restarted(tmp_path: Path, model_file: tuple[Path, str, Any]) -> None:
    import os
    import signal

    from router.errors import BackendUnavailable

    eps = LocalEndpoints(config(model_file), FileObjectStore(secrets.token_bytes(16)), tmp_path / "emu", invoke_timeout_s=20)
    eps.start()
    try:
        assert eps.wait_ready(60)
        first = eps.pid("clf-local")
        assert first is not None
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (eps.status("clf-local") == "InService" and eps.pid("clf-local") != first):
            status = eps.status("clf-local")
            assert status in ("InService", "Creating"), status  # never Failed: it comes back
            try:
                eps.invoke("clf-local", json.dumps({"instances": [[0.5, 0.1, 0.2]]}).encode())
            except BackendUnavailable as e:
                assert e.status == 503 and e.retry_after_s  # transient: retry later
            time.sleep(0.05)
        assert eps.status("clf-local") == "InService" and eps.pid("clf-local") not in (None, first)
        got = json.loads(eps.invoke("clf-local", json.dumps({"instances": [[0.5, 0.1, 0.2]]}).encode()))["predictions"]
        assert got == model_file[2].predict(np.array([[0.5, 0.1, 0.2]])).tolist()
    finally:
        eps.close()
    assert eps.status("clf-local") == "Deleted"


# ---------------------------------------------------------------- serverless endpoints


def serverless_config(model_file: tuple[Path, str, Any], **serverless: Any) -> RouterConfig:
    path, sha, _ = model_file
    return RouterConfig.model_validate({
        "models": [{"name": "clf", "framework": "sklearn", "artifact": f"file://{path}", "sha256": sha, "inline": False,
                    "serverless": {"name": "clf-sl", "memory_mb": 1024, **serverless}}],
    })


def wait_until(predicate: Any, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_serverless_endpoint_starts_on_the_first_call_and_scales_to_zero(tmp_path: Path, model_file: tuple[Path, str, Any]) -> None:
    eps = LocalEndpoints(serverless_config(model_file), FileObjectStore(secrets.token_bytes(16)), tmp_path / "emu",
                         invoke_timeout_s=20, serverless_idle_s=0.3)
    eps.start()
    try:
        assert eps.wait_ready(60)
        # InService with no instance: nothing runs until a call arrives.
        assert eps.status("clf-sl") == "InService" and not eps.warm("clf-sl") and eps.pid("clf-sl") is None
        rows = [[0.5, 0.1, 0.2], [-1.0, 0.0, 0.0]]
        body = json.dumps({"instances": rows}).encode()
        expected = model_file[2].predict(np.array(rows)).tolist()
        assert json.loads(eps.invoke("clf-sl", body))["predictions"] == expected  # the cold start
        assert eps.cold_starts("clf-sl") == 1
        first_pid = eps.pid("clf-sl")
        assert first_pid is not None
        # The model's own server answers a bad row as on a real-time endpoint.
        with pytest.raises(ModelRejectedInput):
            eps.invoke("clf-sl", json.dumps({"instances": [[1, 2]]}).encode())
        wait_until(lambda: eps.pid("clf-sl") is None)  # idle: scaled to zero
        assert not eps.warm("clf-sl") and eps.status("clf-sl") == "InService"
        assert json.loads(eps.invoke("clf-sl", body))["predictions"] == expected  # a second cold start
        assert eps.cold_starts("clf-sl") == 2 and eps.pid("clf-sl") not in (None, first_pid)
    finally:
        eps.close()
    assert eps.status("clf-sl") == "Deleted" and eps.pid("clf-sl") is None


def test_concurrent_first_calls_share_one_cold_start(tmp_path: Path, model_file: tuple[Path, str, Any]) -> None:
    eps = LocalEndpoints(serverless_config(model_file, max_concurrency=8), FileObjectStore(secrets.token_bytes(16)),
                         tmp_path / "emu", invoke_timeout_s=20, serverless_idle_s=60)
    eps.start()
    try:
        assert eps.wait_ready(60)
        answers: list[Any] = []
        body = json.dumps({"instances": [[1.0, 0.0, 0.0]]}).encode()
        threads = [threading.Thread(target=lambda: answers.append(json.loads(eps.invoke("clf-sl", body)))) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(answers) == 4 and eps.cold_starts("clf-sl") == 1
    finally:
        eps.close()


def test_a_serverless_endpoint_whose_artifact_does_not_match_is_failed(tmp_path: Path, model_file: tuple[Path, str, Any]) -> None:
    path, _, est = model_file
    eps = LocalEndpoints(serverless_config((path, "0" * 64, est)), FileObjectStore(secrets.token_bytes(16)), tmp_path / "emu",
                         invoke_timeout_s=20)
    eps.start()
    try:
        assert not eps.wait_ready(60)
        assert eps.status("clf-sl") == "Failed"
        with pytest.raises(BackendUnavailable) as e:
            eps.invoke("clf-sl", b'{"instances": [[1, 2, 3]]}')
        assert e.value.details == {"endpoint": "clf-sl", "endpoint_status": "Failed"}
    finally:
        eps.close()
