"""Runs scikit-learn (joblib) and ONNX models inside the router process: the `inline` route.

Artifacts are fetched into the Lambda's /tmp, their SHA-256 checked before anything is
deserialized, and kept loaded across calls. Inputs are validated before the model sees them.
"""

from __future__ import annotations

import hashlib
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from router.config import ModelSpec
from router.domain import OutputKind
from router.errors import (
    InternalError,
    InvalidInput,
    ModelIntegrityError,
    ModelRejectedInput,
    OutputNotSupported,
    RouterError,
    model_message,
)
from router.features import FeatureSchema, Matrix
from router.kernels import kernel_for
from router.ports import ObjectStore

# ---------------------------------------------------------------- loaders


class LoadedModel(Protocol):
    """One deserialized model behind a framework-neutral interface."""

    n_features: int | None
    feature_names: tuple[str, ...] | None
    has_proba: bool
    input_dtype: type[np.floating[Any]]  # what predict() takes: the runner builds the matrix in it

    # checked: every value of x is finite and within float32's range (the runner proved it), so
    # a framework's own finiteness check on it may be skipped.
    def predict(self, x: Matrix, *, checked: bool = False) -> list[Any]: ...

    def predict_proba(self, x: Matrix, *, checked: bool = False) -> list[Any]: ...


class _SklearnModel:
    input_dtype: type[np.floating[Any]] = np.float64

    def __init__(self, estimator: Any) -> None:
        self._est = estimator
        n = getattr(estimator, "n_features_in_", None)
        self.n_features: int | None = int(n) if n is not None else None
        names = getattr(estimator, "feature_names_in_", None)
        self.feature_names: tuple[str, ...] | None = tuple(str(s) for s in names) if names is not None else None
        if names is not None:
            # Fitted on a DataFrame: sklearn would warn on every ndarray call. The runner maps
            # names to columns itself (FeatureSchema), so silence exactly that warning, once.
            warnings.filterwarnings("ignore", message="X does not have valid feature names", category=UserWarning)
        # Pipelines expose predict_proba only when their last step has it (available_if).
        self.has_proba = hasattr(estimator, "predict_proba")
        self._direct = _takes_input_directly(estimator)
        self.kernel = kernel_for(estimator)

    def predict(self, x: Matrix, *, checked: bool = False) -> list[Any]:
        if checked and self.kernel is not None:
            return _jsonable(self.kernel.predict(x))
        if checked and self._direct:
            with _assume_finite():
                return _jsonable(self._est.predict(x))
        return _jsonable(self._est.predict(x))

    def predict_proba(self, x: Matrix, *, checked: bool = False) -> list[Any]:
        if checked and self.kernel is not None and self.kernel.predict_proba is not None:
            return _per_record(self.kernel.predict_proba(x))
        if checked and self._direct:
            with _assume_finite():
                return _per_record(self._est.predict_proba(x))
        return _per_record(self._est.predict_proba(x))


# Estimators whose predict computes on the request's matrix itself: no transformer, pipeline
# step or wrapped estimator of the operator's in between (a gradient boosting `init` is checked
# in _takes_input_directly). A float32 cast of a matrix the runner bounded is finite too.
_DIRECT_MODULES = (
    "sklearn.linear_model.", "sklearn.tree.", "sklearn.ensemble._forest", "sklearn.ensemble._gb",
    "sklearn.ensemble._hist_gradient_boosting.", "sklearn.ensemble._iforest", "sklearn.svm.",
    "sklearn.neighbors.", "sklearn.naive_bayes", "sklearn.neural_network.", "sklearn.discriminant_analysis",
    "sklearn.dummy",
)


def _takes_input_directly(estimator: Any) -> bool:
    """For such an estimator, sklearn's finiteness check of the input (its `assume_finite`) only
    repeats the runner's; any other model (a Pipeline, a wrapper) keeps every check of its steps."""
    if not type(estimator).__module__.startswith(_DIRECT_MODULES):
        return False
    try:
        params = estimator.get_params(deep=False)
    except Exception:
        return False
    return all(_takes_input_directly(v) for v in params.values() if hasattr(v, "get_params") and not isinstance(v, type))


def _assume_finite() -> Any:
    import sklearn  # imported with the model already

    return sklearn.config_context(assume_finite=True)


