"""`router models compile`: a real scikit-learn pipeline becomes ONNX, checked through the inline
runner, and the config gains its `onnx:` entry (comments kept), after which the runner serves the
ONNX graph; a model skl2onnx cannot convert, or a check that misses the tolerance, is refused
with the config and the model folder untouched."""

from __future__ import annotations

import hashlib
import json
import secrets
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from router.adapters.file_store import FileObjectStore
from router.adapters.inline import InlineRunner
from router.cli import main
from router.config import load_config
from router.domain import OutputKind

pytest.importorskip("skl2onnx")


class ThresholdRule(ClassifierMixin, BaseEstimator):
    """A custom estimator: skl2onnx has no converter for it."""

    def fit(self, x: Any, y: Any) -> ThresholdRule:
        self.classes_ = np.unique(y)
        self.n_features_in_ = np.asarray(x).shape[1]
        return self

    def predict(self, x: Any) -> Any:
        return (np.asarray(x)[:, 0] > 0).astype(int)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(loc=[10.0, -3.0, 0.5], scale=[2.0, 0.5, 4.0], size=(300, 3))
    y = (x[:, 0] - 10 + x[:, 2] > 0).astype(int)
    models = tmp_path / "models"
    models.mkdir()
    joblib.dump(make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y), models / "clf.joblib")
    joblib.dump(LinearRegression().fit(x, x @ [1.5, -2.0, 0.25] + 3), models / "reg.joblib")
    joblib.dump(ThresholdRule().fit(x, y), models / "custom.joblib")
    entries = "".join(
        f"  - name: {name}   # {name} model\n"
        "    framework: sklearn\n"
        f"    artifact: file://./models/{name}.joblib\n"
        f"    sha256: {_sha(models / f'{name}.joblib')}\n"
        "    features: [a, b, c]\n"
        for name in ("clf", "reg", "custom")
    )
    (tmp_path / "op.yaml").write_text(f"# operator config\nmodels:\n{entries}  - {{name: flow, framework: sklearn, artifact: file://./models/clf.joblib, sha256: {_sha(models / 'clf.joblib')}}}\n")
    return tmp_path


