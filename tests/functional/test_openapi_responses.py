"""Every answer the real API handler gives matches the OpenAPI document it serves.

The handler (router.handlers.api, on local adapters, called with API Gateway proxy events) answers
each documented operation: success and the error statuses it documents. Each body is validated
against that operation's response schema in /v1/openapi.json, made closed (an object may hold only
the properties the schema names), so a field the models lack, a field they promise that never
comes, a wrong type or an undocumented status fails here.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any

import joblib
import numpy as np
import pytest
from openapi_schema_validator import OAS31Validator
from sklearn.tree import DecisionTreeClassifier

from router.bootstrap import Runtime, build_local
from router.config import load_config
from router.handlers.api import make_handler
from tests.functional.test_api_handler import BOB_ARN, call, event

FEATURES = ["a", "b", "c"]


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    d = tmp_path_factory.mktemp("openapi")
    x = np.random.default_rng(0).normal(size=(100, 3))
    joblib.dump(DecisionTreeClassifier(max_depth=3, random_state=0).fit(x, (x[:, 0] > 0).astype(int)), d / "tree.joblib")
    sha = hashlib.sha256((d / "tree.joblib").read_bytes()).hexdigest()
    (d / "op.yaml").write_text(
        # A small sync payload limit, so a modest body is too large for any synchronous route.
        "runtime: {sync_payload_mb: 0.01, endpoint_payload_mb: 0.01, serverless_payload_mb: 0.01}\n"
        "models:\n"
        f"  - {{name: tree, framework: sklearn, artifact: file://./tree.joblib, sha256: {sha}, features: [a, b, c],\n"
        "     description: 'A depth-3 decision tree on three features.'}\n"
        f"  - {{name: bare, framework: sklearn, artifact: file://./tree.joblib, sha256: {sha}}}\n"
        # Every optional backend but a real-time endpoint (whose model server would be a process).
        f"  - {{name: full, framework: sklearn, artifact: file://./tree.joblib, sha256: {sha}, features: [a, b, c],\n"
        "     serverless: {memory_mb: 1024, max_concurrency: 1}, batch_transform: {instance_type: ml.m5.large},\n"
        "     async_inference: {instance_type: ml.m5.large}}\n"
    )
    from router.auth import IamAuth

    rt = build_local(load_config(d / "op.yaml"), public_base_url="http://127.0.0.1:9")
    rt.auth = IamAuth()
    yield rt
    rt.close()


@pytest.fixture(scope="module")
def handler(runtime: Runtime) -> Any:
    return make_handler(runtime)


@pytest.fixture(scope="module")
def spec(handler: Any) -> dict[str, Any]:
    status, _, doc = call(handler, event("GET", "/v1/openapi.json"))
    assert status == 200
    return dict(doc)


def closed(schema: Any) -> Any:
    """`schema` with every object that lists its properties closed to others."""
    if isinstance(schema, dict):
        out = {k: closed(v) for k, v in schema.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [closed(v) for v in schema]
    return schema


CHECKED: set[tuple[str, str, str]] = set()


def check(spec: dict[str, Any], method: str, template: str, status: int, body: Any) -> None:
    """`body`, answered with `status` by `method template`, is what the document says it is."""
    op = spec["paths"][template][method.lower()]
    responses = op["responses"]
    assert str(status) in responses, f"{method} {template} answered {status}, which it does not document ({sorted(responses)}): {body}"
    content = responses[str(status)].get("content", {}).get("application/json")
    assert content is not None, f"{method} {template} {status}: no JSON schema documented"
    root = {"components": closed(copy.deepcopy(spec.get("components", {}))), **closed(content["schema"])}
    errors = sorted(OAS31Validator(root).iter_errors(body), key=lambda e: list(e.absolute_path))
    assert not errors, f"{method} {template} {status}: " + "; ".join(
        f"{'/'.join(map(str, e.absolute_path)) or '<body>'}: {e.message}" for e in errors[:5]
    )
    CHECKED.add((method.lower(), template, str(status)))


def answer(handler: Any, spec: dict[str, Any], method: str, template: str, path: str, body: Any = None,
           expect: int | None = None, **kw: Any) -> Any:
    status, _, doc = call(handler, event(method, path, body, **kw))
    if expect is not None:
        assert status == expect, doc
    check(spec, method, template, status, doc)
    return doc


def finished(handler: Any, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120  # a bound on waiting, not an assertion about speed
    while True:
        _, _, job = call(handler, event("GET", f"/v1/jobs/{job_id}"))
        if job["status"] in ("succeeded", "failed", "cancelled") or time.monotonic() > deadline:
            return dict(job)
        time.sleep(0.05)


def test_every_documented_answer_matches_the_served_document(handler: Any, spec: dict[str, Any], runtime: Runtime) -> None:
    # health, models
    answer(handler, spec, "GET", "/v1/health", "/v1/health", expect=200)
    models = answer(handler, spec, "GET", "/v1/models", "/v1/models", expect=200)
    assert {m["name"] for m in models["models"]} == {"tree", "bare", "full"}
    assert models["models"][0]["description"] == "A depth-3 decision tree on three features."
    answer(handler, spec, "GET", "/v1/models", "/v1/models", expect=401, arn=None)
    answer(handler, spec, "GET", "/v1/models/{model}", "/v1/models/tree", expect=200)
    answer(handler, spec, "GET", "/v1/models/{model}", "/v1/models/bare", expect=200)
    full = answer(handler, spec, "GET", "/v1/models/{model}", "/v1/models/full", expect=200)
    assert full["serverless"] and full["batch_transform"] and full["async_inference"], full
    answer(handler, spec, "GET", "/v1/models/{model}", "/v1/models/nope", expect=404)
    answer(handler, spec, "GET", "/v1/models/{model}", "/v1/models/tree", expect=401, arn=None)

    # route dry runs
    route = "/v1/models/{model}/route"
    answer(handler, spec, "POST", route, "/v1/models/tree/route", {"records": 10}, expect=200)
    answer(handler, spec, "POST", route, "/v1/models/tree/route", {"records": 10**9, "mode": "job"}, expect=200)
    answer(handler, spec, "POST", route, "/v1/models/tree/route", {"instances": [[1, 2, 3]]}, expect=200)
    for mode in ("sync", "job"):
        answer(handler, spec, "POST", route, "/v1/models/full/route", {"records": 10**6, "mode": mode}, expect=200)
    answer(handler, spec, "POST", route, "/v1/models/tree/route", {"records": "ten"}, expect=400)
    answer(handler, spec, "POST", route, "/v1/models/tree/route", "{not json", expect=400)
    answer(handler, spec, "POST", route, "/v1/models/nope/route", {"records": 1}, expect=404)
    answer(handler, spec, "POST", route, "/v1/models/tree/route", {"records": 1}, expect=401, arn=None)
    answer(handler, spec, "POST", route, "/v1/models/tree/route", "records=1", expect=415, headers={"Content-Type": "text/plain"})

    # predictions
    predict = "/v1/models/{model}/predict"
    answer(handler, spec, "POST", predict, "/v1/models/tree/predict", {"instances": [[1, 0, 0], {"a": -1, "b": 0, "c": 0}]}, expect=200)
    answer(handler, spec, "POST", predict, "/v1/models/tree/predict", {"instances": [[1, 0, 0]], "output": "proba"}, expect=200)
    answer(handler, spec, "POST", predict, "/v1/models/tree/predict", {"instances": [[1, 0]]}, expect=422)
    answer(handler, spec, "POST", predict, "/v1/models/tree/predict", {"instances": []}, expect=400)
    answer(handler, spec, "POST", predict, "/v1/models/tree/predict", "{", expect=400)
    answer(handler, spec, "POST", predict, "/v1/models/nope/predict", {"instances": [[1, 2, 3]]}, expect=404)
    answer(handler, spec, "POST", predict, "/v1/models/tree/predict", {"instances": [[1, 2, 3]]}, expect=401, arn=None)
    answer(handler, spec, "POST", predict, "/v1/models/tree/predict", "x", expect=415, headers={"Content-Type": "text/csv"})
    big = {"instances": [[0.123456789, 0.123456789, 0.123456789]] * 2000}  # ~70 KB: over the 10 KB sync limit
    answer(handler, spec, "POST", predict, "/v1/models/tree/predict", big, expect=413)
    queued = answer(handler, spec, "POST", predict, "/v1/models/tree/predict", big, expect=202, headers={"Prefer": "respond-async"})

    # jobs
    jobs = "/v1/models/{model}/jobs"
    job = answer(handler, spec, "POST", jobs, "/v1/models/tree/jobs", {"instances": [[1, 2, 3]] * 5}, expect=202,
                 headers={"Idempotency-Key": "openapi-1"})
    answer(handler, spec, "POST", jobs, "/v1/models/tree/jobs", {"instances": [[1, 2, 3]] * 5}, expect=200,
           headers={"Idempotency-Key": "openapi-1"})
    answer(handler, spec, "POST", jobs, "/v1/models/tree/jobs", {"instances": [[3, 2, 1]]}, expect=422,
           headers={"Idempotency-Key": "openapi-1"})
    answer(handler, spec, "POST", jobs, "/v1/models/tree/jobs", {"instances": [[1, 2, 3]], "input": {"uri": "s3://b/k"}}, expect=400)
    answer(handler, spec, "POST", jobs, "/v1/models/nope/jobs", {"instances": [[1, 2, 3]]}, expect=404)
    answer(handler, spec, "POST", jobs, "/v1/models/tree/jobs", {"instances": [[1, 2, 3]]}, expect=401, arn=None)
    assert finished(handler, job["job_id"])["status"] == "succeeded"
    assert finished(handler, queued["job_id"])["status"] == "succeeded"
    answer(handler, spec, "GET", "/v1/jobs/{job_id}", f"/v1/jobs/{job['job_id']}", expect=200)
    answer(handler, spec, "GET", "/v1/jobs/{job_id}", f"/v1/jobs/{job['job_id']}", expect=404, arn=BOB_ARN)
    answer(handler, spec, "GET", "/v1/jobs/{job_id}", f"/v1/jobs/{job['job_id']}", expect=401, arn=None)
    failing = answer(handler, spec, "POST", jobs, "/v1/models/tree/jobs", {"instances": [[1, 2]]}, expect=202)
    assert finished(handler, failing["job_id"])["status"] == "failed"
    answer(handler, spec, "GET", "/v1/jobs/{job_id}", f"/v1/jobs/{failing['job_id']}", expect=200)
    answer(handler, spec, "GET", "/v1/jobs", "/v1/jobs", expect=200)
    answer(handler, spec, "GET", "/v1/jobs", "/v1/jobs", expect=200, query={"status": "succeeded", "limit": "1"})
    answer(handler, spec, "GET", "/v1/jobs", "/v1/jobs", expect=400, query={"limit": "0"})
    answer(handler, spec, "GET", "/v1/jobs", "/v1/jobs", expect=401, arn=None)
    answer(handler, spec, "DELETE", "/v1/jobs/{job_id}", f"/v1/jobs/{job['job_id']}", expect=409)
    answer(handler, spec, "DELETE", "/v1/jobs/{job_id}", f"/v1/jobs/{job['job_id']}", expect=404, arn=BOB_ARN)
    answer(handler, spec, "DELETE", "/v1/jobs/{job_id}", f"/v1/jobs/{job['job_id']}", expect=401, arn=None)

    # A job the worker has not picked up yet (submitted with no queue), cancelled.
    assert runtime.jobs is not None
    queue, runtime.jobs.queue = runtime.jobs.queue, None
    try:
        waiting = answer(handler, spec, "POST", jobs, "/v1/models/tree/jobs", {"instances": [[1, 2, 3]]}, expect=202)
    finally:
        runtime.jobs.queue = queue
    answer(handler, spec, "DELETE", "/v1/jobs/{job_id}", f"/v1/jobs/{waiting['job_id']}", expect=202)
    assert answer(handler, spec, "GET", "/v1/jobs/{job_id}", f"/v1/jobs/{waiting['job_id']}", expect=200)["status"] == "cancelled"

    # uploads
    answer(handler, spec, "POST", "/v1/uploads", "/v1/uploads", expect=201)
    answer(handler, spec, "POST", "/v1/uploads", "/v1/uploads", expect=401, arn=None)

    # Every documented operation was answered with its success status at least once.
    for template, ops in spec["paths"].items():
        for method, op in ops.items():
            if template == "/v1/openapi.json":
                continue
            ok = min(s for s in op["responses"] if s.startswith("2"))
            assert (method, template, ok) in CHECKED, f"{method.upper()} {template} {ok} was never checked"


def test_the_check_fails_on_a_field_the_document_lacks(spec: dict[str, Any]) -> None:
    body = {"status": "ok", "version": "1", "config_digest": "x", "runtime": "local", "surprise": 1}
    with pytest.raises(AssertionError, match="surprise"):
        check(spec, "GET", "/v1/health", 200, body)
    with pytest.raises(AssertionError, match="does not document"):
        check(spec, "GET", "/v1/health", 418, body)
    json.dumps(spec)  # the document itself is plain JSON
