"""What both layers of the API (router.handlers.api and the resolver in router.handlers.api_resolver)
share: JSON in and out, the error envelope, the body's text, and ApiCore, the part of the handler
the resolver calls. Below both, so the lazily loaded resolver imports nothing back from api.py.
"""

from __future__ import annotations

import base64
import binascii
import json
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from router.domain import Job, OutputKind
from router.errors import InvalidJson, InvalidRequest, MethodNotAllowed, RouterError
from router.handlers import telemetry

if TYPE_CHECKING:
    from router.runtime import Runtime

MAX_JSON_DEPTH_MSG = "the JSON body is nested too deeply"
MIB = 1024 * 1024
JSON_TYPE = "application/json"

PUBLIC_PATHS = frozenset({"/v1/health", "/v1/openapi.json"})  # answered without credentials
LIST_LIMIT_MAX = 100

Event = dict[str, Any]
Response = dict[str, Any]


# ---------------------------------------------------------------- JSON


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise json.JSONDecodeError(f"duplicate key {dup!r}", "", 0)
    return obj


def loads_json(text: str) -> Any:
    """json.loads that refuses duplicate keys (RFC 8259 leaves them undefined: no silent last
    wins) and turns pathological nesting into a JSON error instead of a RecursionError (400, not 500)."""
    try:
        return _DECODER.decode(text)
    except RecursionError:
        raise json.JSONDecodeError(MAX_JSON_DEPTH_MSG, text[:64], 0) from None
    except json.JSONDecodeError:
        raise
    except ValueError:
        # An integer literal over Python's int-from-text limit (4300 digits) is valid JSON that
        # json.loads refuses with a plain ValueError. Such a number is out of any float's range:
        # read it as +-inf, so it is refused like 1e400 (422 invalid_input where a number belongs).
        return json.loads(text, parse_int=_parse_int, object_pairs_hook=_no_duplicates)


def _parse_int(s: str) -> int | float:
    limit = sys.get_int_max_str_digits()
    return int(s) if not limit or len(s.lstrip("-")) <= limit else float(s)


# Built once: json.loads/dumps with arguments build a new decoder/encoder on every call.
_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates)
# orjson parses numbers ~3x faster than json (a big predict body's cost), to the same Python values.
_loads_plain = orjson.loads
_dumps = json.JSONEncoder(separators=(",", ":"), default=str).encode
dumps_json = _dumps  # the API's compact JSON encoding of any answer body


def _list_encoder() -> Callable[[Any], str]:
    """dumps_json's C encoder, built once (JSONEncoder builds one per call), without the circular
    reference check: for values parsed or computed as plain data, which cannot hold a cycle."""
    from json import encoder

    make = getattr(encoder, "c_make_encoder", None)
    if make is None:  # no C accelerator (not CPython): the same output, slower
        return _dumps
    enc = make(None, str, encoder.encode_basestring_ascii, None, ":", ",", False, False, True)

    def dumps(value: Any) -> str:
        return "".join(enc(value, 0))  # what JSONEncoder.encode joins

    return dumps


# dumps_json(value) for a list or dict of plain data (no cycles): a model's predictions.
dumps_data = _list_encoder()
_INTS = {int}


def dumps_predictions(predictions: list[Any]) -> str:
    """dumps_data(predictions); a list of ints (class labels) by orjson, which writes them as json does."""
    if len(predictions) == 1 and type(predictions[0]) is int:  # one row's label: an int's JSON is its str
        return f"[{predictions[0]}]"
    if set(map(type, predictions)) == _INTS:
        try:
            return orjson.dumps(predictions).decode()
        except orjson.JSONEncodeError:  # beyond 64 bits: json writes any int
            pass
    return dumps_data(predictions)


def timing_json(total_ms: float, model_ms: float) -> str:
    """The answer's `timing_ms` object as json writes {"total": round(total_ms, 3), "model": round(model_ms, 3)}."""
    if -1e12 < total_ms < 1e12 and -1e12 < model_ms < 1e12:  # ms_json(), inline for both
        total, model = f"{total_ms:.3f}".rstrip("0"), f"{model_ms:.3f}".rstrip("0")
        if total[-1] == ".":
            total += "0"
        if model[-1] == ".":
            model += "0"
        return f'{{"total":{total},"model":{model}}}'
    return f'{{"total":{ms_json(total_ms)},"model":{ms_json(model_ms)}}}'


def ms_json(ms: float) -> str:
    """The JSON of round(ms, 3), as json writes it (a finite float's repr). Below 1e12, where
    repr never uses an exponent and 15 significant digits name one double, that is the correctly
    rounded 3-decimal string (the digits round() itself computes) without trailing zeros."""
    if -1e12 < ms < 1e12:
        text = f"{ms:.3f}".rstrip("0")
        return text + "0" if text[-1] == "." else text
    return repr(round(ms, 3))


