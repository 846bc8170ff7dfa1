"""The inline runner against real scikit-learn and ONNX artifacts: same answers as the model
itself, plain JSON results, the integrity check, the cache and one load under concurrency."""

from __future__ import annotations

import hashlib
import json
import threading
import time
import warnings
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
from sklearn.preprocessing import OneHotEncoder

from router.adapters.file_store import FileObjectStore
from router.adapters.inline import InlineRunner
from router.config import ModelSpec
from router.domain import OutputKind
from router.errors import (
    MODEL_MESSAGE_MAX,
    InternalError,
    InvalidInput,
    ModelIntegrityError,
    ModelRejectedInput,
    NotFound,
    OutputNotSupported,
    model_message,
)

IRIS_FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


class CountingStore(FileObjectStore):
    """The real file store, counting artifact fetches (and optionally slowing them down so
    concurrent callers overlap; the delay widens the race, nothing asserts on time)."""

    def __init__(self, delay_s: float = 0.0) -> None:
        super().__init__(b"inline-tests-key-0000")
        self.fetches = 0
        self._delay_s = delay_s
        self._lock = threading.Lock()

    def fetch_to(self, uri: str, path: str) -> None:
        with self._lock:
            self.fetches += 1
        time.sleep(self._delay_s)
        super().fetch_to(uri, path)


class Exploding:
    """A 'model' that breaks inside (not a judgement on the input): its text must not reach the client."""

    n_features_in_ = 2

    def predict(self, x: Any) -> Any:
        raise RuntimeError("secret internal detail /opt/model/weights.bin")


class Verbose:
    """A 'model' that rejects every input with a very long, multi-line message."""

    n_features_in_ = 2

    def predict(self, x: Any) -> Any:
        raise TypeError("bad record\n" + "Traceback: x" * 500)


class NamedFeatures:
    """A model that knows its feature names (as sklearn does when fitted on a DataFrame)."""

    n_features_in_ = 2
    feature_names_in_ = np.array(["height", "weight"], dtype=object)

    def predict(self, x: Any) -> Any:
        return np.asarray(x)[:, 0] * 10 + np.asarray(x)[:, 1]


@dataclass
class Artifacts:
    root: Path
    x: np.ndarray
    rf: RandomForestClassifier
    logreg_str: LogisticRegression
    linreg: LinearRegression

    def spec(self, name: str, file: str, framework: str = "sklearn", **kw: Any) -> ModelSpec:
        path = self.root / file
        return ModelSpec(
            name=name,
            framework=framework,  # type: ignore[arg-type]
            artifact=f"file://{path}",
            sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
            **kw,
        )


def _onnx(model: Any, n: int, zipmap: bool | None) -> bytes:
    from skl2onnx import to_onnx

    options = {id(model): {"zipmap": zipmap}} if zipmap is not None else None
    onx = to_onnx(model, np.zeros((1, n), dtype=np.float32), options=options, target_opset=17)
    return bytes(onx.SerializeToString())


@pytest.fixture(scope="module")
def art(tmp_path_factory: pytest.TempPathFactory) -> Artifacts:
    root = tmp_path_factory.mktemp("artifacts")
    iris = load_iris()
    x, y = iris.data, iris.target
    rf = RandomForestClassifier(n_estimators=10, random_state=0).fit(x, y)
    logreg_str = LogisticRegression(max_iter=1000).fit(x, iris.target_names[y])
    linreg = LinearRegression().fit(x[:, :3], x[:, 3])
    joblib.dump(rf, root / "rf.joblib")
    joblib.dump(logreg_str, root / "logreg_str.joblib")
    joblib.dump(linreg, root / "linreg.joblib")
    joblib.dump(Exploding(), root / "exploding.joblib")
    joblib.dump(NamedFeatures(), root / "named.joblib")
    (root / "rf_zipmap.onnx").write_bytes(_onnx(rf, 4, zipmap=True))
    (root / "rf_tensor.onnx").write_bytes(_onnx(rf, 4, zipmap=False))
    (root / "logreg_str.onnx").write_bytes(_onnx(logreg_str, 4, zipmap=True))
    (root / "linreg.onnx").write_bytes(_onnx(linreg, 3, zipmap=None))
    return Artifacts(root, x, rf, logreg_str, linreg)


