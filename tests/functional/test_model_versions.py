"""Train/serve skew: the scikit-learn and numpy versions a model file was saved with are read from
the file (never unpickled for it); `router config validate`, `router package --config` and the
inline loader refuse a model saved with a newer scikit-learn than the runtime holds, naming both
versions and the fix. The dev stack and the Lambda package hold the same scikit-learn."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import re
import textwrap
import tomllib
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import sklearn
from sklearn.base import BaseEstimator
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from router.adapters.file_store import FileObjectStore
from router.adapters.inline import InlineRunner
from router.cli import main
from router.cli.config_cmd import lambda_versions
from router.config import ModelSpec
from router.domain import OutputKind
from router.errors import InternalError
from router.model_versions import SavedWith, parse_version, read_saved_with, sklearn_refusal

ROOT = Path(__file__).resolve().parents[2]
NEWER = "1.99.0"  # a scikit-learn release newer than any the package holds


def _fitted() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 4))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    return {
        "pipeline": make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y),
        "forest": RandomForestClassifier(n_estimators=5, random_state=0).fit(x, y),
    }


MODELS = _fitted()


class _SavedBy(pickle.Pickler):
    """Pickles estimators exactly as scikit-learn `version` would (its __getstate__ records it)."""

    def __init__(self, f: io.BytesIO, version: str) -> None:
        super().__init__(f, protocol=5)
        self.version = version

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, BaseEstimator):
            rv = obj.__reduce_ex__(5)
            return (rv[0], rv[1], {**rv[2], "_sklearn_version": self.version}, *rv[3:])
        return NotImplemented


def saved_by(path: Path, model: Any, version: str) -> Path:
    buf = io.BytesIO()
    _SavedBy(buf, version).dump(model)
    path.write_bytes(buf.getvalue())
    return path


# ---------------------------------------------------------------- reading the file


@pytest.mark.parametrize("kind", sorted(MODELS))
@pytest.mark.parametrize("compress", [0, 3, ("gzip", 3), ("bz2", 3), ("xz", 3), ("lzma", 3)])
def test_joblib_files_plain_or_compressed_name_the_saving_versions(tmp_path: Path, kind: str, compress: Any) -> None:
    path = tmp_path / "m.joblib"
    joblib.dump(MODELS[kind], path, compress=compress)
    assert read_saved_with(path) == SavedWith(sklearn=sklearn.__version__, numpy_major=2)


@pytest.mark.parametrize("protocol", [0, 2, 3, 4, 5])
def test_pickle_files_of_every_protocol_name_the_saving_versions(tmp_path: Path, protocol: int) -> None:
    path = tmp_path / "m.pkl"
    path.write_bytes(pickle.dumps(MODELS["pipeline"], protocol=protocol))
    assert read_saved_with(path).sklearn == sklearn.__version__


def test_a_file_that_is_no_pickle_names_nothing(tmp_path: Path) -> None:
    path = tmp_path / "m.joblib"
    path.write_bytes(b"x\x9c not really zlib")
    assert read_saved_with(path) == SavedWith()


def test_versions_compare_by_release_and_patch_releases_are_compatible() -> None:
    assert parse_version("1.9.1") == (1, 9, 1)
    assert parse_version("1.10.dev0") == (1, 10)
    assert sklearn_refusal("m", "1.9.2", "1.9.1") is None
    assert sklearn_refusal("m", "1.8.0", "1.9.1") is None
    assert sklearn_refusal("m", None, "1.9.1") is None
    refusal = sklearn_refusal("m", "1.10.0", "1.9.1")
    assert refusal is not None and "scikit-learn 1.10.0" in refusal and "scikit-learn 1.9.1" in refusal


# ---------------------------------------------------------------- dev stack = Lambda package


def test_the_dev_stack_and_the_lambda_package_hold_the_same_scikit_learn() -> None:
    pinned = lambda_versions()["scikit-learn"]
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"scikit-learn=={pinned}" in deps
    assert sklearn.__version__ == pinned


# ---------------------------------------------------------------- router config validate


def config(tmp_path: Path, artifact: Path | str, extra: str = "") -> Path:
    uri = artifact if isinstance(artifact, str) else f"file://{artifact}"
    digest = hashlib.sha256(artifact.read_bytes()).hexdigest() if isinstance(artifact, Path) else "a" * 64
    path = tmp_path / "router.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            version: 1
            models:
              - name: churn
                framework: sklearn
                artifact: {uri}
                sha256: {digest}
            """
        )
        + extra
    )
    return path


