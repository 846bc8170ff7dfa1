"""`router package`'s rules without pip: which wheels it asks for, what it strips (only test
packages that nothing left imports), how it measures, and when it is over Lambda's limits.
The real build and its import in a Lambda-like sandbox: tests/functional/test_lambda_sandbox.py."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from router.cli.package_cmd import UNZIPPED_LIMIT, ZIPPED_LIMIT, Plan, Result, strip, tree_size, zip_size


def tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_wheels_are_for_amazon_linux_2023_and_the_runtimes_python() -> None:
    plan = Plan("python3.13", "arm64", with_onnx=True, with_boto3=False)
    assert plan.python_version == "3.13"
    assert plan.platforms[0] == "manylinux_2_34_aarch64"  # AL2023's glibc
    assert "manylinux_2_28_aarch64" in plan.platforms and plan.platforms[-1] == "manylinux2014_aarch64"
    assert [p.name for p in plan.requirement_files] == ["lambda-base.txt", "lambda-onnx.txt"]
    assert Plan("python3.12", "x86_64", False, True).platforms[0] == "manylinux_2_34_x86_64"


def test_every_pin_is_exact(tmp_path: Path) -> None:
    for req in Plan("python3.12", "x86_64", True, True).requirement_files:
        pins = [ln.split("#")[0].strip() for ln in req.read_text().splitlines()]
        for pin in filter(None, pins):
            assert "==" in pin and pin.split("==")[1][0].isdigit(), (req.name, pin)


def test_test_packages_nothing_imports_are_stripped(tmp_path: Path) -> None:
    root = tree(tmp_path, {
        "lib/__init__.py": "from lib import core\n",
        "lib/core.py": "X = 1\n",
        "lib/tests/__init__.py": "",
        "lib/tests/test_core.py": "import lib.tests.helpers\n",
        "lib/tests/helpers.py": "",
        "lib/sub/__init__.py": "",
        "lib/sub/tests/__init__.py": "",
        "lib/_src/x.pxd": "cdef int x\n",
        "lib/include/x.h": "int x;\n",
        "lib/__pycache__/core.cpython-312.pyc": "junk",
    })
    removed, kept = strip(root)
    assert sorted(removed) == ["lib/sub/tests", "lib/tests"]
    assert kept == {}
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) == [
        "lib/__init__.py", "lib/core.py", "lib/sub/__init__.py",
    ]


@pytest.mark.parametrize(
    ("importer", "statement"),
    [
        ("lib/testing/utils.py", "from lib._core.tests._natype import pd_NA\n"),  # numpy 2.2's numpy.testing
        ("lib/testing/utils.py", "import lib._core.tests\n"),
        ("lib/_core/other.py", "from .tests import helper\n"),
        ("lib/_core/other.py", "from . import tests\n"),
        ("lib/testing/utils.py", "def f():\n    from .._core.tests import helper\n"),
    ],
)
def test_a_test_package_that_code_imports_is_kept(tmp_path: Path, importer: str, statement: str) -> None:
    root = tree(tmp_path, {
        "lib/__init__.py": "",
        "lib/_core/__init__.py": "",
        "lib/_core/tests/__init__.py": "",
        "lib/_core/tests/_natype.py": "pd_NA = None\n",
        "lib/testing/__init__.py": "",
        importer: statement,
    })
    removed, kept = strip(root)
    assert removed == []
    assert kept == {"lib._core.tests": importer}
    assert (root / "lib/_core/tests/_natype.py").is_file()


def test_sizes_are_of_the_files_and_of_their_deflated_zip(tmp_path: Path) -> None:
    root = tree(tmp_path / "pkg", {"a.py": "x = 1\n" * 1000, "b/c.txt": "hello"})
    assert tree_size(root) == 6000 + 5
    counted = zip_size(root)
    written = zip_size(root, tmp_path / "pkg.zip")
    assert counted == written == (tmp_path / "pkg.zip").stat().st_size
    with zipfile.ZipFile(tmp_path / "pkg.zip") as zf:
        assert sorted(zf.namelist()) == ["a.py", "b/c.txt"]
        assert zf.read("a.py") == b"x = 1\n" * 1000


def result(unzipped: int, zipped: int, zip_path: str | None = None) -> Result:
    return Result("out", "python3.12", "x86_64", False, {}, unzipped, zipped, zip_path=zip_path)


def test_the_unzipped_limit_always_applies_the_zipped_one_to_a_direct_upload() -> None:
    assert result(UNZIPPED_LIMIT, ZIPPED_LIMIT + 1).within_limits  # sam deploy uploads through S3
    assert not result(UNZIPPED_LIMIT + 1, 1).within_limits
    assert not result(1, ZIPPED_LIMIT + 1, zip_path="lambda.zip").within_limits
    assert result(1, ZIPPED_LIMIT, zip_path="lambda.zip").within_limits


def test_bytecode_is_compiled_for_the_runtime_trusted_without_its_source_and_named_under_var_task(tmp_path: Path) -> None:
    import marshal
    import sys

    from router.cli.package_cmd import compile_bytecode

    root = tree(tmp_path / "pkg", {"lib/__init__.py": "", "lib/mod.py": "X = 1\n", "top.py": "import lib.mod\n"})
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    compile_bytecode(root, Path(sys.executable), version)
    tag = sys.implementation.cache_tag
    for rel in ("lib/__pycache__/__init__", "lib/__pycache__/mod", "__pycache__/top"):
        data = (root / f"{rel}.{tag}.pyc").read_bytes()
        assert int.from_bytes(data[4:8], "little") == 0b01  # hash-based, source never checked
        code = marshal.loads(data[16:])
        assert code.co_filename.startswith("/var/task/"), code.co_filename
    assert marshal.loads((root / f"lib/__pycache__/mod.{tag}.pyc").read_bytes()[16:]).co_filename == "/var/task/lib/mod.py"


def test_bytecode_of_another_python_is_refused(tmp_path: Path) -> None:
    import sys

    from router.cli.package_cmd import PackageError, compile_bytecode

    root = tree(tmp_path / "pkg", {"m.py": "X = 1\n"})
    with pytest.raises(PackageError, match="not 2.7: its bytecode would never load"):
        compile_bytecode(root, Path(sys.executable), "2.7")
    assert not (root / "__pycache__").exists()


def test_the_bytecode_python_is_the_one_named_first_else_one_that_runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import sys

    from router.cli.package_cmd import bytecode_python, find_python

    monkeypatch.setenv("ROUTER_PACKAGE_PYTHON", str(tmp_path / "python3.12"))
    assert bytecode_python("python3.12") == tmp_path / "python3.12"
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    (tmp_path / "bin").mkdir()
    shim = tmp_path / "bin" / f"python{version}"
    shim.write_text("#!/bin/sh\nexit 127\n")  # a pyenv shim of a version not selected
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "pyenv"))
    assert find_python(version) is None
    for patch in (1, 10):  # pyenv's newest that runs: here the test's own Python, linked in
        (tmp_path / "pyenv" / "versions" / f"{version}.{patch}" / "bin").mkdir(parents=True)
        (tmp_path / "pyenv" / "versions" / f"{version}.{patch}" / "bin" / "python").symlink_to(sys.executable)
    assert find_python(version) == tmp_path / "pyenv" / "versions" / f"{version}.10" / "bin" / "python"
    assert find_python("2.7") is None