def _per_record(proba: Any) -> list[Any]:
    """predict_proba as one entry per record. Multi-output classifiers (MultiOutputClassifier, a
    forest fitted on a 2-D y) answer a list with one [records, classes] array per output; the
    contract wants one prediction per record: [[p(output 0)...], [p(output 1)...]] for each."""
    if isinstance(proba, list):
        per_output = [_jsonable(a) for a in proba]
        return [list(row) for row in zip(*per_output, strict=True)]
    return _jsonable(proba)


def onnx_session(path: Path) -> Any:
    """An onnxruntime CPU session as the router runs it: one thread per call. Concurrency comes
    from requests (Lambda instances, `router serve`'s threads), and a small request pays no
    thread hand-off: a sleeping intra-op pool costs ~5-40 us to wake per call, a spinning one
    burns the CPU share the next request needs (a 128-1769 MB Lambda has at most one vCPU)."""
    import onnxruntime as ort  # lazy: only deployments with ONNX models pay for it

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


class _OnnxModel:
    """skl2onnx graphs: classifiers output (label, probabilities) where probabilities are a
    tensor [N, C] (zipmap=False) or a sequence of {class: p} maps (ZipMap); regressors one tensor."""

    def __init__(self, path: Path) -> None:
        self._sess = onnx_session(path)
        inputs = self._sess.get_inputs()
        if len(inputs) != 1:
            # e.g. skl2onnx from a DataFrame with one input per column: records here are rows.
            raise ValueError(f"the graph has {len(inputs)} inputs; only ONNX models with one 2-D input tensor run inline")
        inp = inputs[0]
        self._input = inp.name
        self.input_dtype: type[np.floating[Any]] = np.float32 if inp.type == "tensor(float)" else np.float64
        shape = inp.shape
        self.n_features: int | None = shape[1] if len(shape) == 2 and isinstance(shape[1], int) else None
        self.feature_names: tuple[str, ...] | None = None
        outputs = self._sess.get_outputs()
        label = next((o for o in outputs if "label" in o.name.lower()), outputs[0])
        proba = next((o for o in outputs if "prob" in o.name.lower()), None)
        if proba is None and len(outputs) >= 2:
            proba = next(o for o in outputs if o.name != label.name)
        self._label = [label.name]
        self._proba = [proba.name] if proba is not None else None
        self.has_proba = proba is not None
        # The native session's run, without the Python wrapper's per-call checks (input names
        # against the graph, OrtValue ownership, WebGPU capture): the feed is always the one
        # input checked above and a CPU numpy array, so they cannot fail (~10 us a call).
        native_run = getattr(getattr(self._sess, "_sess", None), "run", None)
        self._call: Any = native_run if callable(native_run) else self._sess.run

    def _run(self, names: list[str], x: Matrix) -> Any:
        return self._call(names, {self._input: x}, None)[0]

    def predict(self, x: Matrix, *, checked: bool = False) -> list[Any]:
        out = self._call(self._label, {self._input: x}, None)[0]
        if isinstance(out, np.ndarray):
            if out.ndim == 2 and out.shape[1] == 1:
                out = out[:, 0]  # regressors: [N, 1] -> one number per record
            if out.dtype.kind in "iub":  # integer or boolean labels: always finite, plain JSON
                labels: list[Any] = out.tolist()
                return labels
        return _jsonable(out)

    def predict_proba(self, x: Matrix, *, checked: bool = False) -> list[Any]:
        assert self._proba is not None
        out = self._run(self._proba, x)
        if isinstance(out, list):  # ZipMap: one {class: probability} per row, in class order
            return [[float(p) for p in row.values()] for row in out]
        return _jsonable(out)


def _load_sklearn(path: Path) -> LoadedModel:
    import joblib

    return _SklearnModel(joblib.load(path))


def _load_onnx(path: Path) -> LoadedModel:
    return _OnnxModel(path)


