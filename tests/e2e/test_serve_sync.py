"""Synchronous predictions over real HTTP against `router serve` with the demo models: results equal
the models' own output, every bad input gets its documented error, and the server survives them."""

from __future__ import annotations

import json
import socket
import urllib.request
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest

from router.client import ApiError

from .conftest import BOB, Server, wait_for

pytestmark = pytest.mark.e2e

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]


def raw(server: Server, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
    hdrs = {"Authorization": "Bearer demo-key-alice-0001", "Content-Type": "application/json", **(headers or {})}
    req = urllib.request.Request(server.url + path, data=body, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, dict(r.headers), json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        data = e.read()
        return e.code, dict(e.headers), json.loads(data) if data else None


def test_health_and_models(server: Server) -> None:
    c = server.client()
    h = c.health()
    assert h["status"] == "ok" and h["config_digest"].startswith("sha256:")
    names = {m["name"]: m for m in c.models()}
    assert {"iris", "forest-xl", "digits-mlp"} <= set(names)
    assert "inline" in names["iris"]["routes"]
    assert "inline" not in names["digits-mlp"]["routes"] and "endpoint" in names["digits-mlp"]["routes"]


def test_iris_predictions_equal_the_models_own(server: Server, demo_dir: Path) -> None:
    model = joblib.load(demo_dir / "models" / "iris.joblib")
    status, headers, body = raw(server, "POST", "/v1/models/iris/predict", json.dumps({"instances": ROWS}).encode())
    assert status == 200, body
    assert headers["X-Router-Route"] == "inline" and headers["X-Request-Id"]
    assert body["route"] == "inline" and body["model"] == "iris"
    assert body["predictions"] == model.predict(np.array(ROWS)).tolist()
    assert body["decision"]["reason"]


def test_named_features_and_proba(server: Server, demo_dir: Path) -> None:
    model = joblib.load(demo_dir / "models" / "iris.joblib")
    obj = {"sepal_length": 6.0, "sepal_width": 2.9, "petal_length": 4.5, "petal_width": 1.5}
    got = server.client().predict("iris", [obj, ROWS[0]], output="proba")
    expected = model.predict_proba(np.array([[6.0, 2.9, 4.5, 1.5], ROWS[0]]))
    assert np.allclose(np.array(got["predictions"]), expected)


@pytest.mark.parametrize(
    ("body", "headers", "status", "code"),
    [
        (b"{not json", None, 400, "invalid_json"),
        (b'{"instances": [[1,2,3,4]]}', {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
        (b"{}", None, 400, "invalid_request"),
        (b'{"instances": []}', None, 400, "invalid_request"),
        (b'{"instances": [[1,2,3,4]], "output": "banana"}', None, 400, "invalid_request"),
        (b'{"instances": [[1,2,3,4],[1,2,3]]}', None, 422, "invalid_input"),
        (b'{"instances": [[1,2,3]]}', None, 422, "invalid_input"),
        (b'{"instances": [{"sepal_length": 1, "bogus": 2}]}', None, 422, "invalid_input"),
        (b'{"instances": [[1,2,3,NaN]]}', None, 422, "invalid_input"),
        (b'{"instances": [[1,2,3,Infinity]]}', None, 422, "invalid_input"),
        (b'{"instances": [[1,2,"three",4]]}', None, 422, "invalid_input"),
        (b'{"instances": [[1,2,null,4]]}', None, 422, "invalid_input"),
        (b"[" * 50_000 + b"]" * 50_000, None, 400, "invalid_json"),
        (b'{"instances": [[1,2,3,4]]}', {"Authorization": "Bearer wrong-key-0000000000"}, 401, "unauthorized"),
        (b'{"instances": [[1,2,3,4]]}', {"Authorization": ""}, 401, "unauthorized"),
    ],
)
def test_bad_input_gets_documented_error(server: Server, body: bytes, headers: dict[str, str] | None, status: int, code: str) -> None:
    got_status, got_headers, got = raw(server, "POST", "/v1/models/iris/predict", body, headers)
    assert got_status == status, got
    assert got["error"]["code"] == code
    assert got["error"]["request_id"] == got_headers["X-Request-Id"]
    assert "Traceback" not in json.dumps(got)
    assert server.client().health()["status"] == "ok"  # still serving


def test_unknown_model_path_and_method(server: Server) -> None:
    assert raw(server, "POST", "/v1/models/nope/predict", b'{"instances": [[1]]}')[2]["error"]["code"] == "model_not_found"
    assert raw(server, "GET", "/v1/nothing-here")[2]["error"]["code"] == "not_found"
    status, headers, body = raw(server, "PUT", "/v1/models")
    assert status == 405 and body["error"]["code"] == "method_not_allowed" and "GET" in headers["Allow"]


def test_body_over_the_api_limit_is_413(server: Server) -> None:
    big = b'{"instances": [' + b"[1.0,2.0,3.0,4.0]," * 700_000 + b"[1,2,3,4]]}"  # ~12.6 MB > 10 MB
    status, _, body = raw(server, "POST", "/v1/models/iris/predict", big)
    assert status == 413 and body["error"]["code"] == "payload_too_large"
    assert server.client().health()["status"] == "ok"


def test_too_big_for_inline_is_explained_then_async(server: Server) -> None:
    with pytest.raises(ApiError) as e:
        server.client().predict("forest-xl", [[0.0] * 20])
    assert e.value.status == 422 and e.value.code == "sync_not_possible"
    decision = e.value.body["error"]["details"]["decision"]
    inline = next(c for c in decision["candidates"] if c["route"] == "inline")
    assert inline["feasible"] is False and inline["reasons"]


def test_route_dry_run_matches_predict(server: Server) -> None:
    c = server.client()
    d = c.route("iris", mode="sync", records=3)
    assert d["route"] == "inline" and d["candidates"]
    d = c.route("iris", mode="job", records=10_000_000_000)
    assert d["route"] is None or d["route"] == "batch-transform"


def test_other_owner_sees_models_too(server: Server) -> None:
    assert server.client(BOB).models()


def test_deep_model_goes_to_its_endpoint(server: Server, demo_dir: Path) -> None:
    import onnxruntime as ort

    c = server.client()
    wait_for(lambda: c.route("digits-mlp", mode="sync", records=2)["route"] == "endpoint", timeout_s=90, interval_s=0.5)
    rows = np.random.default_rng(0).uniform(0, 16, size=(5, 64)).round(1).tolist()
    status, headers, body = raw(server, "POST", "/v1/models/digits-mlp/predict", json.dumps({"instances": rows}).encode())
    assert status == 200, body
    assert headers["X-Router-Route"] == "endpoint"
    sess = ort.InferenceSession(str(next((demo_dir / "models").glob("digits-mlp*.onnx"))), providers=["CPUExecutionProvider"])
    labels = sess.run(None, {sess.get_inputs()[0].name: np.array(rows, dtype=np.float32)})[0]
    assert body["predictions"] == labels.tolist()


def test_openapi_is_served(server: Server) -> None:
    status, _, spec = raw(server, "GET", "/v1/openapi.json")
    assert status == 200 and spec["openapi"].startswith("3.")
    assert "/v1/models/{model}/predict" in spec["paths"]


def test_server_survives_a_client_that_hangs_up(server: Server) -> None:
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as s:
        s.sendall(b"POST /v1/models/iris/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"inst")
    assert server.client().health()["status"] == "ok"


def test_ctrl_c_shuts_down_cleanly(demo_dir: Path) -> None:
    import signal

    from .conftest import write_variant

    srv = Server(write_variant(demo_dir, "sigint")).start()
    assert srv.client().health()["status"] == "ok"
    assert srv.stop(signal.SIGINT) == 0
    assert any("shutting down" in line for line in srv.log)
