"""A SageMaker-compatible model server (GET /ping, POST /invocations, GET /execution-parameters) on the
standard library's ThreadingHTTPServer, plus batch-transform semantics for one input file.

Used as the container's `serve` entry point and, in-process, by the local SageMaker emulator:
`python -m sagemaker_jobs.serve --model-dir DIR --port N --host 127.0.0.1`.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

from sagemaker_jobs import inference

log = logging.getLogger("sagemaker_jobs.serve")

DEFAULT_MODEL_DIR = "/opt/ml/model"
DEFAULT_PORT = 8080
PORT_ENV = "SAGEMAKER_BIND_TO_PORT"
# SageMaker real-time endpoints cap a request at 6 MB, batch transform at MaxPayloadInMB <= 100 MB:
# anything larger cannot have come from SageMaker, so refuse it before reading it.
MAX_BODY_BYTES = 100 * 1024 * 1024


class ModelError(RuntimeError):
    """The model (or its custom code) failed on a request that was itself valid: HTTP 500."""


class TransformError(RuntimeError):
    """A batch transform of one input file failed; nothing was written for it."""


class TransformStopped(Exception):
    """transform_file's `should_stop` said stop (StopTransformJob); nothing was written."""


@dataclass
class ModelService:
    """A loaded model and the four contract functions that serve it (custom ones where the model
    dir's code/inference.py defines them), as SageMaker's framework containers resolve them."""

    model_dir: Path
    model: Any
    input_fn: Callable[..., Any]
    predict_fn: Callable[..., Any]
    output_fn: Callable[..., Any]
    transform_fn: Callable[..., Any] | None = None
    custom_code: Path | None = None

    def invoke(self, body: bytes, content_type: str, accept: str) -> tuple[bytes, str]:
        """One /invocations request. Raises inference.InputError (or any ValueError from input_fn)
        for bad input and ModelError for everything else."""
        accept = _resolve_accept(accept)
        try:
            if self.transform_fn is not None:
                result = self.transform_fn(self.model, body, content_type, accept)
            else:
                try:
                    data = self.input_fn(body, content_type)
                except ValueError as e:
                    # input_fn's job is to judge the input: its ValueErrors are the client's.
                    raise _as_input_error(e) or inference.InputError(str(e)) from e
                result = self.output_fn(self.predict_fn(data, self.model), accept)
        except inference.InputError:
            raise
        except Exception as e:
            client = _as_input_error(e)
            if client is not None:
                raise client from e
            raise ModelError(f"{type(e).__name__}: {e}") from e
        return _as_response(result, accept)


def _as_input_error(e: Exception) -> inference.InputError | None:
    """The client's fault? A packaged code/inference.py is a *copy* of inference.py, loaded as its
    own module: its InputError is another class. Recognise any copy's by shape, not identity."""
    if isinstance(e, inference.InputError):
        return e
    status, code = getattr(e, "status", None), getattr(e, "code", None)
    if isinstance(e, ValueError) and isinstance(status, int) and 400 <= status < 500 and isinstance(code, str):
        err = inference.InputError(str(e))
        err.status, err.code = status, code
        return err
    return None


def _resolve_accept(accept: str | None) -> str:
    if not accept or accept.strip() in ("*/*", ""):
        return os.environ.get(inference.DEFAULT_ACCEPT_ENV) or inference.JSON
    return accept


def _as_response(result: Any, accept: str) -> tuple[bytes, str]:
    # The toolkit accepts a body, or (body, content type) for backwards compatibility.
    body, ctype = (result[0], result[1]) if isinstance(result, tuple) else (result, accept)
    if isinstance(body, str):
        body = body.encode()
    if not isinstance(body, bytes | bytearray):
        raise ModelError(f"output_fn returned {type(body).__name__}, expected bytes or str")
    return bytes(body), str(ctype)


_HANDLER_NAMES = ("model_fn", "input_fn", "predict_fn", "output_fn", "transform_fn")
_ARITY = {"model_fn": 1, "input_fn": 2, "predict_fn": 2, "output_fn": 2, "transform_fn": 4}


