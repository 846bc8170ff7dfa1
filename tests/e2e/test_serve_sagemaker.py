"""The SageMaker paths of `router serve`, end to end over real HTTP (in-process server, so a test
can reach into the emulator to slow it down or lose its events): cancel stops a batch-transform
job, and the sweeper repairs a job whose completion event was lost."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from router.client import RouterClient
from router.config import load_config
from router.serve_app import LocalApp, create_app

from .conftest import ALICE, wait_for, write_variant

pytestmark = pytest.mark.e2e


@pytest.fixture
def app(demo_dir: Path, request: pytest.FixtureRequest) -> Iterator[LocalApp]:
    config = write_variant(demo_dir, f"sm-{request.node.name}")
    local = create_app(load_config(config), port=0)
    threading.Thread(target=local.serve_forever, daemon=True).start()
    yield local
    local.shutdown()


def big_input(client: RouterClient, n: int = 2000) -> str:
    rows = np.random.default_rng(3).uniform(0, 16, size=(n, 64)).round(1)
    return client.upload(b"".join(json.dumps(r).encode() + b"\n" for r in rows.tolist()))


def test_cancel_stops_the_transform_job(app: LocalApp) -> None:
    batch: Any = app.runtime.jobs.batch
    batch.startup_s = 60.0  # a slow SageMaker start-up, so the cancel lands while it runs
    c = RouterClient(app.url, ALICE)
    job = c.submit_job("digits-mlp", input_uri=big_input(c))
    assert job["route"] == "batch-transform" and job["status"] == "running"
    name = job["backend"]["name"]
    cancelled = c.cancel_job(job["job_id"])
    assert cancelled["status"] in ("cancelling", "cancelled")
    done = c.wait(job["job_id"], timeout_s=60, poll_s=0.1)
    assert done["status"] == "cancelled"
    assert batch.describe(name).status == "Stopped"
    assert c.cancel_job(job["job_id"])["status"] == "cancelled"  # repeating it is harmless


def test_sweeper_repairs_a_lost_completion_event(app: LocalApp) -> None:
    batch: Any = app.runtime.jobs.batch
    delivered = batch.on_event
    lost: list[dict[str, Any]] = []

    def lossy(event: dict[str, Any]) -> None:
        if event["detail"]["TransformJobStatus"] == "Completed":
            lost.append(event)  # EventBridge never delivers it
        else:
            delivered(event)

    batch.on_event = lossy
    c = RouterClient(app.url, ALICE)
    job = c.submit_job("digits-mlp", input_uri=big_input(c, 500))
    wait_for(lambda: lost, timeout_s=120)
    assert c.get_job(job["job_id"])["status"] == "running"  # nobody told the router
    repaired = app.runtime.jobs.sweep(stale_after_s=0.0)
    assert repaired["described"] >= 1
    done = c.get_job(job["job_id"])
    assert done["status"] == "succeeded" and done["records"]["done"] == 500
    # The late event, delivered after all, changes nothing (finished states are absorbing).
    delivered(lost[0])
    assert c.get_job(job["job_id"])["updated_at"] == done["updated_at"]
