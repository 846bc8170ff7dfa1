"""The model's inference contract: the one request a model's code receives on every SageMaker path
(InvokeEndpoint and each batch-transform invocation), and the answer it gives (docs/architecture.md).

    Content-Type: application/json      Accept: application/json
    {"instances": [r1, r2, ...], "output": "predict" | "proba"}   ->   {"predictions": [p1, p2, ...]}

A bare list of predictions is accepted as the answer too; there is one per instance, in order.
For batch transform the router writes the job's input as one such document per line
(`requests.jsonl`, at most MAX_RECORDS_PER_REQUEST instances and MaxPayloadInMB bytes a line) and
creates the transform job with SplitType=Line, BatchStrategy=SingleRecord and AssembleWith=Line:
SageMaker sends each line as one request, exactly the endpoint's body, and writes one answer per
line to `requests.jsonl.out`. `batches.json` beside it records each line's instance count, so the
assembly checks every answer's length.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, BinaryIO, cast

from router.config import ModelSpec
from router.errors import BackendError, InvalidInput
from router.ports import ObjectStore

CONTENT_TYPE = "application/json"
ACCEPT = "application/json"
REQUESTS_NAME = "requests.jsonl"
BATCHES_NAME = "batches.json"
# Instances per request: bounds one invocation's work (and a deep model's batch tensor) whatever
# MaxPayloadInMB allows.
MAX_RECORDS_PER_REQUEST = 1000
# MaxPayloadInMB counted in decimal megabytes: the smaller reading, so a line always fits.
PAYLOAD_MB_BYTES = 1_000_000

_ENCODE = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
_WS = re.compile(r"[ \t\n\r]*")
_READ_START = 1 << 20
_READ_MAX = 16 << 20
_COPY_CHUNK = 1 << 20  # stream .out files 1 MiB at a time: a result can exceed Lambda memory


def request_rows(model: ModelSpec, instances: Sequence[Any]) -> list[Any]:
    """The instances as the model receives them: tabular records keyed by the config's feature
    names become rows in that order (validated as inline does); anything else passes as sent."""
    if model.features and model.framework in ("sklearn", "onnx"):
        from router.features import FeatureSchema

        rows: list[Any] = FeatureSchema(names=tuple(model.features), n_features=None).to_matrix(instances).tolist()
        return rows
    return list(instances)


def request_body(model: ModelSpec, instances: Sequence[Any], output: str) -> bytes:
    """The request document (compact JSON, one line). InvalidInput for NaN or Infinity."""
    try:
        return _ENCODE({"instances": request_rows(model, instances), "output": output}).encode()
    except ValueError:
        raise InvalidInput("instances contain NaN or Infinity, which a SageMaker model cannot receive") from None


def predictions_of(answer: Any, expected: int, where: str) -> list[Any]:
    """The predictions in a model's answer, checked to be one per instance sent."""
    preds = answer.get("predictions") if isinstance(answer, dict) else answer
    if not isinstance(preds, list):
        raise BackendError(f"{where}: the model's answer is not {{\"predictions\": [...]}} or a list")
    if len(preds) != expected:
        raise BackendError(f"{where}: the model returned {len(preds)} predictions for {expected} instances")
    return preds


def raw_chunks(f: BinaryIO, size: int) -> Iterator[list[tuple[int, bytes]]]:
    """(line number, record) pairs of a JSON Lines or CSV stream, `size` at a time; empty lines
    are skipped, as the lambda-job worker skips them."""
    with f:
        chunk: list[tuple[int, bytes]] = []
        for number, raw in enumerate(f, start=1):
            line = raw.strip()
            if line:
                chunk.append((number, line))
                if len(chunk) >= size:
                    yield chunk
                    chunk = []
        if chunk:
            yield chunk


