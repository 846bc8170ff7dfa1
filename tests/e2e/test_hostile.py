"""Hostile requests against `router serve` over real HTTP, on one keep-alive connection and one-shot:
input.uri traversal in its many spellings, symbolic links out of the upload folder, other owners'
files, duplicate keys, huge numbers, deep nesting, wrong content types, oversized bodies, malformed
HTTP and unknown methods, and HTTP API v2 events straight to the Lambda handler. Every answer is a
4xx in docs/api.md's envelope, and no answer carries a byte of a file it should not read."""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import yaml
from sklearn.linear_model import LinearRegression

from .conftest import Server

pytestmark = pytest.mark.e2e

KEY_A, KEY_B = "hostile-alice-0123456789", "hostile-bob-0123456789"
SECRET = "S3CRET-MARKER-4f1d"  # planted in files next to the config: never in any answer
REFUSED = "input.uri must be one of your own uploads"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path, dict[str, str]]]:
    d = tmp_path_factory.mktemp("hostile")
    x = np.random.default_rng(0).normal(size=(40, 3))
    joblib.dump(LinearRegression().fit(x, x.sum(axis=1)), d / "reg.joblib")
    sha = hashlib.sha256((d / "reg.joblib").read_bytes()).hexdigest()
    config = {
        "version": 1,
        "storage": {"artifacts": "file://.", "jobs": "file://./state/jobs", "job_table": "sqlite:///./state/jobs.db"},
        "auth": {"api_keys": {KEY_A: "alice", KEY_B: "bob"}},
        "models": [{"name": "reg", "framework": "sklearn", "artifact": "file://./reg.joblib", "sha256": sha}],
    }
    (d / "op.yaml").write_text(yaml.safe_dump(config))
    (d / "secret.json").write_text(json.dumps({SECRET: 1}) + "\n")
    (d / "secret.jsonl").write_text(f"[1, 2, 3]\n{{\"{SECRET}\": 1}}\n")
    srv = Server(d / "op.yaml").start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", int(srv.url.rsplit(":", 1)[1]), timeout=60)
        uploads = {}
        for key, owner in ((KEY_A, "alice"), (KEY_B, "bob")):
            status, slot, _ = send(conn, "POST", "/v1/uploads", {}, key=key)
            assert status == 201, slot
            path = slot["input_uri"].removeprefix("file://")
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text("[1, 2, 3]\n")  # as a PUT to upload_url would
            uploads[owner] = path
        conn.close()
        yield srv, d, uploads
    finally:
        srv.stop()


def send(conn: http.client.HTTPConnection, method: str, path: str, body: Any = None, *, key: str | None = KEY_A,
         raw: bytes | None = None, ctype: str = "application/json") -> tuple[int, Any, bytes]:
    headers = {"Content-Type": ctype}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    conn.request(method, path, body=data, headers=headers)
    resp = conn.getresponse()
    text = resp.read()
    return resp.status, (json.loads(text) if text else None), text


def enveloped(status: int, body: Any, text: bytes, *, allowed: tuple[int, ...] = (400, 401, 404, 405, 413, 415, 422)) -> str:
    assert status in allowed, (status, text[:300])
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "request_id", "details"}, body
    assert b"Traceback" not in text and b'File "' not in text and SECRET.encode() not in text, text[:300]
    return str(body["error"]["code"])


def traversal_uris(d: Path, uploads: dict[str, str]) -> list[str]:
    own = Path(uploads["alice"]).parent
    root = own.parent.parent  # <jobs>/uploads
    return [
        f"file://{own}/../../../../../../etc/passwd",
        f"file://{root}/alice/../../../../../../{d}/op.yaml",
        f"file://{own}/../../../../signing.key",
        f"file://{own}/./input.jsonl",
        f"file://{own}/%2e%2e/%2e%2e/%2e%2e/%2e%2e/signing.key",
        f"file://{own}/..%2f..%2f..%2f..%2fjobs.db",
        f"file://{own}//..//..//..//..//{d.name}/secret.json",
        f"file://{d}/secret.json",
        f"file://{d}/secret.jsonl",
        f"file://{d}/state/jobs.db",
        f"file://{d}/state/signing.key",
        f"file://localhost{d}/secret.jsonl",
        f"file:///{d}/secret.jsonl",
        f"file://{uploads['bob']}",                      # another owner's upload
        f"file://{own.parent}",                          # the owner's folder itself
        "file:///etc/passwd",
        "file:///proc/self/environ",
        "s3://bucket/a/../b",
        "s3://bucket/./b",
    ]


