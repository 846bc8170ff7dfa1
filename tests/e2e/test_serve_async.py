"""Asynchronous inference end to end over real HTTP: `router serve` (a subprocess, as an operator
runs it) sends a large single request of a model with `async_inference` to the local SageMaker
emulator's async endpoint, and the job ends `succeeded` through the job API with its result
downloadable; a request the model fails on ends `failed` with the error. In-process servers (so a
test can reach into the emulator) show that a re-delivered completion notification changes nothing,
that the sweeper finds a result whose notification was lost, and what cancel means on this route."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import yaml

from router.client import RouterClient
from router.config import load_config
from router.serve_app import LocalApp, create_app

from .conftest import ALICE, Server, wait_for, write_variant

pytestmark = pytest.mark.e2e

MODEL = "forest-xl"  # too big for the demo's 128 MB Lambda: jobs go to SageMaker


def async_variant(demo_dir: Path, name: str) -> Path:
    """The demo config with an async inference endpoint for forest-xl, scaled to zero, whose local
    start-up is assumed short (the emulator starts an instance in well under a second)."""
    path = write_variant(demo_dir, name, routing={"async_startup_s": 5})
    data = yaml.safe_load(path.read_text())
    for m in data["models"]:
        if m["name"] == MODEL:
            m["async_inference"] = {"min_instances": 0, "max_instances": 1, "scale_to_zero_after_s": 600}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def rows(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 20)).round(3)


def to_jsonl(x: np.ndarray) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in x.tolist())


def download_lines(url: str) -> list[Any]:
    with urllib.request.urlopen(url, timeout=60) as r:
        return [json.loads(line) for line in r.read().splitlines()]


@pytest.fixture(scope="module")
def served(demo_dir: Path) -> Iterator[Server]:
    srv = Server(async_variant(demo_dir, "async-serve")).start()
    yield srv
    srv.stop()


def test_a_large_single_request_goes_to_async_inference_and_succeeds(served: Server, demo_dir: Path) -> None:
    x = rows(60_000)
    data = to_jsonl(x)
    assert len(data) > 6 * 1024 * 1024  # over every synchronous payload limit
    c = served.client()
    job = c.submit_job(MODEL, input_uri=c.upload(data))
    assert job["route"] == "async-inference", job["reason"]
    assert job["reason"].startswith("async-inference: est.") and "batch-transform" in job["reason"]
    assert job["status"] in ("queued", "running")
    done = c.wait(job["job_id"], timeout_s=300, poll_s=0.2)
    assert done["status"] == "succeeded", done
    assert done["records"] == {"total": 60_000, "done": 60_000}
    assert done["backend"]["name"] == "router-" + job["job_id"]  # the request's InferenceId
    model = joblib.load(demo_dir / "models" / "forest-xl.joblib")
    assert download_lines(done["output"]["download_url"]) == model.predict(x).tolist()
    listed = c.list_jobs(model=MODEL)["jobs"]
    assert any(j["job_id"] == job["job_id"] and j["route"] == "async-inference" for j in listed)


def test_a_request_the_model_fails_on_ends_failed_with_the_error(served: Server) -> None:
    c = served.client()
    job = c.submit_job(MODEL, instances=rows(5)[:, :3].tolist())  # 3 features for a 20-feature model
    assert job["route"] == "async-inference"
    done = c.wait(job["job_id"], timeout_s=120, poll_s=0.2)
    assert done["status"] == "failed", done
    assert done["error"]["code"] == "backend_error"
    assert "features" in done["error"]["message"]
    assert done["output"]["download_url"] is None


def test_the_route_dry_run_explains_the_async_candidate(served: Server) -> None:
    d = served.client().route(MODEL, mode="job", records=60_000, payload_bytes=7 * 1024 * 1024)
    assert d["route"] == "async-inference"
    assert [c["route"] for c in d["candidates"]] == ["lambda-job", "async-inference", "batch-transform"]
    detail = served.client().request("GET", f"/v1/models/{MODEL}")[2]
    assert "async-inference" in detail["routes"] and detail["async_inference"]["endpoint_name"] == "router-forest-xl-async"
    assert detail["envelope"]["async-inference"]["feasible"] is True


# ---------------------------------------------------------------- in-process: events and cancel


@pytest.fixture
def app(demo_dir: Path, request: pytest.FixtureRequest) -> Iterator[LocalApp]:
    local = create_app(load_config(async_variant(demo_dir, f"async-{request.node.name}")), port=0)
    threading.Thread(target=local.serve_forever, daemon=True).start()
    yield local
    local.shutdown()


def _emulator(app: LocalApp) -> Any:
    return app.runtime.jobs.async_jobs.client


def test_a_redelivered_notification_does_not_change_a_finished_job(app: LocalApp) -> None:
    emu = _emulator(app)
    delivered = emu.on_event
    seen: list[dict[str, Any]] = []

    def keep(event: dict[str, Any]) -> None:
        seen.append(event)
        delivered(event)

    emu.on_event = keep
    c = RouterClient(app.url, ALICE)
    job = c.submit_job(MODEL, instances=rows(100).tolist())
    done = c.wait(job["job_id"], timeout_s=120, poll_s=0.1)
    assert done["status"] == "succeeded" and seen
    delivered(seen[0])  # SNS delivers at least once: the same notification again
    again = c.get_job(job["job_id"])
    assert again["updated_at"] == done["updated_at"] and again["status"] == "succeeded"


def test_the_sweeper_finds_a_result_whose_notification_was_lost(app: LocalApp) -> None:
    emu = _emulator(app)
    lost: list[dict[str, Any]] = []
    emu.on_event = lost.append  # SNS never delivers
    c = RouterClient(app.url, ALICE)
    job = c.submit_job(MODEL, instances=rows(100).tolist())
    wait_for(lambda: lost, timeout_s=120)
    assert c.get_job(job["job_id"])["status"] == "running"  # nobody told the router
    repaired = app.runtime.jobs.sweep(stale_after_s=0.0)
    assert repaired["described"] >= 1
    done = c.get_job(job["job_id"])
    assert done["status"] == "succeeded" and done["records"]["done"] == 100


def test_cancel_marks_the_job_cancelled_and_discards_the_result(app: LocalApp) -> None:
    emu = _emulator(app)
    gate = threading.Event()
    delivered = emu.on_event
    emu.on_event = lambda event: (gate.wait(60), delivered(event))
    c = RouterClient(app.url, ALICE)
    job = c.submit_job(MODEL, instances=rows(100).tolist())
    assert job["status"] == "running"
    cancelled = c.cancel_job(job["job_id"])
    assert cancelled["status"] == "cancelled"  # the SageMaker request cannot be stopped: the router drops it
    gate.set()  # the request finishes on SageMaker anyway and its notification arrives
    wait_for(lambda: emu.request("router-" + job["job_id"])["Status"] == "Completed", timeout_s=120)
    final = c.get_job(job["job_id"])
    assert final["status"] == "cancelled" and final["output"]["download_url"] is None
    assert c.cancel_job(job["job_id"])["status"] == "cancelled"  # repeating it is harmless
