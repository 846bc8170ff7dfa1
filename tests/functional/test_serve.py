"""The SageMaker-compatible model server over real HTTP on a free loopback port (/ping,
/invocations, errors as JSON without tracebacks), the `python -m sagemaker_jobs.serve` process
(ready line, clean SIGTERM), and batch-transform semantics of transform_file."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from sagemaker_jobs.serve import (
    ModelServer,
    TransformError,
    TransformStopped,
    load_service,
    make_server,
    transform_file,
)

X = np.array([[0.0, 0.1], [0.1, 0.0], [0.9, 1.0], [1.0, 0.9]])
Y = np.array([0, 0, 1, 1])
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("model")
    joblib.dump(LogisticRegression().fit(X, Y), d / "model.joblib")
    return d


@pytest.fixture
def server(model_dir: Path) -> Iterator[ModelServer]:
    srv = make_server(model_dir, "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join()


def request(srv: ModelServer, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, str, bytes]:
    host, port = srv.server_address[0], srv.server_address[1]
    conn = http.client.HTTPConnection(str(host), int(port), timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type") or "", resp.read()
    finally:
        conn.close()


def test_ping_is_200_once_the_model_is_loaded(server: ModelServer) -> None:
    status, _, _ = request(server, "GET", "/ping")
    assert status == 200


def test_invocations_json_in_json_out(server: ModelServer) -> None:
    body = json.dumps({"instances": [[0.05, 0.05], [0.95, 0.95]]}).encode()
    status, ctype, out = request(server, "POST", "/invocations", body, {"Content-Type": "application/json", "Accept": "application/json"})
    assert (status, ctype) == (200, "application/json")
    assert json.loads(out) == {"predictions": [0, 1]}


def test_invocations_csv_in_jsonlines_proba_out(server: ModelServer) -> None:
    status, ctype, out = request(
        server, "POST", "/invocations", b"0.05,0.05\n0.95,0.95\n", {"Content-Type": "text/csv; output=proba", "Accept": "application/jsonlines"}
    )
    assert (status, ctype) == (200, "application/jsonlines")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [int(np.argmax(r)) for r in rows] == [0, 1]


def test_bad_input_is_400_with_a_json_error(server: ModelServer) -> None:
    status, ctype, out = request(server, "POST", "/invocations", b"[[1, 2, 3]]", {"Content-Type": "application/json"})
    assert (status, ctype) == (400, "application/json")
    assert json.loads(out) == {"error": {"code": "invalid_input", "message": "expected 2 features per record, got 3"}}


def test_unsupported_content_type_is_415(server: ModelServer) -> None:
    status, _, out = request(server, "POST", "/invocations", b"x", {"Content-Type": "application/x-npy"})
    assert status == 415 and json.loads(out)["error"]["code"] == "unsupported_media_type"


def test_unknown_path_is_404(server: ModelServer) -> None:
    assert request(server, "GET", "/nope")[0] == 404
    assert request(server, "POST", "/nope", b"{}")[0] == 404


def test_execution_parameters_for_batch_transform(server: ModelServer) -> None:
    status, _, out = request(server, "GET", "/execution-parameters")
    assert status == 200 and json.loads(out)["BatchStrategy"] == "MULTI_RECORD"


def test_model_error_is_500_without_traceback(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "inference.py").write_text(
        textwrap.dedent(
            """
            def model_fn(model_dir):
                return None

            def predict_fn(data, model):
                raise RuntimeError("secret internals")
            """
        )
    )
    srv = make_server(tmp_path, "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        with caplog.at_level("ERROR", logger="sagemaker_jobs.serve"):
            status, _, out = request(srv, "POST", "/invocations", b"[[1]]", {"Content-Type": "application/json"})
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join()
    assert status == 500
    assert json.loads(out)["error"]["code"] == "model_error"
    assert b"secret internals" not in out and b"Traceback" not in out
    # ... but the operator's log has it.
    assert "Traceback" in caplog.text and "secret internals" in caplog.text


def test_serve_module_prints_ready_line_and_stops_on_sigterm(model_dir: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sagemaker_jobs.serve", "--model-dir", str(model_dir), "--port", "0", "--host", "127.0.0.1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith(f"serving {model_dir} on http://127.0.0.1:"), line
        port = int(line.rsplit(":", 1)[1])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/ping")
        assert conn.getresponse().status == 200
        conn.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_serve_module_exits_nonzero_without_a_model(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "sagemaker_jobs.serve", "--model-dir", str(tmp_path), "--port", "0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 1 and "expected exactly one model file" in result.stderr


# ---------------------------------------------------------------- batch transform


def _rows(n: int) -> list[list[float]]:
    # Alternating classes, so that a reordering or a dropped line shows in the output.
    return [[0.05, 0.05] if i % 3 else [0.95, 0.95] for i in range(n)]


@pytest.mark.parametrize(("n", "batch_records", "max_payload_bytes"), [(10, 3, None), (10, 10, None), (7, 100, 30), (1, 1, None)])
def test_transform_file_one_output_line_per_input_line_in_order(
    tmp_path: Path, model_dir: Path, n: int, batch_records: int, max_payload_bytes: int | None
) -> None:
    rows = _rows(n)
    src = tmp_path / "input.csv"
    src.write_text("".join(f"{a},{b}\n" for a, b in rows))
    result = transform_file(
        model_dir, src, tmp_path / "out", content_type="text/csv", accept="application/jsonlines", batch_records=batch_records, max_payload_bytes=max_payload_bytes
    )
    assert result.path == tmp_path / "out" / "input.csv.out"
    lines = result.path.read_text().splitlines()
    assert [json.loads(line) for line in lines] == [0 if i % 3 else 1 for i in range(n)]
    assert result.records == n
    # 10 bytes a line ("0.05,0.05\n"): 30 bytes hold 3 lines.
    expected_batches = -(-n // min(batch_records, (max_payload_bytes or 10**9) // 10))
    assert result.batches == expected_batches


def test_transform_file_jsonlines_proba_from_environment_without_trailing_newline(tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAGEMAKER_ROUTER_OUTPUT", "proba")
    src = tmp_path / "part-0001.jsonl"
    src.write_text("[0.05, 0.05]\n[0.95, 0.95]\n[0.05, 0.05]")
    service = load_service(model_dir)
    result = transform_file(service, src, tmp_path, content_type="application/jsonlines", accept="text/csv", batch_records=2, max_payload_bytes=None)
    rows = [list(map(float, line.split(","))) for line in result.path.read_text().splitlines()]
    assert [int(np.argmax(r)) for r in rows] == [0, 1, 0]


def test_transform_file_bad_line_fails_naming_the_lines_and_writes_nothing(tmp_path: Path, model_dir: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("0.1,0.1\n0.2,0.2\n0.3,oops\n0.4,0.4\n")
    with pytest.raises(TransformError, match=r"in\.csv lines 3-4: bad input: line 1, column 2: 'oops'"):
        transform_file(model_dir, src, tmp_path / "out", content_type="text/csv", accept="text/csv", batch_records=2, max_payload_bytes=None)
    assert list((tmp_path / "out").iterdir()) == []


def test_transform_file_line_over_the_payload_limit_fails(tmp_path: Path, model_dir: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("0.1,0.1\n0.123456789,0.123456789\n")
    with pytest.raises(TransformError, match="line 2 is 24 bytes, over the 20-byte payload limit"):
        transform_file(model_dir, src, tmp_path / "out", content_type="text/csv", accept="text/csv", batch_records=5, max_payload_bytes=20)


def test_transform_file_stops_between_mini_batches_when_asked(tmp_path: Path, model_dir: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("".join(f"{a},{b}\n" for a, b in _rows(9)))
    asked = []

    def should_stop() -> bool:
        asked.append(True)
        return len(asked) == 3  # let two mini-batches through, stop before the third

    with pytest.raises(TransformStopped, match="stopped before line 7"):
        transform_file(
            model_dir, src, tmp_path / "out", content_type="text/csv", accept="text/csv", batch_records=3, max_payload_bytes=None, should_stop=should_stop
        )
    assert list((tmp_path / "out").iterdir()) == []