def test_input_uri_traversal_is_refused_alike_keep_alive_and_one_shot(site: tuple[Server, Path, dict[str, str]]) -> None:
    srv, d, uploads = site
    port = int(srv.url.rsplit(":", 1)[1])
    kept = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for uri in traversal_uris(d, uploads):
        for path in ("/v1/models/reg/jobs", "/v1/models/reg/route"):
            one = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            for conn in (kept, one):
                status, body, text = send(conn, "POST", path, {"input": {"uri": uri}})
                if path.endswith("/route") and status == 200:
                    # A dry run reads nothing: its answer is the one for a file that does not exist.
                    _, nowhere, _ = send(conn, "POST", path, {"input": {"uri": "file:///nonexistent/x.jsonl"}})
                    assert body == nowhere and SECRET.encode() not in text, (uri, body)
                    continue
                code = enveloped(status, body, text)
                assert code in ("invalid_input", "invalid_request"), (uri, body)
                if code == "invalid_input" and "%2" not in uri:
                    assert body["error"]["message"].startswith(REFUSED), (uri, body)  # one message: reveals nothing
            one.close()
    # The owner's own upload, spelled plainly, is still a job; bob may not name it.
    status, body, _ = send(kept, "POST", "/v1/models/reg/jobs", {"input": {"uri": "file://" + uploads["alice"]}})
    assert status == 202, body
    status, body, text = send(kept, "POST", "/v1/models/reg/jobs", {"input": {"uri": "file://" + uploads["alice"]}}, key=KEY_B)
    assert enveloped(status, body, text) == "invalid_input" and body["error"]["message"].startswith(REFUSED)
    kept.close()


def test_symlinks_out_of_the_upload_folder_are_refused(site: tuple[Server, Path, dict[str, str]]) -> None:
    srv, d, uploads = site
    own = Path(uploads["alice"]).parent
    (own / "to-secret.jsonl").symlink_to(d / "secret.jsonl")
    (own / "to-config-dir").symlink_to(d)
    (own / "to-bob").symlink_to(Path(uploads["bob"]).parent)
    conn = http.client.HTTPConnection("127.0.0.1", int(srv.url.rsplit(":", 1)[1]), timeout=60)
    for target in ("to-secret.jsonl", "to-config-dir/secret.jsonl", "to-config-dir/state/signing.key", "to-bob/input.jsonl"):
        status, body, text = send(conn, "POST", "/v1/models/reg/jobs", {"input": {"uri": f"file://{own}/{target}"}})
        assert enveloped(status, body, text) == "invalid_input" and body["error"]["message"].startswith(REFUSED), (target, body)
    conn.close()


