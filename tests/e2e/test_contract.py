"""docs/api.md checked from the outside: `router serve` as a subprocess, spoken to over real HTTP with
urllib, on the demo config and on configs and models written here (a regressor without feature
names, a classifier trained on a bare numpy array, string class labels, a model without
predict_proba, a model whose jobs block until the test releases them).

Every response is checked for the documented envelope and headers; every error code the table
lists that a client can provoke is provoked at least once."""

from __future__ import annotations

import hashlib
import http.client
import json
import math
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import yaml
from openapi_spec_validator import validate

from .conftest import ALICE, Server, wait_for

pytestmark = pytest.mark.e2e

OWN_ALICE = "key-alice-0123456789"
OWN_BOB = "key-bob-0123456789"
ROUTES = {"inline", "endpoint", "serverless", "lambda-job", "batch-transform", "async-inference"}
STATUSES = {"queued", "running", "succeeded", "failed", "cancelling", "cancelled"}
JOB_KEYS = {
    "job_id", "model", "status", "route", "reason", "created_at", "updated_at", "started_at", "finished_at",
    "records", "input", "output", "error", "backend",
    "estimate", "duration_s",  # the router's additions (docs/api.md): the decision's estimate and what it took
}
TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")
JSON = "application/json"


# ---------------------------------------------------------------- HTTP


class Reply:
    def __init__(self, status: int, headers: Any, raw: bytes) -> None:
        self.status = status
        self.headers = headers  # email.message.Message: case-insensitive
        self.raw = raw

    @property
    def json(self) -> Any:
        return json.loads(self.raw)

    def header(self, name: str) -> str | None:
        v = self.headers.get(name)
        return None if v is None else str(v)

    def __repr__(self) -> str:
        return f"<{self.status} {self.raw[:300]!r}>"


def call(method: str, url: str, body: Any = None, *, key: str | None = None, headers: dict[str, str] | None = None,
         raw: bytes | None = None) -> Reply:
    hdrs = dict(headers or {})
    data = raw
    if body is not None:
        data = json.dumps(body).encode()
        hdrs.setdefault("Content-Type", JSON)
    if key is not None:
        hdrs.setdefault("Authorization", f"Bearer {key}")
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return Reply(r.status, r.headers, r.read())
    except urllib.error.HTTPError as e:
        with e:
            return Reply(e.code, e.headers, e.read())


def assert_error(r: Reply, status: int, code: str) -> dict[str, Any]:
    """docs/api.md's envelope, exactly: code, message, request_id (= X-Request-Id), details; no trace."""
    assert r.status == status, r
    rid = r.header("X-Request-Id")
    assert rid, r.headers
    body = r.json
    assert set(body) == {"error"}, body
    err = body["error"]
    assert set(err) == {"code", "message", "request_id", "details"}, err
    assert err["code"] == code, err
    assert isinstance(err["message"], str) and err["message"]
    assert isinstance(err["details"], dict)
    assert err["request_id"] == rid
    assert b"Traceback" not in r.raw and b'File "' not in r.raw
    return dict(err)


def assert_job(job: dict[str, Any]) -> None:
    assert set(job) == JOB_KEYS, set(job) ^ JOB_KEYS
    assert job["job_id"].startswith("job_") and job["status"] in STATUSES and job["route"] in ROUTES
    assert isinstance(job["reason"], str) and job["reason"]
    for k in ("created_at", "updated_at"):
        assert TIME_RE.match(job[k]), job[k]
    for k in ("started_at", "finished_at"):
        assert job[k] is None or TIME_RE.match(job[k]), job[k]
    assert set(job["records"]) == {"total", "done"}
    assert isinstance(job["input"]["uri"], str)
    assert isinstance(job["output"]["uri"], str)  # known from the start
    assert (job["output"]["download_url"] is not None) == (job["status"] == "succeeded")
    assert set(job["backend"]) == {"name"}
    if job["status"] in ("succeeded", "failed", "cancelled"):
        assert job["finished_at"] is not None
    if job["status"] == "failed":
        assert job["error"]["code"] and job["error"]["message"]
    assert set(job["estimate"]) == {"duration_s", "cost_usd"} and job["estimate"]["duration_s"] >= 0
    assert (job["duration_s"] is not None) == (job["status"] == "succeeded")


def assert_job_reply(r: Reply, status: int) -> dict[str, Any]:
    assert r.status == status, r
    job: dict[str, Any] = r.json
    assert_job(job)
    assert r.header("Location") == f"/v1/jobs/{job['job_id']}"
    assert r.header("X-Router-Route") == job["route"]
    assert r.header("X-Request-Id")
    return job