def load_service(model_dir: str | Path) -> ModelService:
    """Load the model in `model_dir`, honouring its code/inference.py overrides."""
    root = Path(model_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"model dir not found: {root}")
    custom_path = root / "code" / "inference.py"
    funcs: dict[str, Callable[..., Any] | None] = {
        "model_fn": inference.model_fn,
        "input_fn": inference.input_fn,
        "predict_fn": inference.predict_fn,
        "output_fn": inference.output_fn,
        "transform_fn": None,
    }
    custom: Path | None = None
    if custom_path.is_file():
        module = _import_user_module(custom_path)
        user = {n: getattr(module, n) for n in _HANDLER_NAMES if callable(getattr(module, n, None))}
        if "transform_fn" in user and user.keys() & {"input_fn", "predict_fn", "output_fn"}:
            raise ValueError(f"{custom_path}: transform_fn cannot be combined with input_fn, predict_fn or output_fn")
        for name, fn in user.items():
            _check_arity(custom_path, name, fn)
        funcs.update(user)
        custom = custom_path
    model_fn = funcs["model_fn"]
    assert model_fn is not None
    model = model_fn(str(root))
    input_fn, predict_fn, output_fn = funcs["input_fn"], funcs["predict_fn"], funcs["output_fn"]
    assert input_fn is not None and predict_fn is not None and output_fn is not None
    return ModelService(root, model, input_fn, predict_fn, output_fn, funcs["transform_fn"], custom)


def _import_user_module(path: Path) -> ModuleType:
    # Like SageMaker, put code/ on sys.path so the script can import its sibling modules. The
    # module itself gets a name unique to its path: several models may share one process.
    code_dir = str(path.parent.resolve())
    if code_dir not in sys.path:
        sys.path.insert(0, code_dir)
    name = f"_sagemaker_user_inference_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _check_arity(path: Path, name: str, fn: Callable[..., Any]) -> None:
    # The toolkit passes a context argument to functions with one extra parameter; we have no
    # context to give, so say so at load time rather than on the first request.
    params = inspect.signature(fn).parameters.values()
    required = sum(1 for p in params if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))
    if required > _ARITY[name]:
        raise TypeError(f"{path}: {name} takes {required} arguments, this server passes {_ARITY[name]}")


# ---------------------------------------------------------------- HTTP server


