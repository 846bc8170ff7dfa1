"""Job use cases: submit (idempotent), get, list, cancel, upload slots, the lambda-job worker,
backend (SageMaker) events and the sweeper.

What to do with a job is decided by `router.lifecycle.decide` (pure); this module gathers the
facts (the job, the backend's answers, the clock), turns them into lifecycle events, and applies
the moves through the ports (`_settle`). Safety rules: the input is staged before the job row
exists (a crash leaves an orphan file, never a job without input); every status change is a
conditional write through JobStore.transition (a stale or repeated event is a no-op); the worker
writes deterministic output parts and a checkpoint, so a re-run resumes instead of starting over
or writing twice.
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from router import lifecycle as lc
from router.async_jobs import AsyncJobs
from router.calibration import Sample
from router.config import ModelSpec, RouterConfig
from router.domain import BackendState, Decision, Job, JobStatus, Mode, OutputKind, Route
from router.errors import (
    BackendError,
    BackendUnavailable,
    IdempotencyKeyReuse,
    InvalidInput,
    InvalidRequest,
    JobNotCancellable,
    JobNotFound,
    ModelIntegrityError,
    ModelNotFound,
    ModelRejectedInput,
    NoFeasibleRoute,
    OutputNotSupported,
    RouterError,
    StorageAccessDenied,
    TooManyJobs,
)
from router.job_backends import AsyncInferenceJobs, JobBackend, TransformJobs, input_of, refusal
from router.job_backends import report as async_report
from router.jobs import format_time, new_job_id, request_digest
from router.jobs_io import encode_jsonl as _jsonl
from router.jobs_io import read_chunks as _read_chunks
from router.lifecycle import Work
from router.notifications import model_targets
from router.ports import (
    AsyncInferenceClient,
    AsyncOutcome,
    BatchClient,
    BatchJobState,
    Clock,
    JobStore,
    ObjectStore,
    Page,
    WorkerQueue,
)
from router.service import RouterService

if TYPE_CHECKING:
    from router.notifications import Notifier

log = logging.getLogger("router.jobs")

S = JobStatus
REPLAY_DISPATCH_AFTER_S = lc.REPLAY_DISPATCH_AFTER_S
SamplesByRoute = dict[str, list[Sample]]  # (the class below has a method named `list`)
IDEMPOTENCY_KEY_RE = re.compile(r"^[\x21-\x7e]{1,255}$")  # 1-255 printable ASCII, no spaces (docs/api.md)


class JobsService:
    def __init__(
        self,
        config: RouterConfig,
        *,
        service: RouterService,
        store: JobStore,
        objects: ObjectStore,
        clock: Clock,
        queue: WorkerQueue | None = None,
        batch: BatchClient | None = None,
        transform_name: Callable[[str], str] | None = None,
        private_uris: Sequence[str] = (),
        async_client: AsyncInferenceClient | None = None,
        on_end: Sequence[Callable[[Job], None]] = (),
    ) -> None:
        self.config = config
        self.service = service
        self.store = store
        self.objects = objects
        self.clock = clock
        self.queue = queue
        self.batch = batch
        self.transform_name = transform_name
        self.notifier: Notifier | None = None  # job-end notifications, when the runtime wires them
        self.jobs_root = config.storage.jobs.rstrip("/")
        self.policy = lc.Policy(
            max_attempts=config.jobs.max_attempts, replay_dispatch_after_s=REPLAY_DISPATCH_AFTER_S, notify=model_targets(config)
        )
        # Called once per job end (a terminal transition this process made), after the write.
        self.on_end: tuple[Callable[[Job], None], ...] = (self._record, *on_end)
        # Asynchronous inference: its backend work (stage, send, poll, collect) behind its port.
        self.async_jobs = None if async_client is None else AsyncJobs(config, objects, async_client, self.jobs_root)
        # The backend kind of each job route that has one (lambda-jobs run on `queue`).
        self.backends: dict[Route, JobBackend] = {Route.BATCH_TRANSFORM: TransformJobs(config, objects, batch, self.jobs_root, transform_name)}
        if self.async_jobs is not None:
            self.backends[Route.ASYNC_INFERENCE] = AsyncInferenceJobs(self.async_jobs)
        # Buckets the router keeps its own data in (jobs, artifacts, the config): never a job's
        # input, except the caller's own uploads. `private_uris` adds locations only the
        # runtime knows (ROUTER_CONFIG).
        own = [config.storage.jobs, config.storage.artifacts, *(m.artifact for m in config.models), *private_uris]
        self._private_buckets = frozenset(u[len("s3://"):].partition("/")[0] for u in own if u.startswith("s3://"))

    # ------------------------------------------------------------------ locations

    def _job_uri(self, job_id: str, name: str) -> str:
        return f"{self.jobs_root}/{job_id}/{name}"

    def _uploads_prefix(self, owner: str) -> str:
        # Readable, plus a digest of the exact owner: sanitising alone maps two owners to one folder.
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", owner)[:64]
        return f"{self.jobs_root}/uploads/{safe}-{hashlib.sha256(owner.encode()).hexdigest()[:16]}/"

    # ------------------------------------------------------------------ submit

    def submit(
        self,
        owner: str,
        model: ModelSpec,
        *,
        instances: Sequence[Any] | None,
        input_uri: str | None,
        input_format: str,
        output: OutputKind,
        idempotency_key: str | None,
        notify: Mapping[str, Any] | None = None,
        trusted_input: bool = False,
        output_uri: str | None = None,
    ) -> tuple[Job, bool]:
        """Create a job (or return the one this owner's idempotency key already made).

        `trusted_input` and `output_uri` are for operator-configured sources (triggers): the input
        may then be anywhere the router can read, and the result goes to `output_uri`."""
        if idempotency_key is not None and not IDEMPOTENCY_KEY_RE.match(idempotency_key):
            raise InvalidRequest("Idempotency-Key must be 1-255 printable characters without spaces")
        stored_notify = None
        if notify is not None:
            if self.notifier is None:
                raise InvalidRequest("job notifications are not available in this runtime")
            stored_notify = self.notifier.check_submitted(notify)
        data = b""
        if instances is not None:
            records = len(instances)
            try:
                data = _jsonl(instances)  # serialized once: staged as is, and hashed for idempotency
            except ValueError:
                raise InvalidInput("instances contain NaN or Infinity, which are not accepted") from None
            payload = len(data)
        else:
            assert input_uri is not None
            input_uri = self._trusted_input(input_uri) if trusted_input else self._confine_input(owner, input_uri)
            records, payload = self._count_records(input_uri)
        described: dict[str, Any] = {
            "model": model.name,
            "version": model.version,
            "instances_sha256": hashlib.sha256(data).hexdigest() if instances is not None else None,
            "input": input_uri,
            "format": input_format,
            "output": output.value,
        }
        if stored_notify is not None:
            described["notify"] = stored_notify
        if output_uri is not None:
            described["output_uri"] = output_uri
        digest = request_digest(described)
        state = self.service.backend_state(model)
        decision = self.service.decide_in(model, Mode.JOB, records, payload, state)
        if decision.route is None:
            raise NoFeasibleRoute(decision.reason, details={"decision": decision.to_dict()})
        cap = self.config.jobs.max_active_per_owner
        if self.store.count_active(owner) >= cap:
            raise TooManyJobs(f"you have {cap} active jobs, the most allowed; wait for one to finish or cancel one", details={"limit": cap})

        now = self.clock.now()
        job_id = new_job_id(now)
        snapshot: str | None = None
        if instances is not None:
            staged = self._job_uri(job_id, "input.jsonl")
            self.objects.put_bytes(staged, data, "application/jsonlines")
            input_uri, input_format = staged, "jsonl"
        elif decision.route is Route.LAMBDA_JOB:
            # A checkpointing worker reads its own (server-side) copy: one input per output, even
            # if the upload is overwritten; `input_uri` keeps what the client named.
            assert input_uri is not None
            snapshot = self._job_uri(job_id, "input.csv" if input_format == "csv" else "input.jsonl")
            self.objects.copy(input_uri, snapshot)
        assert input_uri is not None
        job = Job(
            job_id=job_id,
            owner=owner,
            model=model.name,
            status=S.QUEUED,
            route=decision.route,
            reason=decision.reason,
            created_at=now,
            updated_at=now,
            input_uri=input_uri,
            input_format=input_format,
            output_uri=output_uri or self._job_uri(job_id, "output.jsonl"),
            output_kind=output,
            records_total=records,
            records_done=0,
            idempotency_key=idempotency_key,
            request_digest=digest,
            extra={"staged_input": snapshot} if snapshot is not None else {},
            estimate=_estimate_record(decision, records, state),
            notify=stored_notify,
        )
        stored, created = self.store.create(job)
        if not created:
            if snapshot is not None and stored.job_id != job_id:
                self._drop_snapshot(snapshot)  # a duplicate: the stored job has its own input
            if stored.request_digest != digest:
                raise IdempotencyKeyReuse(
                    "this Idempotency-Key was already used with a different request body", details={"job_id": stored.job_id}
                )
            # This very create retried under us after a lost reply (same job id) is new; a
            # replay may dispatch again (lifecycle: Replayed).
            created = stored.job_id == job_id
            if not created:
                return self._settle(stored, lc.Replayed())[0] or stored, False
        return self._settle(stored, lc.Created())[0] or stored, created

    def _drop_snapshot(self, snapshot: str) -> None:
        try:
            self.objects.delete(snapshot)
        except Exception:  # best effort: an orphan file is harmless (like a crash after staging)
            log.warning("could not delete the unused input snapshot %s", snapshot)

    def _confine_input(self, owner: str, uri: str) -> str:
        """The canonical URI of an input this owner may name, or InvalidInput.

        Decided on the URI (and, for files, where its links lead) before anything is read, with one
        message for every refusal: a refused URI reveals nothing about what it names."""
        refused = InvalidInput(
            "input.uri must be one of your own uploads (POST /v1/uploads) or an s3:// object outside the router's own buckets"
        )
        scheme, sep, rest = uri.partition("://")
        if not sep or scheme not in ("file", "s3") or any(seg in (".", "..") for seg in rest.split("/")):
            raise refused  # dot segments are refused, not folded: S3 keys are literal, other tools fold them
        uploads = self._uploads_prefix(owner)
        if scheme == "file":
            uri = "file://" + posixpath.normpath(rest)  # "a//b" is "a/b"
        try:
            canonical = self.objects.resolve(uri)
            own = uri.startswith(uploads) and canonical.startswith(self.objects.resolve(uploads.rstrip("/")) + "/")
        except RouterError:
            raise refused from None
        if not own:
            if scheme == "file" or canonical.startswith(self.jobs_root + "/"):
                raise refused  # local files and the job store: only the caller's own uploads
            if canonical[len("s3://"):].partition("/")[0] in self._private_buckets:
                raise refused  # artifacts, the config, other owners' inputs and outputs
        try:
            found = self.objects.exists(canonical)
        except StorageAccessDenied as e:  # retrying cannot help: the client's to change
            raise InvalidInput(f"input not readable by the router: {e.message} (or upload it: POST /v1/uploads)") from None
        if not found:
            raise InvalidInput(f"input not found: {uri} (upload it first: POST /v1/uploads)")
        return canonical

    def _trusted_input(self, uri: str) -> str:
        """An operator-configured input (a trigger's object): canonical, and it must exist."""
        canonical = self.objects.resolve(uri)
        if not self.objects.exists(canonical):
            raise InvalidInput(f"input not found: {uri}")
        return canonical

    def _count_records(self, uri: str) -> tuple[int, int]:
        """Exact record and byte counts, streaming (memory stays flat)."""
        records = 0
        size = 0
        last = b"\n"
        with self.objects.open_read(uri) as f:
            while True:
                chunk = f.read(1 << 20)
                if not chunk:
                    break
                size += len(chunk)
                records += chunk.count(b"\n")
                last = chunk[-1:]
        if last != b"\n":
            records += 1
        if records == 0:
            raise InvalidInput("the input is empty")
        return records, size

    # ------------------------------------------------------------------ backend events

    def on_async_outcome(self, job_id: str, outcome: AsyncOutcome) -> Job | None:
        """Apply how a job's async request ended (its SNS notification). Repeated and stale
        notifications are no-ops: a finished job never changes."""
        job = self.store.get(job_id)
        if self.async_jobs is None:
            return job
        return self._settle(job, async_report(outcome, lc.Via.EVENT))[0]

    # ------------------------------------------------------------------ read

    def get(self, owner: str, job_id: str) -> Job:
        job = self.store.get(job_id) if re.match(r"^job_[0-9A-Za-z]{1,64}$", job_id) else None
        if job is None or job.owner != owner:
            # Another owner's job is indistinguishable from a missing one (docs/api.md: 404, never 403).
            raise JobNotFound(f"no job {job_id!r}", details={"job_id": job_id})
        return job

    def list(self, owner: str, *, status: str | None, model: str | None, limit: int, cursor: str | None) -> Page:
        st: JobStatus | None = None
        if status is not None:
            try:
                st = JobStatus(status)
            except ValueError:
                raise InvalidRequest(f"status must be one of {', '.join(s.value for s in JobStatus)}") from None
        return self.store.list_by_owner(owner, status=st, model=model, limit=limit, cursor=cursor)

    def to_dict(self, job: Job, *, with_download: bool = False) -> dict[str, Any]:
        # `output.uri` is known from the start (docs/api.md's example shows it on a running job); the
        # download link appears once the job succeeded.
        output: dict[str, Any] | None = None
        if job.output_uri:
            output = {"uri": job.output_uri, "download_url": None, "expires_at": None}
            if with_download and job.status is S.SUCCEEDED:
                expiry = self.config.jobs.url_expiry_s
                output["download_url"] = self.objects.presign_get(job.output_uri, expiry)
                output["expires_at"] = format_time(self.clock.now() + timedelta(seconds=expiry))
        return {
            "job_id": job.job_id,
            "model": job.model,
            "status": job.status.value,
            "route": job.route.value,
            "reason": job.reason,
            "created_at": _t(job.created_at),
            "updated_at": _t(job.updated_at),
            "started_at": _t(job.started_at),
            "finished_at": _t(job.finished_at),
            "records": {"total": job.records_total, "done": job.records_done},
            "input": {"uri": job.input_uri, "format": job.input_format},
            "output": output,
            "error": job.error,
            "backend": {"name": job.backend_name},
            "estimate": None if job.estimate is None else {k: job.estimate.get(k) for k in ("duration_s", "cost_usd")},
            "duration_s": _measured_s(job),
        }

    # ------------------------------------------------------------------ calibration

    def job_samples(self, owner: str, model: ModelSpec, limit: int = 100) -> SamplesByRoute:
        """Estimate vs measured of this owner's recent succeeded jobs of `model`, by route (the job
        table's own list query: no scan, works on SQLite and DynamoDB alike)."""
        page = self.store.list_by_owner(owner, status=S.SUCCEEDED, model=model.name, limit=limit)
        out: SamplesByRoute = {}
        for job in reversed(page.jobs):  # oldest first, like the recorder
            sample = _sample(job)
            if sample is not None:
                out.setdefault(job.route.value, []).append(sample)
        return out

    def _record(self, job: Job | None) -> None:
        """Feed a job that just succeeded in this process to the service's recorder."""
        sample = None if job is None else _sample(job)
        if job is not None and sample is not None:
            self.service.recorder.record(job.model, job.route.value, sample.estimate_s, sample.measured_s, sample.records, cold=sample.cold)

    # ------------------------------------------------------------------ cancel

    def cancel(self, owner: str, job_id: str) -> Job:
        job = self.get(owner, job_id)
        backend = self.backends.get(job.route)
        stoppable = job.route in lc.STOPPABLE_ROUTES and backend is not None and backend.wired
        name = backend.default_name(job.job_id) if backend is not None and stoppable else None
        return self._settle(job, lc.CancelRequested(stoppable, name))[0] or self.get(owner, job_id)

    # ------------------------------------------------------------------ uploads

    def upload_slot(self, owner: str) -> dict[str, Any]:
        uri = f"{self._uploads_prefix(owner)}{uuid.uuid4().hex}/input.jsonl"
        expiry = self.config.jobs.url_expiry_s
        return {
            "upload_url": self.objects.presign_put(uri, expiry, "application/octet-stream"),
            "method": "PUT",
            "headers": {"Content-Type": "application/octet-stream"},
            "input_uri": uri,
            "expires_at": format_time(self.clock.now() + timedelta(seconds=expiry)),
        }

    # ------------------------------------------------------------------ the lambda-job worker

    def peek(self, job_id: str) -> Job | None:
        """The job as stored, whoever owns it: for the worker and event handlers, never an API caller."""
        return self.store.get(job_id)

    def continue_lambda_job(self, job_id: str) -> None:
        """Start the next worker run of a lambda-job whose run stopped at its deadline (checkpointed)."""
        if self.queue is None:
            raise BackendUnavailable("no worker queue is configured to continue lambda-job jobs")
        self.queue.enqueue(job_id)

    def run_lambda_job(self, job_id: str, remaining_s: Callable[[], float]) -> bool:
        """Run (or resume) a lambda-job. Returns True when it must be continued by a new invocation
        (the deadline came first); False when the job is finished or not ours to run."""
        started, work = self._settle(self.store.get(job_id), lc.WorkerStarted())
        if started is None or work is not Work.RUN:
            return False
        job = started
        try:
            model = self.service.model(job.model)
        except ModelNotFound as e:  # no retry brings a model back into the config
            self._settle(job, lc.WorkerFailed(e.code, f"the job's model is no longer configured: {e.message}", permanent=True))
            return False
        cp = job.checkpoint or {"offset": 0, "parts": 0}
        offset, parts = int(cp["offset"]), int(cp["parts"])
        chunk = self.config.jobs.chunk_records
        # Keep a margin for writing the last part and the checkpoint before Lambda kills us.
        reserve_s = max(5.0, 0.05 * self.config.runtime.lambda_timeout_s)

        def out_of_time() -> bool:
            return self._settle(job, lc.Deadline(remaining_s(), reserve_s))[1] is Work.YIELD

        # One chunk's part write and checkpoint (storage round trips) run in a second thread while
        # this one reads and predicts the next chunk. The order of side effects is unchanged: part
        # k+1 is written only once checkpoint k is confirmed, so parts and checkpoints stay
        # deterministic and a cancel or another worker stops this one before its next write.
        commits = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"commit-{job_id}")
        pending: Future[Job | None] | None = None
        try:
            for rows in _read_chunks(self.objects.open_read(input_of(job)), job.input_format, chunk, offset):
                data = _jsonl(self.service.runner.predict(model, rows, job.output_kind))
                if pending is not None:
                    updated, pending = pending.result(), None
                    if updated is None:
                        return False  # cancelled, finished, or another worker carries on
                    job = updated
                    if out_of_time():
                        return True  # this chunk's predictions are redone by the continuation
                before = {"offset": offset, "parts": parts}
                offset += len(rows)
                parts += 1
                pending = commits.submit(self._commit_part, job, data, before, {"offset": offset, "parts": parts})
            if pending is not None:
                updated, pending = pending.result(), None
                if updated is None:
                    return False
                job = updated
                if out_of_time():
                    return True
            self._assemble(job_id, parts, cast(str, job.output_uri))
            self._settle(job, lc.WorkerDone(offset))
            return False
        except (InvalidInput, ModelRejectedInput, OutputNotSupported, ModelIntegrityError) as e:
            # The input (as the router or the model judges it), the requested output or the artifact
            # itself is wrong: a retry cannot help.
            self._settle(job, lc.WorkerFailed(e.code, e.message, permanent=True, details=e.details or None))
            return False
        except RouterError as e:
            return self._settle(self.store.get(job_id), lc.WorkerFailed(e.code, e.message, permanent=False))[1] is Work.YIELD
        except Exception as e:  # the model or storage broke unexpectedly
            log.exception("job %s failed", job_id)
            failed = lc.WorkerFailed("internal_error", f"the worker failed unexpectedly ({type(e).__name__}); see the router's logs", permanent=False)
            return self._settle(self.store.get(job_id), failed)[1] is Work.YIELD
        finally:
            commits.shutdown(wait=True)  # an in-flight commit ends before the job's fate is written

    def _commit_part(self, job: Job, data: bytes, before: dict[str, int], after: dict[str, int]) -> Job | None:
        """Write part `before["parts"]`, then record it in the checkpoint (see _checkpoint)."""
        self.objects.put_bytes(self._job_uri(job.job_id, f"parts/part-{before['parts']:06d}.jsonl"), data, "application/jsonlines")
        return self._checkpoint(job, before, after)

    def _checkpoint(self, job: Job, before: dict[str, int], after: dict[str, int]) -> Job | None:
        """Record a written part (version-conditional). None when this worker must stop."""
        moved, work = self._settle(job, lc.Checkpointed(before, after))
        return moved if work is Work.RUN else None

    def _assemble(self, job_id: str, parts: int, output_uri: str) -> None:
        with self.objects.open_write(output_uri, "application/jsonlines") as out:
            for i in range(parts):
                with self.objects.open_read(self._job_uri(job_id, f"parts/part-{i:06d}.jsonl")) as f:
                    while block := f.read(1 << 20):
                        out.write(block)

    # ------------------------------------------------------------------ SageMaker events + sweeper

    def on_batch_state(self, job_id: str, state: BatchJobState) -> Job | None:
        """Apply what SageMaker says about a job's transform job. Duplicates and stale events are no-ops."""
        event = lc.BackendReport(Route.BATCH_TRANSFORM, state.name, state.status, state.failure_reason)
        return self._settle(self.store.get(job_id), event)[0]

    def sweep(self, limit: int = 100, stale_after_s: float | None = None) -> dict[str, int]:
        """Repair what an event or a crash left behind, bounded to `limit` jobs a run."""
        now = self.clock.now()
        age = self.config.jobs.stale_after_s if stale_after_s is None else stale_after_s
        stale = self.store.list_active(updated_before=now - timedelta(seconds=age), limit=limit)
        counts = {"seen": len(stale), "redispatched": 0, "described": 0, "failed": 0}
        for job in stale:
            backend = self.backends.get(job.route)
            wired = self.queue is not None if job.route in lc.WORKER_ROUTES else backend is not None and backend.wired
            in_flight = job.route in lc.WORKER_ROUTES and self.queue is not None and self.queue.in_flight(job.job_id)
            name = backend.default_name(job.job_id) if backend is not None else None
            try:
                self._settle(job, lc.Stale(wired, in_flight, name), counts)
            except RouterError as e:
                log.warning("sweep of %s: %s", job.job_id, e.message)
            touch = lc.keepalive(job)
            if touch is not None:
                try:
                    self.store.update(job.job_id, touch.version, **touch.changes)
                except RouterError as e:
                    log.warning("sweep of %s: %s", job.job_id, e.message)
        if self.notifier is not None:
            # The outbox: notifications a crash or a failed delivery left pending.
            try:
                counts.update(self.notifier.deliver_due(limit=limit))
            except RouterError as e:
                log.warning("sweep of notifications: %s", e.message)
        return counts

    # ------------------------------------------------------------------ applying lifecycle moves

    def _settle(self, job: Job | None, event: lc.Event, counts: dict[str, int] | None = None) -> tuple[Job | None, Work]:
        """Decide `event` on `job` and apply the moves (router/lifecycle.py states the rules).
        Returns the job as it ends up and what a worker does next."""
        rounds = 0
        while True:
            work = Work.QUIT
            follow: lc.Event | None = None
            redecide = False
            for move in lc.decide(job, event, self.policy, self.clock.now()):
                assert job is not None  # decide has no moves for a missing job
                match move:
                    case lc.Transition():
                        moved = self.store.transition(job.job_id, move.from_, move.to, **move.changes)
                        if moved is None:
                            redecide = True
                            break
                        job = moved
                        _tally(counts, move.tally)
                        if move.ends_job:
                            self._ended(job)
                    case lc.Update():
                        updated = self.store.update(job.job_id, move.version, **move.changes)
                        if updated is None:
                            redecide = move.redecide
                            break
                        job = updated
                    case lc.Dispatch():
                        try:
                            follow = self._dispatch(job)
                        except RouterError as e:
                            log.warning("dispatch of %s deferred to the sweeper: %s", job.job_id, e.message)
                            break
                        _tally(counts, move.tally)
                        if follow is not None:
                            break
                    case lc.StopBackend():
                        self._stop(job.route, move.name)
                    case lc.Describe():
                        try:
                            follow = self._describe(job, move.name, move.via)
                        except RouterError as e:
                            log.warning("describe of %s failed: %s", move.name, e.message)
                        break
                    case lc.Collect():
                        try:
                            follow = lc.OutputReady(move.name, self._collect(job))
                        except BackendError as e:  # SageMaker says Completed, the output says otherwise
                            follow = lc.OutputBroken(e.code, e.message)
                        break
                    case lc.Tally():
                        _tally(counts, move.name)
                    case lc.NotCancellable():
                        raise JobNotCancellable(f"job {job.job_id} already {move.status.value}", details={"status": move.status.value})
                    case lc.Worker():
                        work = move.then
            if follow is not None:
                event = follow
            elif redecide and job is not None and rounds < lc.MAX_ROUNDS:
                rounds += 1
                job = self.store.get(job.job_id)
            else:
                return job, work

    def attach_notifier(self, notifier: Notifier) -> None:
        """Job-end notifications: submissions may ask for them, every job end delivers its record
        (written by the terminal transition, lifecycle.outbox) and sweeps re-deliver."""
        self.notifier = notifier
        self.on_end = (*self.on_end, notifier.after_finish)

    def _ended(self, job: Job) -> None:
        for hook in self.on_end:
            try:
                hook(job)
            except Exception:  # a hook never changes how the job ended
                log.exception("end hook of %s failed", job.job_id)

    def _dispatch(self, job: Job) -> lc.Event | None:
        """Hand a job to its route's queue or backend; a backend answers with a lifecycle event."""
        backend = self.backends.get(job.route)
        if job.route in lc.WORKER_ROUTES and self.queue is not None:
            self.queue.enqueue(job.job_id)
        elif backend is not None and backend.wired:
            try:
                model = self.service.model(job.model)
            except ModelNotFound as e:
                return refusal(e, backend.default_name(job.job_id))
            return backend.dispatch(job, model)
        return None

    def _stop(self, route: Route, name: str) -> None:
        backend = self.backends.get(route)
        try:
            if backend is not None and backend.wired:
                backend.stop(name)
        except RouterError as e:  # the sweeper stops it again (or finds nothing to stop)
            log.warning("stop of %s failed, will retry: %s", name, e.message)

    def _describe(self, job: Job, name: str, via: lc.Via) -> lc.BackendReport | lc.BackendMissing:
        backend = self.backends.get(job.route)
        if backend is None or not backend.wired:
            return lc.BackendMissing(via)
        return backend.describe(job, name, via, self.clock.now())

    def _collect(self, job: Job) -> int:
        """Assemble a finished backend job's output into the job's result; BackendError when it cannot."""
        backend = self.backends.get(job.route)
        if backend is None:
            raise BackendError(f"no {job.route.value} backend is configured to collect the output of job {job.job_id}")
        return backend.collect(job)


def _tally(counts: dict[str, int] | None, name: str | None) -> None:
    if counts is not None and name is not None:
        counts[name] = counts.get(name, 0) + 1


def _t(dt: datetime | None) -> str | None:
    return None if dt is None else format_time(dt)


def _estimate_record(decision: Decision, records: int, state: BackendState) -> dict[str, Any] | None:
    """What the job's decision expected; `cold`: the estimate included loading the model."""
    if decision.estimates is None:
        return None
    cold = decision.route is not Route.LAMBDA_JOB or not state.worker_warm
    return {**decision.estimates.to_dict(), "records": records, "cold": cold}


def _measured_s(job: Job) -> float | None:
    """started_at -> finished_at of a succeeded job (what its estimate predicted)."""
    if job.status is not S.SUCCEEDED or job.started_at is None or job.finished_at is None:
        return None
    return round((job.finished_at - job.started_at).total_seconds(), 6)


def _sample(job: Job) -> Sample | None:
    measured = _measured_s(job)
    est = job.estimate
    if measured is None or not est or not isinstance(est.get("duration_s"), int | float):
        return None
    records = job.records_done if job.records_done is not None else int(est.get("records") or 0)
    return Sample(float(est["duration_s"]), measured, records, bool(est.get("cold", True)))
