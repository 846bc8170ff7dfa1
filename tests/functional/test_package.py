"""model.tar.gz packaging: SageMaker's layout, byte-for-byte reproducible builds, safe unpacking
(no traversal, no links), and `router models package` through router.cli.main."""

from __future__ import annotations

import hashlib
import io
import tarfile
import textwrap
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from router.cli import main
from sagemaker_jobs import inference
from sagemaker_jobs.inference import InputError
from sagemaker_jobs.package import UnsafeArchiveError, build_package, unpack
from sagemaker_jobs.serve import load_service

X = np.array([[0.0, 0.1], [0.1, 0.0], [0.9, 1.0], [1.0, 0.9]])
Y = np.array([0, 0, 1, 1])


@pytest.fixture(scope="module")
def joblib_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("artifacts") / "iris.joblib"
    joblib.dump(LogisticRegression().fit(X, Y), path)
    return path


def names(tar_path: Path) -> list[str]:
    with tarfile.open(tar_path) as tar:
        return tar.getnames()


def test_package_layout_and_metadata(tmp_path: Path, joblib_file: Path) -> None:
    info = build_package(joblib_file, tmp_path / "model.tar.gz", framework="sklearn")
    assert info.path == tmp_path / "model.tar.gz"
    data = info.path.read_bytes()
    assert info.size_bytes == len(data) and info.sha256 == hashlib.sha256(data).hexdigest()
    assert names(info.path) == ["code", "code/inference.py", "code/requirements.txt", "model.joblib"]
    with tarfile.open(info.path) as tar:
        for m in tar.getmembers():
            assert (m.mtime, m.uid, m.gid, m.uname, m.gname) == (0, 0, 0, "", "")
        code = tar.extractfile("code/inference.py")
        assert code is not None and code.read() == Path(inference.__file__).read_bytes()
        model = tar.extractfile("model.joblib")
        assert model is not None and model.read() == joblib_file.read_bytes()
    # gzip header: no file name, mtime 0 (bytes 4-7).
    assert data[3] & 0x08 == 0 and data[4:8] == b"\0\0\0\0"


def test_same_inputs_give_the_same_digest(tmp_path: Path, joblib_file: Path) -> None:
    first = build_package(joblib_file, tmp_path / "a" / "model.tar.gz", framework="sklearn")
    # A later mtime on the input must not matter.
    copy = tmp_path / "copy.joblib"
    copy.write_bytes(joblib_file.read_bytes())
    second = build_package(copy, tmp_path / "b" / "model.tar.gz", framework="sklearn")
    assert first.sha256 == second.sha256
    assert first.path.read_bytes() == second.path.read_bytes()
    different = build_package(copy, tmp_path / "c.tar.gz", framework="sklearn", requirements=["scikit-learn==1.4.2"])
    assert different.sha256 != first.sha256


def test_onnx_package_asks_for_onnxruntime(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(b"not really onnx")
    info = build_package(model, tmp_path / "model.tar.gz", framework="onnx")
    assert "model.onnx" in names(info.path)
    with tarfile.open(info.path) as tar:
        req = tar.extractfile("code/requirements.txt")
        assert req is not None and req.read() == b"onnxruntime>=1.17\n"


def test_custom_code_dir_replaces_the_default_code(tmp_path: Path, joblib_file: Path) -> None:
    code = tmp_path / "src"
    (code / "helpers").mkdir(parents=True)
    (code / "inference.py").write_text("def output_fn(prediction, accept):\n    return 'custom', 'text/plain'\n")
    (code / "helpers" / "util.py").write_text("X = 1\n")
    (code / "__pycache__").mkdir()
    (code / "__pycache__" / "inference.cpython-311.pyc").write_bytes(b"junk")
    info = build_package(joblib_file, tmp_path / "model.tar.gz", framework="sklearn", code_dir=code, requirements=["numpy"])
    assert names(info.path) == ["code", "code/helpers", "code/helpers/util.py", "code/inference.py", "code/requirements.txt", "model.joblib"]


def test_custom_code_dir_needs_inference_py(tmp_path: Path, joblib_file: Path) -> None:
    (tmp_path / "src").mkdir()
    with pytest.raises(ValueError, match="needs an inference.py"):
        build_package(joblib_file, tmp_path / "model.tar.gz", framework="sklearn", code_dir=tmp_path / "src")


def test_unknown_framework_is_refused(tmp_path: Path, joblib_file: Path) -> None:
    with pytest.raises(ValueError, match="cannot package framework 'container'"):
        build_package(joblib_file, tmp_path / "model.tar.gz", framework="container")


def test_unpacked_package_serves_predictions(tmp_path: Path, joblib_file: Path) -> None:
    info = build_package(joblib_file, tmp_path / "model.tar.gz", framework="sklearn")
    files = unpack(info.path, tmp_path / "opt-ml-model")
    assert [p.name for p in files] == ["inference.py", "requirements.txt", "model.joblib"]
    service = load_service(tmp_path / "opt-ml-model")
    assert service.custom_code is not None  # the packaged copy of inference.py is what serves
    assert service.invoke(b"0.05,0.05\n0.95,0.95\n", "text/csv", "application/json")[0] == b'{"predictions":[0,1]}'
    # The copy's own InputError class is still the client's fault (400/415), not a model error.
    with pytest.raises(InputError, match="expected 2 features per record, got 3") as bad:
        service.invoke(b"1,2,3\n", "text/csv", "text/csv")
    assert bad.value.status == 400
    with pytest.raises(InputError, match="unsupported Content-Type") as unsupported:
        service.invoke(b"", "application/x-npy", "text/csv")
    assert (unsupported.value.status, unsupported.value.code) == (415, "unsupported_media_type")


def test_repacking_an_existing_archive_is_reproducible_and_keeps_its_code(tmp_path: Path, joblib_file: Path) -> None:
    code = tmp_path / "src"
    code.mkdir()
    (code / "inference.py").write_text("# custom\n")
    original = build_package(joblib_file, tmp_path / "orig.tar.gz", framework="sklearn", code_dir=code)
    again = build_package(original.path, tmp_path / "again.tar.gz", framework="sklearn")
    assert again.sha256 == original.sha256


def _evil_tar(path: Path, member: tarfile.TarInfo, data: bytes = b"x") -> Path:
    with tarfile.open(path, "w:gz") as tar:
        member.size = len(data) if member.isfile() else 0
        tar.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return path


@pytest.mark.parametrize("name", ["../evil.txt", "code/../../evil.txt", "/etc/evil.txt"])
def test_unpack_refuses_members_outside_the_destination(tmp_path: Path, name: str) -> None:
    tar_path = _evil_tar(tmp_path / "evil.tar.gz", tarfile.TarInfo(name))
    dest = tmp_path / "dest"
    with pytest.raises(UnsafeArchiveError, match="outside the destination"):
        unpack(tar_path, dest)
    assert not (tmp_path / "evil.txt").exists()
    assert list(dest.iterdir()) == []


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE])
def test_unpack_refuses_links(tmp_path: Path, kind: bytes) -> None:
    member = tarfile.TarInfo("model.joblib")
    member.type = kind
    member.linkname = "/etc/passwd"
    with pytest.raises(UnsafeArchiveError, match="refusing link member 'model.joblib'"):
        unpack(_evil_tar(tmp_path / "links.tar.gz", member), tmp_path / "dest")


