"""router.kernels: a kernel answers exactly as its estimator, or there is no kernel."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import ElasticNet, Lasso, LinearRegression, LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from router.kernels import Kernel, kernel_for, probe_rows, verified

N = 6


def _xy_class(classes: int = 2, seed: int = 0) -> tuple[Any, Any]:
    return make_classification(n_samples=300, n_features=N, n_informative=4, n_classes=classes, random_state=seed)


def _xy_reg(seed: int = 0) -> tuple[Any, Any]:
    return make_regression(n_samples=300, n_features=N, noise=1.0, random_state=seed)


def _requests(seed: int) -> Any:
    """Records unlike the probe records: a different seed and scale, plus one record a client
    would really send (rounded values)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 3.0, size=(50, N))
    return np.vstack([x, np.round(x[:1], 2)])


CLASSIFIERS = [
    pytest.param(lambda: RandomForestClassifier(n_estimators=7, max_depth=5, random_state=0), 2, id="forest-binary"),
    pytest.param(lambda: RandomForestClassifier(n_estimators=5, random_state=0), 3, id="forest-3-classes"),
    pytest.param(lambda: ExtraTreesClassifier(n_estimators=5, random_state=0), 3, id="extra-trees"),
    pytest.param(lambda: DecisionTreeClassifier(max_depth=4, random_state=0), 3, id="tree"),
    pytest.param(lambda: LogisticRegression(max_iter=500), 2, id="logistic-binary"),
    pytest.param(lambda: LogisticRegression(max_iter=500), 4, id="logistic-multinomial"),
    pytest.param(lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)), 3, id="scaler-logistic"),
    pytest.param(lambda: make_pipeline(StandardScaler(with_mean=False), "passthrough", RandomForestClassifier(n_estimators=3, random_state=0)), 2,
                 id="scaler-passthrough-forest"),
]

REGRESSORS = [
    pytest.param(lambda: RandomForestRegressor(n_estimators=5, max_depth=6, random_state=0), id="forest"),
    pytest.param(lambda: ExtraTreesRegressor(n_estimators=4, random_state=0), id="extra-trees"),
    pytest.param(lambda: DecisionTreeRegressor(max_depth=5, random_state=0), id="tree"),
    pytest.param(LinearRegression, id="linear"),
    pytest.param(Ridge, id="ridge"),
    pytest.param(lambda: Lasso(alpha=0.1), id="lasso"),
    pytest.param(lambda: ElasticNet(alpha=0.1), id="elastic-net"),
    pytest.param(lambda: make_pipeline(StandardScaler(), Ridge()), id="scaler-ridge"),
]


def _same(a: Any, b: Any) -> None:
    assert isinstance(a, np.ndarray)
    assert a.dtype == b.dtype and a.shape == b.shape
    assert np.array_equal(a, b)


@pytest.mark.parametrize(("make", "classes"), CLASSIFIERS)
def test_a_classifier_kernel_answers_bit_for_bit_as_the_estimator(make: Any, classes: int) -> None:
    x, y = _xy_class(classes)
    est = make().fit(x, y)
    kernel = kernel_for(est)
    assert kernel is not None and kernel.predict_proba is not None
    for seed in (1, 2):
        rows = _requests(seed)
        _same(kernel.predict(rows.copy()), est.predict(rows))
        _same(kernel.predict_proba(rows.copy()), est.predict_proba(rows))


@pytest.mark.parametrize("make", REGRESSORS)
def test_a_regressor_kernel_answers_bit_for_bit_as_the_estimator(make: Any) -> None:
    x, y = _xy_reg()
    est = make().fit(x, y)
    kernel = kernel_for(est)
    assert kernel is not None
    for seed in (1, 2):
        rows = _requests(seed)
        _same(kernel.predict(rows.copy()), est.predict(rows))


def test_string_labels_come_back_as_the_estimator_gives_them() -> None:
    x, y = _xy_class(3)
    labels = np.array(["setosa", "versicolor", "virginica"])[y]
    for est in (RandomForestClassifier(n_estimators=3, random_state=0).fit(x, labels), LogisticRegression(max_iter=500).fit(x, labels)):
        kernel = kernel_for(est)
        assert kernel is not None
        rows = _requests(3)
        _same(kernel.predict(rows), est.predict(rows))


def test_the_kernel_leaves_the_callers_matrix_alone() -> None:
    x, y = _xy_class(3)
    kernel = kernel_for(make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y))
    assert kernel is not None
    rows = _requests(4)
    before = rows.copy()
    kernel.predict(rows)
    assert kernel.predict_proba is not None
    kernel.predict_proba(rows)
    assert np.array_equal(rows, before)


class _MyForest(RandomForestClassifier):
    """An operator's subclass: its predict may do anything."""

    def predict(self, X: Any) -> Any:
        return np.zeros(len(X), dtype=int)


@pytest.mark.parametrize("make", [
    pytest.param(lambda x, y: _MyForest(n_estimators=3, random_state=0).fit(x, y), id="a-subclass"),
    pytest.param(lambda x, y: GradientBoostingClassifier(n_estimators=3).fit(x, y), id="an-unsupported-class"),
    pytest.param(lambda x, y: make_pipeline(MinMaxScaler(), LogisticRegression()).fit(x, y), id="an-unsupported-step"),
    pytest.param(lambda x, y: RandomForestClassifier(n_estimators=3, random_state=0).fit(x, np.c_[y, y]), id="multi-output"),
    pytest.param(lambda x, y: LinearRegression().fit(x, np.c_[y, y]), id="multi-output-linear"),
])
def test_no_kernel_where_the_estimators_own_predict_must_run(make: Any) -> None:
    x, y = _xy_class(2)
    assert kernel_for(make(x, y)) is None


def test_a_kernel_that_disagrees_on_one_probe_value_is_refused() -> None:
    x, y = _xy_reg()
    est = LinearRegression().fit(x, y)
    good = kernel_for(est)
    assert good is not None and verified(good, est)

    def off_by_one_ulp(rows: Any) -> Any:
        out = good.predict(rows)
        out[-1] = np.nextafter(out[-1], np.inf)
        return out

    assert not verified(Kernel("planted", N, False, off_by_one_ulp, None), est)
    assert not verified(Kernel("wrong dtype", N, False, lambda rows: good.predict(rows).astype(np.float32), None), est)


def test_probe_records_are_the_same_on_every_load() -> None:
    assert np.array_equal(probe_rows(N), probe_rows(N))
    assert probe_rows(N).shape == (32, N) and np.isfinite(probe_rows(N)).all()
