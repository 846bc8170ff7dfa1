"""SageMaker's framework-container inference contract (model_fn / input_fn / predict_fn / output_fn)
for scikit-learn, ONNX and PyTorch TorchScript models; `package.py` copies this very file into every
model.tar.gz as code/inference.py, so it must stay self-contained (stdlib + numpy + the framework).

Model directory layout (the unpacked model.tar.gz, /opt/ml/model on SageMaker):

    model.joblib | model.onnx | model.pt   exactly one model file, named by framework
    code/inference.py                      optional: may define any of model_fn, input_fn,
                                           predict_fn, output_fn (or transform_fn instead of the
                                           last three); the missing ones fall back to this module's
    code/requirements.txt                  installed by SageMaker's framework containers

Requests (Content-Type; parameters after ';' are allowed, e.g. charset):

    application/json        {"instances": [r1, r2, ...], "output": "predict"|"proba"} or a bare [r1, r2, ...]
    application/jsonlines   one record per line
    text/csv                one record per line, numbers only, no header

A record is a list of numbers in feature order, or (JSON / JSON Lines) an object keyed by feature
name when the model knows its feature names (scikit-learn's `feature_names_in_`). TorchScript models
take any nested lists of numbers.

Responses (Accept; missing or */* -> $SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT, else application/json):

    application/json        {"predictions": [p1, p2, ...]}
    application/jsonlines   one prediction per line, in input order
    text/csv                one prediction per line; a list prediction becomes comma-separated values

Output kind: "predict" (default) or "proba" (class probabilities, a list per record in class order).
Chosen, first match wins, by: the JSON body's "output" field; an `output=` parameter of the
Content-Type (`text/csv; output=proba`: for endpoint calls with line formats); the environment
variable SAGEMAKER_ROUTER_OUTPUT (how the router asks for probabilities in a batch-transform job,
whose Environment is set per job). PyTorch: "predict" returns the module's output as is, "proba"
applies softmax over the last axis.

Bad input is an InputError (a ValueError) with an HTTP status: 400, or 415 for an unsupported media
type; the error body is {"error": {"code", "message"}}. Each server that loads this file answers it
with that status, never a 500 (sagemaker_jobs/images.py names the servers of the default images):
- sagemaker_jobs.serve (the local emulator) catches it;
- the sagemaker-inference toolkit (multi-model-server, TorchServe) answers any exception with
  its status_code: InputError is a BaseInferenceToolkitError whenever the toolkit is importable
  (the toolkit appends a traceback to that body); toolkits from 1.7 on pass their request context
  to input_fn/predict_fn/output_fn, and then the status is set on the context and the body is the
  error document alone, carried as a Rejected value to output_fn;
- sagemaker-containers (the scikit-learn image's single-model server, gunicorn + Flask) answers any
  raised exception with 500, so inside its Flask request the error travels as a Rejected value
  through predict_fn to output_fn, which returns it as a Flask response with the status.
input_fn, predict_fn and output_fn take SageMaker's arguments plus an optional context (the toolkit
passes it to a function that declares one parameter more); model_fn takes the model directory only.
Runs on Python >= 3.10 (the images' interpreters:
sagemaker_jobs/images.py).
"""

from __future__ import annotations

import contextlib
import csv
import http
import io
import json
import math
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    _ToolkitError = Exception
else:
    try:  # present in the images that serve through the sagemaker-inference toolkit
        from sagemaker_inference.errors import BaseInferenceToolkitError as _ToolkitError
    except ImportError:
        _ToolkitError = Exception

MODEL_FILES: dict[str, str] = {"sklearn": "model.joblib", "onnx": "model.onnx", "pytorch": "model.pt"}
OUTPUT_ENV = "SAGEMAKER_ROUTER_OUTPUT"
DEFAULT_ACCEPT_ENV = "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT"

JSON = "application/json"
JSONLINES = "application/jsonlines"
CSV = "text/csv"
# Other spellings of JSON Lines seen in the wild; answered as application/jsonlines.
JSONLINES_TYPES = frozenset({JSONLINES, "application/x-jsonlines", "application/jsonl", "application/x-ndjson"})
OUTPUT_KINDS = ("predict", "proba")


