"""`router demo`'s model builder: a valid config with real digests, models that answer like the
originals, forest-xl too large for the demo's 128 MB Lambda, and a second run that does nothing."""

from __future__ import annotations

import hashlib
from pathlib import Path

import joblib
import pytest
from sklearn.datasets import load_digits, load_iris

from router.adapters.file_store import FileObjectStore
from router.adapters.inline import InlineRunner
from router.cli.demo_build import build_demo
from router.config import RouterConfig, load_config, uri_to_path
from router.domain import OutputKind


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    out = tmp_path_factory.mktemp("demo")
    messages: list[str] = []
    build_demo(out, progress=messages.append)
    return out, messages


@pytest.fixture(scope="module")
def config(demo: tuple[Path, list[str]]) -> RouterConfig:
    return load_config(demo[0] / "operator.yaml")


def test_config_loads_with_the_demo_models_and_settings(config: RouterConfig) -> None:
    assert [m.name for m in config.models] == ["iris", "forest-xl", "digits-mlp", "iris-serverless"]
    serverless = config.model("iris-serverless")
    assert serverless is not None and serverless.serverless is not None and not serverless.inline
    assert serverless.artifact == config.models[0].artifact and serverless.serverless_endpoint_name == "iris-serverless-local"
    assert config.runtime.lambda_memory_mb == 128
    assert config.auth.api_keys == {"demo-key-alice-0001": "alice", "demo-key-bob-00001": "bob"}
    assert config.sagemaker.execution_role_arn == "arn:aws:iam::123456789012:role/RouterSageMaker"
    assert config.storage.job_table.endswith("/.router/jobs.db")


def test_paths_are_relative_to_the_config_file(demo: tuple[Path, list[str]]) -> None:
    text = (demo[0] / "operator.yaml").read_text()
    assert "artifacts: file://./models" in text and "jobs: file://./.router/jobs" in text
    assert "job_table: sqlite:///./.router/jobs.db" in text
    assert str(demo[0]) not in text  # the folder can be moved


def test_digests_match_the_files(config: RouterConfig) -> None:
    for m in config.models:
        assert hashlib.sha256(uri_to_path(m.artifact).read_bytes()).hexdigest() == m.sha256, m.name


def test_every_model_has_a_measured_profile(config: RouterConfig) -> None:
    for m in config.models:
        assert m.profile is not None and m.profile.load_s > 0 and m.profile.per_record_ms > 0, m.name


def test_iris_routes_inline_with_named_features(config: RouterConfig) -> None:
    iris = config.model("iris")
    assert iris is not None and iris.in_process and iris.framework == "sklearn"
    assert iris.features == ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    assert iris.endpoint is None


def test_forest_xl_is_too_big_for_the_demo_lambda(config: RouterConfig) -> None:
    xl = config.model("forest-xl")
    assert xl is not None and xl.size_bytes is not None
    assert xl.size_bytes >= 40e6
    # No measured memory_mb: the default footprint, 3 x artifact, must exceed the memory budget.
    assert xl.profile is not None and xl.profile.memory_mb is None
    assert 3 * xl.size_bytes / 2**20 > config.runtime.safety_margin * config.runtime.lambda_memory_mb
    assert config.batch_settings(xl) is not None and config.batch_settings(xl).instance_type == "ml.m5.xlarge"  # type: ignore[union-attr]


def test_digits_mlp_is_a_sagemaker_only_onnx_model(config: RouterConfig) -> None:
    mlp = config.model("digits-mlp")
    assert mlp is not None and mlp.framework == "onnx" and not mlp.inline and not mlp.in_process
    assert mlp.endpoint is not None and mlp.endpoint.name == "digits-mlp-local"
    assert mlp.endpoint.instance_type == "ml.m5.large"
    assert config.batch_settings(mlp) is not None


def test_iris_predictions_through_the_runner_equal_the_model(config: RouterConfig, tmp_path: Path) -> None:
    iris = config.model("iris")
    assert iris is not None
    x = load_iris().data
    model = joblib.load(uri_to_path(iris.artifact))
    runner = InlineRunner(FileObjectStore(b"demo-test-key-000000"), tmp_path)
    assert runner.predict(iris, x.tolist(), OutputKind.PREDICT) == model.predict(x).tolist()
    assert (model.predict(x) == load_iris().target).mean() > 0.95


def test_digits_onnx_model_answers_through_the_runner(config: RouterConfig, tmp_path: Path) -> None:
    mlp = config.model("digits-mlp")
    assert mlp is not None
    digits = load_digits()
    runner = InlineRunner(FileObjectStore(b"demo-test-key-000000"), tmp_path)
    got = runner.predict(mlp, digits.data[:200].tolist(), OutputKind.PREDICT)
    assert sum(int(a == b) for a, b in zip(got, digits.target[:200], strict=True)) >= 180
    proba = runner.predict(mlp, digits.data[:2].tolist(), OutputKind.PROBA)
    assert len(proba[0]) == 10 and abs(sum(proba[0]) - 1) < 1e-4


def test_a_second_build_reuses_everything(demo: tuple[Path, list[str]]) -> None:
    out, _ = demo
    files = [*sorted((out / "models").iterdir()), out / "operator.yaml"]
    before = {p: p.stat().st_mtime_ns for p in files}
    messages: list[str] = []
    build_demo(out, progress=messages.append)
    assert {p: p.stat().st_mtime_ns for p in files} == before
    assert sum("up to date" in m for m in messages) == 4 and not any("building" in m for m in messages)


def test_a_changed_model_file_is_rebuilt(tmp_path: Path, demo: tuple[Path, list[str]]) -> None:
    """Copy the built demo, corrupt one model: only that model is rebuilt and the config follows."""
    src, _ = demo
    out = tmp_path / "copy"
    (out / "models").mkdir(parents=True)
    for p in (src / "models").iterdir():
        (out / "models" / p.name).write_bytes(p.read_bytes())
    (out / "operator.yaml").write_bytes((src / "operator.yaml").read_bytes())
    (out / "models" / "iris.joblib").write_bytes(b"corrupted")
    messages: list[str] = []
    build_demo(out, progress=messages.append)
    assert [m.split(":")[0] for m in messages if "building" in m] == ["iris"]
    cfg = load_config(out / "operator.yaml")
    iris = cfg.model("iris")
    assert iris is not None
    assert hashlib.sha256((out / "models" / "iris.joblib").read_bytes()).hexdigest() == iris.sha256


def test_fixed_profiles_replace_the_measured_ones(tmp_path: Path, demo: tuple[Path, list[str]]) -> None:
    """Tests route the demo by fixed profiles: no decision may depend on this machine's speed."""
    src, _ = demo
    out = tmp_path / "fixed"
    (out / "models").mkdir(parents=True)
    for p in (src / "models").iterdir():
        (out / "models" / p.name).write_bytes(p.read_bytes())
    build_demo(out, progress=lambda m: None, profiles={"iris": {"load_s": 9.5, "per_record_ms": 0.125}})
    cfg = load_config(out / "operator.yaml")
    iris, xl = cfg.model("iris"), cfg.model("forest-xl")
    assert iris is not None and iris.profile is not None and xl is not None and xl.profile is not None
    assert (iris.profile.load_s, iris.profile.per_record_ms, iris.profile.memory_mb) == (9.5, 0.125, None)
    assert xl.profile.load_s > 0  # the others keep their measured figures
    # The cached, measured profile is untouched: a later plain build measures as before.
    build_demo(out, progress=lambda m: None)
    iris = load_config(out / "operator.yaml").model("iris")
    assert iris is not None and iris.profile is not None and iris.profile.load_s != 9.5
