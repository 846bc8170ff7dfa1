"""The API Lambda handler called directly with API Gateway REST proxy events (the shape AWS sends),
on local adapters: IAM-identity owners, base64 bodies, headers on every response, and the served
OpenAPI document matching the routes the handler really serves."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import joblib
import numpy as np
import pytest
from openapi_spec_validator import validate
from sklearn.tree import DecisionTreeClassifier

from router.auth import IamAuth
from router.bootstrap import Runtime, build_local
from router.config import load_config
from router.handlers.api import make_handler
from router.local.server import LocalContext

ALICE_ARN = "arn:aws:iam::123456789012:user/alice"
BOB_ARN = "arn:aws:iam::123456789012:user/bob"


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    d = tmp_path_factory.mktemp("api")
    x = np.random.default_rng(0).normal(size=(100, 3))
    joblib.dump(DecisionTreeClassifier(max_depth=3, random_state=0).fit(x, (x[:, 0] > 0).astype(int)), d / "tree.joblib")
    sha = hashlib.sha256((d / "tree.joblib").read_bytes()).hexdigest()
    (d / "op.yaml").write_text(
        f"models:\n  - {{name: tree, framework: sklearn, artifact: file://./tree.joblib, sha256: {sha}, features: [a, b, c]}}\n"
    )
    rt = build_local(load_config(d / "op.yaml"), public_base_url="http://127.0.0.1:9")
    rt.auth = IamAuth()  # as on AWS: the owner is the caller's IAM identity
    yield rt
    rt.close()


@pytest.fixture(scope="module")
def handler(runtime: Runtime) -> Any:
    return make_handler(runtime)


def event(method: str, path: str, body: Any = None, *, arn: str | None = ALICE_ARN, headers: dict[str, str] | None = None,
          query: dict[str, str] | None = None, b64: bool = False) -> dict[str, Any]:
    """An API Gateway REST API proxy event (payload format 1.0), as AWS sends it."""
    raw = body if isinstance(body, bytes | str) or body is None else json.dumps(body)
    if isinstance(raw, bytes) or (b64 and raw is not None):
        raw = base64.b64encode(raw if isinstance(raw, bytes) else raw.encode()).decode()
        b64 = True
    hdrs = {"Content-Type": "application/json", "Host": "abc.execute-api.us-east-1.amazonaws.com", **(headers or {})}
    identity: dict[str, Any] = {"sourceIp": "203.0.113.9", "userArn": arn, "caller": arn and "AIDAEXAMPLE"}
    return {
        "resource": "/v1/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": hdrs,
        "multiValueHeaders": {k: [v] for k, v in hdrs.items()},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": {"proxy": path.removeprefix("/v1/")},
        "stageVariables": None,
        "requestContext": {
            "resourceId": "abc123", "resourcePath": "/v1/{proxy+}", "httpMethod": method, "path": f"/prod{path}",
            "accountId": "123456789012", "stage": "prod", "requestId": f"req-{hashlib.md5(path.encode()).hexdigest()[:8]}",
            "identity": identity if arn else {"sourceIp": "203.0.113.9"}, "apiId": "abc",
        },
        "body": raw,
        "isBase64Encoded": b64,
    }


def call(handler: Any, ev: dict[str, Any]) -> tuple[int, dict[str, list[str]], Any]:
    resp = handler(ev, LocalContext(ev["requestContext"]["requestId"], 29))
    headers = {k: [str(x) for x in v] for k, v in (resp.get("multiValueHeaders") or {}).items()}
    for k, v in (resp.get("headers") or {}).items():
        headers.setdefault(k, [str(v)])
    return resp["statusCode"], headers, json.loads(resp["body"]) if resp.get("body") else None


def test_predict_with_an_iam_identity(handler: Any) -> None:
    status, headers, body = call(handler, event("POST", "/v1/models/tree/predict", {"instances": [[1, 0, 0], {"a": -1, "b": 0, "c": 0}]}))
    assert status == 200, body
    assert body["predictions"] == [1, 0]
    assert headers["X-Router-Route"] == ["inline"]
    assert headers["X-Request-Id"] == ["req-" + hashlib.md5(b"/v1/models/tree/predict").hexdigest()[:8]]


@pytest.mark.parametrize("fast_path", [True, False])
def test_the_recorded_sync_time_includes_parsing_the_body(runtime: Runtime, fast_path: bool) -> None:
    # The estimate covers parsing, routing and predicting (docs/routing.md "Estimates"): the
    # recorder's sample lies between the response's model time and its total.
    h = make_handler(runtime, fast_path=fast_path)
    status, _, body = call(h, event("POST", "/v1/models/tree/predict", {"instances": [[1, 0, 0]] * 500}))
    assert status == 200, body
    sample = runtime.service.recorder.samples("tree")["inline"][-1]
    assert sample.records == 500
    assert body["timing_ms"]["model"] <= round(sample.measured_s * 1000, 3) <= body["timing_ms"]["total"]
    assert sample.measured_s * 1000 > body["timing_ms"]["model"]


def test_no_identity_is_401_with_the_envelope(handler: Any) -> None:
    status, headers, body = call(handler, event("GET", "/v1/models", arn=None))
    assert status == 401 and body["error"]["code"] == "unauthorized"
    assert body["error"]["request_id"] == headers["X-Request-Id"][0]


def test_base64_body(handler: Any) -> None:
    status, _, body = call(handler, event("POST", "/v1/models/tree/predict", {"instances": [[1, 2, 3]]}, b64=True))
    assert status == 200 and body["predictions"] == [1]


def test_body_that_is_not_utf8_is_a_400(handler: Any) -> None:
    status, _, body = call(handler, event("POST", "/v1/models/tree/predict", b"\xff\xfe{\x00"))
    assert status == 400 and body["error"]["code"] == "invalid_json"


def test_jobs_belong_to_the_iam_caller(handler: Any) -> None:
    status, headers, job = call(handler, event("POST", "/v1/models/tree/jobs", {"instances": [[1, 2, 3]]}))
    assert status == 202 and headers["Location"] == [f"/v1/jobs/{job['job_id']}"]
    assert call(handler, event("GET", f"/v1/jobs/{job['job_id']}"))[0] == 200
    status, _, body = call(handler, event("GET", f"/v1/jobs/{job['job_id']}", arn=BOB_ARN))
    assert status == 404 and body["error"]["code"] == "job_not_found"
    status, _, page = call(handler, event("GET", "/v1/jobs", arn=BOB_ARN, query={"limit": "5"}))
    assert status == 200 and page["jobs"] == []


def test_query_validation(handler: Any) -> None:
    status, _, body = call(handler, event("GET", "/v1/jobs", query={"limit": "0"}))
    assert status == 400 and body["error"]["code"] == "invalid_request"
    status, _, body = call(handler, event("GET", "/v1/jobs", query={"cursor": "not-a-cursor"}))
    assert status == 400 and body["error"]["code"] == "invalid_request"


def test_openapi_matches_the_served_routes(handler: Any) -> None:
    status, _, spec = call(handler, event("GET", "/v1/openapi.json"))
    assert status == 200
    validate(spec)  # a valid OpenAPI 3 document
    served = {(m.lower(), p) for p, ops in spec["paths"].items() for m in ops}
    documented = {  # docs/api.md's endpoint table
        ("get", "/v1/health"), ("get", "/v1/models"), ("get", "/v1/models/{model}"),
        ("post", "/v1/models/{model}/route"), ("post", "/v1/models/{model}/predict"),
        ("post", "/v1/models/{model}/jobs"), ("get", "/v1/jobs/{job_id}"), ("get", "/v1/jobs"),
        ("delete", "/v1/jobs/{job_id}"), ("post", "/v1/uploads"), ("get", "/v1/openapi.json"),
    }
    assert documented <= served
    # Every documented route really answers (not 404/405) with the method the spec gives it.
    for method, path in sorted(documented):
        concrete = path.replace("{model}", "tree").replace("{job_id}", "job_01JAAAAAAAAAAAAAAAAAAAAAAA")
        body = {"instances": [[1, 2, 3]]} if method == "post" else None
        st, _, _ = call(handler, event(method.upper(), concrete, body))
        assert st not in (404, 405) or "job_id" in path, (method, path, st)
    predict = spec["paths"]["/v1/models/{model}/predict"]["post"]
    schema_ref = json.dumps(predict["requestBody"])
    assert "PredictBody" in schema_ref
    assert {"400", "404", "413", "422"} <= set(predict["responses"])
    # As strict as the handler: a request the document allows is not a 400 (schemathesis ST202).
    (status_param,) = [p for p in spec["paths"]["/v1/jobs"]["get"]["parameters"] if p["name"] == "status"]
    allowed = status_param["schema"]["anyOf"][0]["enum"]
    for value in allowed:
        assert call(handler, event("GET", "/v1/jobs", query={"status": value}))[0] == 200, value
    assert call(handler, event("GET", "/v1/jobs", query={"status": "ok"}))[0] == 400
    one_of = spec["components"]["schemas"]["JobBody"]["oneOf"]
    assert {tuple(branch["required"]) for branch in one_of} == {("instances",), ("input",)}
    assert call(handler, event("POST", "/v1/models/tree/jobs", {}))[0] == 400
    (key_param,) = [p for p in spec["paths"]["/v1/models/{model}/jobs"]["post"]["parameters"] if p["name"] == "Idempotency-Key"]
    pattern = re.compile(key_param["schema"]["pattern"])
    for key in ("k-1", "a b", "é", "~!"):
        st = call(handler, event("POST", "/v1/models/tree/jobs", {"instances": [[1, 2, 3]]}, headers={"Idempotency-Key": key}))[0]
        assert (st == 202) == bool(pattern.match(key)), (key, st)


def test_model_detail_shows_the_estimate_against_what_happened(handler: Any, runtime: Runtime) -> None:
    status, _, body = call(handler, event("POST", "/v1/models/tree/predict", {"instances": [[1, 0, 0]] * 3}))
    assert status == 200 and body["decision"]["estimates"]["duration_s"] > 0
    status, _, job = call(handler, event("POST", "/v1/models/tree/jobs", {"instances": [[1, 2, 3]] * 4}))
    assert status == 202 and job["estimate"]["duration_s"] > 0 and job["duration_s"] is None
    for _ in range(600):  # the local worker pool runs it; wait for the end, not for a time
        if runtime.jobs is None or not runtime.jobs.get(ALICE_ARN, job["job_id"]).status.active:
            break
        time.sleep(0.05)
    status, _, done = call(handler, event("GET", f"/v1/jobs/{job['job_id']}"))
    assert done["status"] == "succeeded" and done["duration_s"] >= 0
    status, _, detail = call(handler, event("GET", "/v1/models/tree"))
    assert status == 200
    cal = detail["calibration"]
    assert cal["routes"]["inline"]["samples"] >= 1 and cal["routes"]["inline"]["ratio"]["median"] > 0
    assert cal["routes"]["lambda-job"]["samples"] >= 1 and cal["routes"]["lambda-job"]["records"]["max"] == 4
    assert cal["learning"] == "off"
    _, _, bob = call(handler, event("GET", "/v1/models/tree", arn=BOB_ARN))
    assert "lambda-job" not in bob["calibration"]["routes"]  # jobs: the caller's own
    _, _, spec = call(handler, event("GET", "/v1/openapi.json"))
    schemas = spec["components"]["schemas"]
    assert {"calibration"} <= set(schemas["ModelDetail"]["properties"])
    assert {"estimate", "duration_s"} <= set(schemas["JobModel"]["properties"])


@pytest.fixture(scope="module")
def slow_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    """A model whose measured per-record time rules sync out from 100 records on (lambda-job takes them)."""
    d = tmp_path_factory.mktemp("slow")
    x = np.random.default_rng(1).normal(size=(50, 3))
    joblib.dump(DecisionTreeClassifier(max_depth=2, random_state=0).fit(x, (x[:, 0] > 0).astype(int)), d / "slow.joblib")
    sha = hashlib.sha256((d / "slow.joblib").read_bytes()).hexdigest()
    (d / "op.yaml").write_text(
        f"models:\n  - {{name: slow, framework: sklearn, artifact: file://./slow.joblib, sha256: {sha}, features: [a, b, c],"
        " profile: {load_s: 0.1, per_record_ms: 500.0}}\n"
    )
    rt = build_local(load_config(d / "op.yaml"), public_base_url="http://127.0.0.1:9")
    rt.auth = IamAuth()
    yield rt
    rt.close()


@pytest.mark.parametrize("fast_path", [True, False])
def test_the_service_decides_the_async_fallback_and_the_handler_renders_it(slow_runtime: Runtime, fast_path: bool) -> None:
    """No sync route: 422 with the Decision, or with `Prefer: respond-async` a 202 job (the same one for a
    repeated Idempotency-Key); a request a sync route takes is answered at once, Prefer or not."""
    h = make_handler(slow_runtime, fast_path=fast_path)
    rows = {"instances": [[0.1, 0.2, 0.3]] * 100}
    status, _, body = call(h, event("POST", "/v1/models/slow/predict", rows))
    assert status == 422 and body["error"]["code"] == "sync_not_possible"
    assert body["error"]["details"]["decision"]["route"] is None
    key = {"Prefer": "respond-async", "Idempotency-Key": f"fallback-{fast_path}"}
    status, headers, job = call(h, event("POST", "/v1/models/slow/predict", rows, headers=key))
    assert status == 202 and headers["Location"] == [f"/v1/jobs/{job['job_id']}"]
    assert headers["X-Router-Route"] == [job["route"]] == ["lambda-job"] and job["records"]["total"] == 100
    status, _, again = call(h, event("POST", "/v1/models/slow/predict", rows, headers=key))
    assert status == 202 and again["job_id"] == job["job_id"]
    status, headers, body = call(h, event("POST", "/v1/models/slow/predict", {"instances": [[0.1, 0.2, 0.3]]},
                                          headers={"Prefer": "respond-async"}))
    assert status == 200 and headers["X-Router-Route"] == ["inline"] and len(body["predictions"]) == 1
