"""Builds model.tar.gz as SageMaker's framework containers expect it (the model file at the root
under its canonical name, code/inference.py, code/requirements.txt), byte-for-byte reproducibly,
and unpacks one safely (no path traversal, no links).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from sagemaker_jobs.inference import MODEL_FILES

# What each framework's code/requirements.txt asks SageMaker to pip install when the caller gives
# no list: the sklearn and PyTorch containers already hold their framework; ONNX rides on the
# sklearn container and needs its runtime.
DEFAULT_REQUIREMENTS: dict[str, list[str]] = {"sklearn": [], "onnx": ["onnxruntime>=1.17"], "pytorch": []}
_SKIP_NAMES = frozenset({"__pycache__", ".DS_Store"})
_CHUNK = 1024 * 1024


class UnsafeArchiveError(ValueError):
    """A tar member would land outside the destination, or is a link or a device."""


@dataclass(frozen=True, slots=True)
class PackageInfo:
    path: Path
    sha256: str
    size_bytes: int


def build_package(
    model_file: Path,
    out: Path,
    *,
    framework: str,
    code_dir: Path | None = None,
    requirements: list[str] | None = None,
) -> PackageInfo:
    """Write model.tar.gz to `out` (a file path; parents are created) and return its digest.

    `model_file` is a model (joblib / .onnx / TorchScript .pt) or an existing model.tar.gz, whose
    members are re-packed. `code_dir` replaces code/ (it must hold inference.py); without it,
    code/inference.py is this project's sagemaker_jobs/inference.py (unless a re-packed archive
    brings its own). `requirements` becomes code/requirements.txt (default: code_dir's own file,
    else the framework's default). Same inputs, same bytes: sorted entries, mtime 0, uid/gid 0,
    no owner names, fixed modes, gzip header without name or time.
    """
    if framework not in MODEL_FILES:
        raise ValueError(f"cannot package framework {framework!r}: expected one of {', '.join(MODEL_FILES)}")
    model_file = Path(model_file)
    if not model_file.is_file():
        raise FileNotFoundError(f"model file not found: {model_file}")
    with tempfile.TemporaryDirectory() as scratch:
        entries: dict[str, bytes | Path] = {}
        if model_file.name.endswith((".tar.gz", ".tgz")):
            unpack(model_file, Path(scratch))
            entries.update(_read_tree(Path(scratch)))
            if MODEL_FILES[framework] not in entries:
                raise ValueError(f"{model_file}: a {framework} package needs {MODEL_FILES[framework]} at the archive root")
        else:
            # Model files can be large: the archive streams them from disk.
            entries[MODEL_FILES[framework]] = model_file
        return _build(entries, Path(out), framework, code_dir, requirements)


def _build(
    entries: dict[str, bytes | Path], out: Path, framework: str, code_dir: Path | None, requirements: list[str] | None
) -> PackageInfo:
    """Add code/ and requirements to `entries` (archive name -> bytes or file) and write the archive."""
    if code_dir is not None:
        code = _read_tree(Path(code_dir))
        if "inference.py" not in code:
            raise ValueError(f"{code_dir}: custom code needs an inference.py")
        entries = {k: v for k, v in entries.items() if not k.startswith("code/")}
        entries.update({f"code/{k}": v for k, v in code.items()})
    elif "code/inference.py" not in entries:
        entries["code/inference.py"] = Path(__file__).with_name("inference.py")

    if requirements is not None:
        entries["code/requirements.txt"] = _requirements_text(requirements)
    elif "code/requirements.txt" not in entries:
        entries["code/requirements.txt"] = _requirements_text(DEFAULT_REQUIREMENTS[framework])

    out.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target and rename: a reader never sees half an archive.
    tmp = out.with_name(f".{out.name}.partial")
    try:
        with tmp.open("wb") as f:
            _write_tar_gz(entries, f)
        digest = hashlib.sha256()
        with tmp.open("rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return PackageInfo(out, digest.hexdigest(), out.stat().st_size)


def _requirements_text(requirements: Iterable[str]) -> bytes:
    lines = [r.strip() for r in requirements if r.strip()]
    return "".join(f"{r}\n" for r in lines).encode()


def _read_tree(root: Path) -> dict[str, bytes | Path]:
    if not root.is_dir():
        raise FileNotFoundError(f"directory not found: {root}")
    out: dict[str, bytes | Path] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part in _SKIP_NAMES for part in rel.parts) or path.suffix == ".pyc":
            continue
        if path.is_symlink():
            raise ValueError(f"{path}: symbolic links are not packaged (copy the file instead)")
        if path.is_file():
            out[rel.as_posix()] = path
    return out


def _write_tar_gz(entries: dict[str, bytes | Path], fileobj: BinaryIO) -> None:
    dirs = sorted({str(p) for name in entries for p in PurePosixPath(name).parents if str(p) != "."})
    # filename="" and mtime=0 keep the gzip header free of anything that changes between builds.
    with (
        gzip.GzipFile(filename="", mode="wb", fileobj=fileobj, mtime=0, compresslevel=9) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for d in dirs:
            tar.addfile(_member(d + "/", tarfile.DIRTYPE, 0o755, 0))
        for name in sorted(entries):
            item = entries[name]
            if isinstance(item, bytes):
                tar.addfile(_member(name, tarfile.REGTYPE, 0o644, len(item)), io.BytesIO(item))
            else:
                with item.open("rb") as src:
                    tar.addfile(_member(name, tarfile.REGTYPE, 0o644, item.stat().st_size), src)


def _member(name: str, kind: bytes, mode: int, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.size = size
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def unpack(tar_path: Path, dest: Path) -> list[Path]:
    """Extract a (gzipped) tar into `dest`; returns the files written, sorted.

    Refuses the whole archive, before writing anything, when a member is absolute, climbs out
    with '..', is a symbolic or hard link, or is anything but a regular file or a directory.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    written: list[Path] = []
    with tarfile.open(tar_path, mode="r:*") as tar:
        members = tar.getmembers()
        targets = [(m, _safe_target(root, m)) for m in members]
        for member, target in targets:
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            src = tar.extractfile(member)
            if src is None:  # pragma: no cover - regular files always have data
                raise UnsafeArchiveError(f"{member.name}: no data")
            with src, target.open("wb") as f:
                while chunk := src.read(_CHUNK):
                    f.write(chunk)
            written.append(target)
    return sorted(written)


def _safe_target(root: Path, member: tarfile.TarInfo) -> Path:
    name = member.name
    if member.issym() or member.islnk():
        raise UnsafeArchiveError(f"refusing link member {name!r} -> {member.linkname!r}")
    if not (member.isfile() or member.isdir()):
        raise UnsafeArchiveError(f"refusing special member {name!r} (only regular files and directories)")
    posix = PurePosixPath(name)
    if posix.is_absolute() or name.startswith(("/", "\\")) or ".." in posix.parts or "\\" in name:
        raise UnsafeArchiveError(f"refusing member {name!r}: it would land outside the destination")
    target = (root / posix).resolve()
    if target != root and root not in target.parents:
        raise UnsafeArchiveError(f"refusing member {name!r}: it would land outside the destination")
    return target