def test_hostile_bodies_headers_and_methods_are_4xx_in_the_envelope(site: tuple[Server, Path, dict[str, str]]) -> None:
    srv, _, _ = site
    conn = http.client.HTTPConnection("127.0.0.1", int(srv.url.rsplit(":", 1)[1]), timeout=60)
    p = "/v1/models/reg/predict"
    cases: list[tuple[str, str, bytes, str, str]] = [
        ("POST", p, b'{"instances": [[1, 2, 3]], "instances": [[4, 5, 6]]}', "application/json", "invalid_json"),
        ("POST", p, b'{"instances": [{"a": 1, "a": 2, "b": 3}]}', "application/json", "invalid_json"),
        ("POST", "/v1/models/reg/jobs", b'{"input": {"uri": "s3://b/k", "uri": "s3://b/j"}}', "application/json", "invalid_json"),
        ("POST", p, b'{"instances": [[1e999999, 2, 3]]}', "application/json", "invalid_input"),
        ("POST", p, b'{"instances": [[' + b"1" * 6000 + b", 2, 3]]}", "application/json", "invalid_input"),
        ("POST", p, b'{"instances": [[1, 2, 3]], "output": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", "application/json", "invalid_json"),
        ("POST", p, b'{"instances": [[1, 2, 3]]}', "text/plain", "unsupported_media_type"),
        ("POST", p, b'{"instances": [[1, 2, 3]]}', "application/jsonx", "unsupported_media_type"),
        ("POST", p, b'{"instances": [[1, 2, 3]]}', "json", "unsupported_media_type"),
        ("POST", p, b"instances=1", "application/x-www-form-urlencoded", "unsupported_media_type"),
        ("POST", p, b'\xef\xbb\xbf{"instances": [[1, 2, 3]]}', "application/json", "invalid_json"),
        ("POST", p, b'"just a string"', "application/json", "invalid_request"),
        ("POST", p, b"null", "application/json", "invalid_request"),
        ("POST", "/v1/models/reg/route", b'{"mode": "job", "records": -1}', "application/json", "invalid_request"),
        ("POST", "/v1/models/reg/route", b'{"mode": "job", "records": 1, "payload_bytes": 1e308}', "application/json", "invalid_request"),
        ("POST", p, b'{"instances": [[1, 2, 3]], "pad": "' + b"x" * 11_000_000 + b'"}', "application/json", "payload_too_large"),
        ("GET", "/v1/jobs?status=%00&limit=-5", b"", "application/json", "invalid_request"),
        ("GET", "/v1/jobs?limit=1e999", b"", "application/json", "invalid_request"),
        ("GET", "/v1/jobs/..%2f..%2fetc%2fpasswd", b"", "application/json", ""),
        ("GET", "/v1/models/..%2f..%2fop.yaml", b"", "application/json", ""),
        ("GET", "/v1/../../etc/passwd", b"", "application/json", ""),
        ("PATCH", "/v1/jobs", b"{}", "application/json", "method_not_allowed"),
        ("BREW", "/v1/health", b"", "application/json", ""),  # 400 or 405: both documented
    ]
    for method, path, raw, ctype, want in cases:
        status, body, text = send(conn, method, path, raw=raw or None, ctype=ctype)
        code = enveloped(status, body, text) if status >= 400 else f"{status}: {method} {path} {raw[:60]!r}"
        assert not want or code == want, (method, path, raw[:60], body)
    conn.close()
    port = int(srv.url.rsplit(":", 1)[1])
    for request in (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",  # a TLS hello on the plain port
                    b"GET /v1/health\r\n\r\n",                                  # HTTP/0.9
                    b"POST /v1/models/reg/predict HTTP/1.1\r\nContent-Length: -1\r\nConnection: close\r\n\r\n",
                    b"GET /v1/health HTTP/1.1\r\nHost: a\r\nHost: b\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\nConnection: close\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(request)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        assert b"Traceback" not in data and b"<html" not in data.lower(), data[:300]
        if data:
            status = int(data.split(b" ", 2)[1])
            assert 400 <= status < 500 and b'"error"' in data, data[:300]
    last = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    status, body, _ = send(last, "GET", "/v1/health", key=None)
    last.close()
    assert status == 200 and body["status"] == "ok"
    assert not any("Traceback" in line for line in srv.log), "".join(srv.log)[-3000:]


def v2(method: str, raw_path: str, body: str | None, **changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "version": "2.0", "routeKey": "$default", "rawPath": raw_path, "rawQueryString": "",
        "headers": {"content-type": "application/json", "authorization": f"Bearer {KEY_A}"},
        "requestContext": {"http": {"method": method, "path": raw_path}, "requestId": "v2-hostile", "stage": "$default"},
        "body": body, "isBase64Encoded": False,
    }
    return {**event, **changes}


def test_http_api_v2_events_to_the_lambda_handler(site: tuple[Server, Path, dict[str, str]], tmp_path: Path) -> None:
    from router.bootstrap import build_local
    from router.config import load_config
    from router.handlers.api import make_handler
    from router.local.server import LocalContext

    _, d, _ = site
    config = yaml.safe_load((d / "op.yaml").read_text())
    config["storage"] = {"artifacts": f"file://{d}", "jobs": f"file://{tmp_path}/jobs", "job_table": f"sqlite:///{tmp_path}/jobs.db"}
    config["models"][0]["artifact"] = f"file://{d}/reg.joblib"
    (tmp_path / "op.yaml").write_text(yaml.safe_dump(config))
    rt = build_local(load_config(tmp_path / "op.yaml"), public_base_url="http://127.0.0.1:9")
    try:
        handler = make_handler(rt)
        jobs = "/v1/models/reg/jobs"
        events = [
            v2("POST", jobs, json.dumps({"input": {"uri": f"file://{d}/secret.jsonl"}})),
            v2("POST", jobs, json.dumps({"input": {"uri": f"file://{tmp_path}/jobs/uploads/alice/../../../../secret.jsonl"}})),
            v2("POST", "/v1/models/reg/predict", '{"instances": [[1, 2, 3]], "instances": []}'),
            v2("POST", "/v1/models/reg/predict", "!!not base64", isBase64Encoded=True),
            v2("POST", "/v1/models/reg/predict", "[" * 100_000),
            v2("GET", "/v1/../../etc/passwd", None),
            v2("GET", "/v1/jobs", None, rawQueryString="status=%ff&limit=x", queryStringParameters={"status": "\ufffd", "limit": "x"}),
            v2("BREW", "/v1/health", None),
            v2("GET", "/v1/models", None, headers={}),
            v2("POST", "/v1/models/reg/predict", '{"instances": [[1, 2, 3]]}', headers={"content-type": "text/csv", "authorization": f"Bearer {KEY_A}"}),
        ]
        for event in events:
            resp = handler(event, LocalContext("v2-hostile", 29))
            text = resp["body"].encode()
            enveloped(int(resp["statusCode"]), json.loads(text), text)
            assert "multiValueHeaders" not in resp or event.get("version") != "2.0", resp
        # What no API Gateway sends, a misconfigured trigger might: 400 in the envelope, never a crash.
        rest = {"httpMethod": "GET", "path": "/v1/health", "headers": {}}
        for odd in ([], "event", None, 7, {**rest, "headers": ["a"]}, {**rest, "httpMethod": None},
                    {**rest, "body": {"instances": []}}, v2("GET", "/v1/health", None, headers=["x"]),
                    v2("GET", "/v1/health", None, cookies="a=b"), {"version": "2.0", "requestContext": {"http": "GET"}}):
            resp = handler(odd, LocalContext("odd", 29))  # type: ignore[arg-type]
            text = resp["body"].encode()
            assert int(resp["statusCode"]) == 400, (odd, resp)
            enveloped(400, json.loads(text), text)
    finally:
        rt.close()
