"""One ObjectStore over both schemes: file:// goes to the file store, s3:// to the S3 store.

The S3 store is built on first use through a factory, so a local run that only touches files
never imports boto3 (cold start).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import BinaryIO

from router.adapters.file_store import FileObjectStore
from router.errors import InvalidRequest
from router.ports import ObjectStore


class CompositeObjectStore:
    """Dispatches each call by the URI's scheme. `s3_store_factory` runs at most once."""

    def __init__(self, file_store: FileObjectStore, s3_store_factory: Callable[[], ObjectStore]) -> None:
        self.file_store = file_store
        self._s3_factory = s3_store_factory
        self._s3: ObjectStore | None = None
        self._lock = threading.Lock()

    def _for(self, uri: str) -> ObjectStore:
        if uri.startswith("file://"):
            return self.file_store
        if uri.startswith("s3://"):
            if self._s3 is None:
                with self._lock:
                    if self._s3 is None:
                        self._s3 = self._s3_factory()
            return self._s3
        raise InvalidRequest(f"unsupported storage URI {uri!r}: expected file:// or s3://", details={"uri": uri})

    def get_bytes(self, uri: str) -> bytes:
        return self._for(uri).get_bytes(uri)

    def put_bytes(self, uri: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self._for(uri).put_bytes(uri, data, content_type)

    def open_read(self, uri: str) -> BinaryIO:
        return self._for(uri).open_read(uri)

    def open_write(self, uri: str, content_type: str = "application/octet-stream") -> AbstractContextManager[BinaryIO]:
        return self._for(uri).open_write(uri, content_type)

    def exists(self, uri: str) -> bool:
        return self._for(uri).exists(uri)

    def resolve(self, uri: str) -> str:
        return self._for(uri).resolve(uri)

    def list_uris(self, prefix_uri: str) -> Iterator[str]:
        return self._for(prefix_uri).list_uris(prefix_uri)

    def fetch_to(self, uri: str, path: str) -> None:
        self._for(uri).fetch_to(uri, path)

    def copy(self, src_uri: str, dst_uri: str) -> None:
        src, dst = self._for(src_uri), self._for(dst_uri)
        if src is dst:
            src.copy(src_uri, dst_uri)
            return
        with src.open_read(src_uri) as r, dst.open_write(dst_uri) as w:  # across stores: stream
            while block := r.read(1 << 20):
                w.write(block)

    def delete(self, uri: str) -> None:
        self._for(uri).delete(uri)

    def presign_get(self, uri: str, expires_s: int) -> str:
        return self._for(uri).presign_get(uri, expires_s)

    def presign_put(self, uri: str, expires_s: int, content_type: str) -> str:
        return self._for(uri).presign_put(uri, expires_s, content_type)
