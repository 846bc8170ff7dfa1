"""In-memory fakes of the ports (router/ports.py), for unit and functional tests. They implement
the same protocols as the real adapters, and record what they were asked, so tests assert on
behaviour instead of patching anything."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO

from router.config import BatchTransformDefaults, ModelSpec
from router.domain import Job, OutputKind
from router.errors import NotFound, RouterError
from router.ports import BatchJobState


class FakeClock:
    def __init__(self, start: datetime | None = None) -> None:
        self.t = start or datetime(2026, 11, 22, 1, 2, 3, tzinfo=UTC)

    def now(self) -> datetime:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)


class FakeRunner:
    """ModelRunner: predicts sum(row) (or [sum, -sum] for proba); can be told to fail."""

    def __init__(self, warm: bool = False, fail_with: RouterError | None = None) -> None:
        self.warm = warm
        self.fail_with = fail_with
        self.calls: list[tuple[str, int, OutputKind]] = []

    def is_warm(self, model: ModelSpec) -> bool:
        return self.warm

    def feature_count(self, model: ModelSpec) -> int | None:
        return None

    def framework_loaded(self, framework: str) -> bool:
        return self.warm

    def predict(self, model: ModelSpec, instances: Sequence[Any], output: OutputKind) -> list[Any]:
        self.calls.append((model.name, len(instances), output))
        if self.fail_with is not None:
            raise self.fail_with
        sums = [sum(r) if isinstance(r, list) else sum(r.values()) for r in instances]
        return [[s, -s] for s in sums] if output is OutputKind.PROBA else sums


class FakeEndpoints:
    def __init__(self, in_service: bool = True, reply: Callable[[bytes], bytes] | None = None) -> None:
        self._in_service = in_service
        self.status_override: str | None = None  # e.g. "Creating": a transient state
        self.reply = reply
        self.calls: list[tuple[str, bytes]] = []
        self.warm_endpoints: set[str] = set()  # endpoints with an instance up (serverless: no cold start)
        self.down: set[str] = set()  # endpoints not in service, whatever `in_service` says

    def in_service(self, endpoint_name: str) -> bool:
        return self._in_service and endpoint_name not in self.down

    def warm(self, endpoint_name: str) -> bool:
        return endpoint_name in self.warm_endpoints

    def status(self, endpoint_name: str) -> str:
        return self.status_override or ("InService" if self.in_service(endpoint_name) else "OutOfService")

    def invoke(self, endpoint_name: str, body: bytes, content_type: str = "application/json") -> bytes:
        import json

        self.calls.append((endpoint_name, body))
        if self.reply is not None:
            return self.reply(body)
        rows = json.loads(body)["instances"]
        return json.dumps({"predictions": [len(r) for r in rows]}).encode()


class MemoryObjectStore:
    """ObjectStore in a dict (any scheme)."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.lock = threading.Lock()

    def get_bytes(self, uri: str) -> bytes:
        try:
            return self.objects[uri]
        except KeyError:
            raise NotFound(f"no object {uri}") from None

    def put_bytes(self, uri: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        with self.lock:
            self.objects[uri] = bytes(data)

    @contextmanager
    def open_write(self, uri: str, content_type: str = "application/octet-stream") -> Iterator[BinaryIO]:
        buf = io.BytesIO()
        yield buf
        self.put_bytes(uri, buf.getvalue())

    def delete(self, uri: str) -> None:
        self.objects.pop(uri, None)

    def copy(self, src_uri: str, dst_uri: str) -> None:
        self.put_bytes(dst_uri, self.get_bytes(src_uri))

    def open_read(self, uri: str) -> BinaryIO:
        return io.BytesIO(self.get_bytes(uri))

    def exists(self, uri: str) -> bool:
        return uri in self.objects

    def resolve(self, uri: str) -> str:
        return uri  # keys are literal, as on S3

    def list_uris(self, prefix_uri: str) -> Iterator[str]:
        return iter(sorted(u for u in self.objects if u.startswith(prefix_uri)))

    def fetch_to(self, uri: str, path: str) -> None:
        with open(path, "wb") as f:  # noqa: PTH123 - a plain local write
            f.write(self.get_bytes(uri))

    def presign_get(self, uri: str, expires_s: int) -> str:
        return f"https://download.example/{uri}?expires={expires_s}"

    def presign_put(self, uri: str, expires_s: int, content_type: str) -> str:
        return f"https://upload.example/{uri}?expires={expires_s}"


class FakeQueue:
    def __init__(self, fail: bool = False) -> None:
        self.enqueued: list[str] = []
        self.fail = fail

    def enqueue(self, job_id: str) -> None:
        if self.fail:
            from router.errors import BackendUnavailable

            raise BackendUnavailable("queue down")
        self.enqueued.append(job_id)

    def in_flight(self, job_id: str) -> bool:
        return False


class FakeBatch:
    """BatchClient: remembers transform jobs by name; adopts repeats like SageMaker's unique names."""

    def __init__(self, objects: MemoryObjectStore | None = None) -> None:
        self.jobs: dict[str, BatchJobState] = {}
        self.submits: list[str] = []
        self.creates = 0
        self.stops: list[str] = []
        self.throttle_next = 0
        self.objects = objects

    def submit(self, job: Job, model: ModelSpec, settings: BatchTransformDefaults, input_uri: str, output_uri: str) -> str:
        from router.errors import Throttled
        from router.sagemaker_names import transform_job_name

        if self.throttle_next:
            self.throttle_next -= 1
            raise Throttled("ThrottlingException")
        name = transform_job_name(job.job_id)
        self.submits.append(name)
        if name not in self.jobs:
            self.creates += 1
            self.jobs[name] = BatchJobState(name, "InProgress")
        return name

    def describe(self, name: str) -> BatchJobState | None:
        return self.jobs.get(name)

    def stop(self, name: str) -> None:
        self.stops.append(name)
        st = self.jobs.get(name)
        if st is not None and st.status == "InProgress":
            self.jobs[name] = BatchJobState(name, "Stopping")

    def finish(self, name: str, status: str, reason: str | None = None) -> BatchJobState:
        self.jobs[name] = BatchJobState(name, status, reason)
        return self.jobs[name]


def answer_transform(objects: MemoryObjectStore, jobs_root: str, job_id: str, value: Any = 3) -> int:
    """Play SageMaker's part of a batch transform the router staged: answer each request line of
    `transform-input/requests.jsonl` with {"predictions": [value, ...]} (one per instance, counts
    from the staged `batches.json`) on one line of `transform/requests.jsonl.out` (SplitType=Line,
    SingleRecord, AssembleWith=Line). Returns the number of records answered."""
    import json

    base = f"{jobs_root}/{job_id}"
    if not objects.exists(f"{base}/batches.json"):
        return 0  # never staged: no transform job could have run
    batches = json.loads(objects.get_bytes(f"{base}/batches.json"))["batches"]
    answers = [json.dumps({"predictions": [value] * n}).encode() + b"\n" for n in batches]
    objects.put_bytes(f"{base}/transform/requests.jsonl.out", b"".join(answers))
    return int(sum(batches))