def write_requests(
    chunks: Iterator[list[tuple[int, bytes]]], fmt: str, model: ModelSpec, output: str, out: BinaryIO, max_line_bytes: int
) -> list[int]:
    """Write one request document per line for `chunks` of input records (JSON Lines, or `fmt`
    "csv": numbers only); returns each line's instance count. Every record is checked to be one
    finite JSON value (InvalidInput naming the input line). A document over `max_line_bytes` is
    halved until it fits; a single record over it is InvalidInput (SageMaker would fail the job)."""
    sizes: list[int] = []
    tail = b'],"output":' + _ENCODE(output).encode() + b"}"
    reshape = bool(model.features) and model.framework in ("sklearn", "onnx")

    def emit(lines: list[tuple[int, bytes]]) -> None:
        if fmt == "csv" or reshape:
            body = request_body_at(model, _records(lines, fmt), output, lines)
        else:
            # JSON Lines pass as sent, byte for byte: one parse checks them all.
            body = b'{"instances":[' + b",".join(raw for _, raw in lines) + tail
            _check_json(body, lines)
        if len(body) + 1 > max_line_bytes:
            if len(lines) == 1:
                raise InvalidInput(
                    f"input line {lines[0][0]} is {len(body)} bytes as a request, over the batch transform's "
                    f"{max_line_bytes}-byte payload limit (sagemaker.batch_transform.max_payload_mb)",
                    details={"line": lines[0][0]},
                )
            half = len(lines) // 2
            emit(lines[:half])
            emit(lines[half:])
            return
        out.write(body + b"\n")
        sizes.append(len(lines))

    for lines in chunks:
        emit(lines)
    return sizes


def request_body_at(model: ModelSpec, records: list[Any], output: str, lines: list[tuple[int, bytes]]) -> bytes:
    """request_body, with a record's error naming its input line instead of its index."""
    try:
        return request_body(model, records, output)
    except InvalidInput as e:
        index = e.details.get("index")
        if isinstance(index, int) and 0 <= index < len(lines):
            line = lines[index][0]
            raise InvalidInput(f"input line {line}: {e.message}", details={**e.details, "line": line}) from None
        raise InvalidInput(f"input lines {lines[0][0]}-{lines[-1][0]}: {e.message}", details=e.details) from None


def _records(lines: list[tuple[int, bytes]], fmt: str) -> list[Any]:
    out: list[Any] = []
    for number, raw in lines:
        try:
            if fmt == "csv":
                out.append([float(x) for x in raw.decode("utf-8").split(",")])
            else:
                out.append(json.loads(raw, parse_constant=_reject_constant))
        except (ValueError, UnicodeDecodeError):
            kind = "CSV numbers" if fmt == "csv" else "JSON"
            raise InvalidInput(f"input line {number} is not valid {kind}", details={"line": number}) from None
    return out


def _check_json(body: bytes, lines: list[tuple[int, bytes]]) -> None:
    """One parse of the whole document; only when it fails (or a line held more than one value),
    line by line to say which line is bad."""
    try:
        doc = json.loads(body, parse_constant=_reject_constant)
        if len(doc["instances"]) == len(lines):
            return
    except (ValueError, UnicodeDecodeError):
        pass
    for number, raw in lines:  # a line that parses alone also joins cleanly: the bad one is here
        try:
            json.loads(raw, parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError):
            raise InvalidInput(
                f"input line {number} is not one JSON value (one record per line; NaN and Infinity are not JSON)", details={"line": number}
            ) from None
    raise InvalidInput(f"input lines {lines[0][0]}-{lines[-1][0]} are not JSON records", details={"line": lines[0][0]})


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a finite number")


def json_values(f: BinaryIO) -> Iterator[Any]:
    """Every JSON value in a stream of concatenated values (whitespace or newlines between them, as
    AssembleWith=Line writes them; a pretty-printed answer spanning lines is fine too)."""
    decoder = json.JSONDecoder()
    text = codecs.getincrementaldecoder("utf-8")()
    buf, pos, eof, size = "", 0, False, _READ_START
    while True:
        m = _WS.match(buf, pos)
        pos = m.end() if m else pos
        if pos < len(buf):
            try:
                value, end = decoder.raw_decode(buf, pos)
            except json.JSONDecodeError as e:
                if eof:
                    raise ValueError(f"not JSON at character {e.pos}: {e.msg}") from None
            else:
                if end < len(buf) or eof:  # at the buffer's end a number may still go on
                    yield value
                    pos = end
                    continue
        elif eof:
            return
        chunk = f.read(size)
        eof = not chunk
        buf = buf[pos:] + text.decode(chunk, final=eof)
        pos = 0
        size = min(size * 2, _READ_MAX)


