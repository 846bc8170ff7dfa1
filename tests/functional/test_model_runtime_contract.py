"""One model, two runtimes: the inline runner (router/adapters/inline.py, in the router's process)
and the SageMaker inference contract (sagemaker_jobs/inference.py, as SageMaker's framework images
run it) load the same model.tar.gz and must answer the same records with the same predictions, and
refuse the same records as the client's fault (inline: 422 invalid_input / output_not_supported;
SageMaker: 400 with the same code), naming the same record.

Both sides are the real code paths: `router models package` builds the archive (its code/ holds a
copy of inference.py), the emulator's loader imports that copy as SageMaker does, and the inline
runner fetches the archive through the file store, checks its digest and extracts the model file.
Each answer is also compared with the framework's own (estimator.predict, InferenceSession.run,
the TorchScript module), so "equal" cannot mean "equally wrong"."""

from __future__ import annotations

import hashlib
import json
import math
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from router.adapters.file_store import FileObjectStore
from router.adapters.inline import InlineRunner
from router.config import ModelSpec
from router.domain import OutputKind
from router.errors import InvalidInput, OutputNotSupported, RouterError
from sagemaker_jobs.package import build_package, unpack
from sagemaker_jobs.serve import ModelService, load_service
from tests.deep import require_torch, save_torchscript

IRIS = load_iris()
X, Y = IRIS.data, IRIS.target
NAMES = [str(c) for c in IRIS.feature_names]  # "sepal length (cm)", ...


@dataclass(frozen=True)
class Refused:
    """A client error as either runtime reports it: the code, and the record it names (if any)."""

    code: str
    record: int | None


Answer = list[Any] | Refused


@dataclass
class Model:
    """One model file, packaged once, and a way to get the framework's own answer for rows."""

    name: str
    framework: str
    package: Path
    n_features: int
    reference: Callable[[np.ndarray, str], list[Any]]
    feature_names: list[str] | None = None
    float32: bool = False  # the graph computes in 32-bit floats


def _package(root: Path, name: str, framework: str, model_file: Path) -> Path:
    return build_package(model_file, root / f"{name}.tar.gz", framework=framework).path


def _sklearn(root: Path, name: str, est: Any, n: int, names: list[str] | None = None) -> Model:
    path = root / f"{name}.joblib"
    joblib.dump(est, path)

    def reference(x: np.ndarray, output: str) -> list[Any]:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="X does not have valid feature names")
            out = est.predict_proba(x) if output == "proba" else est.predict(x)
        return np.asarray(out).tolist()  # type: ignore[no-any-return]

    return Model(name, "sklearn", _package(root, name, "sklearn", path), n, reference, names)


def _onnx(root: Path, name: str, est: Any, n: int, *, zipmap: bool | None, dtype: Any = np.float32) -> Model:
    import onnxruntime as ort
    from skl2onnx import to_onnx

    options = {id(est): {"zipmap": zipmap}} if zipmap is not None else None
    onx = to_onnx(est, np.zeros((1, n), dtype=dtype), options=options, target_opset=17)
    path = root / f"{name}.onnx"
    path.write_bytes(onx.SerializeToString())
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def reference(x: np.ndarray, output: str) -> list[Any]:
        outs = sess.run(None, {sess.get_inputs()[0].name: x.astype(dtype)})
        if output == "proba":
            proba = outs[1]
            return [list(map(float, r.values())) for r in proba] if isinstance(proba, list) else np.asarray(proba).tolist()
        label = np.asarray(outs[0])
        return (label[:, 0] if label.ndim == 2 else label).tolist()  # type: ignore[no-any-return]

    return Model(name, "onnx", _package(root, name, "onnx", path), n, reference, float32=dtype is np.float32)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Model]:
    root = tmp_path_factory.mktemp("runtime-contract")
    logreg = LogisticRegression(max_iter=1000).fit(X, Y)
    forest = RandomForestClassifier(n_estimators=8, random_state=0).fit(X, Y)
    linreg = LinearRegression().fit(X[:, :3], X[:, 3])
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, Y)
    # As if fitted on a DataFrame (no pandas here): the pipeline knows its feature names, so
    # records may be objects, and sklearn warns on every plain array.
    pipeline[0].feature_names_in_ = np.asarray(NAMES, dtype=object)
    built = [
        _sklearn(root, "logreg", logreg, 4),
        _sklearn(root, "forest", forest, 4),
        _sklearn(root, "linreg", linreg, 3),
        _sklearn(root, "pipeline", pipeline, 4, NAMES),
        _onnx(root, "forest-onnx", forest, 4, zipmap=True),
        _onnx(root, "logreg-onnx", logreg, 4, zipmap=False),
        _onnx(root, "linreg-onnx", linreg, 3, zipmap=None),
        _onnx(root, "linreg-onnx64", linreg, 3, zipmap=None, dtype=np.float64),
    ]
    return {m.name: m for m in built}