@pytest.fixture
def runner(tmp_path: Path) -> InlineRunner:
    return InlineRunner(CountingStore(), tmp_path / "cache")


def _plain(values: list[Any]) -> list[Any]:
    """Round-trip through JSON: fails on numpy scalars, keeps ints ints and strs strs."""
    return json.loads(json.dumps(values))  # type: ignore[no-any-return]


# ---------------------------------------------------------------- scikit-learn


def test_sklearn_predictions_equal_the_models_own(art: Artifacts, runner: InlineRunner) -> None:
    spec = art.spec("iris", "rf.joblib", features=IRIS_FEATURES)
    got = runner.predict(spec, art.x.tolist(), OutputKind.PREDICT)
    assert got == art.rf.predict(art.x).tolist()
    assert all(type(v) is int for v in got) and _plain(got) == got


def test_sklearn_probabilities_are_plain_lists(art: Artifacts, runner: InlineRunner) -> None:
    spec = art.spec("iris", "rf.joblib", features=IRIS_FEATURES)
    got = runner.predict(spec, art.x[:5].tolist(), OutputKind.PROBA)
    assert got == art.rf.predict_proba(art.x[:5]).tolist()
    assert all(type(p) is float for row in got for p in row)


def test_object_records_by_name_give_the_same_answers(art: Artifacts, runner: InlineRunner) -> None:
    spec = art.spec("iris", "rf.joblib", features=IRIS_FEATURES)
    rows = art.x[::10].tolist()
    objects = [dict(zip(reversed(IRIS_FEATURES), reversed(r), strict=True)) for r in rows]
    assert runner.predict(spec, objects, OutputKind.PREDICT) == art.rf.predict(art.x[::10]).tolist()


def test_string_class_labels_stay_strings(art: Artifacts, runner: InlineRunner) -> None:
    spec = art.spec("species", "logreg_str.joblib")
    got = runner.predict(spec, art.x[:3].tolist(), OutputKind.PREDICT)
    assert got == ["setosa", "setosa", "setosa"] and all(type(v) is str for v in got)


def test_regressor_returns_floats_and_has_no_probabilities(art: Artifacts, runner: InlineRunner) -> None:
    spec = art.spec("petal", "linreg.joblib")
    got = runner.predict(spec, art.x[:4, :3].tolist(), OutputKind.PREDICT)
    assert got == pytest.approx(art.linreg.predict(art.x[:4, :3]).tolist())
    assert all(type(v) is float for v in got)
    with pytest.raises(OutputNotSupported):
        runner.predict(spec, art.x[:4, :3].tolist(), OutputKind.PROBA)


def test_feature_count_comes_from_the_model_without_config_features(art: Artifacts, runner: InlineRunner) -> None:
    spec = art.spec("iris", "rf.joblib")
    with pytest.raises(InvalidInput) as info:
        runner.predict(spec, [[1, 2, 3]], OutputKind.PREDICT)
    assert info.value.details == {"index": 0, "expected": 4, "got": 3}


def test_feature_names_come_from_the_model_without_config_features(art: Artifacts, runner: InlineRunner) -> None:
    spec = art.spec("named", "named.joblib")
    assert runner.predict(spec, [{"weight": 2, "height": 1}, [3, 4]], OutputKind.PREDICT) == [12.0, 34.0]


def test_sklearn_models_fitted_with_feature_names_take_rows_without_warnings(
    art: Artifacts, runner: InlineRunner
) -> None:
    # sklearn warns "X does not have valid feature names" on every ndarray; the runner maps names
    # itself, so that warning is noise (and an error under this test suite's settings).
    rf = RandomForestClassifier(n_estimators=5, random_state=0).fit(art.x, load_iris().target)
    rf.feature_names_in_ = np.array(IRIS_FEATURES, dtype=object)
    joblib.dump(rf, art.root / "named_rf.joblib")
    spec = art.spec("named-rf", "named_rf.joblib")
    record = dict(zip(IRIS_FEATURES, art.x[100].tolist(), strict=True))
    assert runner.predict(spec, [record], OutputKind.PREDICT) == [2]


