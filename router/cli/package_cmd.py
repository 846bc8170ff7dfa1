"""`router package`: build the Lambda deployment package (the folder the template's functions run).

Installs the pinned runtime set (router/cli/requirements/lambda-*.txt) for the Lambda's platform
(Amazon Linux 2023: manylinux wheels up to glibc 2.34) and Python, copies the router package,
strips only files that nothing imports (each rule checked against the tree it runs on), compiles
every module's bytecode with the runtime's Python (Lambda's code folder is read-only: without .pyc
files each cold start compiles scikit-learn, SciPy and the router from source again, seconds),
measures the unzipped and zipped sizes against Lambda's limits and prints the versions it packaged.
A folder built from the same inputs is reused, not rebuilt.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import router
from router.cli.common import print_config_error, wrap

RUNTIMES = {"python3.12": "3.12", "python3.13": "3.13"}
DEFAULT_RUNTIME = "python3.12"  # infra/template.yaml's Runtime
ARCHES = {"x86_64": "x86_64", "arm64": "aarch64"}
# Amazon Linux 2023 has glibc 2.34: wheels tagged manylinux_2_17 (manylinux2014) up to 2_34 run.
GLIBC_MINORS = range(34, 16, -1)
UNZIPPED_LIMIT = 250 * 1024 * 1024  # function code + layers, unzipped (Lambda quota: 250 MB)
ZIPPED_LIMIT = 50 * 1024 * 1024  # a .zip uploaded directly to the Lambda API (quota: 50 MB)
REQUIREMENTS = Path(__file__).resolve().parent / "requirements"
MANIFEST = ".router-package.json"
REPORTED = ("numpy", "scikit-learn", "scipy", "pydantic", "aws-lambda-powertools", "onnxruntime", "boto3")
# Compile-time files: headers, Cython and C sources. The import system never loads them.
SOURCE_SUFFIXES = frozenset({".pyx", ".pxd", ".pxi", ".c", ".cpp", ".h", ".hpp"})
EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2
# The .pyc files are trusted without a look at their source: the package is immutable once built
# (and a zip's 2-second timestamps would make timestamp checks miss).
BYTECODE_MODE = "unchecked-hash"
TASK_ROOT = "/var/task"  # where Lambda unpacks the package: the source paths tracebacks name


def register(sub: Any) -> None:
    p = sub.add_parser(
        "package",
        help="build the Lambda deployment package (build/lambda) and check it against Lambda's size limits",
        description=wrap(
            "Install the pinned runtime set for the Lambda platform and Python into OUT, add the router "
            "package, strip test suites nothing imports, and print the unzipped and zipped sizes against "
            "Lambda's 250 MB / 50 MB limits and the versions packaged. Exits 1 when over a limit or when "
            "pip fails, 2 when a model of --config cannot load in the packaged runtime. A folder built "
            "from the same inputs is reused (--force rebuilds). docs/operations.md walks the deploy."
        ),
    )
    p.add_argument("--runtime", choices=sorted(RUNTIMES), default=DEFAULT_RUNTIME, help=f"Lambda runtime (default {DEFAULT_RUNTIME}, as in infra/template.yaml)")
    p.add_argument("--arch", choices=sorted(ARCHES), default="x86_64", help="Lambda architecture (default x86_64)")
    p.add_argument("--out", type=Path, default=Path("build/lambda"), help="output folder (default build/lambda)")
    p.add_argument("--with-onnx", action="store_true", help="add onnxruntime (ONNX models inline); often over 250 MB: see the container image")
    p.add_argument("--with-boto3", action="store_true", help="bundle boto3/botocore instead of using the runtime's own")
    p.add_argument("--config", type=Path, metavar="FILE", help="refuse if a model of this operator config cannot load in the package")
    p.add_argument("--zip", type=Path, metavar="FILE", help="also write the package as a .zip (for a direct upload)")
    p.add_argument("--force", action="store_true", help="rebuild even when OUT was built from the same inputs")
    p.add_argument(
        "--python", type=Path, metavar="PATH",
        help="the runtime's Python (same X.Y) to compile the package's bytecode with; default: $ROUTER_PACKAGE_PYTHON, "
        "pythonX.Y on PATH, else pyenv's newest X.Y. Without one the package has no .pyc files (slow cold starts; a warning says so)",
    )
    p.add_argument(
        "--image-template", type=Path, metavar="FILE",
        help="instead of building: write the container-image variant of --template to FILE (JSON) and exit",
    )
    p.add_argument("--template", type=Path, default=Path("infra/template.yaml"), help="the SAM template (default infra/template.yaml)")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.set_defaults(func=cmd_package)


# ---------------------------------------------------------------- plan


@dataclass(frozen=True)
class Plan:
    runtime: str
    arch: str
    with_onnx: bool
    with_boto3: bool

    @property
    def python_version(self) -> str:
        return RUNTIMES[self.runtime]

    @property
    def platforms(self) -> list[str]:
        machine = ARCHES[self.arch]
        return [f"manylinux_2_{m}_{machine}" for m in GLIBC_MINORS] + [f"manylinux2014_{machine}"]

    @property
    def requirement_files(self) -> list[Path]:
        names = ["lambda-base.txt"] + (["lambda-onnx.txt"] if self.with_onnx else []) + (["lambda-boto3.txt"] if self.with_boto3 else [])
        return [REQUIREMENTS / n for n in names]

    def deps_key(self) -> str:
        """Digest of what pip installs: the pins and the options."""
        h = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode())
        h.update(f"bytecode={BYTECODE_MODE}".encode())
        for path in self.requirement_files:
            h.update(path.read_bytes())
        return h.hexdigest()

    def key(self) -> str:
        """Digest of every input: the pins, the options and the router's own source."""
        h = hashlib.sha256(self.deps_key().encode())
        for path in sorted(_router_sources()):
            h.update(str(path.relative_to(_router_dir())).encode())
            h.update(path.read_bytes())
        return h.hexdigest()


