"""The API function wires its job service on first use (bootstrap `lazy_jobs`): an inline predict's
cold start never imports or builds the job machinery, and every route answers as on a runtime
wired eagerly — health, predict, the 202 fallback, the job routes and a model's detail."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.tree import DecisionTreeClassifier

from router.auth import IamAuth
from router.bootstrap import Runtime, build_local
from router.config import load_config, parse_config
from router.errors import ConfigError
from router.handlers.api import make_handler
from router.jobs_service import JobsService
from router.local.server import LocalContext

ARN = "arn:aws:iam::123456789012:user/alice"
JOB_MODULES = ("router.jobs_service", "router.lifecycle", "router.notifications", "router.local.workers")


def write_config(d: Path) -> Path:
    """`tree` (sync inline) and `slow`, whose profile rules sync out from 100 records (lambda-job)."""
    x = np.random.default_rng(0).normal(size=(60, 3))
    joblib.dump(DecisionTreeClassifier(max_depth=2, random_state=0).fit(x, (x[:, 0] > 0).astype(int)), d / "tree.joblib")
    sha = hashlib.sha256((d / "tree.joblib").read_bytes()).hexdigest()
    (d / "op.yaml").write_text(
        "auth: {api_keys: {lazy-test-key-0001: alice}}\n"
        "models:\n"
        f"  - {{name: tree, framework: sklearn, artifact: file://./tree.joblib, sha256: {sha}, features: [a, b, c]}}\n"
        f"  - {{name: slow, framework: sklearn, artifact: file://./tree.joblib, sha256: {sha}, features: [a, b, c],"
        " profile: {load_s: 0.1, per_record_ms: 500.0}}\n"
    )
    return d / "op.yaml"


def event(method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> dict[str, Any]:
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    return {
        "resource": "/v1/{proxy+}", "path": path, "httpMethod": method, "headers": hdrs,
        "multiValueHeaders": {k: [v] for k, v in hdrs.items()}, "queryStringParameters": None,
        "multiValueQueryStringParameters": None, "pathParameters": None, "stageVariables": None,
        "isBase64Encoded": False, "body": None if body is None else json.dumps(body),
        "requestContext": {"requestId": "r-lazy", "stage": "prod", "identity": {"userArn": ARN}},
    }


def walk(rt: Runtime, *, fast_path: bool) -> list[tuple[int, Any]]:
    """Every route once, in the order a client might call them: (status, the answer without its
    per-run values)."""
    h = make_handler(rt, fast_path=fast_path)

    def call(ev: dict[str, Any]) -> tuple[int, Any]:
        resp = h(ev, LocalContext("r-lazy", 29))
        return resp["statusCode"], json.loads(resp["body"]) if resp.get("body") else None

    out: list[tuple[int, Any]] = []
    status, health = call(event("GET", "/v1/health"))
    assert health.pop("config_digest") == rt.config.digest  # the folders differ, hence the digests
    out.append((status, health))
    status, body = call(event("POST", "/v1/models/tree/predict", {"instances": [[1, 0, 0], [-1, 0, 0]]}))
    out.append((status, body["predictions"]))
    rows = {"instances": [[0.1, 0.2, 0.3]] * 100}
    status, job = call(event("POST", "/v1/models/slow/predict", rows, {"Prefer": "respond-async", "Idempotency-Key": "k-1"}))
    out.append((status, (job["route"], job["records"]["total"])))
    status, again = call(event("GET", f"/v1/jobs/{job['job_id']}"))
    out.append((status, (again["job_id"] == job["job_id"], again["model"])))
    status, page = call(event("GET", "/v1/jobs"))
    out.append((status, [j["job_id"] == job["job_id"] for j in page["jobs"]]))
    status, created = call(event("POST", "/v1/models/tree/jobs", {"instances": [[1, 0, 0]]}))
    out.append((status, (created["route"], sorted(created))))
    status, missing = call(event("DELETE", "/v1/jobs/job_doesnotexist000000000000"))
    out.append((status, missing["error"]["code"]))
    status, detail = call(event("GET", "/v1/models/slow"))
    out.append((status, (sorted(detail), sorted(detail["calibration"]))))  # its job samples read the job table
    return out


@pytest.mark.parametrize("fast_path", [True, False])
def test_a_lazily_wired_runtime_answers_every_route_as_an_eager_one(tmp_path: Path, fast_path: bool) -> None:
    answers = []
    for lazy in (False, True):
        d = tmp_path / f"lazy-{lazy}"
        d.mkdir()
        rt = build_local(load_config(write_config(d)), lazy_jobs=lazy)
        rt.auth = IamAuth()  # as on AWS: the caller's IAM identity is the owner
        try:
            assert isinstance(rt.jobs, JobsService) is not lazy  # lazy: a stand-in until first use
            answers.append(walk(rt, fast_path=fast_path))
            assert isinstance(rt.jobs, JobsService)  # the job routes built it
            assert rt.service.jobs is rt.jobs
        finally:
            rt.close()
    assert answers[0] == answers[1]
    assert answers[1][2] == (202, ("lambda-job", 100))


def test_concurrent_first_uses_build_one_job_service(tmp_path: Path) -> None:
    rt = build_local(load_config(write_config(tmp_path)), lazy_jobs=True)
    stand_in = rt.jobs
    assert stand_in is not None
    start = threading.Barrier(8)
    seen: list[object] = []

    def first_use() -> None:
        start.wait()
        seen.append(stand_in.policy)  # a new object per JobsService built

    threads = [threading.Thread(target=first_use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert isinstance(rt.jobs, JobsService)
        assert len(seen) == 8 and all(p is rt.jobs.policy for p in seen)
    finally:
        rt.close()


def test_a_lazy_runtime_still_refuses_a_bad_job_table_at_cold_start(tmp_path: Path) -> None:
    text = write_config(tmp_path).read_text() + "storage: {job_table: dynamodb://router-jobs}\n"
    with pytest.raises(ConfigError) as e:
        build_local(parse_config(text, base_dir=tmp_path), lazy_jobs=True)
    assert "storage.job_table: `router serve` needs sqlite:///PATH" in str(e.value)


ENTRY = """
import json, sys
from router.lambdas.api import handler
class Context:
    aws_request_id = "cold"
    def get_remaining_time_in_millis(self): return 29000