def test_validate_refuses_a_model_saved_with_a_newer_scikit_learn(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = config(tmp_path, saved_by(tmp_path / "churn.joblib", MODELS["pipeline"], NEWER))
    assert main(["config", "validate", str(cfg)]) == 2
    err = capsys.readouterr().err
    pinned = lambda_versions()["scikit-learn"]
    assert f"models[0]: model 'churn' was saved with scikit-learn {NEWER}, but the Lambda package has scikit-learn {pinned}" in err
    assert f"re-save the model with scikit-learn {pinned}" in err


def test_validate_json_lists_the_refusal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = config(tmp_path, saved_by(tmp_path / "churn.joblib", MODELS["forest"], NEWER))
    assert main(["config", "validate", "--json", str(cfg)]) == 2
    doc = json.loads(capsys.readouterr().out)
    assert doc["valid"] is False and NEWER in doc["problems"][0]


def test_validate_accepts_a_model_of_the_dev_stack_and_shows_its_versions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "churn.joblib"
    joblib.dump(MODELS["pipeline"], path)
    assert main(["config", "validate", "--json", str(config(tmp_path, path))]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["models"][0]["saved_with"] == {"sklearn": sklearn.__version__, "numpy_major": 2}


def test_validate_uses_the_declared_versions_of_an_s3_artifact(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = config(tmp_path, "s3://models-bucket/churn.joblib", f"    saved_with: {{sklearn: {NEWER}, numpy: 2.4.6}}\n")
    assert main(["config", "validate", str(cfg)]) == 2
    assert f"saved with scikit-learn {NEWER}" in capsys.readouterr().err


def test_validate_checks_against_a_built_package(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "churn.joblib"
    joblib.dump(MODELS["pipeline"], path)
    package = tmp_path / "lambda"
    package.mkdir()
    (package / ".router-package.json").write_text(json.dumps({"result": {"versions": {"scikit-learn": "1.7.2", "numpy": "2.2.6"}}}))
    assert main(["config", "validate", "--package", str(package), str(config(tmp_path, path))]) == 2
    err = capsys.readouterr().err
    assert f"saved with scikit-learn {sklearn.__version__}, but the Lambda package has scikit-learn 1.7.2" in err
    assert main(["config", "validate", "--package", str(tmp_path), str(config(tmp_path, path))]) == 2
    assert "not a package built by `router package`" in capsys.readouterr().err


# ---------------------------------------------------------------- the inline loader


def test_the_inline_loader_refuses_a_newer_model_at_load_naming_both_versions(tmp_path: Path) -> None:
    path = saved_by(tmp_path / "churn.joblib", MODELS["pipeline"], NEWER)
    spec = ModelSpec(name="churn", framework="sklearn", artifact=f"file://{path}", sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    runner = InlineRunner(FileObjectStore(b"k" * 32), tmp_path / "cache")
    with pytest.raises(InternalError) as info:
        runner.predict(spec, [[0.0, 0.0, 0.0, 0.0]], OutputKind.PREDICT)
    message = str(info.value)
    assert re.search(rf"saved with scikit-learn {re.escape(NEWER)}, but this runtime has scikit-learn {re.escape(sklearn.__version__)}", message)
    assert info.value.__cause__ is None  # refused before unpickling: no AttributeError underneath
    assert not runner.is_warm(spec)


def test_the_inline_loader_loads_a_model_of_its_own_version(tmp_path: Path) -> None:
    path = saved_by(tmp_path / "churn.joblib", MODELS["forest"], sklearn.__version__)
    spec = ModelSpec(name="churn", framework="sklearn", artifact=f"file://{path}", sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    runner = InlineRunner(FileObjectStore(b"k" * 32), tmp_path / "cache")
    x = [[0.5, -0.2, 0.1, 0.0]]
    assert runner.predict(spec, x, OutputKind.PREDICT) == MODELS["forest"].predict(np.array(x)).tolist()


# ---------------------------------------------------------------- ONNX


def test_validate_refuses_an_onnx_graph_the_packaged_onnxruntime_cannot_load(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import onnx
    import onnxruntime
    from skl2onnx import to_onnx

    graph = to_onnx(MODELS["forest"], np.zeros((1, 4), dtype=np.float32), target_opset=17)
    ok = tmp_path / "ok.onnx"
    ok.write_bytes(graph.SerializeToString())
    cfg = config(tmp_path, ok).read_text().replace("framework: sklearn", "framework: onnx")
    (tmp_path / "router.yaml").write_text(cfg)
    assert lambda_versions()["onnxruntime"] == onnxruntime.__version__  # the dev stack holds the package's
    assert main(["config", "validate", str(tmp_path / "router.yaml")]) == 0
    capsys.readouterr()
    for opset in graph.opset_import:
        if opset.domain in ("", "ai.onnx"):
            opset.version = 99  # no onnxruntime implements this opset
    future = tmp_path / "future.onnx"
    onnx.save(graph, str(future))
    (tmp_path / "router.yaml").write_text(config(tmp_path, future).read_text().replace("framework: sklearn", "framework: onnx"))
    assert main(["config", "validate", str(tmp_path / "router.yaml")]) == 2
    err = capsys.readouterr().err
    assert f"onnxruntime {onnxruntime.__version__} (the Lambda package's) cannot load it" in err
    assert "model 'churn': declares opset 99; onnxruntime" in err and "Opset 99 is under development" in err
    assert "target_opset" in err