def _router_dir() -> Path:
    return Path(router.__file__).resolve().parent


def _router_sources() -> list[Path]:
    return [p for p in _router_dir().rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"]


# ---------------------------------------------------------------- result


@dataclass
class Result:
    out: str
    runtime: str
    arch: str
    reused: bool
    versions: dict[str, str]
    unzipped_bytes: int
    zipped_bytes: int
    stripped: list[str] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)
    refused_models: list[str] = field(default_factory=list)
    zip_path: str | None = None
    bytecode: str | None = None  # the Python X.Y whose .pyc files the package holds; None: none

    @property
    def within_limits(self) -> bool:
        """250 MB unzipped always; 50 MB zipped only for a .zip uploaded directly (--zip): `sam
        deploy` uploads the package to S3 first, where only the unzipped limit applies."""
        direct = self.zip_path is None or self.zipped_bytes <= ZIPPED_LIMIT
        return self.unzipped_bytes <= UNZIPPED_LIMIT and direct

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["limits"] = {"unzipped_bytes": UNZIPPED_LIMIT, "zipped_bytes": ZIPPED_LIMIT}
        out["within_limits"] = self.within_limits
        return out


def _progress(text: str) -> None:
    print(f"router package: {text}", file=sys.stderr, flush=True)


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB"


# ---------------------------------------------------------------- build steps


def _pip_install(plan: Plan, target: Path) -> None:
    cmd = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-input",
        "--no-deps", "--no-compile", "--only-binary=:all:", "--target", str(target),
        "--python-version", plan.python_version, "--implementation", "cp",
    ]
    for tag in plan.platforms:
        cmd += ["--platform", tag]
    for req in plan.requirement_files:
        cmd += ["-r", str(req)]
    run = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if run.returncode != 0:
        lines = [ln for ln in (run.stderr or run.stdout).splitlines() if "is ignored" not in ln]
        raise PackageError("pip could not install the runtime set:\n  " + "\n  ".join(lines[-15:]))