def test_unpack_refuses_the_whole_archive_before_writing_anything(tmp_path: Path) -> None:
    path = tmp_path / "mixed.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        ok = tarfile.TarInfo("model.joblib")
        ok.size = 1
        tar.addfile(ok, io.BytesIO(b"m"))
        bad = tarfile.TarInfo("../escape")
        bad.size = 1
        tar.addfile(bad, io.BytesIO(b"e"))
    with pytest.raises(UnsafeArchiveError):
        unpack(path, tmp_path / "dest")
    assert not (tmp_path / "dest" / "model.joblib").exists()


# ---------------------------------------------------------------- router models package


def write_config(tmp_path: Path, joblib_file: Path, *, sha256: str | None = None, extra_models: str = "") -> Path:
    digest = sha256 or hashlib.sha256(joblib_file.read_bytes()).hexdigest()
    cfg = tmp_path / "router.yaml"
    cfg.write_text(
        textwrap.dedent(
            f"""\
            version: 1
            models:
              - name: iris
                framework: sklearn
                artifact: file://{joblib_file}
                sha256: {digest}
            """
        )
        + extra_models
    )
    return cfg


def test_cli_packages_a_model_and_prints_path_size_and_digest(tmp_path: Path, joblib_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path, joblib_file)
    out = tmp_path / "pkg" / "iris.tar.gz"
    assert main(["models", "package", str(cfg), "iris", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    assert f"path:   {out}" in printed
    assert f"size:   {out.stat().st_size} bytes" in printed
    assert f"sha256: {digest}" in printed
    assert names(out)[-1] == "model.joblib"


def test_cli_default_output_is_beside_the_config(tmp_path: Path, joblib_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path, joblib_file)
    assert main(["models", "package", str(cfg), "iris"]) == 0
    assert (tmp_path / ".router" / "packages" / "iris.tar.gz").is_file()
    capsys.readouterr()


def test_cli_unknown_model_exits_2(tmp_path: Path, joblib_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path, joblib_file)
    assert main(["models", "package", str(cfg), "nope"]) == 2
    err = capsys.readouterr().err
    assert "no model named 'nope' (models: iris)" in err


def test_cli_s3_artifact_exits_2(tmp_path: Path, joblib_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    extra = textwrap.indent(
        "- name: remote\n  framework: sklearn\n  artifact: s3://bucket-name/models/remote.joblib\n  sha256: " + "a" * 64 + "\n", "  "
    )
    cfg = write_config(tmp_path, joblib_file, extra_models=extra)
    assert main(["models", "package", str(cfg), "remote"]) == 2
    assert "is not a local file" in capsys.readouterr().err


def test_cli_digest_mismatch_exits_2(tmp_path: Path, joblib_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path, joblib_file, sha256="ab" * 32)
    assert main(["models", "package", str(cfg), "iris", "--out", str(tmp_path / "x.tar.gz")]) == 2
    assert "refusing to package it" in capsys.readouterr().err
    assert not (tmp_path / "x.tar.gz").exists()


def test_cli_invalid_config_prints_problems_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "router.yaml"
    cfg.write_text("version: 1\nmodelz: []\n")
    assert main(["models", "package", str(cfg), "iris"]) == 2
    err = capsys.readouterr().err
    assert "invalid config" in err and "modelz: unknown key" in err


def test_cli_models_without_subcommand_shows_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 2
    assert "package" in capsys.readouterr().err


def test_cli_output_is_reproducible(tmp_path: Path, joblib_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path, joblib_file)
    digests = []
    for name in ("a.tar.gz", "b.tar.gz"):
        assert main(["models", "package", str(cfg), "iris", "--out", str(tmp_path / name)]) == 0
        digests.append([line for line in capsys.readouterr().out.splitlines() if "sha256" in line][0])
    assert digests[0] == digests[1]