class ModelServer(ThreadingHTTPServer):
    """ThreadingHTTPServer holding one ModelService. `url` is where it listens."""

    daemon_threads = True
    # Fail fast on a taken port instead of silently sharing it.
    allow_reuse_address = False

    def __init__(self, address: tuple[str, int], service: ModelService, *, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        super().__init__(address, _Handler)
        self.service = service
        self.max_body_bytes = max_body_bytes

    @property
    def url(self) -> str:
        host, port = self.server_address[0], self.server_address[1]
        return f"http://{host!s}:{port}"


class _Handler(BaseHTTPRequestHandler):
    server: ModelServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/ping":
            # Reaching this handler means the model loaded: make_server loads it before binding.
            self._send(200, b"", "text/plain")
        elif path == "/execution-parameters":
            # What batch transform asks a container before sending MultiRecord mini-batches.
            params = {"MaxConcurrentTransforms": 1, "BatchStrategy": "MULTI_RECORD", "MaxPayloadInMB": 6}
            self._send_json(200, params)
        else:
            self._error(404, "not_found", f"no such path: {path}")

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        if path != "/invocations":
            self._drain()
            self._error(404, "not_found", f"no such path: {path}")
            return
        length = self._content_length()
        if length is None:
            return
        body = self.rfile.read(length)
        ctype = self.headers.get("Content-Type") or inference.JSON
        accept = self.headers.get("Accept") or ""
        try:
            out, out_type = self.server.service.invoke(body, ctype, accept)
        except inference.InputError as e:
            self._error(e.status, e.code, str(e))
            return
        except Exception:
            log.error("model error on /invocations\n%s", traceback.format_exc())
            self._error(500, "model_error", "the model failed on this request; see the server log")
            return
        self._send(200, out, out_type)

    def do_PUT(self) -> None:
        self._method_not_allowed()

    def do_DELETE(self) -> None:
        self._method_not_allowed()

    def _method_not_allowed(self) -> None:
        self._drain()
        self._error(405, "method_not_allowed", f"{self.command} is not allowed here")

    def _content_length(self) -> int | None:
        raw = self.headers.get("Content-Length")
        try:
            length = int(raw) if raw is not None else 0
        except ValueError:
            self._error(400, "invalid_request", "Content-Length is not a number", close=True)
            return None
        if length < 0:
            self._error(400, "invalid_request", "Content-Length is negative", close=True)
            return None
        if length > self.server.max_body_bytes:
            # Do not read it: answer and close the connection.
            self._error(413, "payload_too_large", f"body of {length} bytes exceeds {self.server.max_body_bytes}", close=True)
            return None
        return length

    def _drain(self) -> None:
        raw = self.headers.get("Content-Length")
        if raw and raw.isdigit() and int(raw) <= self.server.max_body_bytes:
            self.rfile.read(int(raw))
        elif raw:
            self.close_connection = True

    def _error(self, status: int, code: str, message: str, *, close: bool = False) -> None:
        if close:
            self.close_connection = True
        self._send_json(status, {"error": {"code": code, "message": message}})

    def _send_json(self, status: int, doc: Any) -> None:
        self._send(status, json.dumps(doc).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


def make_server(model_dir: str | Path, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> ModelServer:
    """Load the model in `model_dir` and bind a server to host:port (0 picks a free port).
    Not yet serving: call `serve_forever()` (e.g. in a thread) and `shutdown()` + `server_close()`."""
    service = load_service(model_dir)
    return ModelServer((host, port), service)


# ---------------------------------------------------------------- batch transform


@dataclass(frozen=True, slots=True)
class TransformResult:
    path: Path
    records: int
    batches: int


SPLIT_TYPES = ("None", "Line")
BATCH_STRATEGIES = ("SingleRecord", "MultiRecord")
ASSEMBLE_WITH = ("None", "Line")


def transform_file(
    model_dir_or_model: str | Path | ModelService,
    in_path: str | Path,
    out_path: str | Path,
    *,
    content_type: str,
    accept: str,
    batch_records: int,
    max_payload_bytes: int | None,
    should_stop: Callable[[], bool] | None = None,
    split_type: str = "Line",
    batch_strategy: str = "MultiRecord",
    assemble_with: str = "Line",
) -> TransformResult:
    """Batch-transform one input object as SageMaker does with these CreateTransformJob parameters.

    SplitType "None": the whole object is one request. "Line": records are lines; BatchStrategy
    "SingleRecord" sends each line alone (without its newline), "MultiRecord" as many whole lines
    as `batch_records` and `max_payload_bytes` allow (None: no byte limit). Every request carries
    `content_type` and `accept`, whatever they are (SageMaker does not check them against the
    split). A record over the byte limit fails the transform, as MaxPayloadInMB does.
    AssembleWith "Line" writes each answer followed by a newline (unless it already ends with
    one), "None" concatenates the answers as they are; nothing checks their number.

    `out_path` is the output location (a directory, created when missing), like S3OutputPath:
    the result is `<out_path>/<input file name>.out`, answers in input order. It is written to a
    temporary file and renamed, so a failure leaves no partial .out. `should_stop` is asked
    before each request; True raises TransformStopped (StopTransformJob).
    """
    if batch_records < 1:
        raise ValueError(f"batch_records must be >= 1, got {batch_records}")
    for name, value, allowed in (
        ("split_type", split_type, SPLIT_TYPES), ("batch_strategy", batch_strategy, BATCH_STRATEGIES), ("assemble_with", assemble_with, ASSEMBLE_WITH)
    ):
        if value not in allowed:
            raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    service = model_dir_or_model if isinstance(model_dir_or_model, ModelService) else load_service(model_dir_or_model)
    src = Path(in_path)
    out_dir = Path(out_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{src.name}.out"
    tmp = target.with_name(f".{target.name}.partial")
    records = batches = 0
    try:
        with src.open("rb") as fin, tmp.open("wb") as fout:
            if split_type == "None":
                requests: Iterator[tuple[int, list[bytes]]] = _whole_object(fin, max_payload_bytes)
            elif batch_strategy == "SingleRecord":
                requests = _single_records(fin, max_payload_bytes)
            else:
                requests = _mini_batches(fin, batch_records, max_payload_bytes)
            for first_line, lines in requests:
                if should_stop is not None and should_stop():
                    raise TransformStopped(f"{src.name}: stopped before line {first_line}")
                last_line = first_line + len(lines) - 1
                where = f"{src.name} lines {first_line}-{last_line}"
                try:
                    body, _ = service.invoke(b"".join(lines), content_type, accept)
                except inference.InputError as e:
                    raise TransformError(f"{where}: bad input: {e}") from e
                except ModelError as e:
                    raise TransformError(f"{where}: model error: {e}") from e
                fout.write(body)
                if assemble_with == "Line" and not body.endswith(b"\n"):
                    fout.write(b"\n")
                records += len(lines)
                batches += 1
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return TransformResult(target, records, batches)


def _whole_object(fin: Any, max_payload_bytes: int | None) -> Iterator[tuple[int, list[bytes]]]:
    data = fin.read()
    if max_payload_bytes is not None and len(data) > max_payload_bytes:
        raise TransformError(f"the object is {len(data)} bytes, over the {max_payload_bytes}-byte payload limit (SplitType None)")
    yield 1, [data]


def _single_records(fin: Any, max_payload_bytes: int | None) -> Iterator[tuple[int, list[bytes]]]:
    for number, raw in enumerate(fin, start=1):
        record = raw[:-1] if raw.endswith(b"\n") else raw
        if max_payload_bytes is not None and len(record) > max_payload_bytes:
            raise TransformError(f"line {number} is {len(record)} bytes, over the {max_payload_bytes}-byte payload limit")
        yield number, [record]


def _mini_batches(fin: Any, batch_records: int, max_payload_bytes: int | None) -> Iterator[tuple[int, list[bytes]]]:
    """Yield (1-based number of the first line, lines with their newline) per mini-batch."""
    batch: list[bytes] = []
    size = 0
    start = 1
    for number, raw in enumerate(fin, start=1):
        line = raw if raw.endswith(b"\n") else raw + b"\n"
        if max_payload_bytes is not None and len(line) > max_payload_bytes:
            raise TransformError(f"line {number} is {len(line)} bytes, over the {max_payload_bytes}-byte payload limit")
        if batch and (len(batch) >= batch_records or (max_payload_bytes is not None and size + len(line) > max_payload_bytes)):
            yield start, batch
            batch, size, start = [], 0, number
        batch.append(line)
        size += len(line)
    if batch:
        yield start, batch


# ---------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sagemaker_jobs.serve", description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", default=DEFAULT_MODEL_DIR, help=f"unpacked model.tar.gz (default {DEFAULT_MODEL_DIR})")
    parser.add_argument("--host", default="0.0.0.0", help="address to bind (default 0.0.0.0, as in a container)")
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get(PORT_ENV, DEFAULT_PORT)), help=f"port (default ${PORT_ENV} or {DEFAULT_PORT}; 0: any free port)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        server = make_server(args.model_dir, args.host, args.port)
    except Exception as e:
        log.error("cannot start: %s", e, exc_info=True)
        # One line on stdout too, where a supervisor (the local SageMaker emulator) reads the
        # "serving ... on URL" line: it can then say why, e.g. "No module named 'torch'".
        reason = f"{type(e).__name__}: {e}".splitlines()[0][:300]
        print(f"cannot start: {reason}", flush=True)
        return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # A short poll interval: shutdown() waits for serve_forever's next poll.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="model-server", daemon=True)
    thread.start()
    print(f"serving {server.service.model_dir} on {server.url}", flush=True)
    # The main thread only waits, so a signal never lands inside serve_forever (shutdown() from
    # the serving thread itself would deadlock).
    parent = os.getppid()
    while not stop.wait(0.2):
        if parent != 1 and os.getppid() != parent:
            # Our supervisor died without stopping us (e.g. `router serve` killed with -9): an
            # orphaned model server would hold its port and memory forever. (In a container the
            # server usually is the entry point's child or PID 1's: nothing changes there.)
            log.warning("parent process %d is gone; stopping", parent)
            break
    server.shutdown()
    server.server_close()
    thread.join()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