# ---------------------------------------------------------------- the two runtimes


class InlineSide:
    def __init__(self, cache: Path) -> None:
        self.runner = InlineRunner(FileObjectStore(b"runtime-contract-key"), cache)

    def answer(self, model: Model, records: Any, output: str) -> Answer:
        spec = ModelSpec(
            name=model.name,
            framework=model.framework,  # type: ignore[arg-type]
            artifact=f"file://{model.package}",
            sha256=hashlib.sha256(model.package.read_bytes()).hexdigest(),
        )
        try:
            return self.runner.predict(spec, records, OutputKind(output))
        except (InvalidInput, OutputNotSupported) as e:
            assert e.status == 422
            index = e.details.get("index")
            return Refused(e.code, index if isinstance(index, int) else None)


class SageMakerSide:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.services: dict[str, ModelService] = {}

    def service(self, model: Model) -> ModelService:
        if model.name not in self.services:
            dest = self.root / model.name
            unpack(model.package, dest)
            assert (dest / "code" / "inference.py").is_file()  # the packaged copy is what runs
            self.services[model.name] = load_service(dest)
        return self.services[model.name]

    def answer(self, model: Model, records: Any, output: str) -> Answer:
        # What a client sends the endpoint (allow_nan: the NaN/Infinity tokens Python would write).
        body = json.dumps({"instances": records, "output": output}).encode()
        try:
            out, ctype = self.service(model).invoke(body, "application/json", "application/json")
        except ValueError as e:  # the packaged copy's InputError: another class, same shape
            status, code = getattr(e, "status", None), getattr(e, "code", None)
            assert status == 400 and isinstance(code, str), (status, code, e)
            found = re.search(r"\brecord (\d+)\b", str(e))
            if found is None and "features per record" in str(e):
                return Refused(code, 0)  # every record has the wrong width: the first is at fault
            return Refused(code, int(found.group(1)) if found else None)
        assert ctype == "application/json"
        predictions: list[Any] = json.loads(out)["predictions"]
        return predictions


@pytest.fixture(scope="module")
def sagemaker_side(tmp_path_factory: pytest.TempPathFactory) -> SageMakerSide:
    return SageMakerSide(tmp_path_factory.mktemp("sagemaker"))


@pytest.fixture
def sides(tmp_path: Path, sagemaker_side: SageMakerSide) -> tuple[InlineSide, SageMakerSide]:
    # A runner per test, as a process loads a model: the inline runner silences scikit-learn's
    # feature-name warning when it loads such a model, and pytest restores the filters per test.
    return InlineSide(tmp_path / "inline-cache"), sagemaker_side


def _same(a: list[Any], b: list[Any], *, float32: bool) -> bool:
    """Equal predictions: labels exactly; numbers to float32 precision where the graph computes in it."""
    if len(a) != len(b):
        return False
    for p, q in zip(a, b, strict=True):
        if isinstance(p, list) and isinstance(q, list):
            if not _same(p, q, float32=float32):
                return False
        elif isinstance(p, float) or isinstance(q, float):
            if not isinstance(p, int | float) or not isinstance(q, int | float):
                return False
            if not math.isclose(p, q, rel_tol=1e-6 if float32 else 1e-12, abs_tol=1e-9 if float32 else 0.0):
                return False
        elif p != q or type(p) is not type(q):
            return False
    return True


def both(sides: tuple[InlineSide, SageMakerSide], model: Model, records: Any, output: str = "predict") -> Answer:
    inline, sagemaker = sides
    a, b = inline.answer(model, records, output), sagemaker.answer(model, records, output)
    if isinstance(a, Refused) or isinstance(b, Refused):
        assert a == b, f"{model.name}: inline answered {a!r}, SageMaker {b!r}"
        return a
    assert _same(a, b, float32=model.float32), f"{model.name}: inline {a[:3]!r}... SageMaker {b[:3]!r}..."
    return a


# ---------------------------------------------------------------- accepted records

ALL = ["logreg", "forest", "linreg", "pipeline", "forest-onnx", "logreg-onnx", "linreg-onnx", "linreg-onnx64"]
CLASSIFIERS = ["logreg", "forest", "pipeline", "forest-onnx", "logreg-onnx"]


