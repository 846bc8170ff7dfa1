"""ObjectStore on Amazon S3 (s3://bucket/key URIs), for artifacts and job inputs/outputs on AWS.

Takes its boto3 S3 client as an argument (moto or a Stubber in tests) and turns every botocore
error into a RouterError at this boundary: NotFound, Throttled or BackendUnavailable.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from router.adapters.aws_errors import Kind, System, aws_error_code, classify, http_status, to_router_error
from router.errors import InvalidRequest, NotFound, RouterError

if TYPE_CHECKING:  # boto3 is imported by whoever builds the client, never at import time here.
    from mypy_boto3_s3 import S3Client

SCHEME = "s3://"
# SigV4 presigned URLs are valid for at most 7 days (604,800 s). With temporary credentials
# (a Lambda role) they also stop working when the session token expires.
MAX_PRESIGN_S = 604_800
# open_write spools in memory up to this size, then to a temp file (Lambda /tmp); upload_fileobj
# switches to a multipart upload above its own 8 MB threshold (S3 parts must be >= 5 MB).
SPOOL_MEMORY_BYTES = 8 * 1024 * 1024
_READ_BUFFER = 1 << 20


def split_uri(uri: str) -> tuple[str, str]:
    """s3://bucket/key -> ("bucket", "key"). The key may be empty (a bucket-wide prefix)."""
    if not uri.startswith(SCHEME):
        raise InvalidRequest(f"not an s3:// URI: {uri!r}", details={"uri": uri})
    bucket, _, key = uri[len(SCHEME):].partition("/")
    if not bucket:
        raise InvalidRequest(f"s3:// URI without a bucket: {uri!r}", details={"uri": uri})
    return bucket, key


def map_error(exc: BaseException, uri: str) -> RouterError:
    """A botocore/s3transfer failure as the RouterError a client may see (the System.S3 row of
    adapters/aws_errors.py; no AWS text leaks)."""
    kind = classify(exc)
    if not isinstance(getattr(exc, "response", None), Mapping):
        if kind is Kind.DENIED:  # no reply at all: no credentials
            message = f"cannot reach {uri} on S3: no AWS credentials found; configure AWS credentials, or use a file:// location under router serve"
        elif kind is Kind.UNAVAILABLE and type(exc).__module__.startswith("botocore"):
            message = f"S3 unreachable ({type(exc).__name__})"
        else:
            message = f"S3 request failed ({type(exc).__name__})"
        return to_router_error(exc, System.S3, message, details={"uri": uri})
    code = aws_error_code(exc)
    status = http_status(exc)
    if kind is Kind.NOT_FOUND:
        return to_router_error(exc, System.S3, f"object not found: {uri}", details={"uri": uri})
    if kind is Kind.THROTTLED:
        message = "S3 is throttling requests; retry later"
    elif kind is Kind.DENIED:
        message = f"S3 refused the router access to {uri} ({code or status})"
    else:
        message = f"S3 request failed ({code or status})"
    return to_router_error(exc, System.S3, message, details={"uri": uri, "aws_code": code})


@contextlib.contextmanager
def _errors(uri: str) -> Iterator[None]:
    try:
        yield
    except RouterError:
        raise
    except Exception as e:  # only botocore/s3transfer/network errors reach here
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(e, ClientError | BotoCoreError):
            raise map_error(e, uri) from e
        # s3transfer wraps some failures in its own types; treat them as an S3 outage, not a bug.
        if type(e).__module__.startswith(("s3transfer", "botocore", "urllib3")):
            raise map_error(e, uri) from e
        raise


class _BodyReader(io.RawIOBase):
    """botocore's StreamingBody as a raw stream, so BufferedReader gives it read/readline and
    line iteration (StreamingBody iterates in fixed 1 KB chunks, not lines)."""

    def __init__(self, body: Any, uri: str) -> None:
        self._body = body
        self._uri = uri

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        with _errors(self._uri):
            data = self._body.read(len(view))
        n = len(data)
        view[:n] = data
        return n

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