def loads_predict_body(text: str) -> tuple[Any, bool]:
    """loads_json for a predict body, and whether its instances hold nothing but numbers and arrays.

    Fast when the body's only strings are its top-level keys and the output's name (its `"` count
    says so): then no object can repeat a key, so a plain decoder (orjson) needs no duplicate-key hook, and
    without `l` (null, false) or `true` the instances are numbers and arrays only (NumberRows: the
    runner skips its per-value type scan). Any other body, valid or not (orjson refuses NaN, integers
    past 64 bits and lone surrogates, which json reads), is loads_json's to decode and word."""
    quotes = text.count('"')
    if quotes <= 6:  # {"instances": ..., "output": "..."}: at most three strings
        try:
            data = _loads_plain(text)
        except (ValueError, RecursionError):  # orjson.JSONDecodeError is a ValueError; loads_json words it
            data = None
        if type(data) is dict and quotes == 2 * len(data) + 2 * (type(data.get("output")) is str):
            # "instances" has no `u`: without an output key, `u` alone rules out `true`.
            numbers = "l" not in text and ("u" not in text if "output" not in data else "true" not in text)
            return data, numbers
    return loads_json(text), False


def json_response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Response:
    """A REST proxy response as the resolver builds it (multi-value headers)."""
    hdrs = {"Content-Type": [JSON_TYPE]}
    if headers:
        for k, v in headers.items():
            hdrs[k] = [v]
    return {"statusCode": status, "multiValueHeaders": hdrs, "body": _dumps(body), "isBase64Encoded": False}


def with_details(body: dict[str, Any]) -> dict[str, Any]:
    """The documented envelope always has `details` (an empty object when there is nothing to add)."""
    body["error"].setdefault("details", {})
    return body


def error_response(err: RouterError, rid: str) -> Response:
    """The error envelope for `err`, logged (5xx as errors, the rest as info) and counted."""
    log = telemetry.logger()
    if err.status >= 500:
        log.error("request failed", extra={"code": err.code, "error_message": err.message})
    else:
        log.info("request rejected", extra={"code": err.code, "status": err.status})
    m = telemetry.event_metrics()
    m.dimension("code", err.code)
    m.count("Errors")
    resp = json_response(err.status, with_details(err.to_body(rid)))
    if err.retry_after_s is not None:  # a transient state (503, 429): when to try again
        resp["multiValueHeaders"]["Retry-After"] = [str(err.retry_after_s)]
    if isinstance(err, MethodNotAllowed):
        resp["multiValueHeaders"]["Allow"] = [", ".join(err.details.get("allowed", []))]
    return resp


def validation_error(errors: list[Any]) -> RouterError:
    """pydantic's errors (from the resolver's validation or a model's own) as the API's 400s."""
    problems = []
    for e in errors:
        if e.get("type") == "json_invalid":
            detail = (e.get("ctx") or {}).get("error") or "malformed JSON"
            return InvalidJson(f"the body is not valid JSON: {detail}")
        loc = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
        msg = str(e.get("msg", "invalid"))
        if e.get("type") == "extra_forbidden":
            msg = "unknown field"
        elif e.get("type") == "missing" and loc == "body":
            msg = "a JSON body is required"
        problems.append({"field": loc, "problem": msg.removeprefix("Value error, ")})
    first = problems[0] if problems else {"field": "body", "problem": "invalid"}
    return InvalidRequest(f"{first['field']}: {first['problem']}", details={"problems": problems})


def body_text(event: Mapping[str, Any]) -> str | None:
    """The body as text: API Gateway passes binary bodies base64-encoded; JSON must be UTF-8."""
    body = event.get("body")
    if body is None:
        return None
    try:
        if event.get("isBase64Encoded"):
            return base64.b64decode(body).decode("utf-8")
        return str(body)
    except (UnicodeDecodeError, binascii.Error):
        raise InvalidJson("the body is not UTF-8 encoded JSON") from None


def utf8_len(text: str | None) -> int:
    if not text:
        return 0
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))



class ApiCore(Protocol):
    """The API handler as its resolver sees it (router.handlers.api.ApiHandler implements it)."""

    @property
    def runtime(self) -> Runtime: ...

    def health(self) -> Response: ...

    def check_sync_size(self, name: str, size: int, prefer: str) -> None:
        """413 when a body of `size` bytes is over what any synchronous route takes (and no job may take it)."""

    def predict(self, owner: str, name: str, instances: list[Any], output: OutputKind, size: int, prefer: str,
                idempotency_key: str | None, start: float) -> Response: ...

    def job_response(self, status: int, job: Job) -> Response: ...
