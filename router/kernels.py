"""Direct kernels for common fitted scikit-learn estimators: the same arithmetic as the
estimator's own `predict` / `predict_proba`, without its per-call input checks.

For one record, scikit-learn spends most of a call checking its input again (array namespaces,
dataframe detection, feature names, dtype and finiteness): ~150 us for a 20-feature
LogisticRegression, and ~60 us per tree of a forest, whose trees each check the input once
more. The inline runner has already checked what those checks protect (a 2-D float64 matrix
with the fitted number of features, every value finite and within float32's range,
router.features), so a kernel computes on it directly with the fitted arrays: a linear model's
`x @ coef_.T + intercept_`, each tree's compiled `tree_.predict`, summed in the estimator's
order, a StandardScaler's centring and scaling.

A kernel exists only for an estimator of exactly one of the supported classes (no subclass, one
output) and only after it answered exactly as the estimator on probe records (`verified`);
anything else runs through the estimator's own methods. Nothing here imports scikit-learn: the
supported classes are looked up among the modules the model's unpickling already imported.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

Array = Any  # a numpy ndarray


@dataclass(frozen=True, slots=True)
class Kernel:
    """predict / predict_proba of one fitted estimator on a checked float64 matrix [records, features]."""

    what: str  # e.g. "RandomForestClassifier (100 trees)", for logs and `router profile`
    n_features: int
    float32: bool  # computes in float32 (trees): its input must be within float32's range
    predict: Callable[[Array], Array]
    predict_proba: Callable[[Array], Array] | None


def _cls(module: str, name: str) -> type | None:
    """The scikit-learn class `module.name` if that module is imported (never imports it)."""
    mod = sys.modules.get(module)
    found = getattr(mod, name, None) if mod is not None else None
    return found if isinstance(found, type) else None


def _is(est: Any, module: str, *names: str) -> bool:
    return any(type(est) is _cls(module, n) for n in names)


def kernel_for(est: Any) -> Kernel | None:
    """A verified kernel for `est`, or None (an unsupported estimator, or one whose kernel did not
    answer exactly as it does on the probe records)."""
    try:
        kernel = _build(est)
    except (AttributeError, TypeError, ValueError, IndexError):  # an estimator shaped unlike its class
        return None
    if kernel is None or not verified(kernel, est):
        return None
    return kernel


def _build(est: Any) -> Kernel | None:
    n = getattr(est, "n_features_in_", None)
    if not isinstance(n, int | np.integer) or int(n) < 1:
        return None
    n = int(n)
    if _is(est, "sklearn.pipeline", "Pipeline"):
        return _pipeline(est, n)
    if _is(est, "sklearn.ensemble", "RandomForestClassifier", "ExtraTreesClassifier"):
        return _forest_classifier(est, n)
    if _is(est, "sklearn.ensemble", "RandomForestRegressor", "ExtraTreesRegressor"):
        return _forest_regressor(est, n)
    if _is(est, "sklearn.tree", "DecisionTreeClassifier", "ExtraTreeClassifier"):
        return _tree_classifier(est, n)
    if _is(est, "sklearn.tree", "DecisionTreeRegressor", "ExtraTreeRegressor"):
        return _tree_regressor(est, n)
    if _is(est, "sklearn.linear_model", "LogisticRegression"):
        return _logistic(est, n)
    if _is(est, "sklearn.linear_model", "LinearRegression", "Ridge", "Lasso", "ElasticNet"):
        return _linear_regressor(est, n)
    return None


# ---------------------------------------------------------------- trees


def _float32(x: Array) -> Array:
    return np.asarray(x, dtype=np.float32)  # what the trees' own validation casts to


def _single_output_classes(est: Any) -> tuple[Array, int] | None:
    if getattr(est, "n_outputs_", None) != 1:
        return None
    classes = est.classes_
    if not isinstance(classes, np.ndarray) or classes.ndim != 1:
        return None
    return classes, int(est.n_classes_)


def _forest_classifier(est: Any, n: int) -> Kernel | None:
    one = _single_output_classes(est)
    if one is None:
        return None
    classes, n_classes = one
    trees = [(e.tree_, int(e.n_classes_)) for e in est.estimators_]
    if not trees:
        return None
    count = len(trees)

    def proba(x: Array) -> Array:
        x32 = _float32(x)
        out = np.zeros((x32.shape[0], n_classes), dtype=np.float64)
        for tree, k in trees:  # in the estimators' order, as the forest's own sequential sum
            out += tree.predict(x32)[:, :k]
        out /= count
        return out

    def predict(x: Array) -> Array:
        return classes.take(np.argmax(proba(x), axis=1), axis=0)

    return Kernel(f"{type(est).__name__} ({count} trees)", n, True, predict, proba)


def _forest_regressor(est: Any, n: int) -> Kernel | None:
    if getattr(est, "n_outputs_", None) != 1:
        return None
    trees = [e.tree_ for e in est.estimators_]
    if not trees:
        return None
    count = len(trees)

    def predict(x: Array) -> Array:
        x32 = _float32(x)
        out = np.zeros(x32.shape[0], dtype=np.float64)
        for tree in trees:
            out += tree.predict(x32)[:, 0]
        out /= count
        return out

    return Kernel(f"{type(est).__name__} ({count} trees)", n, True, predict, None)


def _tree_classifier(est: Any, n: int) -> Kernel | None:
    one = _single_output_classes(est)
    if one is None:
        return None
    classes, n_classes = one
    tree = est.tree_

    def predict(x: Array) -> Array:
        return classes.take(np.argmax(tree.predict(_float32(x)), axis=1), axis=0)

    def proba(x: Array) -> Array:
        return tree.predict(_float32(x))[:, :n_classes]

    return Kernel(type(est).__name__, n, True, predict, proba)


def _tree_regressor(est: Any, n: int) -> Kernel | None:
    if getattr(est, "n_outputs_", None) != 1:
        return None
    tree = est.tree_

    def predict(x: Array) -> Array:
        return tree.predict(_float32(x))[:, 0]

    return Kernel(type(est).__name__, n, True, predict, None)


# ---------------------------------------------------------------- linear models


def _logistic(est: Any, n: int) -> Kernel | None:
    coef, intercept, classes = est.coef_, est.intercept_, est.classes_
    if not (isinstance(coef, np.ndarray) and coef.ndim == 2 and coef.shape[1] == n and isinstance(classes, np.ndarray)):
        return None
    binary = classes.size <= 2
    if binary and coef.shape[0] != 1:
        return None
    coef_t = coef.T

    def scores(x: Array) -> Array:
        s = x @ coef_t + intercept
        return s.reshape(-1) if s.shape[1] == 1 else s

    def predict(x: Array) -> Array:
        s = scores(x)
        indices = (s > 0).astype(np.intp) if s.ndim == 1 else np.argmax(s, axis=1)
        return classes.take(indices, axis=0)

    def proba(x: Array) -> Array:
        s = scores(x)
        if binary:
            from scipy.special import expit  # imported with scikit-learn already

            p = expit(s, out=s)
            return np.stack([1 - p, p], axis=1)
        from sklearn.utils.extmath import softmax  # imported with the estimator already

        return softmax(s, copy=False)

    return Kernel(type(est).__name__, n, False, predict, proba)


def _linear_regressor(est: Any, n: int) -> Kernel | None:
    coef, intercept = est.coef_, est.intercept_
    if not (isinstance(coef, np.ndarray) and coef.ndim == 1 and coef.shape[0] == n):
        return None  # multi-output regression: the estimator's own predict

    def predict(x: Array) -> Array:
        return x @ coef + intercept

    return Kernel(type(est).__name__, n, False, predict, None)


# ---------------------------------------------------------------- pipelines


def _pipeline(est: Any, n: int) -> Kernel | None:
    """StandardScaler steps (or "passthrough") ending in a supported estimator."""
    steps = [s for _, s in est.steps]
    *transforms, last = steps
    scalers: list[tuple[Array | None, Array | None]] = []
    for step in transforms:
        if step is None or step == "passthrough":
            continue
        if not _is(step, "sklearn.preprocessing", "StandardScaler") or getattr(step, "n_features_in_", None) != n:
            return None
        scalers.append((step.mean_ if step.with_mean else None, step.scale_ if step.with_std else None))
    final = _build(last)
    if final is None or final.n_features != n:
        return None
    final_predict, final_proba = final.predict, final.predict_proba
    limit = float(np.finfo(np.float32).max) if final.float32 else np.inf

    def transform(x: Array) -> Array | None:
        """The scaled matrix, or None when scaling took a value out of what the final estimator
        accepts (infinite, or beyond float32 for trees): its own checks must then word the refusal."""
        for mean, scale in scalers:
            x = np.array(x, dtype=np.float64)  # a copy: the scaler's transform copies too
            if mean is not None:
                x -= mean.astype(x.dtype, copy=False)
            if scale is not None:
                x /= scale.astype(x.dtype, copy=False)
        if scalers and not (np.abs(x) < limit).all():  # also False for NaN
            return None
        return x

    def predict(x: Array) -> Array:
        xt = transform(x)
        return est.predict(x) if xt is None else final_predict(xt)

    def proba(x: Array) -> Array:
        assert final_proba is not None
        xt = transform(x)
        return est.predict_proba(x) if xt is None else final_proba(xt)

    names = " -> ".join([*(type(s).__name__ for s in transforms if s is not None and s != "passthrough"), final.what])
    return Kernel(f"Pipeline ({names})", n, final.float32, predict, None if final_proba is None else proba)


# ---------------------------------------------------------------- verification


def probe_rows(n_features: int) -> Array:
    """Records to compare a kernel with its estimator on: zeros, and values spread over six
    orders of magnitude either side of zero (a fixed seed: the same records on every load)."""
    rng = np.random.default_rng(20261201)
    scale = 10.0 ** rng.uniform(-2.0, 3.0, size=(1, n_features))
    rows = rng.standard_normal((31, n_features)) * scale
    return np.vstack([np.zeros((1, n_features)), rows]).astype(np.float64)


def verified(kernel: Kernel, est: Any) -> bool:
    """The kernel answers exactly as the estimator (same values, dtype and shape) on the probe
    records, for predict and, where both have it, predict_proba."""
    x = probe_rows(kernel.n_features)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. a model fitted on a DataFrame, called on an array
            pairs = [(kernel.predict(x.copy()), est.predict(x.copy()))]
            if kernel.predict_proba is not None:
                if not hasattr(est, "predict_proba"):
                    return False
                pairs.append((kernel.predict_proba(x.copy()), est.predict_proba(x.copy())))
    except Exception:  # noqa: BLE001 - any failure means: use the estimator's own methods
        return False
    return all(
        isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape
        and np.array_equal(a, b)
        for a, b in pairs
    )