def _copy_router(target: Path) -> None:
    shutil.copytree(_router_dir(), target / "router", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def bytecode_python(runtime: str) -> Path | None:
    """A Python of the runtime's X.Y to compile bytecode with: $ROUTER_PACKAGE_PYTHON, else the first
    of pythonX.Y on PATH and pyenv's newest X.Y.Z that runs and is X.Y; None when there is none."""
    explicit = os.environ.get("ROUTER_PACKAGE_PYTHON")
    return Path(explicit) if explicit else find_python(RUNTIMES[runtime])


def find_python(wanted: str) -> Path | None:
    """The first of pythonX.Y on PATH and pyenv's X.Y.Z (newest first) that runs and is `wanted`."""
    candidates: list[Path] = []
    on_path = shutil.which(f"python{wanted}")
    if on_path:
        candidates.append(Path(on_path))
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found = sorted(
        (p for p in root.glob(f"{wanted}.*") if (p / "bin" / "python").is_file() and p.name.count(".") == 2 and p.name.split(".")[2].isdigit()),
        key=lambda p: int(p.name.split(".")[2]),
    )
    candidates += [p / "bin" / "python" for p in reversed(found)]
    return next((c for c in candidates if _python_version(c) == wanted), None)


def _python_version(python: Path) -> str | None:
    """'3.12' for a Python 3.12 that runs, else None (a pyenv shim of an unselected version fails)."""
    try:
        probe = subprocess.run([str(python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                               capture_output=True, text=True, check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return probe.stdout.strip() if probe.returncode == 0 else None


def compile_bytecode(root: Path, python: Path, version: str, *, package: Path | None = None) -> None:
    """Every module under `root` (inside the package folder `package`, default `root`) compiled to
    __pycache__/*.cpython-XY.pyc by `python`, which must be Python `version` (a .pyc of another
    version is never loaded); each names its source as Lambda will see it, under /var/task."""
    found = _python_version(python)
    if found is None:
        raise PackageError(f"cannot run {python} to compile the bytecode (--python / ROUTER_PACKAGE_PYTHON: a Python {version})")
    if found != version:
        raise PackageError(f"{python} is Python {found}, not {version}: its bytecode would never load")
    run = subprocess.run(
        [str(python), "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", BYTECODE_MODE,
         "-s", str(package or root), "-p", TASK_ROOT, str(root)],
        capture_output=True, text=True, check=False,
    )
    if run.returncode != 0:
        lines = (run.stdout + run.stderr).strip().splitlines()
        raise PackageError("compiling the bytecode failed:\n  " + "\n  ".join(lines[-15:]))


def _module_name(root: Path, path: Path) -> str:
    rel = path.relative_to(root)
    parts = list(rel.parts)
    if path.is_file():
        parts[-1] = path.stem
        if parts[-1] == "__init__":
            parts.pop()
    return ".".join(parts)


def _imported_modules(source: bytes, module: str, is_package: bool) -> set[str]:
    """Absolute names of every module an import statement in this file may load (top level or
    nested: an import inside a function counts too)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return set()
    package = module if is_package else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = ".".join(parts[: len(parts) - node.level + 1]) if node.level - 1 < len(parts) else ""
                base = f"{anchor}.{base}" if base else anchor
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)
    return names


def strip(root: Path) -> tuple[list[str], dict[str, str]]:
    """Remove test suites and compile-time sources that nothing left in the tree imports.

    A `tests`/`test` package is removed only when no other file's import statements name it (numpy's
    `numpy._core.tests` is imported by `numpy.testing`, which scipy loads: it stays). Returns the
    removed paths and the kept candidates with the file that imports each."""
    candidates = sorted(
        {p for p in root.rglob("*") if p.is_dir() and p.name in ("tests", "test") and (p / "__init__.py").is_file()},
        key=lambda p: len(p.parts),
    )
    top: list[Path] = []
    for c in candidates:  # a tests package inside another one goes with it
        if not any(parent in top for parent in c.parents):
            top.append(c)
    names = {_module_name(root, c): c for c in top}
    kept: dict[str, str] = {}
    for py in root.rglob("*.py"):
        if any(py.is_relative_to(c) for c in top):
            continue
        data = py.read_bytes()
        if b"test" not in data:
            continue
        mod = _module_name(root, py)
        for imported in _imported_modules(data, mod, py.name == "__init__.py"):
            for name in names:
                if (imported == name or imported.startswith(name + ".")) and name not in kept:
                    kept[name] = str(py.relative_to(root))
    removed: list[str] = []
    for name, path in names.items():
        if name in kept:
            continue
        shutil.rmtree(path)
        removed.append(str(path.relative_to(root)))
    for path in list(root.rglob("*")):
        if path.is_dir() and path.name == "__pycache__":
            shutil.rmtree(path, ignore_errors=True)
        elif path.is_file() and path.suffix in SOURCE_SUFFIXES:
            path.unlink()
    return removed, kept


class _CountingSink(io.RawIOBase):
    """A seekable stream that keeps no data, only its length: the exact size of the zip (the same
    headers as a file, which zipfile rewrites in place) without writing it."""

    def __init__(self) -> None:
        super().__init__()
        self.pos = 0
        self.n = 0

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.n}[whence]
        self.pos = base + offset
        return self.pos

    def write(self, b: Any) -> int:
        n = len(memoryview(b))
        self.pos += n
        self.n = max(self.n, self.pos)
        return n


def zip_size(root: Path, dest: Path | None = None) -> int:
    """The size of `root` deflated as `sam deploy` zips it (optionally written to `dest`)."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    counter = _CountingSink()
    if dest is not None:
        dest.parent.mkdir(parents=True, exist_ok=True)
    with dest.open("wb") if dest is not None else counter as sink, zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in files:
            zf.write(path, path.relative_to(root).as_posix())
    return dest.stat().st_size if dest is not None else counter.n


def tree_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def packaged_versions(root: Path) -> dict[str, str]:
    found = {d.metadata["Name"].lower().replace("_", "-"): d.version for d in metadata.distributions(path=[str(root)])}
    return {name: found[name] for name in REPORTED if name in found}


class PackageError(Exception):
    pass


def build(plan: Plan, out: Path, *, force: bool = False, python: Path | None = None) -> Result:
    """Build (or reuse) the package. `python`: the runtime's Python, to compile the bytecode with
    (None: the package ships no .pyc files)."""
    suffix = "" if python is not None else "-no-bytecode"  # a package with .pyc files is another build
    key, deps_key = plan.key() + suffix, plan.deps_key() + suffix
    manifest = out / MANIFEST
    saved: dict[str, Any]
    if not force and manifest.is_file():
        try:
            saved = json.loads(manifest.read_text())
        except (OSError, ValueError):
            saved = {}
        if saved.get("key") == key:
            result = Result(**{k: v for k, v in saved["result"].items() if k in Result.__dataclass_fields__})
            result.reused = True
            result.out = str(out)
            result.zip_path = None
            return result
    else:
        saved = {}
    if out.exists() and any(out.iterdir()) and not manifest.is_file():
        raise PackageError(f"{out} is not empty and is not a package built by `router package`; choose a new or empty folder")
    if not force and saved.get("deps_key") == deps_key and (out / "router").is_dir():
        # Same pins and options: only the router's own code changed. Replace just that.
        _progress("the runtime set is unchanged; updating the router package only ...")
        shutil.rmtree(out / "router")
        _copy_router(out)
        if python is not None:
            compile_bytecode(out / "router", python, plan.python_version, package=out)
        (out / MANIFEST).unlink()
        result = _measure(out, plan, saved["result"].get("stripped", []), saved["result"].get("kept", {}))
        result.bytecode = plan.python_version if python is not None else None
        manifest.write_text(json.dumps({"key": key, "deps_key": deps_key, "result": asdict(result)}, indent=2) + "\n")
        return result
    stage = out.with_name(f".{out.name}.partial")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    try:
        files = ", ".join(p.name for p in plan.requirement_files)
        _progress(f"installing the pinned runtime set ({files}) for {plan.runtime} {plan.arch} with pip (a few minutes on first run) ...")
        _pip_install(plan, stage)
        _copy_router(stage)
        _progress("stripping test suites nothing imports ...")
        removed, kept = strip(stage)
        if python is not None:
            _progress(f"compiling the bytecode with {python} ...")
            compile_bytecode(stage, python, plan.python_version)
        result = _measure(stage, plan, removed, kept)
        result.bytecode = plan.python_version if python is not None else None
        result.out = str(out)
        (stage / MANIFEST).write_text(json.dumps({"key": key, "deps_key": deps_key, "result": asdict(result)}, indent=2) + "\n")
        if out.exists():
            # Only a folder this command built (checked above), or an empty one, is replaced.
            if out.is_dir() and not out.is_symlink():
                for child in out.iterdir():
                    shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
            for child in stage.iterdir():
                child.rename(out / child.name)
            stage.rmdir()
        else:
            stage.rename(out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return result


def _measure(root: Path, plan: Plan, removed: list[str], kept: dict[str, str]) -> Result:
    unzipped = tree_size(root)
    _progress(f"measuring the zipped size of {_mb(unzipped)} ...")
    return Result(
        out=str(root), runtime=plan.runtime, arch=plan.arch, reused=False, versions=packaged_versions(root),
        unzipped_bytes=unzipped, zipped_bytes=zip_size(root), stripped=sorted(removed), kept=kept,
    )


# ---------------------------------------------------------------- models


def check_models(config_path: Path, versions: dict[str, str]) -> list[str]:
    """Refusals for models of the config that the packaged libraries cannot load."""
    from router.cli.config_cmd import model_version_problems
    from router.config import load_config

    cfg = load_config(config_path)
    return [p for p, refused in model_version_problems(cfg, versions) if refused]


# ---------------------------------------------------------------- command


def cmd_package(args: argparse.Namespace) -> int:
    from router.errors import ConfigError

    if args.image_template is not None:
        return _image_template(args)
    plan = Plan(args.runtime, args.arch, args.with_onnx, args.with_boto3)
    out = args.out.resolve()
    python = args.python or bytecode_python(plan.runtime)
    if python is None:
        print(f"router package: warning: no Python {plan.python_version} found (--python, ROUTER_PACKAGE_PYTHON, python{plan.python_version} "
              "on PATH or pyenv): the package has no .pyc files, so every cold start compiles its modules from source", file=sys.stderr)
    try:
        result = build(plan, out, force=args.force, python=python)
        if args.zip is not None:
            _progress(f"writing {args.zip} ...")
            result.zipped_bytes = zip_size(out, args.zip)
            result.zip_path = str(args.zip)
    except PackageError as e:
        print(f"router package: {e}", file=sys.stderr)
        return EXIT_FAILED
    if args.config is not None:
        try:
            result.refused_models = check_models(args.config, result.versions)
        except ConfigError as e:
            print_config_error(e)
            return EXIT_INVALID
    if args.json:
        print(json.dumps(result.as_json(), indent=2))
    else:
        _print(result)
    for problem in result.refused_models:
        print(f"error: {problem}", file=sys.stderr)
    if result.refused_models:
        return EXIT_INVALID
    return EXIT_OK if result.within_limits else EXIT_FAILED


def _image_template(args: argparse.Namespace) -> int:
    from router.cli.image_template import write_image_template

    try:
        variant = write_image_template(args.template, args.image_template)
    except (OSError, ValueError, KeyError) as e:
        print(f"router package: cannot derive the image template from {args.template}: {e}", file=sys.stderr)
        return EXIT_INVALID
    functions = sorted(n for n, r in variant["Resources"].items() if r.get("Type") == "AWS::Serverless::Function")
    if args.json:
        print(json.dumps({"template": str(args.image_template), "functions": functions}, indent=2))
    else:
        print(f"{args.image_template}: {', '.join(functions)} as PackageType Image from the ImageUri parameter")
    return EXIT_OK


def _print(r: Result) -> None:
    state = "up to date, reused" if r.reused else "built"
    print(f"{r.out}: Lambda package for {r.runtime} {r.arch} ({state})")

    def line(label: str, n: int, limit: int, note: str = "") -> str:
        verdict = "ok" if n <= limit else "OVER THE LIMIT"
        return f"  {label:<9} {_mb(n):>9}  of {_mb(limit):>9}  {verdict}{note}"

    print(line("unzipped", r.unzipped_bytes, UNZIPPED_LIMIT, "  (function + layers, every deploy)"))
    if r.zip_path is not None:
        print(line("zipped", r.zipped_bytes, ZIPPED_LIMIT, f"  ({r.zip_path}, direct upload)"))
    else:
        over = "over" if r.zipped_bytes > ZIPPED_LIMIT else "under"
        print(
            f"  zipped    {_mb(r.zipped_bytes):>9}  {over} the {_mb(ZIPPED_LIMIT)} direct-upload limit, which does not "
            "apply: sam deploy uploads through S3"
        )
    print("versions: " + ", ".join(f"{k} {v}" for k, v in r.versions.items()))
    print(f"bytecode: compiled for Python {r.bytecode}" if r.bytecode else "bytecode: none (every cold start compiles the modules from source)")
    if r.kept:
        for name, by in sorted(r.kept.items()):
            print(f"kept {name} (imported by {by})")
    if not r.within_limits:
        print(
            "over Lambda's limits: deploy the container image instead (infra/Dockerfile, docs/operations.md)",
            file=sys.stderr,
        )