class S3ObjectStore:
    """ObjectStore for s3:// URIs over an injected boto3 S3 client."""

    def __init__(self, client: S3Client) -> None:
        self._s3 = client

    # ------------------------------------------------------------ reads

    def get_bytes(self, uri: str) -> bytes:
        bucket, key = split_uri(uri)
        with _errors(uri):
            return self._s3.get_object(Bucket=bucket, Key=key)["Body"].read()

    def open_read(self, uri: str) -> BinaryIO:
        bucket, key = split_uri(uri)
        with _errors(uri):
            body = self._s3.get_object(Bucket=bucket, Key=key)["Body"]
        return cast(BinaryIO, io.BufferedReader(_BodyReader(body, uri), _READ_BUFFER))

    def exists(self, uri: str) -> bool:
        bucket, key = split_uri(uri)
        try:
            with _errors(uri):
                self._s3.head_object(Bucket=bucket, Key=key)
        except NotFound:
            return False
        return True

    def resolve(self, uri: str) -> str:
        """S3 keys are literal (no '..', no links): the URI itself, once it parses."""
        split_uri(uri)
        return uri

    def list_uris(self, prefix_uri: str) -> Iterator[str]:
        """Every object whose key starts with the prefix, in S3's (lexicographic) order."""
        bucket, prefix = split_uri(prefix_uri)
        with _errors(prefix_uri):
            pages = self._s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for page in pages:
                for obj in page.get("Contents", []):
                    yield f"{SCHEME}{bucket}/{obj['Key']}"

    def fetch_to(self, uri: str, path: str) -> None:
        bucket, key = split_uri(uri)
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".router-tmp")
        os.close(fd)
        tmp = Path(name)
        try:
            with _errors(uri):
                self._s3.download_file(bucket, key, name)
            tmp.replace(target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    # ------------------------------------------------------------ writes

    def put_bytes(self, uri: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        bucket, key = split_uri(uri)
        with _errors(uri):
            self._s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)

    @contextlib.contextmanager
    def open_write(self, uri: str, content_type: str = "application/octet-stream") -> Iterator[BinaryIO]:
        """Stream an object: spooled (memory, then /tmp) and uploaded with upload_fileobj on a
        clean exit, which goes multipart for large outputs. On an exception nothing is uploaded."""
        bucket, key = split_uri(uri)
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES) as spool:
            yield cast(BinaryIO, spool)
            spool.seek(0)
            with _errors(uri):
                self._s3.upload_fileobj(spool, bucket, key, ExtraArgs={"ContentType": content_type})

    def copy(self, src_uri: str, dst_uri: str) -> None:
        """Server-side copy (the managed transfer switches to multipart copy above 8 MB, so objects
        over CopyObject's 5 GB limit work too): the bytes never pass through the Lambda."""
        sb, sk = split_uri(src_uri)
        db, dk = split_uri(dst_uri)
        with _errors(src_uri):
            self._s3.copy({"Bucket": sb, "Key": sk}, db, dk)

    def delete(self, uri: str) -> None:
        """Remove the object; removing a missing object is not an error (S3 semantics)."""
        bucket, key = split_uri(uri)
        with _errors(uri):
            self._s3.delete_object(Bucket=bucket, Key=key)

    # ------------------------------------------------------------ presigned URLs

    def presign_get(self, uri: str, expires_s: int) -> str:
        bucket, key = split_uri(uri)
        self._check_expiry(expires_s)
        with _errors(uri):
            return self._s3.generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires_s
            )

    def presign_put(self, uri: str, expires_s: int, content_type: str) -> str:
        bucket, key = split_uri(uri)
        self._check_expiry(expires_s)
        with _errors(uri):
            # ContentType is signed: the uploader must send the same Content-Type header.
            return self._s3.generate_presigned_url(
                "put_object", Params={"Bucket": bucket, "Key": key, "ContentType": content_type}, ExpiresIn=expires_s
            )

    @staticmethod
    def _check_expiry(expires_s: int) -> None:
        if not 1 <= expires_s <= MAX_PRESIGN_S:
            raise InvalidRequest(f"expires_s must be 1..{MAX_PRESIGN_S}, got {expires_s}")