def rows(model: Model, n: int, start: int = 0) -> list[list[float]]:
    return [[float(v) for v in r[: model.n_features]] for r in X[start : start + n]]


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("n", [1, 7, 150])  # one row; a small request (the inline fast path); a batch
def test_list_records_get_the_same_predictions_as_the_framework(
    models: dict[str, Model], sides: tuple[InlineSide, SageMakerSide], name: str, n: int
) -> None:
    model = models[name]
    records = rows(model, n, start=3)
    answer = both(sides, model, records)
    assert isinstance(answer, list)
    assert _same(answer, model.reference(np.asarray(records), "predict"), float32=model.float32)


@pytest.mark.parametrize("name", CLASSIFIERS)
@pytest.mark.parametrize("n", [1, 150])
def test_class_probabilities_are_the_same_on_both(
    models: dict[str, Model], sides: tuple[InlineSide, SageMakerSide], name: str, n: int
) -> None:
    model = models[name]
    records = rows(model, n)
    answer = both(sides, model, records, "proba")
    assert isinstance(answer, list) and all(isinstance(p, list) and math.isclose(sum(p), 1.0, rel_tol=1e-5) for p in answer)
    assert _same(answer, model.reference(np.asarray(records), "proba"), float32=model.float32)


@pytest.mark.parametrize("name", ["logreg", "linreg-onnx", "linreg-onnx64"])
def test_integer_values_are_numbers_like_any_other(
    models: dict[str, Model], sides: tuple[InlineSide, SageMakerSide], name: str
) -> None:
    model = models[name]
    ints = [[5, 3, 1, 0][: model.n_features], [7, 3, 6, 2][: model.n_features]]
    floats = [[float(v) for v in r] for r in ints]
    assert both(sides, model, ints) == both(sides, model, floats)


def test_records_keyed_by_feature_name_follow_the_models_order(
    models: dict[str, Model], sides: tuple[InlineSide, SageMakerSide]
) -> None:
    model = models["pipeline"]
    records = rows(model, 5, start=40)
    # Keys in reverse order, one record left as a list: the order the model knows decides.
    objects: list[Any] = [dict(reversed(list(zip(NAMES, r, strict=True)))) for r in records]
    objects[2] = records[2]
    assert both(sides, model, objects) == both(sides, model, records)
    assert both(sides, model, objects, "proba") == both(sides, model, records, "proba")


# ---------------------------------------------------------------- refused records

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize(
    ("make", "record"),
    [
        (lambda r: [r, r[:-1]], 1),  # one record too short
        (lambda r: [r, r, [*r, 1.0]], 2),  # one record too long
        (lambda r: [r[:-1]], 0),  # a single row of the wrong width
        (lambda r: [r, [NAN, *r[1:]]], 1),
        (lambda r: [[*r[:-1], INF]], 0),
        (lambda r: [r, r, [-INF, *r[1:]]], 2),
        (lambda r: [r, [*r[:-1], "1.5"]], 1),  # a string is not a number, even one that parses
        (lambda r: [[True, *r[1:]]], 0),  # nor is a boolean
        (lambda r: [r, [None, *r[1:]]], 1),
        (lambda r: [r, 7], 1),  # a record that is not a list
        (lambda r: [r, [r]], 1),  # nested
    ],
)
def test_bad_records_are_refused_by_both_naming_the_record(
    models: dict[str, Model], sides: tuple[InlineSide, SageMakerSide], name: str, make: Any, record: int
) -> None:
    model = models[name]
    answer = both(sides, model, make(rows(model, 1)[0]))
    assert answer == Refused("invalid_input", record)


@pytest.mark.parametrize("records", [[], {}, "1,2,3", 5])
def test_no_records_is_refused_by_both(
    models: dict[str, Model], sides: tuple[InlineSide, SageMakerSide], records: Any
) -> None:
    answer = both(sides, models["logreg"], records)
    assert isinstance(answer, Refused) and answer.code == "invalid_input"


@pytest.mark.parametrize("name", ["logreg", "logreg-onnx"])
def test_object_records_need_a_model_that_knows_feature_names(
    models: dict[str, Model], sides: tuple[InlineSide, SageMakerSide], name: str
) -> None:
    record = dict(zip(NAMES, rows(models[name], 1)[0], strict=True))
    assert both(sides, models[name], [rows(models[name], 1)[0], record]) == Refused("invalid_input", 1)


def test_unknown_or_missing_feature_names_are_refused(models: dict[str, Model], sides: tuple[InlineSide, SageMakerSide]) -> None:
    model = models["pipeline"]
    record = dict(zip(NAMES, rows(model, 1)[0], strict=True))
    missing = {k: v for k, v in record.items() if k != NAMES[0]}
    unknown = {**missing, "sepal lenght (cm)": 5.0}
    extra = {**record, "colour": 1.0}
    for bad in (missing, unknown, extra):
        assert both(sides, model, [record, bad]) == Refused("invalid_input", 1)


