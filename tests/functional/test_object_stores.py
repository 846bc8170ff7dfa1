"""One contract for every ObjectStore: the file store, the S3 store (moto) and the composite.

What a job worker and the inline runner rely on: round trips, NotFound for missing objects,
S3-style prefix listings, atomic streaming writes, and presigned URLs that work and expire.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import boto3
import pytest
import requests
from botocore.stub import Stubber
from moto import mock_aws

from router.adapters.file_store import FileObjectStore
from router.adapters.objects import CompositeObjectStore
from router.adapters.s3_store import S3ObjectStore
from router.errors import BackendUnavailable, InvalidRequest, NotFound, Throttled

KEY = b"test-signing-key-0123456789"
BUCKET = "router-contract"


@dataclass
class Case:
    store: Any
    base: str  # a URI prefix under which each test owns every object
    http_get: Callable[[str], tuple[int, bytes]]
    http_put: Callable[[str, bytes, str], int]


def _file_http(store: FileObjectStore) -> tuple[Callable[[str], tuple[int, bytes]], Callable[[str, bytes, str], int]]:
    """What the local server will do with a presigned URL: verify, then read or write."""

    def check(url: str, method: str) -> Path | None:
        parts = urlsplit(url)
        assert parts.path.startswith("/_local/objects/")
        path = unquote(parts.path[len("/_local/objects"):])
        q = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if q["method"] != method or not store.verify(path, method, int(q["expires"]), q["signature"], time.time()):
            return None
        return Path(path)

    def get(url: str) -> tuple[int, bytes]:
        p = check(url, "GET")
        return (403, b"") if p is None else (200, p.read_bytes())

    def put(url: str, data: bytes, content_type: str) -> int:
        p = check(url, "PUT")
        if p is None:
            return 403
        store.put_bytes("file://" + str(p), data, content_type)
        return 200

    return get, put


def _requests_get(url: str) -> tuple[int, bytes]:
    r = requests.get(url, timeout=10)
    return r.status_code, r.content


def _requests_put(url: str, data: bytes, content_type: str) -> int:
    return requests.put(url, data=data, headers={"Content-Type": content_type}, timeout=10).status_code


@pytest.fixture(scope="module")
def s3_client() -> Iterator[Any]:
    # One moto S3 per module (fast); each test writes under its own random prefix.
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture(params=["file", "s3", "composite-file", "composite-s3"])
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Case:
    kind: str = request.param
    if kind.endswith("file"):
        fs = FileObjectStore(KEY, "http://127.0.0.1:9")
        get, put = _file_http(fs)
        store: Any = fs if kind == "file" else CompositeObjectStore(fs, lambda: pytest.fail("S3 store built for file://"))
        return Case(store, f"file://{tmp_path}/objects", get, put)
    client = request.getfixturevalue("s3_client")
    s3 = S3ObjectStore(client)
    store = s3 if kind == "s3" else CompositeObjectStore(FileObjectStore(KEY), lambda: s3)
    return Case(store, f"s3://{BUCKET}/{uuid.uuid4().hex}", _requests_get, _requests_put)


# ---------------------------------------------------------------- the contract


def test_put_then_get_round_trips_bytes(case: Case) -> None:
    uri = f"{case.base}/a/b/data.bin"
    case.store.put_bytes(uri, b"\x00\x01payload")
    assert case.store.get_bytes(uri) == b"\x00\x01payload"
    assert case.store.exists(uri)
    case.store.put_bytes(uri, b"replaced")
    assert case.store.get_bytes(uri) == b"replaced"


def test_missing_objects_are_not_found(case: Case, tmp_path: Path) -> None:
    uri = f"{case.base}/missing.json"
    assert not case.store.exists(uri)
    with pytest.raises(NotFound):
        case.store.get_bytes(uri)
    with pytest.raises(NotFound):
        case.store.open_read(uri)
    target = tmp_path / "cache" / "missing.json"
    with pytest.raises(NotFound):
        case.store.fetch_to(uri, str(target))
    assert not target.parent.exists() or list(target.parent.iterdir()) == []


def test_open_read_streams_lines(case: Case) -> None:
    uri = f"{case.base}/in.jsonl"
    case.store.put_bytes(uri, b'{"a": 1}\n{"a": 2}\n{"a": 3}\n', "application/jsonl")
    with case.store.open_read(uri) as f:
        assert list(f) == [b'{"a": 1}\n', b'{"a": 2}\n', b'{"a": 3}\n']


def test_list_uris_uses_prefix_semantics_in_key_order(case: Case) -> None:
    for name in ["job-2/part-0", "job-1/part-1", "job-1/part-0", "job-10/part-0", "other"]:
        case.store.put_bytes(f"{case.base}/{name}", b"x")
    assert list(case.store.list_uris(f"{case.base}/job-1/")) == [
        f"{case.base}/job-1/part-0",
        f"{case.base}/job-1/part-1",
    ]
    assert list(case.store.list_uris(f"{case.base}/job-1")) == [
        f"{case.base}/job-1/part-0",
        f"{case.base}/job-1/part-1",
        f"{case.base}/job-10/part-0",
    ]
    assert list(case.store.list_uris(f"{case.base}/nothing-here/")) == []


def test_open_write_publishes_only_on_clean_exit(case: Case) -> None:
    uri = f"{case.base}/out/result.jsonl"
    with case.store.open_write(uri, "application/jsonl") as f:
        for i in range(1000):
            f.write(b'{"prediction": %d}\n' % i)
        assert not case.store.exists(uri)  # nothing visible while the writer is open
    assert case.store.get_bytes(uri).count(b"\n") == 1000

    failed = f"{case.base}/out/failed.jsonl"
    with pytest.raises(RuntimeError), case.store.open_write(failed) as f:
        f.write(b"half a result")
        raise RuntimeError("worker crashed")
    assert not case.store.exists(failed)
    assert list(case.store.list_uris(f"{case.base}/out/")) == [uri]


def test_open_write_streams_objects_larger_than_the_memory_spool(case: Case) -> None:
    uri = f"{case.base}/big.bin"
    chunk = bytes(range(256)) * 4096  # 1 MiB
    with case.store.open_write(uri) as f:
        for _ in range(9):  # past the 8 MB spool and S3's multipart threshold
            f.write(chunk)
    data = case.store.get_bytes(uri)
    assert len(data) == 9 * len(chunk)
    assert data[-len(chunk):] == chunk


def test_fetch_to_copies_into_new_folders(case: Case, tmp_path: Path) -> None:
    uri = f"{case.base}/model.joblib"
    case.store.put_bytes(uri, b"model-bytes" * 100)
    target = tmp_path / "cache" / "deep" / "model.joblib"
    case.store.fetch_to(uri, str(target))
    assert target.read_bytes() == b"model-bytes" * 100
    assert [p.name for p in target.parent.iterdir()] == ["model.joblib"]  # no temp files left


def test_copy_makes_an_independent_object(case: Case) -> None:
    src, dst = f"{case.base}/in/upload.jsonl", f"{case.base}/job/input.jsonl"
    case.store.put_bytes(src, b"[1, 2]\n" * 1000)
    case.store.copy(src, dst)
    case.store.put_bytes(src, b"overwritten\n")  # the copy does not follow the source
    assert case.store.get_bytes(dst) == b"[1, 2]\n" * 1000
    with pytest.raises(NotFound):
        case.store.copy(f"{case.base}/no/such/object", f"{case.base}/x")


def test_composite_copies_across_stores(tmp_path: Path, s3_client: Any) -> None:
    store = CompositeObjectStore(FileObjectStore(KEY), lambda: S3ObjectStore(s3_client))
    key = uuid.uuid4().hex
    store.put_bytes(f"s3://{BUCKET}/{key}", b"from s3")
    store.copy(f"s3://{BUCKET}/{key}", f"file://{tmp_path}/copied")
    assert (tmp_path / "copied").read_bytes() == b"from s3"


def test_delete_is_idempotent(case: Case) -> None:
    uri = f"{case.base}/gone.txt"
    case.store.put_bytes(uri, b"x")
    case.store.delete(uri)
    assert not case.store.exists(uri)
    case.store.delete(uri)


def test_presigned_get_serves_the_object(case: Case) -> None:
    uri = f"{case.base}/results/out.jsonl"
    case.store.put_bytes(uri, b'{"p": 1}\n')
    status, body = case.http_get(case.store.presign_get(uri, 300))
    assert (status, body) == (200, b'{"p": 1}\n')


def test_presigned_put_uploads_the_object(case: Case) -> None:
    uri = f"{case.base}/uploads/input.jsonl"
    url = case.store.presign_put(uri, 300, "application/jsonl")
    assert case.http_put(url, b"[1, 2]\n", "application/jsonl") == 200
    assert case.store.get_bytes(uri) == b"[1, 2]\n"


def test_presign_rejects_lifetimes_beyond_seven_days(case: Case) -> None:
    with pytest.raises(InvalidRequest):
        case.store.presign_get(f"{case.base}/x", 604_801)


# ---------------------------------------------------------------- file store specifics


def test_file_presigned_urls_are_bound_to_path_method_and_expiry(tmp_path: Path) -> None:
    now = 1_800_000_000.0
    store = FileObjectStore(KEY, "http://localhost:8080/", clock=lambda: now)
    target = tmp_path / "dir with space" / "o.json"
    url = store.presign_get(f"file://{target}", 60)
    parts = urlsplit(url)
    assert url.startswith("http://localhost:8080/_local/objects/")
    path = unquote(parts.path[len("/_local/objects"):])
    q = {k: v[0] for k, v in parse_qs(parts.query).items()}
    expires, sig = int(q["expires"]), q["signature"]
    assert path == str(target) and expires == int(now) + 60 and q["method"] == "GET"

    assert store.verify(path, "GET", expires, sig, now)
    assert store.verify(path, "GET", expires, sig, now + 60)
    assert not store.verify(path, "GET", expires, sig, now + 61)  # expired
    assert not store.verify(path, "PUT", expires, sig, now)  # method is signed
    assert not store.verify(path + "x", "GET", expires, sig, now)  # path is signed
    assert not store.verify(path, "GET", expires + 3600, sig, now)  # expiry is signed
    assert not store.verify(path, "GET", expires, sig[:-1] + ("0" if sig[-1] != "0" else "1"), now)
    other = FileObjectStore(b"another-key-000000000000", clock=lambda: now)
    assert not other.verify(path, "GET", expires, sig, now)


def test_file_presigned_url_is_relative_without_a_base_url(tmp_path: Path) -> None:
    url = FileObjectStore(KEY).presign_put(f"file://{tmp_path}/u.bin", 60, "application/octet-stream")
    assert url.startswith(f"/_local/objects{tmp_path}/u.bin?")


def test_file_store_rejects_relative_and_foreign_uris() -> None:
    store = FileObjectStore(KEY)
    for uri in ["file://relative/path", "s3://bucket/key", "/abs/path"]:
        with pytest.raises(InvalidRequest):
            store.get_bytes(uri)


def test_file_uri_with_dot_dot_names_the_normalised_path(tmp_path: Path) -> None:
    store = FileObjectStore(KEY)
    store.put_bytes(f"file://{tmp_path}/a/../b.txt", b"x")
    assert (tmp_path / "b.txt").read_bytes() == b"x"
    assert not (tmp_path / "a").exists()


# ---------------------------------------------------------------- S3 error mapping


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("NoSuchKey", 404, NotFound),
        ("SlowDown", 503, Throttled),
        ("ThrottlingException", 400, Throttled),
        ("AccessDenied", 403, BackendUnavailable),
        ("InternalError", 500, BackendUnavailable),
    ],
)
def test_s3_client_errors_become_router_errors(code: str, status: int, expected: type[Exception]) -> None:
    client = boto3.client("s3", region_name="us-east-1")
    with Stubber(client) as stub:
        stub.add_client_error("get_object", service_error_code=code, http_status_code=status)
        with pytest.raises(expected) as info:
            S3ObjectStore(client).get_bytes("s3://bucket/key")
    assert "ClientError" not in info.value.message and "An error occurred" not in info.value.message


def test_s3_head_404_means_absent_and_other_errors_raise() -> None:
    client = boto3.client("s3", region_name="us-east-1")
    with Stubber(client) as stub:
        stub.add_client_error("head_object", service_error_code="404", http_status_code=404)
        stub.add_client_error("head_object", service_error_code="403", http_status_code=403)
        store = S3ObjectStore(client)
        assert store.exists("s3://bucket/key") is False
        with pytest.raises(BackendUnavailable):
            store.exists("s3://bucket/key")


def test_s3_presigned_put_signs_the_content_type(s3_client: Any) -> None:
    store = S3ObjectStore(s3_client)
    key = f"{uuid.uuid4().hex}/in.csv"
    url = store.presign_put(f"s3://{BUCKET}/{key}", 60, "text/csv")
    assert _requests_put(url, b"1,2\n", "text/csv") == 200
    assert s3_client.head_object(Bucket=BUCKET, Key=key)["ContentType"] == "text/csv"


# ---------------------------------------------------------------- composite


def test_composite_builds_the_s3_store_once_and_only_for_s3(tmp_path: Path, s3_client: Any) -> None:
    built: list[S3ObjectStore] = []

    def factory() -> S3ObjectStore:
        built.append(S3ObjectStore(s3_client))
        return built[-1]

    store = CompositeObjectStore(FileObjectStore(KEY), factory)
    store.put_bytes(f"file://{tmp_path}/f", b"1")
    assert store.get_bytes(f"file://{tmp_path}/f") == b"1"
    assert built == []
    key = uuid.uuid4().hex
    store.put_bytes(f"s3://{BUCKET}/{key}", b"2")
    assert store.get_bytes(f"s3://{BUCKET}/{key}") == b"2"
    assert len(built) == 1
    with pytest.raises(InvalidRequest):
        store.get_bytes("gs://bucket/key")


def test_file_only_stores_and_the_inline_runner_do_not_import_boto3() -> None:
    code = (
        "import sys\n"
        "import router.adapters.objects, router.adapters.file_store, router.adapters.s3_store\n"
        "import router.adapters.inline\n"
        "bad = sorted(m for m in ('boto3', 'botocore', 's3transfer') if m in sys.modules)\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