def finished(url: str, job_id: str, key: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        job: dict[str, Any] = call("GET", f"{url}/v1/jobs/{job_id}", key=key).json
        return job if job["status"] in ("succeeded", "failed", "cancelled") else None

    result: dict[str, Any] = wait_for(done, timeout_s=60, interval_s=0.05)
    return result


def download(url: str) -> list[Any]:
    r = call("GET", url)
    assert r.status == 200 and r.header("X-Request-Id"), r
    return [json.loads(line) for line in r.raw.splitlines()]


# ---------------------------------------------------------------- our own models and configs


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


GATE_MODULE = '''
import os, time
class GateModel:
    """predict() waits until the release file exists: jobs that stay running until the test says."""
    n_features_in_ = 3
    def __init__(self, release):
        self.release = release
    def predict(self, x):
        deadline = time.monotonic() + 120
        while not os.path.exists(self.release) and time.monotonic() < deadline:
            time.sleep(0.02)
        return [0.0] * len(x)
'''


@pytest.fixture(scope="module")
def own_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.svm import LinearSVC

    d = tmp_path_factory.mktemp("contract")
    (d / "models").mkdir()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    joblib.dump(LinearRegression().fit(x, x @ [1.0, 2.0, -1.0] + 0.5), d / "models" / "reg.joblib")
    joblib.dump(LogisticRegression().fit(x, (x[:, 0] > 0).astype(int)), d / "models" / "clf.joblib")
    joblib.dump(RandomForestClassifier(n_estimators=5, random_state=0).fit(x, np.where(x[:, 1] > 0, "cat", "dog")), d / "models" / "strcls.joblib")
    joblib.dump(LinearSVC().fit(x, (x[:, 0] > 0).astype(int)), d / "models" / "svc.joblib")  # no predict_proba
    models = [
        {"name": "reg", "framework": "sklearn", "artifact": "file://./models/reg.joblib", "sha256": _sha(d / "models" / "reg.joblib")},
        {"name": "clf", "framework": "sklearn", "artifact": "file://./models/clf.joblib", "sha256": _sha(d / "models" / "clf.joblib")},
        {"name": "str.cls", "framework": "sklearn", "artifact": "file://./models/strcls.joblib", "sha256": _sha(d / "models" / "strcls.joblib"),
         "features": ["a", "b", "c"]},
        {"name": "svc", "framework": "sklearn", "artifact": "file://./models/svc.joblib", "sha256": _sha(d / "models" / "svc.joblib")},
        {"name": "tampered", "framework": "sklearn", "artifact": "file://./models/reg.joblib", "sha256": "ab" * 32},
    ]
    config = {
        "version": 1,
        "storage": {"artifacts": "file://./models", "jobs": "file://./.router/jobs", "job_table": "sqlite:///./.router/jobs.db"},
        "auth": {"api_keys": {OWN_ALICE: "alice", OWN_BOB: "bob"}},
        "models": models,
    }
    (d / "own.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return d


@pytest.fixture(scope="module")
def own(own_dir: Path) -> Iterator[Server]:
    srv = Server(own_dir / "own.yaml").start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    d = tmp_path_factory.mktemp("gate")
    (d / "py").mkdir()
    (d / "py" / "contract_gate.py").write_text(GATE_MODULE)
    release = d / "release"
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(d / "py"))
        import contract_gate

        joblib.dump(contract_gate.GateModel(str(release)), d / "gate.joblib")
        mp.setenv("PYTHONPATH", str(d / "py"))
        config = {
            "version": 1,
            "storage": {"artifacts": "file://.", "jobs": "file://./.router/jobs", "job_table": "sqlite:///./.router/jobs.db"},
            "auth": {"api_keys": {OWN_ALICE: "alice", OWN_BOB: "bob"}},
            "jobs": {"max_active_per_owner": 2, "chunk_records": 1},
            "models": [{"name": "gate", "framework": "sklearn", "artifact": "file://./gate.joblib", "sha256": _sha(d / "gate.joblib")}],
        }
        (d / "gate.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        srv = Server(d / "gate.yaml").start()
    try:
        yield srv, release
    finally:
        release.write_text("go")  # never leave a worker blocked
        srv.stop()


# ---------------------------------------------------------------- health, models, OpenAPI


def test_health_needs_no_credentials_and_names_the_config(own: Server) -> None:
    r = call("GET", own.url + "/v1/health")
    assert r.status == 200 and r.header("X-Request-Id")
    body = r.json
    assert body["status"] == "ok" and body["version"] and body["config_digest"].startswith("sha256:")
    assert (r.header("Content-Type") or "").startswith(JSON)


def test_models_list_framework_version_features_routes(server: Server, demo_dir: Path) -> None:
    config = yaml.safe_load((demo_dir / "operator.yaml").read_text())
    r = call("GET", server.url + "/v1/models", key=ALICE)
    assert r.status == 200, r
    models = {m["name"]: m for m in r.json["models"]}
    assert set(models) == {m["name"] for m in config["models"]}
    for spec in config["models"]:
        m = models[spec["name"]]
        assert m["framework"] == spec["framework"]
        assert m["version"] == "sha256:" + spec["sha256"]  # the artifact digest
        assert m["routes"] and set(m["routes"]) <= ROUTES
    assert models["iris"]["feature_count"] == 4 and models["iris"]["features"][0] == "sepal_length"
    assert "inline" in models["iris"]["routes"]
    assert "inline" not in models["forest-xl"]["routes"] and "batch-transform" in models["forest-xl"]["routes"]
    assert "endpoint" in models["digits-mlp"]["routes"]
    assert models["iris-serverless"]["routes"][0] == "serverless" and "inline" not in models["iris-serverless"]["routes"]


def test_model_detail_has_the_routing_envelope(server: Server) -> None:
    r = call("GET", server.url + "/v1/models/iris", key=ALICE)
    assert r.status == 200, r
    env = r.json["envelope"]
    assert set(env) >= {"inline", "lambda-job"}
    assert env["inline"]["feasible"] is True and env["inline"]["max_records"] >= 1
    assert_error(call("GET", server.url + "/v1/models/no-such-model", key=ALICE), 404, "model_not_found")


def test_url_encoded_names_and_trailing_slashes(own: Server) -> None:
    assert call("GET", own.url + "/v1/models/str%2Ecls", key=OWN_ALICE).json["name"] == "str.cls"
    assert call("GET", own.url + "/v1/models/str.cls/", key=OWN_ALICE).status == 200
    assert call("GET", own.url + "/v1/models/", key=OWN_ALICE).status == 200
    assert call("GET", own.url + "/v1/health/").status == 200
    assert call("GET", own.url + "//v1//health").status == 200  # merged slashes
    assert_error(call("GET", own.url + "/v1/jobs/job_%00", key=OWN_ALICE), 404, "not_found")  # not "405, allowed: GET"
    r = call("POST", own.url + "/v1/models/str%2Ecls/predict/", {"instances": [[1, 2, 3]]}, key=OWN_ALICE)
    assert r.status == 200 and r.header("X-Router-Route") == "inline", r


def test_openapi_is_valid_and_covers_every_documented_path(own: Server) -> None:
    r = call("GET", own.url + "/v1/openapi.json")
    assert r.status == 200 and r.header("X-Request-Id")
    spec = r.json
    validate(spec)
    assert spec["openapi"].startswith("3.")
    documented = {
        ("get", "/v1/health"), ("get", "/v1/models"), ("get", "/v1/models/{model}"),
        ("post", "/v1/models/{model}/route"), ("post", "/v1/models/{model}/predict"),
        ("post", "/v1/models/{model}/jobs"), ("get", "/v1/jobs/{job_id}"), ("get", "/v1/jobs"),
        ("delete", "/v1/jobs/{job_id}"), ("post", "/v1/uploads"), ("get", "/v1/openapi.json"),
    }
    served = {(m, p) for p, ops in spec["paths"].items() for m in ops}
    assert documented <= served, documented - served
    success = {  # docs/api.md's "success" column
        ("post", "/v1/models/{model}/jobs"): "202", ("delete", "/v1/jobs/{job_id}"): "202", ("post", "/v1/uploads"): "201",
    }
    for method, path in documented:
        op = spec["paths"][path][method]
        assert success.get((method, path), "200") in op["responses"], (method, path)
        for status, resp in op["responses"].items():
            assert "HTTPValidationError" not in json.dumps(resp), (method, path, status)  # validation errors are 400
    predict = spec["paths"]["/v1/models/{model}/predict"]["post"]
    assert "202" in predict["responses"]
    assert {"Prefer", "Idempotency-Key"} <= {p["name"] for p in predict["parameters"]}
    assert "securitySchemes" in spec["components"]
    assert spec["paths"]["/v1/health"]["get"]["security"] == []


# ---------------------------------------------------------------- sync predictions


def test_models_without_feature_names_string_labels_and_named_rows(own: Server) -> None:
    x = [[1.0, 2.0, 3.0], [-1.0, -1.0, 0.5]]
    r = call("POST", own.url + "/v1/models/reg/predict", {"instances": x}, key=OWN_ALICE)
    assert r.status == 200 and r.header("X-Router-Route") == "inline", r
    body = r.json
    assert body["model"] == "reg" and body["model_version"].startswith("sha256:") and body["route"] == "inline"
    assert body["predictions"] == pytest.approx([2.5, -3.0])
    assert body["decision"]["route"] == "inline" and body["decision"]["reason"]
    assert set(body["timing_ms"]) >= {"total", "model"}
    assert call("POST", own.url + "/v1/models/clf/predict", {"instances": x}, key=OWN_ALICE).json["predictions"] == [1, 0]
    r = call("POST", own.url + "/v1/models/str.cls/predict", {"instances": [[1, 2, 3], {"c": 3, "a": 1, "b": 2}, {"a": 0, "b": -2, "c": 0}]}, key=OWN_ALICE)
    assert r.status == 200, r
    assert r.json["predictions"][0] == r.json["predictions"][1] and set(r.json["predictions"]) <= {"cat", "dog"}
    assert call("POST", own.url + "/v1/models/svc/predict", {"instances": x, "output": "predict"}, key=OWN_ALICE).json["predictions"] == [1, 0]


def test_proba_and_output_not_supported(own: Server) -> None:
    r = call("POST", own.url + "/v1/models/clf/predict", {"instances": [[1, 2, 3]], "output": "proba"}, key=OWN_ALICE)
    assert r.status == 200, r
    (row,) = r.json["predictions"]
    assert len(row) == 2 and math.isclose(sum(row), 1.0, rel_tol=1e-6)
    for model in ("reg", "svc"):
        err = assert_error(call("POST", own.url + f"/v1/models/{model}/predict", {"instances": [[1, 2, 3]], "output": "proba"}, key=OWN_ALICE),
                           422, "output_not_supported")
        assert err["message"]


@pytest.mark.parametrize("instances", [
    [[1, 2]],                               # feature count
    [[1, 2, 3, 4]],
    [[1, 2, "x"]],                          # wrong types
    [[1, 2, True]],
    [[1, 2, None]],
    [[1, 2, [3]]],
    [{"a": 1, "b": 2, "c": 3}],             # names, but the model has none
    [[1, 2, 3], [1, 2]],                    # ragged
])
def test_invalid_input_is_422(own: Server, instances: list[Any]) -> None:
    assert_error(call("POST", own.url + "/v1/models/reg/predict", {"instances": instances}, key=OWN_ALICE), 422, "invalid_input")


@pytest.mark.parametrize("raw", [b'{"instances": [[1, 2, NaN]]}', b'{"instances": [[1, 2, Infinity]]}', b'{"instances": [[1, 2, -1e999]]}'])
def test_nan_and_infinity_are_422(own: Server, raw: bytes) -> None:
    r = call("POST", own.url + "/v1/models/reg/predict", raw=raw, key=OWN_ALICE, headers={"Content-Type": JSON})
    assert_error(r, 422, "invalid_input")


def test_named_rows_missing_or_unknown_features_are_422(own: Server) -> None:
    for row in ({"a": 1, "b": 2}, {"a": 1, "b": 2, "c": 3, "d": 4}):
        assert_error(call("POST", own.url + "/v1/models/str.cls/predict", {"instances": [row]}, key=OWN_ALICE), 422, "invalid_input")


def test_model_integrity_error_is_500_and_the_model_is_not_loaded(own: Server) -> None:
    for _ in range(2):  # refused every time, not loaded the second time
        assert_error(call("POST", own.url + "/v1/models/tampered/predict", {"instances": [[1, 2, 3]]}, key=OWN_ALICE), 500, "model_integrity_error")


def test_not_syncable_is_422_with_the_decision_or_202_with_prefer(server: Server) -> None:
    row = {"instances": [[0.0] * 20]}
    err = assert_error(call("POST", server.url + "/v1/models/forest-xl/predict", row, key=ALICE), 422, "sync_not_possible")
    decision = err["details"]["decision"]
    assert decision["route"] is None and decision["mode"] == "sync" and decision["candidates"]
    for prefer in ("respond-async", "wait=5, Respond-Async"):
        r = call("POST", server.url + "/v1/models/forest-xl/predict", row, key=ALICE, headers={"Prefer": prefer})
        job = assert_job_reply(r, 202)
        assert job["route"] == "batch-transform" and job["model"] == "forest-xl"
    # A syncable request ignores the preference.
    r = call("POST", server.url + "/v1/models/iris/predict", {"instances": [[5.1, 3.5, 1.4, 0.2]]}, key=ALICE, headers={"Prefer": "respond-async"})
    assert r.status == 200 and r.json["predictions"] == [0] and r.header("X-Router-Route") == "inline"


def test_endpoint_route_with_proba(server: Server) -> None:
    r = call("POST", server.url + "/v1/models/digits-mlp/predict", {"instances": [[0.0] * 64], "output": "proba"}, key=ALICE)
    assert r.status == 200 and r.header("X-Router-Route") == "endpoint", r
    assert len(r.json["predictions"][0]) == 10
    # The endpoint's own code refuses the row: 422 model_error with its message, as on AWS.
    err = assert_error(call("POST", server.url + "/v1/models/digits-mlp/predict", {"instances": [[1, 2]]}, key=ALICE), 422, "model_error")
    assert err["message"] == "the model on endpoint 'digits-mlp-local' refused the input: expected 64 features per record, got 2", err
    assert err["details"]["model_status"] == 400 and err["details"]["aws_error"] == "ModelError", err


def test_payload_too_large_sync_and_at_the_api_limit(server: Server, own: Server) -> None:
    rows = [[5.1, 3.5, 1.4, 0.2]] * 400_000  # ~8.8 MB: only the 6 MB sync payload limit is in the way
    err = assert_error(call("POST", server.url + "/v1/models/iris/predict", {"instances": rows}, key=ALICE), 413, "payload_too_large")
    assert "/v1/uploads" in err["message"] and "decision" in err["details"]
    big = b'{"instances": [' + b"[1,2,3]," * 1_400_000 + b"[1,2,3]]}"  # > 10 MB
    err = assert_error(call("POST", own.url + "/v1/models/reg/predict", raw=big, key=OWN_ALICE, headers={"Content-Type": JSON}),
                       413, "payload_too_large")
    assert "/v1/uploads" in err["message"]


# ---------------------------------------------------------------- the route dry run


def test_route_dry_run_description_and_body_forms(server: Server) -> None:
    r = call("POST", server.url + "/v1/models/forest-xl/route", {"mode": "job", "records": 250_000, "payload_bytes": 48_000_000}, key=ALICE)
    assert r.status == 200, r
    d = r.json
    assert set(d) >= {"route", "mode", "reason", "estimates", "candidates"}
    assert d["route"] == "batch-transform" and d["mode"] == "job" and set(d["estimates"]) == {"duration_s", "cost_usd"}
    for c in d["candidates"]:
        assert set(c) == {"route", "feasible", "reasons", "estimates"} and c["route"] in ROUTES
        assert c["feasible"] or c["reasons"]
    d = call("POST", server.url + "/v1/models/forest-xl/route", {"mode": "sync", "records": 10}, key=ALICE).json
    assert d["route"] is None and d["reason"]
    d = call("POST", server.url + "/v1/models/iris/route", {"instances": [[5.1, 3.5, 1.4, 0.2]]}, key=ALICE).json
    assert d["route"] == "inline" and d["mode"] == "sync"
    d = call("POST", server.url + "/v1/models/iris/route", {"instances": [[5.1, 3.5, 1.4, 0.2]], "output": "proba"}, key=ALICE).json
    assert d["route"] == "inline"
    d = call("POST", server.url + "/v1/models/iris/route", {"input": {"uri": "s3://bucket/rows.jsonl", "format": "jsonl"}}, key=ALICE).json
    assert d["mode"] == "job" and d["route"] in ("lambda-job", "batch-transform")


@pytest.mark.parametrize("body", [
    {}, {"mode": "sync"}, {"mode": "later", "records": 1}, {"mode": "sync", "records": 0}, {"mode": "sync", "records": -1},
    {"mode": "sync", "records": "10"}, {"mode": "sync", "records": True}, {"mode": "sync", "records": 1.5},
    {"mode": "sync", "records": 10, "payload_bytes": -1}, {"mode": "sync", "records": 10, "payload_bytes": "1"},
    {"mode": "sync", "records": 10, "colour": "red"}, {"instances": []}, {"instances": "rows"},
])
def test_route_dry_run_bad_bodies_are_400(server: Server, body: dict[str, Any]) -> None:
    assert_error(call("POST", server.url + "/v1/models/iris/route", body, key=ALICE), 400, "invalid_request")


# ---------------------------------------------------------------- request validation, media types, auth


@pytest.mark.parametrize("path,body", [
    ("predict", {}),
    ("predict", {"instances": []}),
    ("predict", {"instances": None}),
    ("predict", {"instances": "1,2,3"}),
    ("predict", {"instances": {"a": 1}}),
    ("predict", {"instances": 5}),
    ("predict", {"instances": [[1, 2, 3]], "output": "probability"}),
    ("predict", {"instances": [[1, 2, 3]], "output": None}),
    ("predict", {"instances": [[1, 2, 3]], "output": 1}),
    ("predict", {"instances": [[1, 2, 3]], "extra": True}),
    ("predict", [[1, 2, 3]]),
    ("predict", "instances"),
    ("jobs", {}),
    ("jobs", {"instances": []}),
    ("jobs", {"instances": [[1, 2, 3]], "input": {"uri": "s3://b/k"}}),
    ("jobs", {"input": "s3://b/k"}),
    ("jobs", {"input": {}}),
    ("jobs", {"input": {"uri": 5}}),
    ("jobs", {"input": {"uri": "http://example.com/x"}}),
    ("jobs", {"input": {"uri": "s3://b/k", "format": "parquet"}}),
    ("jobs", {"input": {"uri": "s3://b/k", "extra": 1}}),
    ("jobs", {"instances": [[1, 2, 3]], "output": "all"}),
])
def test_bad_json_types_are_400_invalid_request(own: Server, path: str, body: Any) -> None:
    assert_error(call("POST", own.url + f"/v1/models/reg/{path}", body, key=OWN_ALICE), 400, "invalid_request")


@pytest.mark.parametrize("raw", [b"{bad", b'{"instances": [[1,2,3]]', b"[" * 100_000, b"\xff\xfe"])
def test_malformed_json_is_400_invalid_json(own: Server, raw: bytes) -> None:
    assert_error(call("POST", own.url + "/v1/models/reg/predict", raw=raw, key=OWN_ALICE, headers={"Content-Type": JSON}), 400, "invalid_json")


def test_empty_body_is_400(own: Server) -> None:
    assert_error(call("POST", own.url + "/v1/models/reg/predict", raw=b"", key=OWN_ALICE, headers={"Content-Type": JSON}), 400, "invalid_request")


@pytest.mark.parametrize("ctype", ["application/json", "application/json; charset=utf-8", "Application/JSON;charset=UTF-8", "APPLICATION/JSON"])
def test_json_content_types_are_accepted(own: Server, ctype: str) -> None:
    r = call("POST", own.url + "/v1/models/reg/predict", raw=b'{"instances": [[1, 2, 3]]}', key=OWN_ALICE, headers={"Content-Type": ctype})
    assert r.status == 200, r


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/xml"])
def test_other_content_types_are_415(own: Server, ctype: str) -> None:
    for path in ("predict", "jobs", "route"):
        r = call("POST", own.url + f"/v1/models/reg/{path}", raw=b'{"instances": [[1, 2, 3]]}', key=OWN_ALICE, headers={"Content-Type": ctype})
        assert_error(r, 415, "unsupported_media_type")


def test_headers_are_case_insensitive(own: Server) -> None:
    r = call("POST", own.url + "/v1/models/reg/predict", raw=b'{"instances": [[1, 2, 3]]}',
             headers={"authorization": f"bearer {OWN_ALICE}", "content-type": JSON})
    assert r.status == 200, r
    conn = http.client.HTTPConnection("127.0.0.1", int(own.url.rsplit(":", 1)[1]), timeout=30)
    try:
        body = b'{"instances": [[1, 2, 3]]}'
        conn.putrequest("POST", "/v1/models/reg/jobs")
        for k, v in (("AUTHORIZATION", f"Bearer {OWN_ALICE}"), ("CONTENT-TYPE", JSON), ("IDEMPOTENCY-KEY", "upper-case-header"),
                     ("Content-Length", str(len(body)))):
            conn.putheader(k, v)
        conn.endheaders(body)
        resp = conn.getresponse()
        first = json.loads(resp.read())
        assert resp.status == 202 and resp.getheader("x-request-id"), first
    finally:
        conn.close()
    again = call("POST", own.url + "/v1/models/reg/jobs", {"instances": [[1, 2, 3]]}, key=OWN_ALICE, headers={"idempotency-key": "upper-case-header"})
    assert again.status == 200 and again.json["job_id"] == first["job_id"]


PROTECTED = [
    ("GET", "/v1/models", None), ("GET", "/v1/models/reg", None), ("POST", "/v1/models/reg/route", {"mode": "sync", "records": 1}),
    ("POST", "/v1/models/reg/predict", {"instances": [[1, 2, 3]]}), ("POST", "/v1/models/reg/jobs", {"instances": [[1, 2, 3]]}),
    ("GET", "/v1/jobs/job_01JAAAAAAAAAAAAAAAAAAAAAAA", None), ("GET", "/v1/jobs", None),
    ("DELETE", "/v1/jobs/job_01JAAAAAAAAAAAAAAAAAAAAAAA", None), ("POST", "/v1/uploads", None),
    ("POST", "/v1/models/nope/predict", {"instances": [[1]]}),
]


@pytest.mark.parametrize("auth", [None, "Bearer wrong-key", "Basic YWxpY2U6cHc=", "Bearer", f"Token {OWN_ALICE}", ""])
def test_missing_or_wrong_credentials_are_401_everywhere(own: Server, auth: str | None) -> None:
    hdrs = {} if auth is None else {"Authorization": auth}
    for method, path, body in PROTECTED:
        assert_error(call(method, own.url + path, body, headers=hdrs), 401, "unauthorized")
    # ... whatever the body: credentials are checked before the body is looked at.
    for raw, ctype in ((b"{bad", JSON), (b"x=1", "text/plain"), (b'{"instances": []}', JSON)):
        assert_error(call("POST", own.url + "/v1/models/reg/predict", raw=raw, headers={**hdrs, "Content-Type": ctype}), 401, "unauthorized")


def test_unknown_paths_and_methods(own: Server) -> None:
    for path in ("/", "/v2/models", "/v1/model", "/v1/models/reg/predictions", "/v1/jobs/a/b/c"):
        assert_error(call("GET", own.url + path, key=OWN_ALICE), 404, "not_found")
    for method, path, allowed in (
        ("DELETE", "/v1/models", {"GET"}), ("PUT", "/v1/models/reg/predict", {"POST"}), ("GET", "/v1/models/reg/predict", {"POST"}),
        ("POST", "/v1/jobs/job_01JAAAAAAAAAAAAAAAAAAAAAAA", {"GET", "DELETE"}), ("PATCH", "/v1/health", {"GET"}),
        ("GET", "/v1/uploads", {"POST"}),
    ):
        r = call(method, own.url + path, key=OWN_ALICE)
        assert_error(r, 405, "method_not_allowed")
        assert allowed <= {m.strip() for m in (r.header("Allow") or "").split(",")}


def test_head_and_options(own: Server) -> None:
    for path, key in (("/v1/health", None), ("/v1/models", OWN_ALICE), ("/v1/openapi.json", None)):
        get = call("GET", own.url + path, key=key)
        head = call("HEAD", own.url + path, key=key)
        assert head.status == 200 and head.raw == b"" and head.header("X-Request-Id"), head
        assert head.header("Content-Type") == get.header("Content-Type")
    assert call("HEAD", own.url + "/v1/models").status == 401
    r = call("OPTIONS", own.url + "/v1/models/reg/predict")
    assert r.status in (200, 204) and "POST" in (r.header("Allow") or "") and r.header("X-Request-Id")
    assert_error(call("OPTIONS", own.url + "/nowhere"), 404, "not_found")


def test_unknown_query_parameters_are_ignored(own: Server) -> None:
    assert call("GET", own.url + "/v1/health?verbose=1").status == 200
    assert call("GET", own.url + "/v1/models?x=1&y", key=OWN_ALICE).status == 200
    r = call("POST", own.url + "/v1/models/reg/predict?debug=true", {"instances": [[1, 2, 3]]}, key=OWN_ALICE)
    assert r.status == 200, r


def test_http_front_chunked_bodies_and_bad_lengths(own: Server) -> None:
    host, port = "127.0.0.1", int(own.url.rsplit(":", 1)[1])
    body = b'{"instances": [[1, 2, 3]]}'
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request("POST", "/v1/models/reg/predict", body=iter([body[:7], body[7:]]),
                     headers={"Authorization": f"Bearer {OWN_ALICE}", "Content-Type": JSON, "Transfer-Encoding": "chunked"},
                     encode_chunked=True)
        resp = conn.getresponse()
        assert resp.status == 200 and json.loads(resp.read())["predictions"] == pytest.approx([2.5])
    finally:
        conn.close()
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.putrequest("POST", "/v1/models/reg/predict")
        conn.putheader("Content-Length", "-5")
        conn.endheaders()
        resp = conn.getresponse()
        assert_error(Reply(resp.status, resp.headers, resp.read()), 400, "invalid_request")
    finally:
        conn.close()


# ---------------------------------------------------------------- jobs


def test_job_lifecycle_fields_output_and_owners(own: Server) -> None:
    x = [[1, 2, 3], [-1, -1, 0.5], [3, 3, 3]]
    job = assert_job_reply(call("POST", own.url + "/v1/models/clf/jobs", {"instances": x, "output": "proba"}, key=OWN_ALICE), 202)
    assert job["model"] == "clf" and job["records"]["total"] == 3 and job["status"] in ("queued", "running", "succeeded")
    done = finished(own.url, job["job_id"], OWN_ALICE)
    assert_job(done)
    assert done["status"] == "succeeded" and done["records"] == {"total": 3, "done": 3}
    assert done["started_at"] and done["finished_at"] and done["created_at"] <= done["started_at"] <= done["finished_at"]
    out = done["output"]
    assert set(out) >= {"uri", "download_url", "expires_at"} and TIME_RE.match(out["expires_at"])
    rows = download(out["download_url"])
    assert len(rows) == 3 and all(len(r) == 2 and math.isclose(sum(r), 1.0, rel_tol=1e-6) for r in rows)
    sync = call("POST", own.url + "/v1/models/clf/predict", {"instances": x, "output": "proba"}, key=OWN_ALICE).json["predictions"]
    assert np.allclose(rows, sync)
    # Another owner sees nothing: 404, never 403.
    for method in ("GET", "DELETE"):
        assert_error(call(method, own.url + f"/v1/jobs/{job['job_id']}", key=OWN_BOB), 404, "job_not_found")
    assert job["job_id"] not in {j["job_id"] for j in call("GET", own.url + "/v1/jobs", key=OWN_BOB).json["jobs"]}
    # Finished: cancelling is 409, and the job does not change.
    assert_error(call("DELETE", own.url + f"/v1/jobs/{job['job_id']}", key=OWN_ALICE), 409, "job_not_cancellable")
    assert call("GET", own.url + f"/v1/jobs/{job['job_id']}", key=OWN_ALICE).json["status"] == "succeeded"
    for missing in ("job_01JAAAAAAAAAAAAAAAAAAAAAAA", "nope", "job_%2E%2E"):
        assert_error(call("GET", own.url + f"/v1/jobs/{missing}", key=OWN_ALICE), 404, "job_not_found")


def test_jobs_with_string_labels_and_a_failing_job(own: Server) -> None:
    job = call("POST", own.url + "/v1/models/str.cls/jobs", {"instances": [[1, 2, 3], {"a": 0, "b": -2, "c": 0}]}, key=OWN_ALICE).json
    done = finished(own.url, job["job_id"], OWN_ALICE)
    assert done["status"] == "succeeded", done
    assert set(download(done["output"]["download_url"])) <= {"cat", "dog"}
    job = call("POST", own.url + "/v1/models/svc/jobs", {"instances": [[1, 2, 3]], "output": "proba"}, key=OWN_ALICE).json
    done = finished(own.url, job["job_id"], OWN_ALICE)
    if done["status"] == "failed":  # accepted, then failed with the documented code
        assert done["error"]["code"] == "output_not_supported" and done["output"]["download_url"] is None


def test_idempotency_keys(own: Server) -> None:
    url = own.url + "/v1/models/reg/jobs"
    body = {"instances": [[1, 2, 3], [4, 5, 6]]}
    first = assert_job_reply(call("POST", url, body, key=OWN_ALICE, headers={"Idempotency-Key": "contract-key-1"}), 202)
    again = assert_job_reply(call("POST", url, body, key=OWN_ALICE, headers={"Idempotency-Key": "contract-key-1"}), 200)
    assert again["job_id"] == first["job_id"]
    err = assert_error(call("POST", url, {"instances": [[1, 2, 3]]}, key=OWN_ALICE, headers={"Idempotency-Key": "contract-key-1"}),
                       422, "idempotency_key_reuse")
    assert err["details"]
    assert_error(call("POST", own.url + "/v1/models/clf/jobs", body, key=OWN_ALICE, headers={"Idempotency-Key": "contract-key-1"}),
                 422, "idempotency_key_reuse")  # same key, another model: another request
    bob = assert_job_reply(call("POST", url, body, key=OWN_BOB, headers={"Idempotency-Key": "contract-key-1"}), 202)
    assert bob["job_id"] != first["job_id"]  # keys are per owner
    assert call("POST", url, body, key=OWN_ALICE, headers={"Idempotency-Key": "k" * 255}).status == 202
    assert call("POST", url, body, key=OWN_ALICE, headers={"Idempotency-Key": "~!@#$%^&*()_+{}|:<>?"}).status == 202
    for bad in ("k" * 256, "tab\there"):
        assert_error(call("POST", url, body, key=OWN_ALICE, headers={"Idempotency-Key": bad}), 400, "invalid_request")
    # Without a key every submission is a new job.
    a = call("POST", url, body, key=OWN_ALICE).json["job_id"]
    b = call("POST", url, body, key=OWN_ALICE).json["job_id"]
    assert a != b


def test_uploads_jsonl_and_csv(own: Server) -> None:
    x = np.random.default_rng(1).normal(size=(50, 3)).round(3)
    expected = call("POST", own.url + "/v1/models/reg/predict", {"instances": x.tolist()}, key=OWN_ALICE).json["predictions"]
    payloads = {
        "jsonl": b"".join(json.dumps(r).encode() + b"\n" for r in x.tolist()),
        "csv": b"".join(",".join(str(v) for v in r).encode() + b"\n" for r in x.tolist()),
    }
    for fmt, data in payloads.items():
        r = call("POST", own.url + "/v1/uploads", key=OWN_ALICE)
        assert r.status == 201 and r.header("X-Request-Id"), r
        slot = r.json
        assert set(slot) == {"upload_url", "method", "headers", "input_uri", "expires_at"}
        assert slot["method"] == "PUT" and isinstance(slot["headers"], dict) and TIME_RE.match(slot["expires_at"])
        put = call(slot["method"], slot["upload_url"], raw=data, headers=slot["headers"])
        assert put.status in (200, 201, 204) and put.header("X-Request-Id"), put
        job = assert_job_reply(call("POST", own.url + "/v1/models/reg/jobs", {"input": {"uri": slot["input_uri"], "format": fmt}}, key=OWN_ALICE), 202)
        assert job["input"]["uri"] == slot["input_uri"]
        done = finished(own.url, job["job_id"], OWN_ALICE)
        assert done["status"] == "succeeded" and done["records"]["done"] == 50, done
        assert download(done["output"]["download_url"]) == pytest.approx(expected)
        # Bob cannot submit Alice's upload.
        assert_error(call("POST", own.url + "/v1/models/reg/jobs", {"input": {"uri": slot["input_uri"], "format": fmt}}, key=OWN_BOB),
                     422, "invalid_input")


def test_presigned_urls_answer_like_the_api(own: Server) -> None:
    slot = call("POST", own.url + "/v1/uploads", key=OWN_ALICE).json
    url = slot["upload_url"]
    assert_error(call("PUT", url + "0", raw=b"x"), 403, "forbidden")
    assert_error(call("GET", url), 403, "forbidden")  # signed for PUT only
    r = call("DELETE", url)
    assert_error(r, 405, "method_not_allowed")
    assert "PUT" in (r.header("Allow") or "")
    parts = urllib.parse.urlsplit(url)
    assert_error(call("GET", f"{parts.scheme}://{parts.netloc}/_local/objects/nothing"), 403, "forbidden")


def test_list_jobs_filters_pagination_and_bad_parameters(own: Server) -> None:
    url = own.url + "/v1/jobs"
    ids = [call("POST", own.url + "/v1/models/reg/jobs", {"instances": [[i, 0, 0]]}, key=OWN_BOB).json["job_id"] for i in range(5)]
    for job_id in ids:
        finished(own.url, job_id, OWN_BOB)
    page = call("GET", url, key=OWN_BOB).json
    assert set(page) == {"jobs", "next_cursor"}
    for j in page["jobs"]:
        assert_job(j)
    created = [j["created_at"] for j in page["jobs"]]
    assert created == sorted(created, reverse=True)  # newest first
    seen: list[str] = []
    cursor: str | None = None
    while True:
        q = "?limit=2" + (f"&cursor={urllib.parse.quote(cursor)}" if cursor else "")
        r = call("GET", url + q, key=OWN_BOB)
        assert r.status == 200, r
        assert len(r.json["jobs"]) <= 2
        seen += [j["job_id"] for j in r.json["jobs"]]
        cursor = r.json["next_cursor"]
        if not cursor:
            break
    assert seen == [j["job_id"] for j in page["jobs"]] and set(ids) <= set(seen)
    assert len(seen) == len(set(seen))
    assert {j["model"] for j in call("GET", url + "?model=reg", key=OWN_BOB).json["jobs"]} == {"reg"}
    assert call("GET", url + "?model=no-such-model", key=OWN_BOB).json == {"jobs": [], "next_cursor": None}
    assert {j["status"] for j in call("GET", url + "?status=succeeded", key=OWN_BOB).json["jobs"]} == {"succeeded"}
    assert call("GET", url + "?status=running&model=reg", key=OWN_BOB).status == 200
    huge = call("GET", url + "?limit=1000000", key=OWN_BOB)  # capped, not refused
    assert huge.status == 200 and len(huge.json["jobs"]) <= 100, huge
    assert call("GET", url + "?unknown=1", key=OWN_BOB).status == 200
    for q in ("?limit=0", "?limit=-1", "?limit=ten", "?cursor=garbage", "?cursor=" + "A" * 500, "?status=done"):
        assert_error(call("GET", url + q, key=OWN_BOB), 400, "invalid_request")
    # A cursor is only good for the owner it was made for.
    r = call("GET", url + "?limit=1", key=OWN_BOB).json
    assert r["next_cursor"]
    other = call("GET", url + f"?limit=1&cursor={urllib.parse.quote(r['next_cursor'])}", key=OWN_ALICE)
    assert other.status == 400 or all(j["job_id"] not in ids for j in other.json["jobs"])


def test_too_many_jobs_cancel_and_not_cancellable(gate: tuple[Server, Path]) -> None:
    srv, release = gate
    url = srv.url + "/v1/models/gate/jobs"
    body = {"instances": [[1, 2, 3], [4, 5, 6]]}
    a = assert_job_reply(call("POST", url, body, key=OWN_ALICE), 202)
    b = assert_job_reply(call("POST", url, body, key=OWN_ALICE), 202)
    err = assert_error(call("POST", url, body, key=OWN_ALICE), 429, "too_many_jobs")
    assert err["message"]
    assert call("POST", url, body, key=OWN_BOB).status == 202  # the limit is per owner
    active = call("GET", srv.url + "/v1/jobs?status=running", key=OWN_ALICE).json["jobs"] + \
        call("GET", srv.url + "/v1/jobs?status=queued", key=OWN_ALICE).json["jobs"]
    assert {a["job_id"], b["job_id"]} == {j["job_id"] for j in active}
    # Cancel: 202 Job, cancelling (or already cancelled); repeating it is harmless.
    assert_error(call("DELETE", srv.url + f"/v1/jobs/{a['job_id']}", key=OWN_BOB), 404, "job_not_found")
    r = call("DELETE", srv.url + f"/v1/jobs/{a['job_id']}", key=OWN_ALICE)
    assert r.status == 202, r
    assert_job(r.json)
    assert r.json["status"] in ("cancelling", "cancelled")
    r = call("DELETE", srv.url + f"/v1/jobs/{a['job_id']}/", key=OWN_ALICE)
    assert r.status == 202 and r.json["status"] in ("cancelling", "cancelled")
    release.write_text("go")
    assert finished(srv.url, a["job_id"], OWN_ALICE)["status"] == "cancelled"
    done = finished(srv.url, b["job_id"], OWN_ALICE)
    assert done["status"] == "succeeded" and download(done["output"]["download_url"]) == [0.0, 0.0]
    r = call("DELETE", srv.url + f"/v1/jobs/{a['job_id']}", key=OWN_ALICE)
    assert r.status == 202 and r.json["status"] == "cancelled"  # a cancelled job stays cancelled
    assert_error(call("DELETE", srv.url + f"/v1/jobs/{b['job_id']}", key=OWN_ALICE), 409, "job_not_cancellable")
    assert call("POST", url, body, key=OWN_ALICE).status == 202  # room again


# ---------------------------------------------------------------- found by this suite outside the API layer, now fixed


def test_nan_in_a_job_body_is_422(own: Server) -> None:
    r = call("POST", own.url + "/v1/models/reg/jobs", raw=b'{"instances": [[1, 2, NaN]]}', key=OWN_ALICE, headers={"Content-Type": JSON})
    assert_error(r, 422, "invalid_input")


def test_feature_count_of_a_model_without_names(own: Server) -> None:
    assert call("POST", own.url + "/v1/models/reg/predict", {"instances": [[1, 2, 3]]}, key=OWN_ALICE).status == 200
    models = {m["name"]: m for m in call("GET", own.url + "/v1/models", key=OWN_ALICE).json["models"]}
    assert models["reg"]["feature_count"] == 3


# ---------------------------------------------------------------- found by fuzzing (schemathesis and hand-made requests)


def _raw_http(srv: Server, data: bytes) -> Reply:
    """Bytes on a socket, one response read back: for requests urllib will not send."""
    import socket

    port = int(srv.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(data)
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        return Reply(resp.status, resp.headers, resp.read())


@pytest.mark.parametrize("method", ["TRACE", "PROPFIND", "M-SEARCH"])
def test_methods_the_http_front_has_no_handler_for_are_405_not_501(own: Server, method: str) -> None:
    # http.server answered these itself: 501 with an HTML page.
    for path, allowed in (("/v1/health", "GET"), ("/v1/jobs", "GET"), ("/v1/models/reg/predict", "POST")):
        r = call(method, own.url + path, key=OWN_ALICE)
        assert_error(r, 405, "method_not_allowed")
        assert allowed in (r.header("Allow") or "")
    assert_error(call("TRACE", own.url + "/nowhere", key=OWN_ALICE), 404, "not_found")
    assert call("GET", own.url + "/v1/health").status == 200


@pytest.mark.parametrize("request_bytes", [
    b"GET /v1/jobs/" + b"a" * 70_000 + b" HTTP/1.1\r\nConnection: close\r\n\r\n",           # request line over 64 KiB (was 414 HTML)
    b"GET /v1/health HTTP/1.1\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(150)) + b"Connection: close\r\n\r\n",  # was 431 HTML
    b"GET /v1/health HTTP/1.1\r\nX-Big: " + b"a" * 70_000 + b"\r\nConnection: close\r\n\r\n",
    b"GET /v1/health HTTP/2.0\r\nConnection: close\r\n\r\n",                                  # was 505 HTML without a status line
    b"GET /v1/health HTTP/1.1 junk\r\nConnection: close\r\n\r\n",
    b"POST /v1/models/reg/predict HTTP/1.1\r\nContent-Length: \xb2\r\nConnection: close\r\n\r\n{}",  # '\xb2'.isdigit(): was a 500
    b"POST /v1/models/reg/predict HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n-2\r\n{}\r\n0\r\n\r\n",  # was a 500
    b"POST /v1/models/reg/predict HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 7\r\nConnection: close\r\n\r\n{}",
])
def test_malformed_http_requests_are_400_in_the_envelope(own: Server, request_bytes: bytes) -> None:
    assert_error(_raw_http(own, request_bytes), 400, "invalid_request")
    assert call("GET", own.url + "/v1/health").status == 200  # still serving


def test_integers_past_the_json_parsers_digit_limit(own: Server) -> None:
    # json.loads refuses integer literals over 4300 digits with a plain ValueError: was a 500.
    huge = b"9" * 5000
    r = call("POST", own.url + "/v1/models/reg/predict", raw=b'{"instances": [[' + huge + b', 1, 2]]}', key=OWN_ALICE, headers={"Content-Type": JSON})
    assert_error(r, 422, "invalid_input")
    r = call("POST", own.url + "/v1/models/reg/jobs", raw=b'{"instances": [[-' + huge + b', 1, 2]]}', key=OWN_ALICE, headers={"Content-Type": JSON})
    assert_error(r, 422, "invalid_input")
    r = call("POST", own.url + "/v1/models/reg/route", raw=b'{"mode": "sync", "records": ' + huge + b"}", key=OWN_ALICE, headers={"Content-Type": JSON})
    assert_error(r, 400, "invalid_request")


@pytest.mark.parametrize("payload_bytes", [10**400, 2**64])
def test_route_payload_bytes_beyond_any_float_is_400(own: Server, payload_bytes: int) -> None:
    # 10**400 overflowed float division in routing.fmt_bytes: was a 500.
    body = {"mode": "job", "records": 1, "payload_bytes": payload_bytes}
    assert_error(call("POST", own.url + "/v1/models/reg/route", body, key=OWN_ALICE), 400, "invalid_request")
    body = {"instances": [[1, 2, 3]], "payload_bytes": payload_bytes}
    assert_error(call("POST", own.url + "/v1/models/reg/route", body, key=OWN_ALICE), 400, "invalid_request")
    assert call("POST", own.url + "/v1/models/reg/route", {"mode": "job", "records": 1, "payload_bytes": 10**18}, key=OWN_ALICE).status == 200


def test_values_beyond_float32_for_a_tree_model_are_422(own: Server) -> None:
    # Finite as float64, but sklearn's trees cast to float32 and raise: was a 500 internal_error.
    for v in (1e300, -1.7e308, 3.5e38):
        err = assert_error(call("POST", own.url + "/v1/models/str.cls/predict", {"instances": [[1, v, 3]]}, key=OWN_ALICE), 422, "invalid_input")
        assert err["details"]["index"] == 0 and err["details"]["feature"] == "b", err
    assert call("POST", own.url + "/v1/models/str.cls/predict", {"instances": [[1, 3e38, 3]]}, key=OWN_ALICE).status == 200


def test_non_finite_predictions_are_422_not_invalid_json(own: Server) -> None:
    # A linear model fed 1e308 predicts inf: the body was `"predictions":[Infinity]` (not JSON),
    # and a job with the same row failed as internal_error.
    r = call("POST", own.url + "/v1/models/reg/predict", {"instances": [[1, 2, 3], [1e308, 1e308, 0]]}, key=OWN_ALICE)
    err = assert_error(r, 422, "invalid_input")
    assert err["details"]["index"] == 1
    json.loads(r.raw, parse_constant=lambda c: pytest.fail(f"{c} in the body"))
    job = call("POST", own.url + "/v1/models/reg/jobs", {"instances": [[1e308, 1e308, 0]]}, key=OWN_ALICE).json
    done = finished(own.url, job["job_id"], OWN_ALICE)
    assert done["status"] == "failed" and done["error"]["code"] == "invalid_input", done


@pytest.mark.parametrize("uri", [
    "s3://" + "b" * 300 + "/k",        # bucket names the S3 client refuses itself (ParamValidationError):
    "s3://bü😀/k",                      # these were 503 backend_unavailable "S3 unreachable"
    "s3://bucket",                      # no key: HeadObject with Key="" is refused by the client too
    "s3://bucket/",
    "s3://b/k\x00",
    "s3://b/" + "é" * 600,              # a key over S3's 1024 bytes
    "file://",
])
def test_input_uris_s3_would_refuse_are_400(own: Server, uri: str) -> None:
    for path in ("jobs", "route"):
        assert_error(call("POST", own.url + f"/v1/models/reg/{path}", {"input": {"uri": uri}}, key=OWN_ALICE), 400, "invalid_request")


def test_openapi_states_the_statuses_every_operation_can_answer(own: Server) -> None:
    spec = call("GET", own.url + "/v1/openapi.json").json
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            assert "500" in op["responses"], (method, path)
            if method == "post":
                assert {"413", "415"} <= set(op["responses"]), (method, path)
    # ... as they do: a text body on /v1/uploads is 415, a body over the API limit on /route is 413.
    r = call("POST", own.url + "/v1/uploads", raw=b"x", key=OWN_ALICE, headers={"Content-Type": "text/plain"})
    assert_error(r, 415, "unsupported_media_type")
    big = b'{"mode": "sync", "records": 1, "pad": "' + b"x" * 11_000_000 + b'"}'
    assert_error(call("POST", own.url + "/v1/models/reg/route", raw=big, key=OWN_ALICE, headers={"Content-Type": JSON}), 413, "payload_too_large")


def test_nasty_names_ids_and_instances_stay_4xx(own: Server) -> None:
    """Hand-made requests a schema-driven fuzzer rarely sends: all answered in the envelope."""
    for path in ("/v1/models/%C3%AFris%F0%9F%98%80", "/v1/models/%ff%fe", "/v1/models/a%00b", "/v1/models/" + "m" * 10_000):
        r = call("GET", own.url + path, key=OWN_ALICE)
        assert_error(r, 404, r.json["error"]["code"])
        assert r.json["error"]["code"] in ("model_not_found", "not_found")
    for job_id in ("job_%C3%BC%F0%9F%98%80", "job_%ff", "job_%0a%0d", "job_" + "A" * 10_000):
        for method in ("GET", "DELETE"):
            r = call(method, own.url + f"/v1/jobs/{job_id}", key=OWN_ALICE)
            assert_error(r, 404, r.json["error"]["code"])
            assert r.json["error"]["code"] in ("job_not_found", "not_found")
    deep = b'{"instances": [' + b"[" * 900 + b"1" + b"]" * 900 + b"]}"
    assert_error(call("POST", own.url + "/v1/models/reg/predict", raw=deep, key=OWN_ALICE, headers={"Content-Type": JSON}), 422, "invalid_input")
    many = {"instances": [{f"k{i}": i for i in range(5000)}]}
    assert_error(call("POST", own.url + "/v1/models/str.cls/predict", many, key=OWN_ALICE), 422, "invalid_input")
    assert_error(call("POST", own.url + "/v1/models/reg/predict", {**{f"k{i}": i for i in range(5000)}, "instances": [[1, 2, 3]]}, key=OWN_ALICE),
                 400, "invalid_request")
    assert call("GET", own.url + "/v1/health").status == 200


def test_values_beyond_float32_on_an_onnx_endpoint_are_422(server: Server) -> None:
    row = [1e300] + [0.0] * 63
    # The endpoint's model code refuses it (it computes in float32): the model's 422 model_error.
    err = assert_error(call("POST", server.url + "/v1/models/digits-mlp/predict", {"instances": [row]}, key=ALICE), 422, "model_error")
    assert "32-bit float range" in err["message"], err