@pytest.mark.parametrize("records", [1, 100])  # the small-batch checks and the numpy ones
def test_values_beyond_float32_are_a_422_for_a_forest_and_fine_for_a_float64_model(
    art: Artifacts, runner: InlineRunner, records: int
) -> None:
    # sklearn's finiteness check is skipped when the runner has proved the values finite and within
    # float32's range; anything else keeps sklearn's check, so a tree model still refuses 3.5e38
    # (422 invalid_input, which value named) while a float64 linear model computes with it.
    rows = art.x[:records].tolist()
    rows[-1][2] = 3.5e38
    with pytest.raises(InvalidInput) as info:
        runner.predict(art.spec("iris", "rf.joblib"), rows, OutputKind.PREDICT)
    assert "32-bit float range" in info.value.message and info.value.details["index"] == records - 1
    linear = [r[:3] for r in rows]
    assert runner.predict(art.spec("petal", "linreg.joblib"), linear, OutputKind.PREDICT) == art.linreg.predict(np.array(linear)).tolist()
    assert runner.predict(art.spec("iris", "rf.joblib"), art.x[:records].tolist(), OutputKind.PREDICT) == art.rf.predict(art.x[:records]).tolist()


def test_a_pipeline_keeps_sklearns_checks_between_its_steps(art: Artifacts, runner: InlineRunner) -> None:
    # Finite, float32-range input that a scaler blows past float32 before the forest sees it: only
    # the forest's own check catches that, so pipelines never run with it off (422 model_error).
    from sklearn.preprocessing import StandardScaler

    x = art.x * 1e-30
    joblib.dump(make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=3, random_state=0)).fit(x, load_iris().target),
                art.root / "scaled_rf.joblib")
    with warnings.catch_warnings(), pytest.raises(ModelRejectedInput) as info:
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy's cast overflow warning: only a warning outside this suite
        runner.predict(art.spec("scaled", "scaled_rf.joblib"), [[1e10, 1e10, 1e10, 1e10]], OutputKind.PREDICT)
    assert (info.value.status, info.value.code) == (422, "model_error")


def test_which_models_run_with_sklearns_finiteness_check_off() -> None:
    from sklearn.ensemble import GradientBoostingClassifier

    from router.adapters.inline import _takes_input_directly

    assert _takes_input_directly(LogisticRegression()) and _takes_input_directly(RandomForestClassifier())
    assert _takes_input_directly(GradientBoostingClassifier())
    assert not _takes_input_directly(make_pipeline(LogisticRegression()))
    assert not _takes_input_directly(GradientBoostingClassifier(init=make_pipeline(LogisticRegression())))
    assert not _takes_input_directly(NamedFeatures())  # not scikit-learn's own: its checks are unknown


def test_config_features_that_disagree_with_the_model_fail_at_load(art: Artifacts, runner: InlineRunner) -> None:
    spec = art.spec("iris", "rf.joblib", features=["a", "b", "c"])
    with pytest.raises(InternalError) as info:
        runner.load(spec)
    assert info.value.details["expected"] == 4 and not runner.is_warm(spec)


def test_model_failures_become_internal_errors_without_internals(art: Artifacts, runner: InlineRunner) -> None:
    spec = art.spec("boom", "exploding.joblib")
    with pytest.raises(InternalError) as info:
        runner.predict(spec, [[1, 2]], OutputKind.PREDICT)
    body = json.dumps(info.value.to_body("req-1"))
    assert "secret" not in body and "weights.bin" not in body and "Traceback" not in body