@pytest.mark.parametrize("name", ["forest", "forest-onnx", "linreg-onnx"])  # trees cast to float32 inside
def test_values_beyond_float32_are_refused_where_the_model_computes_in_float32(
    models: dict[str, Model], sides: tuple[InlineSide, SageMakerSide], name: str
) -> None:
    model = models[name]
    r = rows(model, 1)[0]
    assert both(sides, model, [r, [1e39, *r[1:]]]) == Refused("invalid_input", 1)


def test_a_float64_graph_takes_values_beyond_float32(models: dict[str, Model], sides: tuple[InlineSide, SageMakerSide]) -> None:
    model = models["linreg-onnx64"]
    answer = both(sides, model, [[1e39, 0.0, 0.0]])
    assert isinstance(answer, list) and math.isfinite(answer[0])


def test_a_prediction_that_is_not_finite_is_refused_not_sent_as_nan(
    tmp_path: Path, sides: tuple[InlineSide, SageMakerSide]
) -> None:
    # Finite inputs whose linear combination overflows float64: JSON cannot carry the answer.
    steep = LinearRegression().fit(X[:, :3], 1000 * X[:, 3])
    model = _sklearn(tmp_path, "steep", steep, 3)
    huge = [math.copysign(1e308, c) for c in steep.coef_]
    assert both(sides, model, [[1.0, 1.0, 1.0], huge]) == Refused("invalid_input", 1)


@pytest.mark.parametrize("name", ["linreg", "linreg-onnx"])
def test_regressors_have_no_probabilities_on_either(
    models: dict[str, Model], sides: tuple[InlineSide, SageMakerSide], name: str
) -> None:
    model = models[name]
    assert both(sides, model, rows(model, 2), "proba") == Refused("output_not_supported", None)


# ---------------------------------------------------------------- TorchScript (SageMaker only)


def test_torchscript_runs_on_sagemaker_as_the_module_does_and_never_inline(tmp_path: Path) -> None:
    torch = require_torch()
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    pt = save_torchscript(net, tmp_path / "net.pt")
    package = build_package(pt, tmp_path / "net.tar.gz", framework="pytorch").path
    model = Model("net", "pytorch", package, 4, lambda x, o: [])
    sagemaker = SageMakerSide(tmp_path / "sagemaker")
    records = rows(model, 6)
    with torch.no_grad():
        logits = net(torch.as_tensor(np.asarray(records, dtype=np.float32))).numpy()
    answer = sagemaker.answer(model, records, "predict")
    assert isinstance(answer, list) and _same(answer, logits.tolist(), float32=True)
    proba = sagemaker.answer(model, records, "proba")
    softmax = np.exp(logits - logits.max(axis=1, keepdims=True))
    assert isinstance(proba, list) and _same(proba, (softmax / softmax.sum(axis=1, keepdims=True)).tolist(), float32=True)
    assert sagemaker.answer(model, [records[0], [NAN, 1.0, 2.0, 3.0]], "predict") == Refused("invalid_input", 1)
    # The router never imports torch: a TorchScript model is not a model the inline runner takes.
    inline = InlineRunner(FileObjectStore(b"runtime-contract-key"), tmp_path / "cache")
    spec = ModelSpec(name="net", framework="pytorch", artifact=f"file://{package}", sha256=hashlib.sha256(package.read_bytes()).hexdigest())
    with pytest.raises(RouterError, match="cannot run in-process"):
        inline.predict(spec, records, OutputKind.PREDICT)


# ---------------------------------------------------------------- custom code/inference.py


def test_custom_code_runs_on_sagemaker_and_is_refused_inline_at_load(
    tmp_path: Path, models: dict[str, Model], sides: tuple[InlineSide, SageMakerSide]
) -> None:
    code = tmp_path / "code"
    code.mkdir()
    # The operator's own predict_fn (the other three fall back to the contract's defaults).
    (code / "inference.py").write_text("def predict_fn(data, model):\n    return [len(r) for r in data.records]\n")
    joblib.dump(LogisticRegression(max_iter=1000).fit(X, Y), tmp_path / "m.joblib")
    package = build_package(tmp_path / "m.joblib", tmp_path / "custom.tar.gz", framework="sklearn", code_dir=code).path
    model = Model("custom", "sklearn", package, 4, lambda x, o: [])
    inline, _ = sides
    assert SageMakerSide(tmp_path / "sagemaker").answer(model, rows(model, 3), "predict") == [4, 4, 4]
    with pytest.raises(RouterError, match=r"custom code/inference\.py, which only runs on SageMaker; set `inline: false`"):
        inline.answer(model, rows(model, 3), "predict")