LOADERS = {"sklearn": _load_sklearn, "onnx": _load_onnx}
_SUFFIX = {"sklearn": ".joblib", "onnx": ".onnx"}
_TAR_SUFFIXES = (".tar.gz", ".tgz")
# model.tar.gz layout (sagemaker_jobs/inference.py): the model file at the root under this name.
_PACKAGED_NAME = {"sklearn": "model.joblib", "onnx": "model.onnx"}
# The first line of the router's own code/inference.py, which `router models package` puts in
# every archive (any version): other code is the operator's and only runs on SageMaker.
_OWN_INFERENCE_MARKER = b"SageMaker's framework-container inference contract"
_CHUNK = 1 << 20


def is_package(artifact: str) -> bool:
    """A model.tar.gz artifact (model file + code/), as opposed to a bare joblib / .onnx file."""
    return artifact.lower().endswith(_TAR_SUFFIXES)


def _extract_model_file(archive: Path, model_name: str, framework: str, dest: Path) -> None:
    """Copy the packaged model file out of a model.tar.gz (only that member, as a plain file, so no
    member name is ever used as a path). Refuses archives with their own inference code: it is
    what SageMaker would run, and the inline route cannot run it."""
    import tarfile

    wanted = _PACKAGED_NAME[framework]
    try:
        with tarfile.open(archive, mode="r:*") as tar:
            members = {m.name.removeprefix("./"): m for m in tar.getmembers()}
            code = members.get("code/inference.py")
            if code is not None and code.isfile():
                src = tar.extractfile(code)
                head = src.read(4096) if src is not None else b""
                if _OWN_INFERENCE_MARKER not in head:
                    raise InternalError(
                        f"model {model_name!r}: its model.tar.gz brings custom code/inference.py, which only runs on "
                        "SageMaker; set `inline: false` for this model (and give it an endpoint or batch_transform)",
                        details={"model": model_name},
                    )
            member = members.get(wanted)
            if member is None or not member.isfile():
                found = ", ".join(sorted(n for n, m in members.items() if m.isfile())) or "no files"
                raise InternalError(
                    f"model {model_name!r}: its model.tar.gz has no {wanted} at the archive root (found: {found})",
                    details={"model": model_name, "expected": wanted},
                )
            src = tar.extractfile(member)
            assert src is not None  # a regular file always has data
            tmp = dest.with_name(f".{dest.name}.{threading.get_ident()}.extract")
            try:
                with src, tmp.open("wb") as f:
                    while block := src.read(_CHUNK):
                        f.write(block)
                tmp.replace(dest)
            finally:
                tmp.unlink(missing_ok=True)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise InternalError(
            f"model {model_name!r}: its artifact is not a readable model.tar.gz ({type(e).__name__})",
            details={"model": model_name},
        ) from e


def _jsonable(value: Any) -> list[Any]:
    """numpy results as plain JSON types: numpy scalars become int/float/str, labels keep type."""
    if isinstance(value, np.ndarray):
        if value.dtype != object:
            if value.dtype.kind in "fc" and value.size and not np.isfinite(value).all():
                raise _NonFiniteOutput(int(np.argwhere(~np.isfinite(value))[0][0]) if value.ndim else 0)
            out: list[Any] = value.tolist()
            return out
        return [_scalar(v) for v in value.tolist()]
    if isinstance(value, list):  # e.g. multi-output predict_proba: one array per output
        return [_jsonable(v) if isinstance(v, np.ndarray | list) else _scalar(v) for v in value]
    return _jsonable(np.asarray(value))


def _scalar(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, list):
        return [_scalar(x) for x in v]
    return v


# ---------------------------------------------------------------- the runner


@dataclass(frozen=True, slots=True)
class _Entry:
    sha256: str  # of what was loaded: the artifact, or the model's ONNX conversion
    framework: str
    model: LoadedModel
    schema: FeatureSchema


def _digest(model: ModelSpec) -> str:
    """The digest of what runs in-process (ModelSpec.inline_source, without building the tuple)."""
    compiled = model.onnx
    return model.sha256 if compiled is None else compiled.sha256


def _runnable(model: ModelSpec) -> ModelSpec:
    """The spec of what runs in-process: a compiled sklearn model's ONNX conversion stands in
    for its joblib artifact (same name, features and limits)."""
    if model.onnx is None:
        return model
    framework, artifact, sha256 = model.inline_source
    return model.model_copy(update={"framework": framework, "artifact": artifact, "sha256": sha256, "onnx": None})


