"""Asynchronous jobs over real HTTP against `router serve`: a 100k-record job through an upload,
idempotency, owner isolation, cancel, batch transform on the local SageMaker emulator, and a job
that survives the server being killed mid-run."""

from __future__ import annotations

import json
import signal
import urllib.request
from pathlib import Path

import joblib
import numpy as np
import pytest

from router.client import ApiError

from .conftest import BOB, Server, wait_for, write_variant

pytestmark = pytest.mark.e2e


def iris_rows(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform([4.0, 2.0, 1.0, 0.1], [8.0, 4.5, 7.0, 2.5], size=(n, 4)).round(2)


def to_jsonl(rows: np.ndarray) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows.tolist())


def download_lines(url: str) -> list[object]:
    with urllib.request.urlopen(url, timeout=60) as r:
        return [json.loads(line) for line in r.read().splitlines()]


def test_100k_records_through_an_upload(server: Server, demo_dir: Path) -> None:
    model = joblib.load(demo_dir / "models" / "iris.joblib")
    rows = iris_rows(100_000)
    c = server.client()
    uri = c.upload(to_jsonl(rows))
    job = c.submit_job("iris", input_uri=uri)
    assert job["status"] in ("queued", "running") and job["route"] == "lambda-job" and job["reason"]
    done = c.wait(job["job_id"], timeout_s=300, poll_s=0.2)
    assert done["status"] == "succeeded", done
    assert done["records"] == {"total": 100_000, "done": 100_000}
    got = download_lines(done["output"]["download_url"])
    assert got == model.predict(rows).tolist()  # row by row, in input order


def test_idempotency_key(server: Server) -> None:
    c = server.client()
    rows = iris_rows(10).tolist()
    first = c.submit_job("iris", instances=rows, idempotency_key="nightly-42")
    again = c.submit_job("iris", instances=rows, idempotency_key="nightly-42")
    assert again["job_id"] == first["job_id"]
    with pytest.raises(ApiError) as e:
        c.submit_job("iris", instances=rows[:5], idempotency_key="nightly-42")
    assert e.value.status == 422 and e.value.code == "idempotency_key_reuse"
    # Keys are per owner: Bob's identical key makes Bob's own job.
    bobs = server.client(BOB).submit_job("iris", instances=rows, idempotency_key="nightly-42")
    assert bobs["job_id"] != first["job_id"]


def test_owner_isolation_and_cancel_rules(server: Server) -> None:
    c = server.client()
    job = c.submit_job("iris", instances=iris_rows(5).tolist())
    with pytest.raises(ApiError) as e:
        server.client(BOB).get_job(job["job_id"])
    assert e.value.status == 404 and e.value.code == "job_not_found"
    with pytest.raises(ApiError) as e:
        server.client(BOB).cancel_job(job["job_id"])
    assert e.value.status == 404
    assert job["job_id"] not in {j["job_id"] for j in server.client(BOB).iter_jobs()}
    done = c.wait(job["job_id"], timeout_s=60, poll_s=0.1)
    assert done["status"] == "succeeded"
    with pytest.raises(ApiError) as e:
        c.cancel_job(job["job_id"])
    assert e.value.status == 409 and e.value.code == "job_not_cancellable"


def test_list_is_newest_first_and_paginates(server: Server) -> None:
    c = server.client()
    ids = [c.submit_job("iris", instances=iris_rows(2, seed=i).tolist())["job_id"] for i in range(3)]
    listed = [j["job_id"] for j in c.iter_jobs(model="iris", limit=2)]
    assert [i for i in listed if i in ids] == list(reversed(ids))
    assert len(listed) == len(set(listed))


def test_bad_job_requests(server: Server) -> None:
    c = server.client()
    for body, status, code in [
        ({"output": "predict"}, 400, "invalid_request"),
        ({"instances": [[1, 2, 3, 4]], "input": {"uri": "s3://b/k"}}, 400, "invalid_request"),
        ({"input": {"uri": "file:///etc/passwd"}}, 422, "invalid_input"),
    ]:
        with pytest.raises(ApiError) as e:
            c.request("POST", "/v1/models/iris/jobs", body)
        assert (e.value.status, e.value.code) == (status, code)
    with pytest.raises(ApiError) as e:
        c.request("POST", "/v1/models/iris/jobs", {"instances": [[1, 2, 3, 4]]}, headers={"Idempotency-Key": "x" * 256})
    assert e.value.code == "invalid_request"
    with pytest.raises(ApiError) as e:
        c.list_jobs(status="bogus")
    assert e.value.code == "invalid_request"


