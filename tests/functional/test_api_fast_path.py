"""The API handler's hot routes (predict, job status, health) answered without the Powertools
resolver: the same answers as the resolver gives (status, headers, body) for valid and hostile
requests alike; Powertools' event handler is not even imported until another route needs it; the
handler is safe to call from many threads; HTTP API v2 / function URL events; one request's id
on its own log lines only; metrics only when on."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression

from router.bootstrap import Runtime, build_local
from router.config import load_config
from router.handlers import telemetry
from router.handlers.api import ROUTE_TABLE, make_handler, routes_for
from router.local.server import LocalContext, to_event

KEY_ALICE = "key-alice-0123456789"
KEY_BOB = "key-bob-0123456789"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def config_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("fast")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    joblib.dump(LogisticRegression().fit(x, (x[:, 0] > 0).astype(int)), d / "lr.joblib")
    sha = hashlib.sha256((d / "lr.joblib").read_bytes()).hexdigest()
    (d / "op.yaml").write_text(
        f"auth:\n  api_keys: {{{KEY_ALICE}: alice, {KEY_BOB}: bob}}\n"
        f"models:\n  - {{name: lr, framework: sklearn, artifact: file://./lr.joblib, sha256: {sha}, features: [a, b, c]}}\n"
    )
    return d / "op.yaml"


@pytest.fixture(scope="module")
def runtime(config_path: Path) -> Iterator[Runtime]:
    rt = build_local(load_config(config_path), public_base_url="http://127.0.0.1:9", state_dir=config_path.parent / "state")
    rt.service.runner.load(rt.config.models[0])  # warm: both handlers see the same routing state
    yield rt
    rt.close()


@pytest.fixture(scope="module")
def fast(runtime: Runtime) -> Any:
    return make_handler(runtime)


@pytest.fixture(scope="module")
def ref(runtime: Runtime) -> Any:
    return make_handler(runtime, fast_path=False)


def ev(method: str, path: str, body: bytes | str | None = None, *, key: str | None = KEY_ALICE,
       headers: dict[str, str] | None = None, rid: str = "req-1") -> dict[str, Any]:
    hdrs = {"Content-Type": "application/json"} if body is not None else {}
    if key is not None:
        hdrs["Authorization"] = f"Bearer {key}"
    hdrs.update(headers or {})
    raw = body.encode() if isinstance(body, str) else body
    return to_event(method, path, hdrs, raw, rid, "127.0.0.1")


def answer(handler: Any, event: dict[str, Any]) -> tuple[int, dict[str, list[str]], Any]:
    resp = handler(copy.deepcopy(event), LocalContext("ctx", 29.0))
    headers = {k: [str(v) for v in vs] for k, vs in (resp.get("multiValueHeaders") or {}).items()}
    for k, v in (resp.get("headers") or {}).items():
        headers.setdefault(k, [str(v)])
    body = json.loads(resp["body"]) if resp.get("body") else None
    if isinstance(body, dict) and "timing_ms" in body:
        body["timing_ms"] = "measured"
    return resp["statusCode"], headers, body


ROW = [0.5, -1.0, 2.0]
PREDICT_BODIES: list[bytes | str | None] = [
    json.dumps({"instances": [ROW]}),
    json.dumps({"instances": [ROW, {"a": 1, "b": 2, "c": 3}], "output": "proba"}),
    json.dumps({"instances": [ROW], "output": "predict"}),
    json.dumps({"instances": [ROW] * 50}),
    None, "", "null", "{}", "[]", '"instances"', "5", "true",
    json.dumps({"instances": []}), json.dumps({"instances": None}), json.dumps({"instances": 5}),
    json.dumps({"instances": "1,2,3"}), json.dumps({"instances": {"a": 1}}),
    json.dumps({"instances": [ROW], "output": "probability"}), json.dumps({"instances": [ROW], "output": None}),
    json.dumps({"instances": [ROW], "output": 1}), json.dumps({"instances": [ROW], "output": ["proba"]}),
    json.dumps({"instances": [ROW], "extra": True}), json.dumps({"output": "proba"}), json.dumps([[1, 2, 3]]),
    json.dumps({"instances": [[1, 2]]}), json.dumps({"instances": [[1, 2, "x"]]}), json.dumps({"instances": [[1, 2, None]]}),
    json.dumps({"instances": [{"a": 1, "b": 2}]}), '{"instances": [[1, 2, NaN]]}', '{"instances": [[1, 2, -1e999]]}',
    "{bad", '{"instances": [[1,2,3]]', "[" * 100_000, '{"instances": [[1, 2, ' + "9" * 5000 + "]]}",
    '{"instances": [[1, 2, 3]], "instances": [[4, 5, 6]]}', '{"instances": [{"a": 1, "a": 2, "b": 3, "c": 4}]}',
    b"\xff\xfe{\x00",
    # The decoder's fast branch (no string but the keys and the output's name) against the general one:
    '{"instances": [[1, 2, true]]}', '{"instances": [[1, 2, false]]}', '{"instances": [[1, 2, null]], "output": "proba"}',
    '{"instances": [[1, true, 3]], "output": "predict"}', '{"instances": [[1, {}, 3]]}', '{"instances": [{}]}',
    '{"instances": [[1, [2], 3]]}', '{"output": "proba", "instances": [[1, 2, 3]]}', '{"instances": [[1, 2, "3"]]}',
    '{"\\u0069nstances": [[1, 2, 3]]}', '{"instances": [[1, 2, 3]], "output": "pr\\u006fba"}',
    '{"instances": [[1, 2, 3]], "output": "proba", "instances": [[1, 2, 3]]}',
    '{"instances": [[1, 2, 3]], "instances": [[1, 2, 3]], "output": 1}', '{"instances": [[1, 2, 3]], "out\\"put": 1}',
    '{"instances": [[1, 2, 1e999]]}', '{"instances": [[1, 2, ' + "9" * 400 + "]]}", "[[1, 2, 3]]", '{"instances": [[1, 2, 3]]} x',
]


@pytest.mark.parametrize("body", PREDICT_BODIES, ids=lambda b: repr(b)[:40])
def test_predict_answers_like_the_resolver(fast: Any, ref: Any, body: bytes | str | None) -> None:
    event = ev("POST", "/v1/models/lr/predict", body)
    got, want = answer(fast, event), answer(ref, event)
    assert got == want
    assert got[0] < 500, got


@pytest.mark.parametrize("event", [
    ev("POST", "/v1/models/nope/predict", json.dumps({"instances": [ROW]})),
    ev("POST", "/v1/models/lr/predict", json.dumps({"instances": [ROW]}), key=None),
    ev("POST", "/v1/models/lr/predict", "{bad", key="wrong"),
    ev("POST", "/v1/models/lr/predict", "x=1", headers={"Content-Type": "text/plain"}),
    ev("POST", "/v1/models/lr/predict", json.dumps({"instances": [ROW]}), headers={"Content-Type": "Application/JSON; charset=UTF-8"}),
    ev("POST", "/v1/models/lr/predict/", json.dumps({"instances": [ROW]})),
    ev("POST", "//v1//models/lr/predict", json.dumps({"instances": [ROW]})),
    ev("POST", "/v1/models/lr/predict?debug=1", json.dumps({"instances": [ROW]})),
    ev("GET", "/v1/models/lr/predict"), ev("PUT", "/v1/models/lr/predict", "{}"), ev("OPTIONS", "/v1/models/lr/predict", key=None),
    ev("GET", "/v1/health", key=None), ev("HEAD", "/v1/health", key=None), ev("GET", "/v1/health?verbose=1", key=None),
    ev("GET", "/v1/jobs/job_01JAAAAAAAAAAAAAAAAAAAAAAA"), ev("GET", "/v1/jobs/job_01JAAAAAAAAAAAAAAAAAAAAAAA", key=None),
    ev("GET", "/v1/jobs/%20x"), ev("GET", "/v1/jobs/a/b"), ev("GET", "/nowhere"),
], ids=lambda e: f"{e['httpMethod']} {e['path']}")
def test_other_hot_requests_answer_like_the_resolver(fast: Any, ref: Any, event: dict[str, Any]) -> None:
    assert answer(fast, event) == answer(ref, event)


def test_job_status_answers_like_the_resolver(fast: Any, ref: Any) -> None:
    status, headers, job = answer(fast, ev("POST", "/v1/models/lr/jobs", json.dumps({"instances": [ROW]})))
    assert status == 202 and headers["Location"] == [f"/v1/jobs/{job['job_id']}"]
    # Compare a finished job (a running one may move between the two calls), without the
    # presigned link, which is signed afresh with the clock on every call.
    deadline = time.monotonic() + 300
    while answer(fast, ev("GET", f"/v1/jobs/{job['job_id']}"))[2]["status"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, "the job never finished"
        time.sleep(0.05)

    def unsigned(a: tuple[int, dict[str, list[str]], Any]) -> tuple[int, dict[str, list[str]], Any]:
        body = copy.deepcopy(a[2])
        out = body.get("output") or {}
        assert ("download_url" in out) is (a[0] == 200)
        out.pop("download_url", None), out.pop("expires_at", None)
        return a[0], a[1], body

    for key in (KEY_ALICE, KEY_BOB):
        event = ev("GET", f"/v1/jobs/{job['job_id']}", key=key)
        got = answer(fast, event)
        assert unsigned(got) == unsigned(answer(ref, event))
        assert got[0] == (200 if key == KEY_ALICE else 404)


def test_the_resolver_serves_exactly_the_route_table(fast: Any, runtime: Runtime) -> None:
    assert sorted(fast.resolver().route_table) == sorted(routes_for(runtime))
    assert len(routes_for(runtime)) == len(ROUTE_TABLE)  # this runtime has jobs: every route


COLD = """
import json, sys
from pathlib import Path
from router.bootstrap import build_local
from router.config import load_config
from router.handlers.api import make_handler
from router.local.server import LocalContext, to_event
seen = {"import": "aws_lambda_powertools.event_handler" in sys.modules}
h = make_handler(build_local(load_config(Path(sys.argv[1])), state_dir=Path(sys.argv[2])))
def call(method, path, body=None):
    hdrs = {"Authorization": "Bearer KEY", "Content-Type": "application/json"}
    return h(to_event(method, path, hdrs, body, "r", "127.0.0.1"), LocalContext("r", 29))["statusCode"]