def test_a_model_that_raises_on_the_callers_input_is_a_422_model_error(art: Artifacts, runner: InlineRunner) -> None:
    # A real pipeline that refuses a category it never saw: ValueError inside the model. The
    # caller's input is wrong, not the router: 422 model_error with the model's message, cut short.
    joblib.dump(make_pipeline(OneHotEncoder(), LogisticRegression()).fit([[0], [1], [0], [1]], [0, 1, 0, 1]), art.root / "onehot.joblib")
    spec = art.spec("onehot", "onehot.joblib")
    assert runner.predict(spec, [[1]], OutputKind.PREDICT) == [1]
    with pytest.raises(ModelRejectedInput) as info:
        runner.predict(spec, [[5]], OutputKind.PREDICT)
    err = info.value
    assert (err.status, err.code) == (422, "model_error")
    assert "unknown categories" in err.message and err.details == {"model": "onehot"}


def test_a_model_rejection_message_is_truncated(art: Artifacts, runner: InlineRunner) -> None:
    joblib.dump(Verbose(), art.root / "verbose.joblib")
    with pytest.raises(ModelRejectedInput) as info:
        runner.predict(art.spec("verbose", "verbose.joblib"), [[1, 2]], OutputKind.PREDICT)
    assert info.value.message == "model 'verbose' refused the input: bad record"  # the first line only
    assert len(model_message("x" * 5000)) == MODEL_MESSAGE_MAX


def test_frameworks_that_cannot_run_in_process_are_refused(art: Artifacts, runner: InlineRunner) -> None:
    with pytest.raises(InternalError):
        runner.predict(art.spec("torchy", "rf.joblib", framework="pytorch"), [[1, 2, 3, 4]], OutputKind.PREDICT)


def test_missing_artifact_is_not_found(art: Artifacts, runner: InlineRunner) -> None:
    spec = art.spec("iris", "rf.joblib").model_copy(update={"artifact": f"file://{art.root}/nope.joblib"})
    with pytest.raises(NotFound):
        runner.load(spec)


# ---------------------------------------------------------------- ONNX


@pytest.mark.parametrize("file", ["rf_zipmap.onnx", "rf_tensor.onnx"])
def test_onnx_classifier_matches_sklearn(art: Artifacts, runner: InlineRunner, file: str) -> None:
    spec = art.spec("iris-onnx", file, framework="onnx", features=IRIS_FEATURES)
    labels = runner.predict(spec, art.x.tolist(), OutputKind.PREDICT)
    assert labels == art.rf.predict(art.x).tolist() and all(type(v) is int for v in labels)
    proba = runner.predict(spec, art.x[:10].tolist(), OutputKind.PROBA)
    assert np.allclose(proba, art.rf.predict_proba(art.x[:10]), atol=1e-5)
    assert all(type(p) is float for row in proba for p in row) and len(proba[0]) == 3


def test_onnx_string_labels_stay_strings(art: Artifacts, runner: InlineRunner) -> None:
    spec = art.spec("species-onnx", "logreg_str.onnx", framework="onnx")
    got = runner.predict(spec, art.x[[0, 60, 120]].tolist(), OutputKind.PREDICT)
    assert got == art.logreg_str.predict(art.x[[0, 60, 120]]).tolist()
    assert all(type(v) is str for v in got)


def test_onnx_regressor(art: Artifacts, runner: InlineRunner) -> None:
    spec = art.spec("petal-onnx", "linreg.onnx", framework="onnx")
    got = runner.predict(spec, art.x[:4, :3].tolist(), OutputKind.PREDICT)
    assert np.allclose(got, art.linreg.predict(art.x[:4, :3]), atol=1e-4)
    assert all(type(v) is float for v in got)
    with pytest.raises(OutputNotSupported):
        runner.predict(spec, art.x[:4, :3].tolist(), OutputKind.PROBA)
    with pytest.raises(InvalidInput) as info:  # the width comes from the ONNX input shape
        runner.predict(spec, [[1, 2, 3, 4]], OutputKind.PREDICT)
    assert info.value.details["expected"] == 3


