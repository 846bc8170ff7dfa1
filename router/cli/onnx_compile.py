"""Converting a scikit-learn model to ONNX with skl2onnx and checking that the conversion answers
like the model, on given or generated records, through the router's own inline runner (the same
validation, float32 cast and output conversion as a served request).

CLI-side only (`router models compile`): the handlers never import it, nor skl2onnx.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from router.config import ModelSpec
from router.errors import RouterError

# Opsets onnxruntime has supported for years; ai.onnx.ml 3 stores tree thresholds as tensors.
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}


class CompileError(Exception):
    """The model cannot be converted, or the conversion does not pass the check."""


@dataclass
class Sample:
    rows: list[list[float]]
    data: str  # where the rows came from, for the output and the config


@dataclass
class CheckResult:
    kind: str  # "classifier" or "regressor"
    rows: int
    data: str
    tolerance: float
    agreement: float | None = None
    max_abs_error: float | None = None
    max_rel_error: float | None = None
    disagreeing: list[int] = field(default_factory=list)  # first few record indexes that differ
    differing: int = 0  # classifiers: records whose labels differ
    ties: int | None = None  # of those, records where the model's own top two probabilities tie

    @property
    def passed(self) -> bool:
        if self.kind == "classifier":
            return self.agreement is not None and self.agreement >= self.tolerance
        return self.max_abs_error is not None and self.max_abs_error <= self.tolerance

    def summary(self) -> str:
        if self.kind == "classifier":
            text = f"labels agree on {self.agreement:.2%} of {self.rows:,} records (tolerance: at least {self.tolerance:.2%})"
            if self.differing and self.ties is not None:
                text += f"; {self.ties} of the {self.differing} that differ are ties in the model's own probabilities"
            return text
        return (
            f"largest absolute error {self.max_abs_error:.3g} (relative {self.max_rel_error:.3g}) over {self.rows:,} records "
            f"(tolerance: at most {self.tolerance:g})"
        )

    def config_entry(self, artifact: str, sha256: str) -> dict[str, Any]:
        entry: dict[str, Any] = {"artifact": artifact, "sha256": sha256, "rows": self.rows, "data": self.data, "tolerance": self.tolerance}
        if self.kind == "classifier":
            entry["agreement"] = round(float(self.agreement or 0.0), 6)
        else:
            entry["max_abs_error"] = float(f"{self.max_abs_error:.3g}")
        return entry


def is_classifier(estimator: Any) -> bool:
    from sklearn.base import is_classifier as sk_is_classifier

    return bool(sk_is_classifier(estimator))


def final_step(estimator: Any) -> Any:
    """The last estimator of a (nested) Pipeline: the one whose options (zipmap) apply."""
    steps = getattr(estimator, "steps", None)
    return final_step(steps[-1][1]) if steps else estimator


def n_features(estimator: Any, spec: ModelSpec) -> int:
    n = getattr(estimator, "n_features_in_", None)
    if n is None and spec.features:
        n = len(spec.features)
    if n is None:
        raise CompileError("cannot tell the model's number of features (no n_features_in_, no `features` in the config)")
    return int(n)


def convert(estimator: Any, width: int) -> bytes:
    """The skl2onnx conversion: one float32 input [N, width]; classifiers' probabilities as a
    tensor (no ZipMap: plain arrays are cheaper to return)."""
    try:
        from skl2onnx import to_onnx
    except ImportError as e:
        raise CompileError(f"skl2onnx is not installed ({e}); install the `onnx` extra: pip install 'lambda-sagemaker-router[onnx]'") from None
    options = {id(final_step(estimator)): {"zipmap": False}} if is_classifier(estimator) else None
    try:
        onx = to_onnx(estimator, np.zeros((1, width), dtype=np.float32), options=options, target_opset=TARGET_OPSET)
    except Exception as e:  # skl2onnx raises many types (MissingShapeCalculator, RuntimeError, ...)
        detail = f"{type(e).__name__}: {e}".splitlines()[0][:300]
        raise CompileError(f"skl2onnx cannot convert {type(estimator).__name__} ({detail})") from None
    return bytes(onx.SerializeToString())


def sample(estimator: Any, width: int, rows: int, seed: int) -> Sample:
    """Records to compare on, generated from what the model itself says about its inputs:

    - a StandardScaler first step: normal with the scaler's mean and scale per feature;
    - a MinMaxScaler first step: uniform over the training range it recorded;
    - trees (a tree, a forest, gradient boosting): uniform over each feature's split thresholds,
      widened by 10% on each side (features never split on: 0);
    - anything else: standard normal (mean 0, standard deviation 1), which fits standardized
      inputs only: give --data for anything else.
    """
    rng = np.random.default_rng(seed)
    first = estimator.steps[0][1] if getattr(estimator, "steps", None) else estimator
    name = type(first).__name__
    if name == "StandardScaler" and getattr(first, "mean_", None) is not None:
        scale = np.where(first.scale_ > 0, first.scale_, 1.0) if first.scale_ is not None else np.ones(width)
        x = rng.normal(first.mean_, scale, size=(rows, width))
        how = "generated: normal per feature with the StandardScaler's mean and scale"
    elif name == "MinMaxScaler" and getattr(first, "data_min_", None) is not None:
        x = rng.uniform(first.data_min_, first.data_max_, size=(rows, width))
        how = "generated: uniform per feature over the MinMaxScaler's training range"
    else:
        bounds = _split_ranges(final_step(estimator), width)
        if bounds is not None:
            lo, hi = bounds
            x = rng.uniform(lo, hi, size=(rows, width))
            how = "generated: uniform per feature over the trees' split thresholds, widened by 10%"
        else:
            x = rng.normal(0.0, 1.0, size=(rows, width))
            how = "generated: standard normal per feature (mean 0, sd 1)"
    return Sample(rows=x.tolist(), data=f"{how}, {rows:,} records, seed {seed}")


def _split_ranges(estimator: Any, width: int) -> tuple[np.ndarray, np.ndarray] | None:
    trees = _trees(estimator)
    if not trees:
        return None
    lo, hi = np.full(width, np.inf), np.full(width, -np.inf)
    for tree in trees:
        inner = tree.feature >= 0  # leaves are -2
        for j, t in zip(tree.feature[inner], tree.threshold[inner], strict=True):
            lo[j], hi[j] = min(lo[j], t), max(hi[j], t)
    unused = lo > hi
    lo[unused], hi[unused] = 0.0, 0.0
    pad = np.maximum((hi - lo) * 0.1, 1e-3)
    return lo - pad, hi + pad


def _trees(estimator: Any) -> list[Any]:
    """The fitted sklearn Tree objects of a tree or tree ensemble; [] for anything else."""
    if hasattr(estimator, "tree_"):
        return [estimator.tree_]
    members = getattr(estimator, "estimators_", None)
    if members is None:
        return []
    flat = np.asarray(members, dtype=object).ravel().tolist()  # gradient boosting: [stages, classes]
    return [t for m in flat for t in _trees(m)]


def load_data(path: Path, spec: ModelSpec, rows: int | None) -> Sample:
    """Records from a JSON Lines (lists or objects by feature name) or CSV (numbers) file, at
    most `rows` of them when given."""
    from router.features import FeatureSchema
    from router.jobs_io import read_chunks

    fmt = "csv" if path.suffix.lower() == ".csv" else "jsonl"
    limit = rows if rows is not None else 1_000_000
    records: list[Any] = []
    try:
        for chunk in read_chunks(path.open("rb"), fmt, 10_000, 0):
            records.extend(chunk)
            if len(records) >= limit:
                break
    except OSError as e:
        raise CompileError(f"cannot read --data {path}: {e.strerror or e}") from None
    except RouterError as e:
        raise CompileError(f"--data {path}: {e.message}") from None
    if not records:
        raise CompileError(f"--data {path} holds no records")
    records = records[:limit]
    schema = FeatureSchema(names=tuple(spec.features) if spec.features else None, n_features=None)
    try:
        matrix = schema.to_matrix(records)
    except RouterError as e:
        raise CompileError(f"--data {path}: {e.message}") from None
    return Sample(rows=matrix.tolist(), data=f"{path.name} ({fmt}), {len(records):,} records")


def check(spec: ModelSpec, onnx_path: Path, estimator: Any, data: Sample, tolerance: float) -> CheckResult:
    """Both through the router's inline runner (validation, float32 cast, outputs as served)."""
    from router.cli.wiring import file_store, inline_runner
    from router.domain import OutputKind

    kind = "classifier" if is_classifier(estimator) else "regressor"
    tol = tolerance
    digest = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    as_onnx = spec.model_copy(update={"framework": "onnx", "artifact": onnx_path.as_uri(), "sha256": digest, "onnx": None})
    as_sklearn = spec.model_copy(update={"onnx": None})
    with tempfile.TemporaryDirectory(prefix="router-compile-") as cache:
        runner = inline_runner(file_store(), Path(cache))
        try:
            want = runner.predict(as_sklearn, data.rows, OutputKind.PREDICT)
            got = runner.predict(as_onnx, data.rows, OutputKind.PREDICT)
        except RouterError as e:
            raise CompileError(f"the check could not run: {e.message}") from None
    result = CheckResult(kind=kind, rows=len(data.rows), data=data.data, tolerance=tol)
    if kind == "classifier":
        same = np.array([a == b for a, b in zip(want, got, strict=True)])
        result.agreement = float(same.mean())
        result.differing = int((~same).sum())
        result.disagreeing = np.flatnonzero(~same)[:5].tolist()
        if result.differing and hasattr(estimator, "predict_proba"):
            # A tie is decided by the first class in sklearn, by float32 rounding in ONNX.
            proba = np.asarray(estimator.predict_proba(np.asarray(data.rows)[~same]))
            if proba.ndim == 2 and proba.shape[1] >= 2:
                top = np.sort(proba, axis=1)
                result.ties = int((top[:, -1] - top[:, -2] <= 1e-6).sum())
    else:
        a, b = np.asarray(want, dtype=np.float64), np.asarray(got, dtype=np.float64)
        err = np.abs(a - b)
        result.max_abs_error = float(err.max())
        result.max_rel_error = float((err / np.maximum(np.abs(a), 1e-12)).max())
        result.disagreeing = np.argsort(-err)[:5].tolist() if result.max_abs_error > tol else []
    return result