def test_a_pipeline_compiles_and_the_config_records_it(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = folder / "op.yaml"
    before = config.read_text()
    assert main(["models", "compile", str(config), "clf"]) == 0
    out = capsys.readouterr().out
    assert "labels agree on" in out and "StandardScaler's mean and scale" in out  # says how the records were made
    onnx_file = folder / "models" / "clf.onnx"
    assert onnx_file.is_file()
    after = config.read_text()
    added = [line for line in after.splitlines() if line not in before.splitlines()]
    assert len(added) == 1 and added[0].startswith("    onnx: {artifact: ")  # one line, in the model's entry
    assert "# operator config" in after and "# clf model" in after  # comments kept
    spec = load_config(config, check_digests=True).model("clf")
    assert spec is not None and spec.onnx is not None
    assert spec.onnx.sha256 == _sha(onnx_file) and spec.onnx.artifact == onnx_file.resolve().as_uri()
    assert spec.onnx.agreement is not None and spec.onnx.agreement >= 0.99 and spec.onnx.rows == 2000
    assert spec.onnx.tolerance == 0.99 and spec.onnx.max_abs_error is None
    assert spec.sha256 == _sha(folder / "models" / "clf.joblib")  # the model's own artifact is unchanged

    # The inline runner now runs the ONNX graph, with the same answers as the pipeline.
    runner = InlineRunner(FileObjectStore(secrets.token_bytes(16)), folder / "cache")
    rows = [[10.0, -3.0, 0.5], [14.0, -2.5, -1.0], [6.0, -3.5, 3.0]]
    assert runner.predict(spec, rows, OutputKind.PREDICT) == joblib.load(folder / "models" / "clf.joblib").predict(np.array(rows)).tolist()
    assert [p.suffix for p in (folder / "cache").iterdir() if not p.name.startswith(".")] == [".onnx"]
    assert runner.is_warm(spec)

    # Compiling again replaces the entry instead of adding a second one.
    assert main(["models", "compile", str(config), "clf", "--seed", "3"]) == 0
    assert config.read_text().count("onnx: {") == 1


def test_a_model_skl2onnx_cannot_convert_is_refused_and_nothing_changes(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = folder / "op.yaml"
    before = config.read_bytes()
    listing = sorted(p.name for p in (folder / "models").iterdir())
    assert main(["models", "compile", str(config), "custom"]) == 1
    err = capsys.readouterr().err
    assert "skl2onnx cannot convert ThresholdRule" in err and "nothing written" in err and "Traceback" not in err
    assert config.read_bytes() == before
    assert sorted(p.name for p in (folder / "models").iterdir()) == listing  # no .onnx, no temp file left


def test_a_tolerance_the_conversion_misses_is_refused(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = folder / "op.yaml"
    before = config.read_bytes()
    # float32 arithmetic cannot reproduce a float64 linear model exactly: an error of 0 is never met.
    assert main(["models", "compile", str(config), "reg", "--tolerance", "0", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["compiled"] and not report["passed"] and not report["written"]
    assert report["kind"] == "regressor" and report["max_abs_error"] > 0 and report["tolerance"] == 0
    assert "does not pass" in report["error"]
    assert config.read_bytes() == before and not (folder / "models" / "reg.onnx").exists()
    # The same model within a stated tolerance is accepted, and the measured error recorded.
    assert main(["models", "compile", str(config), "reg", "--tolerance", "0.01"]) == 0
    spec = load_config(config).model("reg")
    assert spec is not None and spec.onnx is not None and spec.onnx.max_abs_error is not None
    assert 0 < spec.onnx.max_abs_error <= 0.01 and spec.onnx.agreement is None


def test_given_data_dry_run_and_json(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = folder / "op.yaml"
    before = config.read_bytes()
    data = folder / "rows.jsonl"
    rng = np.random.default_rng(5)
    data.write_text("".join(json.dumps({"a": float(a), "b": float(b), "c": float(c)}) + "\n" for a, b, c in rng.normal(size=(50, 3))))
    assert main(["models", "compile", str(config), "clf", "--data", str(data), "--dry-run", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rows"] == 50 and report["data"].startswith("rows.jsonl") and report["passed"] and not report["written"]
    assert config.read_bytes() == before and not (folder / "models" / "clf.onnx").exists()


def test_bad_requests_exit_2_or_refuse_without_writing(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = folder / "op.yaml"
    before = config.read_bytes()
    assert main(["models", "compile", str(config), "nope"]) == 2
    assert main(["models", "compile", str(config), "clf", "--rows", "0"]) == 2
    assert main(["models", "compile", str(config), "clf", "--tolerance", "1.5"]) == 1  # a share for a classifier
    assert main(["models", "compile", str(config), "flow"]) == 1  # written inline: cannot be edited safely
    err = capsys.readouterr().err
    assert "no model named 'nope'" in err and "is written inline" in err and "Traceback" not in err
    assert config.read_bytes() == before and not (folder / "models" / "clf.onnx").exists()
    assert not (folder / "models" / "flow.onnx").exists()


def test_help_explains_the_check(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["models", "compile", "--help"])
    text = capsys.readouterr().out
    assert "--tolerance" in text and "labels agree" in text and "--data" in text and "--dry-run" in text
    assert "StandardScaler" in text and "Refused" in text  # how records are made, and when it refuses


def test_a_compiled_model_needs_onnxruntime_not_a_matching_sklearn_in_the_package(folder: Path) -> None:
    from router.cli.config_cmd import model_version_problems

    config = folder / "op.yaml"
    assert main(["models", "compile", str(config), "clf"]) == 0
    cfg = load_config(config)
    old_sklearn = {"scikit-learn": "1.0.0", "numpy": "2.0.0"}  # older than what saved the joblib files
    problems = dict(model_version_problems(cfg, old_sklearn))
    assert any("'clf' runs its ONNX conversion" in p and "onnxruntime" in p for p in problems)
    assert any("'reg'" in p for p in problems)  # not compiled: its scikit-learn version still matters
    with_onnx = dict(model_version_problems(cfg, {**old_sklearn, "onnxruntime": "1.32.0"}))
    assert not any("'clf'" in p for p in with_onnx)