def test_onnx_float32_graph_refuses_values_it_cannot_hold(art: Artifacts, runner: InlineRunner) -> None:
    spec = art.spec("iris-onnx", "rf_tensor.onnx", framework="onnx")
    for rows in ([[5.1, 3.5, 3.5e38, 0.2]], [[5.1, 3.5, 1.4, 0.2]] * 100 + [[5.1, -1e300, 1.4, 0.2]]):
        with pytest.raises(InvalidInput) as info:
            runner.predict(spec, rows, OutputKind.PREDICT)
        assert "32-bit float range" in info.value.message and info.value.details["index"] == len(rows) - 1


# ---------------------------------------------------------------- integrity and caching


def test_tampered_artifact_is_never_loaded(art: Artifacts, tmp_path: Path) -> None:
    good = art.spec("iris", "rf.joblib")
    tampered = tmp_path / "tampered.joblib"
    tampered.write_bytes((art.root / "rf.joblib").read_bytes() + b"\x00")
    spec = good.model_copy(update={"artifact": f"file://{tampered}"})
    cache = tmp_path / "cache"
    runner = InlineRunner(CountingStore(), cache)
    with pytest.raises(ModelIntegrityError) as info:
        runner.predict(spec, [[1, 2, 3, 4]], OutputKind.PREDICT)
    assert info.value.details["expected"] == f"sha256:{good.sha256}"
    assert not runner.is_warm(spec)
    assert [p for p in cache.iterdir() if p.is_file()] == []  # nothing kept to be reused later


def test_a_corrupted_cached_file_is_fetched_again(art: Artifacts, tmp_path: Path) -> None:
    spec = art.spec("iris", "rf.joblib")
    cache = tmp_path / "cache"
    InlineRunner(CountingStore(), cache).load(spec)
    (cached,) = list(cache.iterdir())
    cached.write_bytes(b"not the model")  # e.g. a warm Lambda's /tmp tampered with or truncated
    store = CountingStore()
    fresh = InlineRunner(store, cache)
    assert fresh.predict(spec, art.x[:3].tolist(), OutputKind.PREDICT) == art.rf.predict(art.x[:3]).tolist()
    assert store.fetches == 1
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == spec.sha256


def test_an_intact_cached_file_is_reused_by_a_new_process(art: Artifacts, tmp_path: Path) -> None:
    spec = art.spec("iris", "rf.joblib")
    InlineRunner(CountingStore(), tmp_path / "cache").load(spec)
    store = CountingStore()
    InlineRunner(store, tmp_path / "cache").load(spec)
    assert store.fetches == 0


def test_models_stay_loaded_until_their_digest_changes(art: Artifacts, tmp_path: Path) -> None:
    store = CountingStore()
    runner = InlineRunner(store, tmp_path / "cache")
    v1 = art.spec("model", "rf.joblib", features=IRIS_FEATURES)
    assert not runner.is_warm(v1)
    for _ in range(3):
        runner.predict(v1, [[5.1, 3.5, 1.4, 0.2]], OutputKind.PREDICT)
    assert runner.is_warm(v1) and store.fetches == 1

    v2 = art.spec("model", "logreg_str.joblib", features=IRIS_FEATURES)  # same name, new digest
    assert not runner.is_warm(v2)
    assert runner.predict(v2, [[5.1, 3.5, 1.4, 0.2]], OutputKind.PREDICT) == ["setosa"]
    assert store.fetches == 2 and runner.is_warm(v2) and not runner.is_warm(v1)


def test_concurrent_first_calls_load_the_model_once(art: Artifacts, tmp_path: Path) -> None:
    store = CountingStore(delay_s=0.2)
    runner = InlineRunner(store, tmp_path / "cache")
    spec = art.spec("iris", "rf.joblib")
    barrier = threading.Barrier(8)
    results: list[Any] = []
    errors: list[BaseException] = []

    def call() -> None:
        barrier.wait()
        try:
            results.append(runner.predict(spec, art.x[:2].tolist(), OutputKind.PREDICT))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.fetches == 1
    assert results == [art.rf.predict(art.x[:2]).tolist()] * 8