def call(method, path, body=None):
    ev = {"resource": "/v1/{proxy+}", "path": path, "httpMethod": method, "isBase64Encoded": False,
          "headers": {"Authorization": "Bearer lazy-test-key-0001", "Content-Type": "application/json"},
          "body": None if body is None else json.dumps(body), "requestContext": {"requestId": "r"}}
    resp = handler(ev, Context())
    return resp["statusCode"], json.loads(resp["body"])
jobs = JOB_MODULES
out = {}
out["predict"] = call("POST", "/v1/models/tree/predict", {"instances": [[1, 0, 0]]})[0]
out["after_predict"] = sorted(m for m in jobs if m in sys.modules)
status, job = call("POST", "/v1/models/tree/jobs", {"instances": [[1, 0, 0]]})
out["submit"] = status
out["get"] = call("GET", "/v1/jobs/" + job["job_id"])[0]
out["after_jobs"] = sorted(m for m in jobs if m in sys.modules)
print("RESULT " + json.dumps(out), flush=True)
""".replace("JOB_MODULES", repr(JOB_MODULES))


def test_the_api_function_imports_the_job_machinery_only_for_a_job_route(tmp_path: Path) -> None:
    env = {**os.environ, "ROUTER_CONFIG": str(write_config(tmp_path)), "ROUTER_RUNTIME": "local", "POWERTOOLS_METRICS_DISABLED": "true"}
    out = subprocess.run([sys.executable, "-c", ENTRY], env=env, capture_output=True, text=True, check=True, timeout=120)
    got = json.loads(next(ln for ln in out.stdout.splitlines() if ln.startswith("RESULT "))[len("RESULT "):])
    assert got == {"predict": 200, "after_predict": [], "submit": 202, "get": 200, "after_jobs": sorted(JOB_MODULES)}
