"""A full or read-only disk is a transient backend state (503 backend_unavailable with Retry-After),
never a 500 or a crash: the job table (SQLite filled up to its page limit, so it fails exactly as on a
full disk), the file store on a really full or read-only file system (a tiny tmpfs; skipped where
mounting is not permitted), the API on top of both, and `router serve` starting on a read-only
state folder."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LinearRegression

from router.adapters.file_store import FileObjectStore
from router.adapters.sqlite_jobs import SqliteJobStore
from router.bootstrap import build_local
from router.config import load_config
from router.domain import Job, JobStatus, OutputKind, Route
from router.errors import BackendUnavailable
from router.handlers.api import make_handler
from router.local.server import LocalContext
from tests.fakes import FakeClock

KEY = "alice-key-0123456789"


def new_job(clock: FakeClock, job_id: str) -> Job:
    now = clock.now()
    return Job(job_id=job_id, owner="alice", model="m", status=JobStatus.QUEUED, route=Route.LAMBDA_JOB, reason="r",
               created_at=now, updated_at=now, input_uri="s3://b/in.jsonl", output_kind=OutputKind.PREDICT)


def fill_up(store: SqliteJobStore) -> None:
    """Cap the database at its current size: the next page it needs fails with SQLITE_FULL ("database
    or disk is full"), after which SQLite has rolled the transaction back itself, as on a full disk."""
    conn = store._conn  # the store's own connection: the page limit is per connection
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")


def test_a_full_job_table_is_backend_unavailable_and_the_store_recovers(tmp_path: Path) -> None:
    clock = FakeClock()
    store = SqliteJobStore(tmp_path / "jobs.db", clock=clock)
    job, _ = store.create(new_job(clock, "job_A"))
    fill_up(store)
    big = {"note": "x" * 20_000}  # needs new pages
    with pytest.raises(BackendUnavailable) as e:
        store.update(job.job_id, job.version, extra=big)
    assert "full" in e.value.message and e.value.retry_after_s
    with pytest.raises(BackendUnavailable):
        store.create(new_job(clock, "job_B").evolve(extra=big))
    # Nothing half-written, and the connection is usable again once there is room.
    assert store.get("job_A") == job and store.get("job_B") is None
    store._conn.execute("PRAGMA max_page_count = 1073741823")
    assert store.update(job.job_id, job.version, extra=big) is not None
    store.close()


def test_the_worker_reports_a_full_job_table_as_transient(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from router.config import RouterConfig
    from router.jobs_service import JobsService
    from router.service import RouterService
    from tests.fakes import FakeQueue, FakeRunner, MemoryObjectStore

    cfg = RouterConfig.model_validate({
        "storage": {"jobs": "s3://bucket/jobs", "artifacts": "s3://bucket/models", "job_table": "sqlite:///x.db"},
        "jobs": {"chunk_records": 5, "max_attempts": 3},
        "models": [{"name": "m", "framework": "sklearn", "artifact": "s3://b/m.joblib", "sha256": "ab" * 32, "size_bytes": 1000,
                    "profile": {"load_s": 0.1, "per_record_ms": 1.0}}],
    })
    clock = FakeClock()
    store = SqliteJobStore(tmp_path / "jobs.db", clock=clock)
    svc = JobsService(cfg, service=RouterService(cfg, runner=FakeRunner()), store=store, objects=MemoryObjectStore(),
                      clock=clock, queue=FakeQueue())
    job, _ = svc.submit("alice", svc.service.model("m"), instances=[[float(i), 1.0] for i in range(20)], input_uri=None,
                        input_format="jsonl", output=OutputKind.PREDICT, idempotency_key=None)
    store.transition(job.job_id, frozenset({JobStatus.QUEUED}), JobStatus.RUNNING, extra={"pad": "y" * 5000})
    fill_up(store)
    # The checkpoint write fails: the step records a failed attempt with the table's own error
    # (no "cannot rollback - no transaction is active", no "worker failed unexpectedly").
    assert svc.run_lambda_job(job.job_id, lambda: 1e9) is True
    store._conn.execute("PRAGMA max_page_count = 1073741823")
    after = store.get(job.job_id)
    assert after is not None and after.status is JobStatus.RUNNING and after.attempts == 1 and after.error is None
    assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text
    while svc.run_lambda_job(job.job_id, lambda: 1e9):
        pass
    done = store.get(job.job_id)
    assert done is not None and done.status is JobStatus.SUCCEEDED and done.records_done == 20


# ---------------------------------------------------------------- real full / read-only file systems


@contextlib.contextmanager
def tmpfs(where: Path, *options: str) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(("size=256k", *options)), "tmpfs", str(where)],
                       capture_output=True, text=True, check=False)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or r.returncode}): needs root with CAP_SYS_ADMIN")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(folder: Path) -> None:
    """Write until the file system says ENOSPC."""
    fd = os.open(folder / "ballast", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as e:
        assert e.errno == errno.ENOSPC
    finally:
        os.close(fd)


@pytest.fixture(params=["full", "read-only", "no-permission"])
def unwritable(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """A folder the router cannot write into, for real: a full tmpfs, a read-only tmpfs, or (not
    as root, where permissions do not stop writes) a folder without write permission."""
    if request.param == "no-permission":
        if os.geteuid() == 0:
            pytest.skip("root ignores file permissions; the tmpfs cases cover this")
        folder = tmp_path / "locked"
        folder.mkdir()
        folder.chmod(0o500)
        yield folder
        folder.chmod(0o700)
        return
    with tmpfs(tmp_path / "mnt") as mnt:
        if request.param == "full":
            (mnt / "jobs").mkdir()
            fill(mnt)
            yield mnt / "jobs"
        else:
            subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
            yield mnt


def test_file_store_writes_on_an_unwritable_disk_are_backend_unavailable(unwritable: Path) -> None:
    store = FileObjectStore(b"k" * 32)
    uri = f"file://{unwritable}/job_1/input.jsonl"
    with pytest.raises(BackendUnavailable) as e:
        store.put_bytes(uri, b"[1]\n" * 100_000)
    assert e.value.retry_after_s and str(unwritable) not in e.value.message
    with pytest.raises(BackendUnavailable), store.open_write(uri) as out:
        out.write(b"[1]\n" * 100_000)
    assert not list(unwritable.rglob("*.router-tmp"))  # no temp file left behind


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("faults")
    x = np.random.default_rng(0).normal(size=(40, 2))
    joblib.dump(LinearRegression().fit(x, x.sum(axis=1)), d / "reg.joblib")
    return d


def write_config(d: Path, jobs: Path, table: Path) -> Path:
    sha = hashlib.sha256((d / "reg.joblib").read_bytes()).hexdigest()
    cfg = d / f"op-{hashlib.md5(str(jobs).encode()).hexdigest()[:6]}.yaml"
    cfg.write_text(
        f"auth: {{api_keys: {{{KEY}: alice}}}}\n"
        f"storage: {{jobs: 'file://{jobs}', job_table: 'sqlite:///{table}'}}\n"
        f"models:\n  - {{name: reg, framework: sklearn, artifact: file://./reg.joblib, sha256: {sha}}}\n"
    )
    return cfg


def api(handler: Any, method: str, path: str, body: Any = None) -> tuple[int, dict[str, str], Any]:
    hdrs = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}
    ev = {"path": path, "httpMethod": method, "headers": hdrs, "multiValueHeaders": {k: [v] for k, v in hdrs.items()},
          "queryStringParameters": None, "requestContext": {"requestId": "req-1", "identity": {}},
          "body": None if body is None else json.dumps(body), "isBase64Encoded": False}
    resp = handler(ev, LocalContext("req-1", 29))
    headers = {k: v[-1] for k, v in (resp.get("multiValueHeaders") or {}).items()} | (resp.get("headers") or {})
    return int(resp["statusCode"]), headers, json.loads(resp["body"]) if resp.get("body") else None


def test_submit_on_a_full_disk_is_503_with_retry_after(model_dir: Path, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "mnt") as mnt:
        (mnt / "state").mkdir()
        cfg = write_config(model_dir, mnt / "state" / "jobs", mnt / "state" / "jobs.db")
        rt = build_local(load_config(cfg), public_base_url="http://127.0.0.1:9")
        try:
            handler = make_handler(rt)
            rows = np.random.default_rng(1).normal(size=(2000, 2)).round(3).tolist()
            status, _, _ = api(handler, "POST", "/v1/models/reg/jobs", {"instances": rows[:5]})
            assert status == 202
            fill(mnt)
            status, headers, body = api(handler, "POST", "/v1/models/reg/jobs", {"instances": rows})
            assert status == 503 and body["error"]["code"] == "backend_unavailable", body
            assert int(headers["Retry-After"]) > 0
            assert str(mnt) not in body["error"]["message"]
            (mnt / "ballast").unlink()
            status, _, _ = api(handler, "POST", "/v1/models/reg/jobs", {"instances": rows})
            assert status == 202
        finally:
            rt.close()


def test_a_disk_turned_read_only_while_serving_is_503(model_dir: Path, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "mnt") as mnt:
        # The job table elsewhere: Linux refuses to remount read-only while a file is open for writing.
        cfg = write_config(model_dir, mnt / "jobs", tmp_path / "jobs.db")
        rt = build_local(load_config(cfg), public_base_url="http://127.0.0.1:9")
        try:
            handler = make_handler(rt)
            status, _, first = api(handler, "POST", "/v1/models/reg/jobs", {"instances": [[1.0, 2.0]]})
            assert status == 202
            assert rt.jobs is not None
            for _ in range(600):  # its worker must have closed its files before the remount
                job = rt.jobs.store.get(first["job_id"])
                if job is not None and job.status.finished:
                    break
                time.sleep(0.1)
            subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
            status, headers, reply = api(handler, "POST", "/v1/models/reg/jobs", {"instances": [[3.0, 4.0]] * 3})
            assert status == 503 and reply["error"]["code"] == "backend_unavailable" and int(headers["Retry-After"]) > 0, reply
            assert "Read-only file system" in reply["error"]["message"] and str(mnt) not in reply["error"]["message"]
        finally:
            rt.close()


def test_serve_on_a_read_only_state_folder_says_so_without_a_traceback(model_dir: Path, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "mnt") as mnt:
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        cfg = write_config(model_dir, mnt / "jobs", mnt / "jobs.db")
        r = subprocess.run([sys.executable, "-m", "router.cli", "serve", "--config", str(cfg), "--port", "0"],
                           capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr and "read-only" in r.stderr.lower() and str(mnt) in r.stderr, r.stderr


def test_an_upload_to_a_full_disk_is_503_with_retry_after(model_dir: Path, tmp_path: Path) -> None:
    import threading
    import urllib.error
    import urllib.request

    from router.serve_app import create_app

    with tmpfs(tmp_path / "mnt") as mnt:
        cfg = write_config(model_dir, mnt / "jobs", tmp_path / "jobs.db")
        app = create_app(load_config(cfg), "127.0.0.1", 0)
        thread = threading.Thread(target=app.serve_forever, daemon=True)
        thread.start()
        try:
            assert app.runtime.jobs is not None
            slot = app.runtime.jobs.upload_slot("alice")
            fill(mnt)
            put = urllib.request.Request(slot["upload_url"], data=b"[1, 2]\n" * 10_000, method="PUT", headers=slot["headers"])
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(put, timeout=60)
            assert e.value.code == 503 and int(e.value.headers["Retry-After"]) > 0
            assert json.loads(e.value.read())["error"]["code"] == "backend_unavailable"
        finally:
            app.shutdown()
            thread.join(timeout=30)