class InlineRunner:
    """router.ports.ModelRunner for sklearn and ONNX artifacts.

    Thread-safe: concurrent first calls for a model load it once; later calls only read."""

    def __init__(self, objects: ObjectStore, cache_dir: Path) -> None:
        self._objects = objects
        self._cache_dir = Path(cache_dir)
        self._models: dict[str, _Entry] = {}  # by model name; the entry carries its digest
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._frameworks: set[str] = set()  # of the models loaded so far

    # ------------------------------------------------------------ ModelRunner

    def is_warm(self, model: ModelSpec) -> bool:
        entry = self._models.get(model.name)
        return entry is not None and entry.sha256 == _digest(model)

    def feature_count(self, model: ModelSpec) -> int | None:
        entry = self._models.get(model.name)
        return entry.schema.n_features if entry is not None and entry.sha256 == _digest(model) else None

    def framework_loaded(self, framework: str) -> bool:
        # A model of this framework was loaded here: the framework and most of its modules are
        # imported (a bare `import sklearn` elsewhere would not import the estimators' modules).
        return framework in self._frameworks

    def load(self, model: ModelSpec) -> None:
        """Fetch, verify and deserialize the model now (warm-up); a no-op when already loaded."""
        self._entry(model)

    def predict(self, model: ModelSpec, instances: Sequence[Any], output: OutputKind) -> list[Any]:
        entry = self._entry(model)
        if output is OutputKind.PROBA and not entry.model.has_proba:
            raise OutputNotSupported(
                f"model {model.name!r} has no class probabilities; use output \"predict\"",
                details={"model": model.name, "output": output.value},
            )
        x, bounded = entry.schema.checked_matrix(instances, entry.model.input_dtype)
        try:
            if output is OutputKind.PROBA:
                return entry.model.predict_proba(x, checked=bounded)
            return entry.model.predict(x, checked=bounded)
        except RouterError:
            raise
        except _NonFiniteOutput as e:
            # Finite input, but a prediction of NaN or infinity (e.g. a linear model fed 1e308):
            # JSON cannot carry it, and it comes from the request's values.
            raise InvalidInput(
                f"the model's prediction for instances[{e.index}] is not a finite number (NaN or infinity): "
                "its values are outside the range the model can compute with",
                details={"index": e.index},
            ) from None
        except (ValueError, TypeError) as e:
            # Finite as float64 but not as float32: tree ensembles and float32 ONNX graphs cast their
            # input down (sklearn then raises "Input X contains infinity or a value too large").
            entry.schema.refuse_beyond_float32(x)
            # Raised by the model on this (validated) input: the model rejects it, as a SageMaker
            # container answering 4xx does (docs/api.md "model_error").
            raise ModelRejectedInput(
                f"model {model.name!r} refused the input: {model_message(str(e)) if str(e) else type(e).__name__}",
                details={"model": model.name},
            ) from e
        except Exception as e:
            entry.schema.refuse_beyond_float32(x)
            # The cause stays chained for the logs; the client sees no model internals.
            raise InternalError(f"model {model.name!r} failed to predict", details={"model": model.name}) from e

    # ------------------------------------------------------------ loading

    def _entry(self, model: ModelSpec) -> _Entry:
        entry = self._models.get(model.name)
        if entry is not None and entry.sha256 == _digest(model):
            return entry  # hot path: one dict lookup, no lock
        with self._locks_guard:
            lock = self._locks.setdefault(model.name, threading.Lock())
        with lock:
            entry = self._models.get(model.name)
            if entry is not None and entry.sha256 == _digest(model):
                return entry
            entry = self._load(_runnable(model))
            old = self._models.get(model.name)
            self._models[model.name] = entry
            self._frameworks.add(model.inline_source[0])
            if old is not None and old.sha256 != entry.sha256:
                for artifact in ("", ".tar.gz"):  # the old artifact was a bare file or a package
                    self._cache_path(model.name, old.sha256, old.framework, artifact).unlink(missing_ok=True)
                self._unpacked_path(model.name, old.sha256, old.framework).unlink(missing_ok=True)
            return entry

    def _cache_path(self, name: str, sha256: str, framework: str, artifact: str = "") -> Path:
        suffix = ".tar.gz" if is_package(artifact) else _SUFFIX.get(framework, ".bin")
        return self._cache_dir / f"{name}-{sha256[:16]}{suffix}"

    def _unpacked_path(self, name: str, sha256: str, framework: str) -> Path:
        """Where the model file of a cached model.tar.gz is extracted."""
        return self._cache_dir / f"{name}-{sha256[:16]}.unpacked{_SUFFIX.get(framework, '.bin')}"

    def _load(self, model: ModelSpec) -> _Entry:
        loader = LOADERS.get(model.framework)
        if loader is None:
            raise InternalError(
                f"model {model.name!r}: framework {model.framework!r} cannot run in-process",
                details={"model": model.name, "framework": model.framework},
            )
        path = self._fetch_verified(model)
        if is_package(model.artifact):
            # A model.tar.gz (as `router models package` builds it): run its model file in-process.
            unpacked = self._unpacked_path(model.name, model.sha256, model.framework)
            _extract_model_file(path, model.name, model.framework, unpacked)
            path = unpacked
        if model.framework == "sklearn":
            _refuse_version_skew(model, path)
        try:
            loaded = loader(path)
        except Exception as e:
            # The operator's own model: say why (a missing module, a wrong framework), never a trace.
            cause = f"{type(e).__name__}: {e}".splitlines()[0][:200]
            raise InternalError(
                f"model {model.name!r} could not be loaded as {model.framework} ({cause})",
                details={"model": model.name, "framework": model.framework},
            ) from e
        return _make_entry(model, loaded)

    def _fetch_verified(self, model: ModelSpec) -> Path:
        """The artifact in the cache dir, its digest checked. A cached file is re-hashed (the
        /tmp of a warm Lambda outlives this process's memory) and replaced when wrong."""
        path = self._cache_path(model.name, model.sha256, model.framework, model.artifact)
        if path.is_file():
            if _sha256_of(path) == model.sha256:
                return path
            path.unlink(missing_ok=True)
        self._cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{threading.get_ident()}.download")
        try:
            try:
                self._objects.fetch_to(model.artifact, str(tmp))
            except RouterError:
                raise
            except Exception as e:
                raise InternalError(f"model {model.name!r}: cannot fetch its artifact", details={"model": model.name}) from e
            actual = _sha256_of(tmp)
            if actual != model.sha256:
                raise ModelIntegrityError(
                    f"model {model.name!r}: artifact digest does not match the config; refusing to load it",
                    details={"model": model.name, "expected": f"sha256:{model.sha256}", "actual": f"sha256:{actual}"},
                )
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)
        return path