seen["predict"] = call("POST", "/v1/models/lr/predict", b'{"instances": [[1, 2, 3]]}')
seen["health"] = call("GET", "/v1/health")
seen["quiet"] = sorted(m for m in sys.modules if m.startswith("aws_lambda_powertools"))  # nothing logged or measured
seen["bad"] = call("POST", "/v1/models/lr/predict", b'{"instances": []}')
seen["status"] = call("GET", "/v1/jobs/job_01JAAAAAAAAAAAAAAAAAAAAAAA")
seen["hot"] = "aws_lambda_powertools.event_handler" in sys.modules
seen["models"] = call("GET", "/v1/models")
seen["after_models"] = "aws_lambda_powertools.event_handler" in sys.modules
print(json.dumps(seen))
""".replace("KEY", KEY_ALICE)


def test_the_hot_routes_never_import_the_powertools_event_handler(config_path: Path, tmp_path: Path) -> None:
    cfg = config_path
    env = {**os.environ, "POWERTOOLS_METRICS_DISABLED": "true", "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", COLD, str(cfg), str(tmp_path)], env=env, check=True, capture_output=True, text=True)
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen == {"import": False, "predict": 200, "health": 200, "quiet": [], "bad": 400, "status": 404, "hot": False,
                    "models": 200, "after_models": True}


# ---------------------------------------------------------------- hardening (regressions)


def test_duplicate_json_keys_are_400_invalid_json(fast: Any, ref: Any) -> None:
    for handler in (fast, ref):
        for raw in ('{"instances": [[1, 2, 3]], "instances": [[4, 5, 6]]}', '{"instances": [{"a": 1, "a": 2, "b": 3, "c": 4}]}'):
            status, _, body = answer(handler, ev("POST", "/v1/models/lr/predict", raw))
            assert status == 400 and body["error"]["code"] == "invalid_json", body
            assert "duplicate key" in body["error"]["message"]
        status, _, body = answer(handler, ev("POST", "/v1/models/lr/jobs", '{"instances": [[1, 2, 3]], "output": "predict", "output": "proba"}'))
        assert status == 400 and body["error"]["code"] == "invalid_json", body


def test_the_predict_body_is_what_the_encoder_makes_of_to_dict(fast: Any, runtime: Runtime) -> None:
    # The fast path encodes the model/decision part of the answer once per decision: every answer
    # must still be exactly the compact encoding of Prediction.to_dict(), first call or cached.
    from router.domain import OutputKind
    from router.handlers.api_common import dumps_json as _dumps

    spec = runtime.config.models[0]
    for rows in ([ROW], [ROW], [ROW] * 50, [ROW], [[1e-7, 2.5, 1e300]] * 3):
        resp = fast(ev("POST", "/v1/models/lr/predict", json.dumps({"instances": rows})), LocalContext("c", 29.0))
        assert resp["statusCode"] == 200, resp
        body = json.loads(resp["body"])
        assert resp["body"] == _dumps(body)  # byte for byte the encoder's output: order, separators, floats
        want = runtime.service.predict(spec, rows, OutputKind.PREDICT, 100).to_dict(body["timing_ms"]["total"])
        want["timing_ms"] = body["timing_ms"]
        assert body == want and list(body) == list(want)
        assert body["timing_ms"]["total"] >= body["timing_ms"]["model"] >= 0


def test_which_requests_an_http_front_may_answer_on_its_event_loop(config_path: Path, tmp_path: Path) -> None:
    # Only health and a small predict of a loaded, in-process-only model whose last call was quick:
    # nothing that may wait on an endpoint, the job table or a model load.
    cfg = load_config(config_path)
    data = cfg.model_dump(mode="json")
    data["models"].append({**data["models"][0], "name": "lr-ep", "endpoint": {"name": "lr-ep"}})
    rt = build_local(type(cfg).model_validate(data), public_base_url="http://127.0.0.1:9", state_dir=tmp_path)
    try:
        h = make_handler(rt)
        h.quick_s = 60.0  # "quick" here whatever the machine's load: the first call (with the load) counts too
        small, ok = len(json.dumps({"instances": [ROW]})), "POST /v1/models/lr/predict"
        assert h.answers_at_once("GET", "/v1/health", "", 0) and h.answers_at_once("HEAD", "/v1/health", "", 0)
        assert not h.answers_at_once("POST", "/v1/models/lr/predict", "", small)  # not loaded yet
        for model in ("lr", "lr-ep"):
            status, _, body = answer(h, ev("POST", f"/v1/models/{model}/predict", json.dumps({"instances": [ROW]})))
            assert status == 200 and body["route"] == "inline", (model, body)
        assert h.answers_at_once("POST", "/v1/models/lr/predict", "", small), ok
        h.quick_s = 0.0
        assert not h.answers_at_once("POST", "/v1/models/lr/predict", "", small)  # its last call took longer
        h.quick_s = 60.0
        assert not h.answers_at_once("POST", "/v1/models/lr/predict", "respond-async", small)
        assert not h.answers_at_once("POST", "/v1/models/lr/predict", "", 64 * 1024)
        assert not h.answers_at_once("POST", "/v1/models/lr-ep/predict", "", small)  # may go to its endpoint
        for method, path in (("POST", "/v1/models/nope/predict"), ("GET", "/v1/models/lr/predict"), ("POST", "/v1/models/lr/jobs"),
                             ("GET", "/v1/jobs/job_01JAAAAAAAAAAAAAAAAAAAAAAA"), ("GET", "/v1/models"), ("POST", "//v1/models/lr/predict")):
            assert not h.answers_at_once(method, path, "", small), (method, path)
        assert not make_handler(rt, fast_path=False).answers_at_once("GET", "/v1/health", "", 0)
    finally:
        rt.close()


def test_a_body_over_the_sync_payload_limit_is_413_before_its_rows_are_read(fast: Any) -> None:
    raw = json.dumps({"instances": [ROW] * 450_000})  # ~7 MB: over the 6 MB sync payload, under the API's 10 MB
    assert 6 * 1024 * 1024 < len(raw) < 10 * 1024 * 1024
    status, _, body = answer(fast, ev("POST", "/v1/models/lr/predict", raw))
    assert status == 413 and body["error"]["code"] == "payload_too_large", body
    assert "/v1/uploads" in body["error"]["message"] and body["error"]["details"]["decision"]["route"] is None
    # Not even parsed: malformed JSON of that size is the same 413.
    status, _, body = answer(fast, ev("POST", "/v1/models/lr/predict", raw[:-3]))
    assert status == 413, body


def test_log_lines_carry_their_own_request_id_only(runtime: Runtime, fast: Any) -> None:
    entered, release = threading.Event(), threading.Event()
    auth = runtime.auth

    class Waiting:  # holds request A inside the handler while other lines are logged
        def owner(self, event: Any) -> str:
            if event["requestContext"]["requestId"] == "req-A":
                entered.set()
                release.wait(30)
            return str(auth.owner(event))

    log = telemetry.logger()
    buf = io.StringIO()
    stream = log.registered_handler.setStream(buf)
    runtime.auth = Waiting()  # type: ignore[assignment]
    try:
        a = threading.Thread(target=fast, args=(ev("POST", "/v1/models/nope/predict", json.dumps({"instances": [ROW]}), rid="req-A"), None))
        a.start()
        assert entered.wait(30)
        logging.getLogger("router.jobs").warning("a background line")
        fast(ev("POST", "/v1/models/nope/predict", json.dumps({"instances": [ROW]}), rid="req-B"), None)
        release.set()
        a.join(30)
    finally:
        runtime.auth = auth
        log.registered_handler.setStream(stream)
    lines = [json.loads(line) for line in buf.getvalue().splitlines()]
    by_message = {(rec["message"], rec.get("request_id")): rec for rec in lines}
    background = [rec for rec in lines if rec["message"] == "a background line"]
    assert len(background) == 1 and "request_id" not in background[0] and "correlation_id" not in background[0]
    for rid in ("req-A", "req-B"):
        rec = by_message[("request rejected", rid)]
        assert rec["correlation_id"] == rid and rec["code"] == "model_not_found"


def test_concurrent_requests_from_many_threads(fast: Any) -> None:
    """`router serve` calls one handler from many threads: hot and resolver routes together."""
    results: list[tuple[str, int, Any]] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        for j in range(5):
            rid = f"t{i}-{j}"
            event = (ev("POST", "/v1/models/lr/predict", json.dumps({"instances": [ROW] * (i + 1)}), rid=rid) if i % 2 == 0
                     else ev("GET", "/v1/models/lr", rid=rid))
            resp = fast(event, None)
            with lock:
                results.append((rid, resp["statusCode"], resp))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 30
    for rid, status, resp in results:
        assert status == 200, resp
        assert resp["multiValueHeaders"]["X-Request-Id"] == [rid]
        i = int(rid[1:].split("-")[0])
        body = json.loads(resp["body"])
        if i % 2 == 0:
            assert len(body["predictions"]) == i + 1
        else:
            assert body["name"] == "lr"


def v2_event(method: str, raw_path: str, body: str | None = None, *, headers: dict[str, str] | None = None,
             stage: str = "$default", iam_arn: str | None = None, cookies: list[str] | None = None) -> dict[str, Any]:
    """An HTTP API (payload format 2.0) / Lambda function URL event."""
    ctx: dict[str, Any] = {
        "accountId": "123456789012", "apiId": "abc", "domainName": "abc.lambda-url.us-east-1.on.aws",
        "http": {"method": method, "path": raw_path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.9", "userAgent": "curl/8"},
        "requestId": "v2-req", "routeKey": "$default", "stage": stage, "time": "01/Dec/2026:09:00:00 +0000", "timeEpoch": 1796115600000,
    }
    if iam_arn:
        ctx["authorizer"] = {"iam": {"accessKey": "AKIA", "accountId": "123456789012", "callerId": "AIDA", "userArn": iam_arn, "userId": "AIDA"}}
    return {
        "version": "2.0", "routeKey": "$default", "rawPath": raw_path, "rawQueryString": "",
        "headers": {"content-type": "application/json", **(headers or {})}, "requestContext": ctx,
        "body": body, "isBase64Encoded": False, **({"cookies": cookies} if cookies else {}),
    }


def test_http_api_v2_and_function_url_events(fast: Any, runtime: Runtime) -> None:
    body = json.dumps({"instances": [ROW]})
    resp = fast(v2_event("POST", "/v1/models/lr/predict", body, headers={"authorization": f"Bearer {KEY_ALICE}"}, cookies=["a=1"]), None)
    assert resp["statusCode"] == 200, resp
    assert "multiValueHeaders" not in resp  # payload 2.0 responses take single-value headers
    assert resp["headers"]["X-Router-Route"] == "inline" and resp["headers"]["X-Request-Id"] == "v2-req"
    assert len(json.loads(resp["body"])["predictions"]) == 1
    # A named stage is not part of the API's path; the resolver's routes and errors work too.
    resp = fast(v2_event("GET", "/prod/v1/models", headers={"authorization": f"Bearer {KEY_ALICE}"}, stage="prod"), None)
    assert resp["statusCode"] == 200 and json.loads(resp["body"])["models"][0]["name"] == "lr", resp
    resp = fast(v2_event("GET", "/v1/models"), None)
    assert resp["statusCode"] == 401 and json.loads(resp["body"])["error"]["request_id"] == "v2-req"
    resp = fast(v2_event("PATCH", "/v1/health"), None)
    assert resp["statusCode"] == 405 and "GET" in resp["headers"]["Allow"]
    # IAM authorization (AWS_IAM on the HTTP API or the function URL): the caller's ARN is the owner.
    from router.auth import IamAuth

    auth = runtime.auth
    runtime.auth = IamAuth()
    try:
        arn = "arn:aws:iam::123456789012:user/carol"
        resp = fast(v2_event("POST", "/v1/models/lr/jobs", body, iam_arn=arn), None)
        assert resp["statusCode"] == 202, resp
        job_id = json.loads(resp["body"])["job_id"]
        assert fast(v2_event("GET", f"/v1/jobs/{job_id}", iam_arn=arn), None)["statusCode"] == 200
        assert fast(v2_event("GET", f"/v1/jobs/{job_id}", iam_arn=arn.replace("carol", "dave")), None)["statusCode"] == 404
        assert fast(v2_event("GET", f"/v1/jobs/{job_id}"), None)["statusCode"] == 401
    finally:
        runtime.auth = auth


def api_emf(out: str) -> list[dict[str, Any]]:
    """The API's EMF lines; a job of an earlier test may still flush its worker's (Jobs*) metrics."""
    lines = [json.loads(line) for line in out.splitlines() if line.startswith('{"_aws"')]
    return [e for e in lines if not any(k.startswith("Jobs") for k in e)]


def test_metrics_only_when_on(fast: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    event = ev("POST", "/v1/models/lr/predict", json.dumps({"instances": [ROW]}))
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    capsys.readouterr()
    assert fast(copy.deepcopy(event), None)["statusCode"] == 200
    emf = api_emf(capsys.readouterr().out)
    assert len(emf) == 1
    assert emf[0]["model"] == "lr" and emf[0]["route"] == "inline" and emf[0]["Predictions"] == [1.0]
    answer(fast, ev("POST", "/v1/models/lr/predict", "{}"))
    emf = api_emf(capsys.readouterr().out)
    assert len(emf) == 1 and emf[0]["Errors"] == [1.0] and emf[0]["code"] == "invalid_request"
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    assert fast(copy.deepcopy(event), None)["statusCode"] == 200
    assert '"_aws"' not in capsys.readouterr().out


AWS_COLD = """
import json, sys
from router.lambdas.api import handler
event = {"httpMethod": "POST", "path": "/v1/models/lr/predict", "headers": {"Content-Type": "application/json"},
         "body": json.dumps({"instances": [[1, 2, 3]]}),
         "requestContext": {"requestId": "r1", "identity": {"userArn": "arn:aws:iam::123456789012:user/alice"}}}