class InputError(ValueError, _ToolkitError):
    """The request cannot be served as sent (HTTP 400 unless a subclass says otherwise)."""

    status = 400
    code = "invalid_input"

    def __init__(self, message: str) -> None:
        ValueError.__init__(self, message)

    def body(self) -> bytes:
        """The error response body, one line of JSON (the toolkit appends a traceback after it)."""
        return json.dumps({"error": {"code": self.code, "message": str(self)}}, separators=(",", ":")).encode()

    # The sagemaker-inference toolkit's error interface (BaseInferenceToolkitError).
    @property
    def status_code(self) -> int:
        return self.status

    @property
    def message(self) -> str:
        return self.body().decode()

    @property
    def phrase(self) -> str:
        return http.HTTPStatus(self.status).phrase


class UnsupportedMediaType(InputError):
    """Content-Type or Accept names a format this contract does not speak."""

    status = 415
    code = "unsupported_media_type"


class OutputNotSupported(InputError):
    """The requested output kind (e.g. proba) does not exist for this model."""

    code = "output_not_supported"


@dataclass(frozen=True, slots=True)
class Instances:
    """What input_fn hands to predict_fn: the records as decoded, and the output kind asked for."""

    records: list[Any]
    output: str = "predict"


@dataclass(frozen=True, slots=True)
class Rejected:
    """An InputError carried from input_fn or predict_fn to output_fn (sagemaker-containers only)."""

    error: InputError


def _flask_request_active() -> bool:
    flask = sys.modules.get("flask")
    return flask is not None and bool(flask.has_request_context())


def _has_status(context: Any) -> bool:
    return context is not None and callable(getattr(context, "set_response_status", None))


def _reject(error: InputError, context: Any = None) -> Rejected:
    """With a toolkit's request context, set the error's status on it; inside sagemaker-containers'
    Flask request (where a raised exception is a 500), do nothing more: either way carry the error
    on to output_fn. Anywhere else, raise it."""
    if _has_status(context):
        context.set_response_status(code=error.status, phrase=error.phrase)
        return Rejected(error)
    if _flask_request_active():
        return Rejected(error)
    raise error


# ---------------------------------------------------------------- model_fn


class LoadedModel:
    """A model behind one interface, whatever its framework: predict / predict_proba on a 2-D array."""

    def __init__(
        self,
        framework: str,
        model: Any,
        *,
        feature_names: list[str] | None = None,
        n_features: int | None = None,
        has_proba: bool = False,
        float32: bool = False,
        outputs: tuple[str, str | None] | None = None,
    ) -> None:
        self.framework = framework
        self.model = model
        self.feature_names = feature_names
        self.n_features = n_features
        self.has_proba = has_proba
        self.float32 = float32  # the model computes in 32-bit floats: larger values would become infinity
        self.outputs = outputs  # ONNX: the (label, probabilities) output names

    def predict(self, x: Any) -> Any:
        if self.framework == "sklearn":
            with self._quiet():
                return self.model.predict(x)
        if self.framework == "onnx":
            return _onnx_outputs(self, x, proba=False)
        return _torch_forward(self.model, x)

    def predict_proba(self, x: Any) -> Any:
        if self.framework == "sklearn":
            with self._quiet():
                proba = self.model.predict_proba(x)
            if isinstance(proba, list):
                # Multi-output classifiers: one [records, classes] array per output. One
                # prediction per record instead: [[p(output 0)...], [p(output 1)...]].
                per_output = [np.asarray(a).tolist() for a in proba]
                return [list(row) for row in zip(*per_output, strict=True)]
            return proba
        if self.framework == "onnx":
            return _onnx_outputs(self, x, proba=True)
        out = np.asarray(_torch_forward(self.model, x), dtype=np.float64)
        shifted = np.exp(out - out.max(axis=-1, keepdims=True))
        return shifted / shifted.sum(axis=-1, keepdims=True)

    def _quiet(self) -> Any:
        """A model fitted on a DataFrame warns on every array; to_matrix already put the columns in
        its feature order, so that warning says nothing. (catch_warnings is process-wide: at worst
        a concurrent request's warning is shown or hidden.)"""
        if self.feature_names is None:
            return contextlib.nullcontext()
        return _ignoring_feature_name_warning()