def _refuse_version_skew(model: ModelSpec, path: Path) -> None:
    """A model saved with a newer scikit-learn (or numpy) than this runtime's is refused at load
    with both versions named: it could load and then fail at predict time with an AttributeError."""
    import sklearn

    from router.model_versions import numpy_refusal, read_saved_with, sklearn_refusal

    saved = read_saved_with(path)
    problem = sklearn_refusal(model.name, saved.sklearn, sklearn.__version__, "this runtime") or numpy_refusal(
        model.name, saved.numpy_major, np.__version__, "this runtime"
    )
    if problem:
        raise InternalError(
            problem,
            details={"model": model.name, "saved_with": saved.sklearn, "runtime": sklearn.__version__},
        )


def _sha256_of(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _make_entry(model: ModelSpec, loaded: LoadedModel) -> _Entry:
    names = tuple(model.features) if model.features else loaded.feature_names
    n = len(names) if names is not None else loaded.n_features
    if names is not None and loaded.n_features is not None and len(names) != loaded.n_features:
        # A config mistake that would fail every request inside the model: say so at load time.
        raise InternalError(
            f"model {model.name!r} expects {loaded.n_features} features but the config lists {len(names)}",
            details={"model": model.name, "expected": loaded.n_features, "configured": len(names)},
        )
    return _Entry(sha256=model.sha256, framework=model.framework, model=loaded, schema=FeatureSchema(names=names, n_features=n))


class _NonFiniteOutput(ValueError):
    """A model answered NaN or infinity for the record at `index`."""

    def __init__(self, index: int) -> None:
        super().__init__(f"non-finite prediction for record {index}")
        self.index = index