status = handler(event, None)["statusCode"]
print(json.dumps({"status": status, "boto3": "boto3" in sys.modules, "event_handler": "aws_lambda_powertools.event_handler" in sys.modules}))
"""


def test_the_aws_wiring_answers_an_inline_predict_without_boto3(config_path: Path, tmp_path: Path) -> None:
    """Clients are built on first use: an inline answer with a bundled config and model makes no
    AWS call, so its cold start imports neither boto3 nor the Powertools event handler."""
    cfg = tmp_path / "aws.yaml"
    cfg.write_text(config_path.read_text().replace("file://./lr.joblib", (config_path.parent / "lr.joblib").as_uri())
                   + "storage: {artifacts: 's3://router-test-artifacts/models', jobs: 's3://router-test-jobs/jobs', job_table: 'dynamodb://router-test-jobs'}\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "ROUTER_CONFIG": str(cfg), "ROUTER_RUNTIME": "aws",
           "ROUTER_WORKER_FUNCTION": "router-test-worker", "POWERTOOLS_METRICS_DISABLED": "true", "TMPDIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", AWS_COLD], env=env, check=True, capture_output=True, text=True, timeout=300)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"status": 200, "boto3": False, "event_handler": False}


@pytest.mark.parametrize("values", [
    [0.1, -0.0, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 1e-320, 123456789012345678, -(2**63), 2**63 - 1],
    [2**64, 10**30, 1.5], [1e308, -1e308], [0, 1, -1, 0.30000000000000004, 1e16, 1e-7, 3.14159e-10],
])
def test_the_fast_decoder_reads_the_same_values_as_the_general_one(values: list[Any]) -> None:
    from router.handlers.api_common import loads_json, loads_predict_body

    rng = np.random.default_rng(len(values))
    rows = [values, (rng.normal(size=len(values)) * 10.0 ** rng.integers(-300, 300, len(values))).tolist()]
    text = json.dumps({"instances": rows})
    got, numbers = loads_predict_body(text)
    want = loads_json(text)
    assert numbers
    # What the model sees is bit for bit the same (-0.0 and subnormals too)...
    assert np.array(got["instances"], dtype=np.float64).tobytes() == np.array(want["instances"], dtype=np.float64).tobytes()
    # ... and every value keeps its type, except integers past 64 bits, which orjson reads as the float they become anyway.
    for g, w in zip(got["instances"][0], want["instances"][0], strict=True):
        assert type(g) is type(w) or (type(w) is int and abs(w) >= 2**64 and g == float(w)), (g, w)


_SPELLINGS = ["Content-Type", "content-type", "CONTENT-TYPE", "Prefer", "prefer", "Idempotency-Key",
              "idempotency-key", "Authorization", "authorization", "AUTHORIZATION", "X-Other"]


def _general_headers(event: dict[str, Any]) -> dict[str, str]:
    """How a proxy event's headers read: by lower-case name, a single-value header over multi-value
    ones (their last value), the last spelling winning."""
    out = {k.lower(): str(vs[-1]) for k, vs in (event.get("multiValueHeaders") or {}).items() if vs}
    for k, v in (event.get("headers") or {}).items():
        if v is not None:
            out[k.lower()] = str(v)
    return out


@given(
    st.none() | st.dictionaries(st.sampled_from(_SPELLINGS), st.none() | st.text(max_size=3), max_size=6),
    st.none() | st.dictionaries(st.sampled_from(_SPELLINGS), st.lists(st.text(max_size=3), max_size=2), max_size=6),
)
def test_the_headers_the_common_part_reads(single: dict[str, Any] | None, multi: dict[str, Any] | None) -> None:
    # Content-Type, Prefer and Idempotency-Key as every header reads; Authorization as the bearer
    # auth reads it (the first spelling in `headers`, whatever its value).
    from router.auth import _header
    from router.handlers.api import _hot_headers, _multi_headers

    event = {"headers": single, "multiValueHeaders": multi}
    got = _hot_headers(event)
    assert got[3] == _header(event, "authorization")
    _multi_headers(event, got)
    want = _general_headers(event)
    assert got[:3] == [want.get("content-type"), want.get("prefer"), want.get("idempotency-key")]


@given(st.floats(allow_nan=False, allow_infinity=False) | st.floats(0, 10_000) | st.sampled_from([0.0005, 0.0015, 2.675, 1e12 - 0.0005, -0.0001]))
def test_a_timing_is_written_as_json_writes_the_rounded_float(ms: float) -> None:
    from router.handlers.api_common import dumps_json, ms_json

    assert ms_json(ms) == dumps_json(round(ms, 3))


@given(st.floats(allow_nan=False, allow_infinity=False) | st.floats(0, 10_000), st.floats(allow_nan=False, allow_infinity=False) | st.floats(0, 10))
def test_the_timing_object_is_written_as_json_writes_it(total: float, model: float) -> None:
    from router.handlers.api_common import dumps_json, timing_json

    assert timing_json(total, model) == dumps_json({"total": round(total, 3), "model": round(model, 3)})


@given(st.lists(st.integers() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=2), max_size=5)
       | st.lists(st.integers(-(2**70), 2**70), max_size=5))
def test_predictions_are_written_as_json_writes_them(predictions: list[Any]) -> None:
    from router.handlers.api_common import dumps_json, dumps_predictions

    assert dumps_predictions(predictions) == dumps_json(predictions)