def test_large_deep_job_goes_to_batch_transform(server: Server, demo_dir: Path) -> None:
    import onnxruntime as ort

    rows = np.random.default_rng(1).uniform(0, 16, size=(3000, 64)).round(1)
    c = server.client()
    uri = c.upload(to_jsonl(rows))
    job = c.submit_job("digits-mlp", input_uri=uri)
    assert job["route"] == "batch-transform", job
    done = c.wait(job["job_id"], timeout_s=300, poll_s=0.2)
    assert done["status"] == "succeeded", done
    assert done["backend"]["name"].startswith("router-")
    sess = ort.InferenceSession(str(next((demo_dir / "models").glob("digits-mlp*.onnx"))), providers=["CPUExecutionProvider"])
    labels = sess.run(None, {sess.get_inputs()[0].name: rows.astype(np.float32)})[0]
    assert download_lines(done["output"]["download_url"]) == labels.tolist()


def test_job_survives_a_killed_server(demo_dir: Path) -> None:
    """Kill -9 mid-run; on restart the job resumes from its checkpoint and finishes exactly once."""
    model = joblib.load(demo_dir / "models" / "iris.joblib")
    config = write_variant(demo_dir, "restart", jobs={"chunk_records": 500})
    rows = iris_rows(60_000, seed=7)
    srv = Server(config).start()
    try:
        c = srv.client()
        job = c.submit_job("iris", instances=rows.tolist())
        wait_for(lambda: (c.get_job(job["job_id"])["records"]["done"] or 0) > 0, timeout_s=60, interval_s=0.01)
    finally:
        srv.stop(signal.SIGKILL)
    srv2 = Server(config).start()
    try:
        c = srv2.client()
        done = c.wait(job["job_id"], timeout_s=300, poll_s=0.2)
        assert done["status"] == "succeeded", done
        got = download_lines(done["output"]["download_url"])
        assert len(got) == 60_000
        assert got == model.predict(rows).tolist()
        assert len([j for j in c.iter_jobs() if j["job_id"] == job["job_id"]]) == 1
    finally:
        srv2.stop()


def test_prefer_respond_async_turns_an_unsyncable_predict_into_a_job(server: Server) -> None:
    c = server.client()
    rows = np.random.default_rng(5).normal(size=(20, 20)).round(3).tolist()
    status, headers, job = c.request("POST", "/v1/models/forest-xl/predict", {"instances": rows}, headers={"Prefer": "respond-async"})
    assert status == 202 and headers["Location"] == f"/v1/jobs/{job['job_id']}"
    assert headers["X-Router-Route"] == job["route"] == "batch-transform"
    done = c.wait(job["job_id"], timeout_s=300, poll_s=0.2)
    assert done["status"] == "succeeded" and done["records"]["done"] == 20


def test_jobs_cli_submits_waits_and_downloads(server: Server, demo_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from router.cli import main

    model = joblib.load(demo_dir / "models" / "iris.joblib")
    rows = iris_rows(500, seed=11)
    src = tmp_path / "rows.csv"
    src.write_text("".join(",".join(str(v) for v in r) + "\n" for r in rows.tolist()))
    out = tmp_path / "out.jsonl"
    base = ["jobs", "--url", server.url, "--api-key", "demo-key-alice-0001"]
    assert main([*base, "submit", "iris", str(src), "--wait", "--out", str(out)]) == 0
    assert [json.loads(x) for x in out.read_text().splitlines()] == model.predict(rows).tolist()
    assert main([*base, "list", "--limit", "3"]) == 0
    listing = capsys.readouterr().out
    assert "iris" in listing and "succeeded" in listing
    assert main([*base, "get", "job_01AAAAAAAAAAAAAAAAAAAAAAAA"]) == 1
    assert "job_not_found" in capsys.readouterr().err


def test_the_readme_job_example_runs(server: Server, demo_dir: Path, tmp_path: Path) -> None:
    """README's quick start submits examples/iris-rows.jsonl (rows and feature-name objects)."""
    from router.cli import main

    src = Path(__file__).resolve().parents[2] / "examples" / "iris-rows.jsonl"
    assert "iris-rows.jsonl" in (src.parents[1] / "README.md").read_text()
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    records = [json.loads(line) for line in src.read_text().splitlines()]
    rows = [[r[n] for n in names] if isinstance(r, dict) else r for r in records]
    out = tmp_path / "out.jsonl"
    argv = ["jobs", "--url", server.url, "--api-key", "demo-key-alice-0001", "submit", "iris", str(src), "--wait", "--out", str(out)]
    assert main(argv) == 0
    model = joblib.load(demo_dir / "models" / "iris.joblib")
    assert [json.loads(x) for x in out.read_text().splitlines()] == model.predict(np.array(rows)).tolist()