def assemble_predictions(objects: ObjectStore, out_uri: str, batches: list[int], result_uri: str) -> int:
    """Turn the transform job's `.out` (one answer per request line) into the job's JSON Lines
    result, one prediction per input record in input order; returns the record count. Any answer
    of the wrong shape or length, a missing `.out`, or answers left over is a BackendError."""
    if not objects.exists(out_uri):
        raise BackendError("batch transform output is missing", details={"missing": [out_uri]})
    total = 0
    with objects.open_read(out_uri) as src, objects.open_write(result_uri, "application/jsonlines") as dst:
        answers = json_values(src)
        try:
            for i, expected in enumerate(batches, start=1):
                answer = next(answers, _MISSING)
                if answer is _MISSING:
                    raise BackendError(f"batch transform output has {i - 1} answers for {len(batches)} requests")
                preds = predictions_of(answer, expected, f"request {i} of {len(batches)}")
                dst.write("".join(_ENCODE(p) + "\n" for p in preds).encode())
                total += expected
            if next(answers, _MISSING) is not _MISSING:
                raise BackendError(f"batch transform output has more answers than the {len(batches)} requests sent")
        except ValueError as e:  # not JSON (or a non-finite prediction that JSON cannot carry)
            raise BackendError(f"batch transform output is not the model's JSON answers: {e}") from None
    return total


def _join_uri(prefix_uri: str, name: str) -> str:
    return f"{prefix_uri.rstrip('/')}/{name.lstrip('/')}"


def assemble_output(objects: ObjectStore, output_prefix_uri: str, input_names: list[str], result_uri: str) -> int:
    """Concatenate SageMaker's `<input-object-name>.out` files, in input order, into the job's
    single JSON Lines result at `result_uri`; returns the number of lines (= records). The form
    of a job submitted before the router staged requests: its `.out` is one prediction per line.

    `input_names` are the input objects' names relative to the input prefix (SageMaker keeps that
    relative path under the output path). A missing `.out` means SageMaker lost records: that is
    a BackendError, never a silently short result. Streams through the store's `open_write` when
    it has one (atomic on close), else builds the result in memory for `put_bytes`.
    """
    parts = [_join_uri(output_prefix_uri, f"{name}.out") for name in input_names]
    missing = [uri for uri in parts if not objects.exists(uri)]
    if missing:
        raise BackendError(
            f"batch transform output is missing {len(missing)} of {len(parts)} part(s)", details={"missing": missing[:10]}
        )
    open_write = getattr(objects, "open_write", None)
    if callable(open_write):
        with cast(AbstractContextManager[BinaryIO], open_write(result_uri, "application/jsonlines")) as out:
            return _copy_parts(objects, parts, out.write)
    chunks: list[bytes] = []
    lines = _copy_parts(objects, parts, chunks.append)
    objects.put_bytes(result_uri, b"".join(chunks), "application/jsonlines")
    return lines


def _copy_parts(objects: ObjectStore, parts: list[str], write: Callable[[bytes], object]) -> int:
    lines = 0
    for uri in parts:
        last = b""
        with objects.open_read(uri) as src:
            while chunk := src.read(_COPY_CHUNK):
                write(chunk)
                lines += chunk.count(b"\n")
                last = chunk
        if last and not last.endswith(b"\n"):
            # AssembleWith=Line separates records with newlines but may not end the file with one.
            write(b"\n")
            lines += 1
    return lines


_MISSING: Any = object()


def read_batches(objects: ObjectStore, uri: str) -> list[int] | None:
    """The per-request instance counts staged with a job's requests, or None when never staged."""
    if not objects.exists(uri):
        return None
    doc = json.loads(objects.get_bytes(uri))
    return [int(n) for n in doc["batches"]]


def write_batches(objects: ObjectStore, uri: str, sizes: list[int]) -> None:
    objects.put_bytes(uri, _ENCODE({"batches": sizes, "records": sum(sizes)}).encode(), "application/json")


__all__ = [
    "ACCEPT",
    "BATCHES_NAME",
    "CONTENT_TYPE",
    "MAX_RECORDS_PER_REQUEST",
    "PAYLOAD_MB_BYTES",
    "REQUESTS_NAME",
    "assemble_output",
    "assemble_predictions",
    "json_values",
    "predictions_of",
    "raw_chunks",
    "read_batches",
    "request_body",
    "request_rows",
    "write_batches",
    "write_requests",
]
