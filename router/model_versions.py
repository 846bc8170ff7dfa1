"""Which library versions a model file was saved with, read without deserializing it, and whether
a runtime can load it (train/serve skew: a pickle from a newer scikit-learn fails in an older one,
often only at predict time with an AttributeError).

scikit-learn writes `_sklearn_version` into every estimator's pickled state (BaseEstimator
__getstate__); numpy 2 pickles name `numpy._core`, which numpy 1 cannot import. Stdlib only: the
inline loader runs this before joblib.load, and the CLI runs it on file:// artifacts.
"""

from __future__ import annotations

import bz2
import lzma
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

_CHUNK = 1 << 20
_OVERLAP = 64
# The state key, an optional memo write (MEMOIZE, BINPUT, LONG_BINPUT) and frame boundary, then the
# value as SHORT_BINUNICODE (protocol 4+) or BINUNICODE (protocols 2-3).
_KEY_VALUE = re.compile(
    rb"(?:\x8c\x10|X\x10\x00\x00\x00)_sklearn_version(?:\x94|q.|r.{4})?(?:\x95.{8})?(?:\x8c(.)|X(.{4}))",
    re.DOTALL,
)
_PROTO0_VALUE = re.compile(rb"V_sklearn_version\n(?:p\d+\n)?V([0-9][0-9A-Za-z.+-]{0,30})\n")
_VERSION_TEXT = re.compile(rb"^[0-9][0-9A-Za-z.+-]{0,30}$")
_NUMPY2 = b"numpy._core"
_NUMPY1 = b"numpy.core.multiarray"


class _Decompressor(Protocol):
    def decompress(self, data: bytes) -> bytes: ...


@dataclass(frozen=True)
class SavedWith:
    """What a model file says about the libraries it was saved with (None: it does not say)."""

    sklearn: str | None = None
    numpy_major: int | None = None


def parse_version(text: str) -> tuple[int, ...]:
    """The leading numeric release of a version string: "1.9.1" -> (1, 9, 1), "1.10.dev0" -> (1, 10)."""
    out: list[int] = []
    for part in text.split("."):
        m = re.match(r"\d+", part)
        if m is None:
            break
        out.append(int(m.group()))
        if m.end() != len(part):
            break
    return tuple(out)


def _decompressor(head: bytes) -> _Decompressor | None:
    """joblib's compressed formats (zlib, gzip, bz2, xz, lzma) by their magic bytes; None: plain."""
    if head.startswith(b"\x1f\x8b"):
        return zlib.decompressobj(31)
    if head.startswith(b"x"):
        return zlib.decompressobj()
    if head.startswith(b"BZh"):
        return bz2.BZ2Decompressor()
    if head.startswith((b"\xfd7zXZ", b"\x5d\x00")):
        return lzma.LZMADecompressor()
    return None


def read_saved_with(path: Path) -> SavedWith:
    """Scan a joblib or pickle file (plain or joblib-compressed) for the versions it records."""
    sklearn: str | None = None
    numpy_major: int | None = None
    with path.open("rb") as f:
        head = f.read(8)
        f.seek(0)
        dec = _decompressor(head)
        tail = b""
        while True:
            raw = f.read(_CHUNK)
            if not raw:
                break
            try:
                block = dec.decompress(raw) if dec is not None else raw
            except (zlib.error, OSError, EOFError, lzma.LZMAError):
                break  # not the format its first bytes suggested: report what was found so far
            data = tail + block
            if sklearn is None:
                sklearn = _find_sklearn(data)
            if numpy_major is None:
                numpy_major = 2 if _NUMPY2 in data else (1 if _NUMPY1 in data else None)
            if sklearn is not None and numpy_major == 2:
                break
            tail = data[-_OVERLAP:]
    return SavedWith(sklearn=sklearn, numpy_major=numpy_major)


def _find_sklearn(data: bytes) -> str | None:
    for m in _KEY_VALUE.finditer(data):
        if m.group(1) is not None:
            n, start = m.group(1)[0], m.end()
        else:
            n, start = int.from_bytes(m.group(2), "little"), m.end()
        value = data[start:start + n]
        if len(value) == n and _VERSION_TEXT.match(value):
            return value.decode("ascii")
    m0 = _PROTO0_VALUE.search(data)
    return m0.group(1).decode("ascii") if m0 else None


def sklearn_refusal(model: str, saved: str | None, runtime: str, where: str = "the Lambda package") -> str | None:
    """Why a runtime with scikit-learn `runtime` cannot load a model saved with `saved`, or None.

    scikit-learn pickles are not forward compatible: a newer minor release adds or renames fitted
    attributes (1.9's LogisticRegression has no `multi_class`), so an older runtime may load the
    object and fail at its first prediction. Patch releases keep the format."""
    if saved is None or parse_version(saved)[:2] <= parse_version(runtime)[:2]:
        return None
    return (
        f"model {model!r} was saved with scikit-learn {saved}, but {where} has scikit-learn {runtime}, "
        f"which cannot load it; re-save the model with scikit-learn {runtime}, or package scikit-learn {saved} "
        "(pin it in pyproject.toml and the Lambda lock, then rebuild with `router package`)"
    )


def numpy_refusal(model: str, saved_major: int | None, runtime: str, where: str = "the Lambda package") -> str | None:
    """numpy 2 pickles reference numpy._core, which numpy 1 lacks."""
    rt = parse_version(runtime)
    if saved_major is None or not rt or saved_major <= rt[0]:
        return None
    return (
        f"model {model!r} was saved with numpy {saved_major}.x, but {where} has numpy {runtime}, "
        f"which cannot load it; package numpy {saved_major} or re-save the model with numpy {runtime}"
    )
