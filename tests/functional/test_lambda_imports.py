"""The Lambda handlers never load `router serve`'s HTTP server (nor CLI-only libraries): the
artifact stays lean and the cold start small."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HANDLERS = ("router.lambdas.api", "router.lambdas.worker", "router.lambdas.events", "router.lambdas.sweeper")
SERVER_ONLY = ("uvicorn", "httptools", "starlette", "anyio", "router.local.http", "sagemaker", "torch")


def test_lambda_handlers_import_no_http_server() -> None:
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in HANDLERS)
        + f"print(sorted(m for m in {SERVER_ONLY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stdout


GC_ENTRY = """
import gc, json, sys
from router.lambdas.api import handler
collections = []
gc.callbacks.append(lambda phase, info: collections.append(info["generation"]) if phase == "start" else None)
class Context:
    aws_request_id = "cold"
    def get_remaining_time_in_millis(self): return 29000
def call():
    ev = {"resource": "/v1/{proxy+}", "path": "/v1/models/tree/predict", "httpMethod": "POST", "isBase64Encoded": False,
          "headers": {"Authorization": "Bearer gc-test-key-000001", "Content-Type": "application/json"},
          "body": json.dumps({"instances": [[1, 0]]}), "requestContext": {"requestId": "r"}}
    return handler(ev, Context())["statusCode"]
first = call()
out = {"first": first, "collections_during_first": len(collections), "enabled_after": gc.isenabled(), "frozen": gc.get_freeze_count() > 0}
gc.collect()
out["collects_later"] = len(collections) > 0 and call() == 200
print("RESULT " + json.dumps(out), flush=True)
"""


def test_the_api_functions_cold_start_runs_with_the_collector_paused(tmp_path: Path) -> None:
    """The runtime's build and the first event (model load, framework import) run without a cyclic
    collection; afterwards the collector is on again and the cold start's objects are frozen."""
    import hashlib

    import joblib
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    x = np.random.default_rng(0).normal(size=(40, 2))
    joblib.dump(LogisticRegression().fit(x, (x[:, 0] > 0).astype(int)), tmp_path / "m.joblib")
    sha = hashlib.sha256((tmp_path / "m.joblib").read_bytes()).hexdigest()
    (tmp_path / "op.yaml").write_text(
        "auth: {api_keys: {gc-test-key-000001: alice}}\n"
        f"models:\n  - {{name: tree, framework: sklearn, artifact: file://./m.joblib, sha256: {sha}}}\n"
    )
    env = {**os.environ, "ROUTER_CONFIG": str(tmp_path / "op.yaml"), "ROUTER_RUNTIME": "local", "POWERTOOLS_METRICS_DISABLED": "true"}
    out = subprocess.run([sys.executable, "-c", GC_ENTRY], env=env, capture_output=True, text=True, check=True, timeout=120)
    got = json.loads(next(ln for ln in out.stdout.splitlines() if ln.startswith("RESULT "))[len("RESULT "):])
    assert got == {"first": 200, "collections_during_first": 0, "enabled_after": True, "frozen": True, "collects_later": True}
