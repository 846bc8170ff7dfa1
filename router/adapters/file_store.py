"""ObjectStore on the local file system (file:///abs/path URIs): the embedded stand-in for S3.

Writes are atomic (temp file + os.replace) so a reader never sees half an object, and presigned
URLs are HMAC-signed links to the local HTTP server's `/_local/objects` route.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import hmac
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote

from router.errors import BackendUnavailable, InternalError, InvalidRequest, NotFound

log = logging.getLogger("router.storage")
SCHEME = "file://"
LOCAL_OBJECTS_ROUTE = "/_local/objects"
# Temp files of in-flight writes end with this; listings hide them (S3 never shows partial uploads).
TMP_SUFFIX = ".router-tmp"
# S3 SigV4 presigned URLs live at most 7 days (604,800 s); the local store keeps the same ceiling.
MAX_PRESIGN_S = 604_800


def path_of(uri: str) -> Path:
    """file:///abs/path -> Path('/abs/path'); anything else is a caller mistake (400)."""
    if not uri.startswith(SCHEME):
        raise InvalidRequest(f"not a file:// URI: {uri!r}", details={"uri": uri})
    raw = uri[len(SCHEME):]
    if not raw.startswith("/"):
        raise InvalidRequest(f"file:// URIs must hold an absolute path: {uri!r}", details={"uri": uri})
    # normpath folds "a/../b" so a URI cannot name a different file than it appears to.
    return Path(os.path.normpath(raw))


# A full, read-only or forbidden disk: the storage's state, not the request's fault (503, retry).
_UNWRITABLE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})


@contextlib.contextmanager
def _storage_writes(target: Path) -> Iterator[None]:
    """Turn an OSError of a full or read-only disk into BackendUnavailable (the path stays in the log)."""
    try:
        yield
    except OSError as e:
        if e.errno not in _UNWRITABLE:
            raise
        log.error("cannot write %s: %s", target, e.strerror)
        raise BackendUnavailable(f"the router's storage cannot be written ({e.strerror}); retry later") from e


def _atomic_tmp(target: Path) -> tuple[int, Path]:
    """A temp file beside `target` (same file system, so os.replace is atomic)."""
    with _storage_writes(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=TMP_SUFFIX)
    return fd, Path(name)


class FileObjectStore:
    """ObjectStore for file:// URIs. `public_base_url` (e.g. http://127.0.0.1:8080) prefixes the
    presigned URLs; the local server may set it after binding its port. Without it the URLs are
    relative (`/_local/objects/...`), resolved against the API's own address."""

    def __init__(
        self,
        signing_key: bytes,
        public_base_url: str | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not signing_key:
            raise ValueError("signing_key must not be empty")
        self._key = signing_key
        self.public_base_url = public_base_url.rstrip("/") if public_base_url else None
        self._clock = clock

    # ------------------------------------------------------------ reads

    def get_bytes(self, uri: str) -> bytes:
        with self.open_read(uri) as f:
            return f.read()

    def open_read(self, uri: str) -> BinaryIO:
        path = path_of(uri)
        try:
            return path.open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFound(f"object not found: {uri}", details={"uri": uri}) from None
        except OSError as e:
            raise InternalError(f"cannot read object {uri}: {e.strerror}", details={"uri": uri}) from None

    def exists(self, uri: str) -> bool:
        return path_of(uri).is_file()

    def resolve(self, uri: str) -> str:
        """The URI of the file `uri` really names: '..' and symlinks resolved (confinement checks)."""
        return SCHEME + os.path.realpath(path_of(uri))

    def list_uris(self, prefix_uri: str) -> Iterator[str]:
        """Every object whose URI starts with `prefix_uri` (S3 prefix semantics), sorted."""
        prefix = path_of(prefix_uri)
        # A trailing "/" means "inside this folder"; normpath dropped it, so keep it for matching.
        want = str(prefix) + ("/" if prefix_uri.endswith("/") and str(prefix) != "/" else "")
        # "job-1" also matches "job-10/...": walk the parent unless the prefix names a folder.
        root = prefix if want.endswith("/") or str(prefix) == "/" else prefix.parent
        if not root.is_dir():
            return
        found: list[str] = []
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                if name.endswith(TMP_SUFFIX):
                    continue
                full = f"{dirpath}/{name}"
                if full.startswith(want):
                    found.append(full)
        for full in sorted(found):
            yield SCHEME + full

    def fetch_to(self, uri: str, path: str) -> None:
        target = Path(path)
        fd, tmp = _atomic_tmp(target)
        try:
            with _storage_writes(target), self.open_read(uri) as src, os.fdopen(fd, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            with _storage_writes(target):
                tmp.replace(target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    # ------------------------------------------------------------ writes

    def put_bytes(self, uri: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        with self.open_write(uri, content_type) as f:
            f.write(data)

    @contextlib.contextmanager
    def open_write(self, uri: str, content_type: str = "application/octet-stream") -> Iterator[BinaryIO]:
        """Stream an object: written to a temp file, published by os.replace on a clean exit;
        on an exception nothing is published. (content_type is accepted for S3 parity.)"""
        target = path_of(uri)
        fd, tmp = _atomic_tmp(target)
        try:
            with _storage_writes(target):
                with os.fdopen(fd, "wb") as f:
                    yield f
                tmp.replace(target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def copy(self, src_uri: str, dst_uri: str) -> None:
        """Copy a file; the copy appears whole (temp file + rename), like any other write."""
        with self.open_read(src_uri) as src, self.open_write(dst_uri) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)

    def delete(self, uri: str) -> None:
        """Remove the object; removing a missing object is not an error (as in S3)."""
        path = path_of(uri)
        with _storage_writes(path), contextlib.suppress(FileNotFoundError):
            path.unlink()

    # ------------------------------------------------------------ presigned URLs

    def presign_get(self, uri: str, expires_s: int) -> str:
        return self._presign(uri, "GET", expires_s)

    def presign_put(self, uri: str, expires_s: int, content_type: str) -> str:
        return self._presign(uri, "PUT", expires_s)

    def _presign(self, uri: str, method: str, expires_s: int) -> str:
        if not 1 <= expires_s <= MAX_PRESIGN_S:
            raise InvalidRequest(f"expires_s must be 1..{MAX_PRESIGN_S}, got {expires_s}")
        path = str(path_of(uri))
        expires = int(self._clock()) + expires_s
        sig = self._sign(path, method, expires)
        return (
            f"{self.public_base_url or ''}{LOCAL_OBJECTS_ROUTE}{quote(path, safe='/')}"
            f"?expires={expires}&method={method}&signature={sig}"
        )

    def _sign(self, path: str, method: str, expires: int) -> str:
        msg = f"{method.upper()}\n{path}\n{expires}".encode()
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()

    def verify(self, path: str, method: str, expires: int, signature: str, now: float) -> bool:
        """Check a presigned URL's query against its (URL-decoded) absolute path.

        False when expired, when the method differs from the signed one, or when anything
        was altered. Constant-time comparison, so a forger learns nothing from timings."""
        if now > expires:
            return False
        expected = self._sign(os.path.normpath(path), method, expires)
        return hmac.compare_digest(expected, signature)