@contextlib.contextmanager
def _ignoring_feature_name_warning() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        yield


def model_fn(model_dir: str) -> LoadedModel:
    """Load the one model file in `model_dir` (model.joblib, model.onnx or model.pt)."""
    root = Path(model_dir)
    found = [(fw, root / name) for fw, name in MODEL_FILES.items() if (root / name).is_file()]
    if len(found) != 1:
        names = ", ".join(MODEL_FILES.values())
        what = "none" if not found else " and ".join(p.name for _, p in found)
        raise FileNotFoundError(f"{root}: expected exactly one model file ({names}), found {what}")
    framework, path = found[0]
    if framework == "sklearn":
        return _load_sklearn(path)
    if framework == "onnx":
        return _load_onnx(path)
    return _load_torch(path)


def _load_sklearn(path: Path) -> LoadedModel:
    import joblib

    model = joblib.load(path)
    names = getattr(model, "feature_names_in_", None)
    n = getattr(model, "n_features_in_", None)
    return LoadedModel(
        "sklearn",
        model,
        feature_names=[str(f) for f in names] if names is not None else None,
        n_features=int(n) if n is not None else None,
        has_proba=hasattr(model, "predict_proba"),
    )


def _load_onnx(path: Path) -> LoadedModel:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ValueError(f"{path}: ONNX models with {len(inputs)} inputs are not supported (expected one 2-D tensor)")
    shape = inputs[0].shape
    n = shape[1] if len(shape) == 2 and isinstance(shape[1], int) else None
    # skl2onnx classifiers: (label, probabilities), the latter a tensor or (zipmap) a list of dicts;
    # found by name as the inline runner finds them, else by position.
    outputs = session.get_outputs()
    label = next((o.name for o in outputs if "label" in o.name.lower()), outputs[0].name)
    proba = next((o.name for o in outputs if "prob" in o.name.lower()), None)
    if proba is None and len(outputs) >= 2:
        proba = next(o.name for o in outputs if o.name != label)
    return LoadedModel(
        "onnx",
        session,
        n_features=n,
        has_proba=proba is not None,
        float32=inputs[0].type != "tensor(double)",
        outputs=(label, proba),
    )


