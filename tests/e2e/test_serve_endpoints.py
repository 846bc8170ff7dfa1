"""Endpoints on the local runtime, over real HTTP (in-process server, so a test can find the model
server's process): while an endpoint is Creating, or its killed model server is being restarted,
a request for it is 503 with Retry-After, not 422; /v1/health and /v1/models say each endpoint's
state; a killed model server comes back by itself."""

from __future__ import annotations

import hashlib
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import pytest
import requests
import yaml

from router.config import load_config
from router.serve_app import LocalApp, create_app

from .conftest import wait_for

pytestmark = pytest.mark.e2e

KEY = "key-endpoints-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}

GATED_MODULE = '''
import os, time
class GatedLoad:
    """Unpickling waits until the `gate` file exists: a model server that stays Creating."""
    n_features_in_ = 3
    def __init__(self, gate):
        self.gate = gate
    def __setstate__(self, state):
        self.__dict__.update(state)
        deadline = time.monotonic() + 120
        while not os.path.exists(self.gate) and time.monotonic() < deadline:
            time.sleep(0.02)
    def predict(self, x):
        return [float(sum(row)) for row in x]
'''


@pytest.fixture
def gated(tmp_path: Path) -> Iterator[tuple[LocalApp, Path]]:
    (tmp_path / "py").mkdir()
    (tmp_path / "py" / "gated_load.py").write_text(GATED_MODULE)
    gate = tmp_path / "gate"
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(tmp_path / "py"))
        import gated_load

        joblib.dump(gated_load.GatedLoad(str(gate)), tmp_path / "gated.joblib")
        sha = hashlib.sha256((tmp_path / "gated.joblib").read_bytes()).hexdigest()
        config = {
            "version": 1,
            "storage": {"artifacts": "file://.", "jobs": "file://./.router/jobs", "job_table": "sqlite:///./.router/jobs.db"},
            "auth": {"api_keys": {KEY: "tester"}},
            "models": [{"name": "gated", "framework": "sklearn", "artifact": "file://./gated.joblib", "sha256": sha,
                        "inline": False, "endpoint": {"name": "gated-ep"}}],
        }
        (tmp_path / "router.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        mp.setenv("PYTHONPATH", str(tmp_path / "py"))  # the model server process unpickles GatedLoad
        app = create_app(load_config(tmp_path / "router.yaml"), port=0)
        threading.Thread(target=app.serve_forever, daemon=True).start()
        try:
            yield app, gate
        finally:
            gate.write_text("open")
            app.shutdown()


def _predict(app: LocalApp) -> requests.Response:
    return requests.post(app.url + "/v1/models/gated/predict", json={"instances": [[1, 2, 3]]}, headers=AUTH, timeout=60)


def _states(app: LocalApp) -> tuple[Any, Any]:
    health = requests.get(app.url + "/v1/health", timeout=30).json()
    models = requests.get(app.url + "/v1/models", headers=AUTH, timeout=30).json()["models"]
    return health.get("endpoints"), next(m for m in models if m["name"] == "gated").get("endpoint_status")


def _assert_503_retry_later(r: requests.Response) -> None:
    body = r.json()
    assert r.status_code == 503 and body["error"]["code"] == "backend_unavailable", body
    assert int(r.headers["Retry-After"]) > 0
    assert body["error"]["details"]["endpoint"] == "gated-ep"


def test_creating_is_503_then_served_and_health_says_so(gated: tuple[LocalApp, Path]) -> None:
    app, gate = gated
    assert _states(app) == ({"gated-ep": "Creating"}, "Creating")
    _assert_503_retry_later(_predict(app))  # was 422 sync_not_possible
    gate.write_text("open")
    wait_for(lambda: _states(app) == ({"gated-ep": "InService"}, "InService"), timeout_s=120, interval_s=0.2)
    r = _predict(app)
    assert r.status_code == 200 and r.json()["predictions"] == [6.0] and r.headers["X-Router-Route"] == "endpoint"


def test_a_killed_model_server_is_restarted_and_meanwhile_503(gated: tuple[LocalApp, Path]) -> None:
    app, gate = gated
    gate.write_text("open")
    wait_for(lambda: _states(app)[0] == {"gated-ep": "InService"}, timeout_s=120, interval_s=0.2)
    endpoints: Any = app.runtime.service.endpoints
    pid = endpoints.pid("gated-ep")
    gate.unlink()  # the restarted model server will wait in its model load until the gate reopens
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: _states(app) == ({"gated-ep": "Creating"}, "Creating"), timeout_s=60)  # not "ok, InService"
    _assert_503_retry_later(_predict(app))  # was 422 until a restart of the router
    gate.write_text("open")
    wait_for(lambda: _states(app)[0] == {"gated-ep": "InService"}, timeout_s=120, interval_s=0.2)
    assert endpoints.pid("gated-ep") not in (None, pid)
    r = _predict(app)
    assert r.status_code == 200 and r.json()["predictions"] == [6.0]
