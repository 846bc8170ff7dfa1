"""`router profile`: measures real models, and --write puts the profile into the config without
touching anything else (comments, order), replacing an old profile or adding one."""

from __future__ import annotations

import hashlib
from pathlib import Path

import joblib
import numpy as np
import pytest
import sklearn
from sklearn.linear_model import LogisticRegression

from router.cli import main
from router.cli.profiling import with_profile
from router.config import load_config
from router.errors import ConfigError


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("profile")
    x = np.random.default_rng(0).normal(size=(100, 3))
    joblib.dump(LogisticRegression().fit(x, (x[:, 0] > 0).astype(int)), d / "clf.joblib")
    sha = hashlib.sha256((d / "clf.joblib").read_bytes()).hexdigest()
    (d / "op.yaml").write_text(
        "# operator config\n"
        "models:\n"
        "  - name: clf            # a classifier\n"
        "    framework: sklearn\n"
        "    artifact: file://./clf.joblib\n"
        f"    sha256: {sha}\n"
        "    features: [a, b, c]  # in column order\n"
        "  - name: deep\n"
        "    framework: pytorch\n"
        "    artifact: s3://bucket-x/deep.tar.gz\n"
        f"    sha256: {sha}\n"
        "    profile: {load_s: 8, per_record_ms: 15}\n"
    )
    return d / "op.yaml"


def test_profile_measures_and_writes_it_back(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = config.read_text()
    assert main(["profile", str(config), "--write"]) == 0
    assert "clf: profile: {load_s:" in capsys.readouterr().out
    after = config.read_text()
    added = [line for line in after.splitlines() if line not in before.splitlines()]
    assert len(added) == 2 and added[1].startswith("    profile: {load_s: ")  # one line each, same indentation
    # The versions the artifact was saved with, for the train/serve check of `config validate`.
    assert added[0].startswith(f'    saved_with: {{sklearn: "{sklearn.__version__}"')
    assert load_config(config).model("clf").saved_with.sklearn == sklearn.__version__  # type: ignore[union-attr]
    prof = load_config(config).model("clf").profile  # type: ignore[union-attr]
    assert prof is not None and prof.load_s > 0 and prof.per_record_ms > 0 and prof.memory_mb is not None
    assert "# a classifier" in after and "# in column order" in after
    # Profiling again replaces the line instead of adding a second one.
    assert main(["profile", str(config), "clf", "--write"]) == 0
    assert config.read_text().count("profile: {load_s:") == 2  # clf's and deep's
    assert config.read_text().count("saved_with:") == 1


def test_sagemaker_only_models_and_unknown_names(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", str(config), "deep"]) == 1
    assert "runs on SageMaker" in capsys.readouterr().err
    assert main(["profile", str(config), "nope"]) == 2


def test_with_profile_edits_text_not_yaml() -> None:
    text = "models:\n- name: a\n  framework: sklearn  # keep me\n  profile: {load_s: 1, per_record_ms: 2}\n- name: b\n  framework: onnx\n"
    out = with_profile(text, "a", {"load_s": 0.5, "per_record_ms": 0.01})
    assert out == text.replace("{load_s: 1, per_record_ms: 2}", "{load_s: 0.5, per_record_ms: 0.01}")
    out = with_profile(text, "b", {"load_s": 0.5, "per_record_ms": 0.01})
    assert out.endswith("- name: b\n  profile: {load_s: 0.5, per_record_ms: 0.01}\n  framework: onnx\n")
    with pytest.raises(ConfigError):
        with_profile("models:\n- {name: c, framework: onnx}\n", "c", {"load_s": 1.0})