def _load_torch(path: Path) -> LoadedModel:
    # torch is optional: only a TorchScript model needs it, and only when one is loaded.
    import torch

    # torch >= 2.13 deprecates TorchScript in favour of torch.export; SageMaker's PyTorch images
    # (torch 2.x) still load model.pt with torch.jit.load, so this loader does too (docs/architecture.md).
    jit_load: Callable[..., Any] = torch.jit.load
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.load` is deprecated", category=DeprecationWarning)
        module = jit_load(str(path), map_location="cpu")
    module.eval()
    return LoadedModel("pytorch", module, has_proba=True, float32=True)


def _onnx_outputs(model: LoadedModel, x: Any, *, proba: bool) -> Any:
    session = model.model
    assert model.outputs is not None
    name = model.outputs[1] if proba else model.outputs[0]
    feed = np.asarray(x, dtype=np.float32 if model.float32 else np.float64)
    out = session.run([name], {session.get_inputs()[0].name: feed})[0]
    if proba:
        if isinstance(out, list):  # zipmap: one {class: probability} per row, in class order
            return np.asarray([list(row.values()) for row in out], dtype=np.float64)
        return out
    label = np.asarray(out)
    if label.ndim == 2 and label.shape[1] == 1:
        label = label[:, 0]  # regressors answer [N, 1]; sklearn answers [N]
    return label


def _torch_forward(module: Any, x: Any) -> Any:
    import torch

    with torch.no_grad():
        out = module(torch.as_tensor(np.asarray(x, dtype=np.float32)))
    return out.detach().cpu().numpy()


# ---------------------------------------------------------------- input_fn


def input_fn(body: bytes | str, content_type: str, context: Any = None) -> Instances | Rejected:
    """Decode a request body into Instances (records + output kind)."""
    try:
        return decode(body, content_type, default_output=os.environ.get(OUTPUT_ENV) or "predict")
    except InputError as e:
        return _reject(e, context)


def decode(body: bytes | str, content_type: str, *, default_output: str = "predict") -> Instances:
    """input_fn with the environment's default output kind made explicit (for tests and callers)."""
    media, params = parse_media_type(content_type or JSON)
    output = params.get("output") or default_output
    if media not in (JSON, CSV, *JSONLINES_TYPES):  # before decoding: binary bodies are 415, not 400
        raise UnsupportedMediaType(f"unsupported Content-Type {media!r}: use {JSON}, {JSONLINES} or {CSV}")
    if isinstance(body, bytes | bytearray):
        try:
            text = bytes(body).decode(params.get("charset", "utf-8"))
        except (UnicodeDecodeError, LookupError) as e:
            raise InputError(f"the body is not valid {params.get('charset', 'utf-8')} text: {e}") from None
    else:
        text = body
    if media == JSON:
        records, output = _decode_json(text, output)
    elif media in JSONLINES_TYPES:
        records = [_json_value(line, f"line {i}") for i, line in _lines(text)]
    else:
        records = _decode_csv(text)
    if not records:
        raise InputError("no records: send at least one")
    if output not in OUTPUT_KINDS:
        raise InputError(f"output must be one of {', '.join(OUTPUT_KINDS)}, got {output!r}")
    return Instances(records, output)


def parse_media_type(value: str) -> tuple[str, dict[str, str]]:
    """'text/csv; charset=utf-8; output=proba' -> ('text/csv', {'charset': 'utf-8', 'output': 'proba'})."""
    media, *rest = value.split(";")
    params: dict[str, str] = {}
    for part in rest:
        key, sep, val = part.partition("=")
        if sep:
            params[key.strip().lower()] = val.strip().strip('"')
    return media.strip().lower(), params


def _decode_json(text: str, output: str) -> tuple[list[Any], str]:
    constants: list[str] = []  # NaN / Infinity tokens, refused below naming their record
    doc = _json_value(text, "the body", constants)
    if isinstance(doc, dict):
        unknown = sorted(set(doc) - {"instances", "output"})
        if unknown:
            raise InputError(f"unknown field(s) {', '.join(map(repr, unknown))}: expected 'instances' and optionally 'output'")
        if "instances" not in doc:
            raise InputError("missing 'instances': send {\"instances\": [...]} or a bare list")
        if "output" in doc:
            output = doc["output"]
            if not isinstance(output, str):
                raise InputError(f"output must be a string, got {type(output).__name__}")
        doc = doc["instances"]
    if not isinstance(doc, list):
        raise InputError(f"instances must be a list, got {type(doc).__name__}")
    if constants:
        i = next((i for i, rec in enumerate(doc) if _holds_non_finite(rec)), None)
        where = f"record {i}" if i is not None else "the body"
        raise InputError(f"{where}: {constants[0]} is not a finite number")
    return doc, output


def _json_value(text: str, where: str, constants: list[str] | None = None) -> Any:
    """Parse JSON. Python's json accepts NaN/Infinity, which JSON does not: refused at the source,
    here, or (given `constants`) collected there for the caller to name the record holding one."""

    def constant(name: str) -> float:
        if constants is None:
            raise InputError(f"{name} is not a finite number")
        constants.append(name)
        return float(name)

    try:
        return json.loads(text, parse_constant=constant)
    except InputError as e:
        raise InputError(f"{where}: {e}") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{where} is not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})") from None


def _holds_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, list):
        return any(map(_holds_non_finite, value))
    if isinstance(value, dict):
        return any(map(_holds_non_finite, value.values()))
    return False


def _lines(text: str) -> list[tuple[int, str]]:
    """Numbered records of a line format; one trailing newline is fine, an empty record is not."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    out = []
    for i, line in enumerate(lines, start=1):
        line = line.rstrip("\r")
        if not line.strip():
            raise InputError(f"line {i} is empty: one record per line")
        out.append((i, line))
    return out


def _decode_csv(text: str) -> list[Any]:
    records: list[Any] = []
    for i, line in _lines(text):
        row = next(csv.reader([line]))
        values = []
        for j, cell in enumerate(row, start=1):
            try:
                values.append(float(cell))
            except ValueError:
                raise InputError(f"line {i}, column {j}: {cell.strip()!r} is not a number (text/csv takes numbers only, no header)") from None
        records.append(values)
    return records


# ---------------------------------------------------------------- predict_fn


def predict_fn(data: Instances | Rejected, model: LoadedModel, context: Any = None) -> list[Any] | Rejected:
    """Run the model on decoded Instances; one JSON-ready prediction per record, in order."""
    if isinstance(data, Rejected):
        return data
    try:
        return _predict(data, model)
    except InputError as e:
        return _reject(e, context)


def _predict(data: Instances, model: LoadedModel) -> list[Any]:
    if not isinstance(data, Instances):
        # A custom input_fn may hand over plain rows; serve them as "predict".
        data = Instances(list(data))
    x = to_matrix(data.records, model)
    if data.output == "proba" and not model.has_proba:
        raise OutputNotSupported(f"this {model.framework} model has no class probabilities: use output=predict")
    try:
        result = model.predict_proba(x) if data.output == "proba" else model.predict(x)
    except Exception:
        # Finite as float64 but not as float32: tree ensembles cast their input down (scikit-learn
        # then raises "Input X contains infinity or a value too large"): the input's fault.
        _refuse_beyond_float32(x)
        raise
    out = np.asarray(result) if not isinstance(result, list) else result
    if isinstance(out, np.ndarray) and out.dtype.kind in "fc" and out.size and not np.isfinite(out).all():
        # JSON cannot carry NaN or infinity; finite inputs the model cannot compute with made it.
        bad = int(np.argwhere(~np.isfinite(out))[0][0]) if out.ndim else 0
        raise InputError(
            f"record {bad}: the model's prediction is not a finite number (NaN or infinity): "
            "its values are outside the range the model can compute with"
        )
    return out.tolist() if isinstance(out, np.ndarray) else out


def to_matrix(records: list[Any], model: LoadedModel) -> Any:
    """Records (lists in feature order, or objects keyed by feature name) -> a float array."""
    rows: list[Any] = []
    for i, rec in enumerate(records):
        if isinstance(rec, dict):
            rows.append(_row_from_object(rec, i, model.feature_names))
        elif isinstance(rec, list):
            rows.append(rec)
        else:
            raise InputError(f"record {i}: expected a list of numbers or an object, got {type(rec).__name__}")
    flat = model.framework != "pytorch"  # TorchScript models take any nested lists of numbers
    try:
        x = np.asarray(rows)
    except (ValueError, TypeError, OverflowError):
        raise InputError(_bad_record_message(rows, flat, model.n_features)) from None
    # Strings ("1.5") or booleans would be coerced silently by numpy: refuse them instead.
    if x.dtype.kind not in "iuf":
        raise InputError(_bad_record_message(rows, flat, model.n_features))
    x = x.astype(np.float64, copy=False)
    if x.ndim == 2 and any(isinstance(v, bool) for row in rows for v in row):
        # numpy reads true as 1.0; JSON booleans are not features.
        raise InputError(_bad_record_message(rows, flat, model.n_features))
    if flat and (x.ndim != 2 or (model.n_features is not None and x.shape[1] != model.n_features)):
        raise InputError(_bad_record_message(rows, flat, model.n_features))
    if not np.isfinite(x).all():
        bad = int(np.argwhere(~np.isfinite(x))[0][0])
        raise InputError(f"record {bad}: values must be finite numbers (no NaN or Infinity)")
    if model.float32:
        _refuse_beyond_float32(x)  # the cast to 32-bit floats would turn such a value into infinity
    return x


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _refuse_beyond_float32(x: Any) -> None:
    too_big = np.abs(x) > _FLOAT32_MAX
    if too_big.any():
        bad = int(np.argwhere(too_big)[0][0])
        raise InputError(f"record {bad}: a value exceeds the 32-bit float range (about 3.4e38) the model computes in")


def _row_from_object(rec: dict[str, Any], i: int, names: list[str] | None) -> list[Any]:
    if names is None:
        raise InputError(f"record {i} is keyed by feature name, but this model has no feature names: send lists in feature order")
    missing = [n for n in names if n not in rec]
    extra = sorted(set(rec) - set(names))
    if missing or extra:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + ([f"unknown {', '.join(extra)}"] if extra else [])
        raise InputError(f"record {i}: {'; '.join(parts)}")
    return [rec[n] for n in names]


def _bad_record_message(rows: list[Any], flat: bool, n_features: int | None) -> str:
    """Why these rows are no matrix, naming the first record at fault."""
    for i, row in enumerate(rows):
        for v in row:
            if isinstance(v, bool) or not isinstance(v, int | float | list) or (flat and isinstance(v, list)):
                return f"record {i}: {v!r} is not a number"
            if isinstance(v, int) and not _fits_float64(v):
                return f"record {i}: {v} is not representable as a 64-bit float"
    expected = n_features if n_features is not None and flat else len(rows[0])
    widths = {len(row) for row in rows}
    if len(widths) == 1 and expected not in widths:  # every record is at fault
        return f"expected {expected} features per record, got {widths.pop()}"
    for i, row in enumerate(rows):
        if len(row) != expected:
            return f"record {i}: expected {expected} features per record, got {len(row)}"
    return "records have different shapes: every record needs the same features"


def _fits_float64(v: int) -> bool:
    try:
        float(v)
    except OverflowError:
        return False
    return True


# ---------------------------------------------------------------- output_fn


def output_fn(prediction: Any, accept: str, context: Any = None) -> Any:
    """Encode predictions as `accept` asks; returns (body, content type), as the toolkit allows.
    A Rejected becomes its error document: (body, JSON) for a toolkit, whose context already holds
    the status, or a Flask response with the status for sagemaker-containers."""
    if isinstance(prediction, Rejected):
        return _error_response(prediction.error, context)
    try:
        return encode(prediction, accept)
    except InputError as e:
        return _error_response(_reject(e, context).error, context)


def _error_response(error: InputError, context: Any) -> Any:
    if _has_status(context):
        return error.body(), JSON
    flask = sys.modules["flask"]
    return flask.Response(error.body(), status=error.status, mimetype=JSON)


def encode(prediction: Any, accept: str) -> tuple[bytes, str]:
    """output_fn for callers outside a model server: (body, content type), or InputError."""
    media, _ = parse_media_type(accept or "*/*")
    if media in ("", "*/*"):
        media, _ = parse_media_type(os.environ.get(DEFAULT_ACCEPT_ENV) or JSON)
    preds = np.asarray(prediction).tolist() if isinstance(prediction, np.ndarray) else list(prediction)
    if media == JSON:
        return json.dumps({"predictions": preds}, separators=(",", ":")).encode(), JSON
    if media in JSONLINES_TYPES:
        return "".join(json.dumps(p, separators=(",", ":")) + "\n" for p in preds).encode(), JSONLINES
    if media == CSV:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        for p in preds:
            writer.writerow(_csv_row(p))
        return buf.getvalue().encode(), CSV
    raise UnsupportedMediaType(f"unsupported Accept {media!r}: use {JSON}, {JSONLINES} or {CSV}")


def _csv_row(p: Any) -> list[Any]:
    if isinstance(p, list):
        if any(isinstance(v, list | dict) for v in p):
            raise InputError("nested predictions cannot be written as text/csv: ask for application/jsonlines")
        return [_csv_cell(v) for v in p]
    if isinstance(p, dict):
        raise InputError("object predictions cannot be written as text/csv: ask for application/jsonlines")
    return [_csv_cell(p)]


def _csv_cell(v: Any) -> Any:
    # repr-exact floats; integral class labels stay integers.
    return repr(v) if isinstance(v, float) and math.isfinite(v) else v
