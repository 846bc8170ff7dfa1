"""Job use cases: submit (idempotent), get, list, cancel, upload slots, the lambda-job worker,
backend (SageMaker) events and the sweeper.

Safety rules, in one place: the input is staged before the job row exists (a crash leaves an
orphan file, never a job without input); every status change is a conditional write through
JobStore.transition (a stale or repeated event is a no-op); the worker writes deterministic output
parts and a checkpoint, so a re-run resumes instead of starting over or writing twice.
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
import re
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, cast

from router import sagemaker_contract as contract
from router.async_jobs import AsyncJobs
from router.async_jobs import extra_for as async_extra_for
from router.calibration import Sample
from router.config import BatchTransformDefaults, ModelSpec, RouterConfig
from router.domain import BackendState, Decision, Job, JobStatus, Mode, OutputKind, Route
from router.errors import (
    BackendError,
    BackendTimeout,
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
    Throttled,
    TooManyJobs,
)
from router.jobs import format_time, new_job_id, request_digest
from router.jobs_io import encode_jsonl as _jsonl
from router.jobs_io import read_chunks as _read_chunks
from router.ports import (
    AsyncInferenceClient,
    AsyncInvocation,
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

log = logging.getLogger("router.jobs")

S = JobStatus
# A replay (same Idempotency-Key and body) dispatches a job that has been queued at least this long.
REPLAY_DISPATCH_AFTER_S = 10.0
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
    ) -> None:
        self.config = config
        self.service = service
        self.store = store
        self.objects = objects
        self.clock = clock
        self.queue = queue
        self.batch = batch
        self.transform_name = transform_name
        self.jobs_root = config.storage.jobs.rstrip("/")
        # Asynchronous inference: its backend work (stage, send, poll, collect) behind its port.
        self.async_jobs = None if async_client is None else AsyncJobs(config, objects, async_client, self.jobs_root)
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
    ) -> tuple[Job, bool]:
        """Create a job (or return the one this owner's idempotency key already made)."""
        if idempotency_key is not None and not IDEMPOTENCY_KEY_RE.match(idempotency_key):
            raise InvalidRequest("Idempotency-Key must be 1-255 printable characters without spaces")
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
            input_uri = self._confine_input(owner, input_uri)
            records, payload = self._count_records(input_uri)
        digest = request_digest(
            {
                "model": model.name,
                "version": model.version,
                "instances_sha256": hashlib.sha256(data).hexdigest() if instances is not None else None,
                "input": input_uri,
                "format": input_format,
                "output": output.value,
            }
        )
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
            # Review fix: a lambda-job runs on its own snapshot of the input. The upload URL stays
            # valid after submission, so the object behind `input_uri` can be overwritten; the
            # worker resumes from a checkpoint *offset*, and mixed two inputs in one output.
            # `input_uri` still shows what the client named (canonical: see _confine_input);
            # `extra.staged_input` is what the worker reads. The copy is server-side on S3 (CopyObject: no bytes through
            # the API Lambda). Batch-transform inputs are not copied: SageMaker reads them whole
            # in one go, so there is no checkpoint to mix across.
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
            output_uri=self._job_uri(job_id, "output.jsonl"),
            output_kind=output,
            records_total=records,
            records_done=0,
            idempotency_key=idempotency_key,
            request_digest=digest,
            extra={"staged_input": snapshot} if snapshot is not None else {},
            estimate=_estimate_record(decision, records, state),
        )
        stored, created = self.store.create(job)
        if not created:
            if snapshot is not None and stored.job_id != job_id:
                self._drop_snapshot(snapshot)  # a duplicate: the stored job has its own input
            if stored.request_digest != digest:
                raise IdempotencyKeyReuse(
                    "this Idempotency-Key was already used with a different request body", details={"job_id": stored.job_id}
                )
            # This very create retried under us after a lost reply (same job id) is new. A replay
            # of a job still queued is dispatched again: the request that created it may have
            # lost its reply before dispatching.
            created = stored.job_id == job_id
            if not created:
                again = self._claim_replay_dispatch(stored)
                if again is None:
                    return stored, False
                stored = again
        return self._dispatch(stored), created

    def _claim_replay_dispatch(self, job: Job) -> Job | None:
        """The job to dispatch again for a replay, or None. Only a job queued for
        REPLAY_DISPATCH_AFTER_S (its first dispatch had its chance), and only one replay per such
        window (a version-checked touch), so a burst of retries is not a burst of workers.
        Dispatching twice is still safe: the worker claims the job conditionally and resumes from
        its checkpoint, a transform job has a deterministic name."""
        if job.status is not S.QUEUED or self.clock.now() - job.updated_at < timedelta(seconds=REPLAY_DISPATCH_AFTER_S):
            return None
        return self.store.update(job.job_id, job.version, attempts=job.attempts)

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

    def _dispatch(self, job: Job) -> Job:
        """Hand a queued job to its backend. Failures leave it queued for the sweeper."""
        try:
            if job.route is Route.LAMBDA_JOB and self.queue is not None:
                self.queue.enqueue(job.job_id)
            elif job.route is Route.BATCH_TRANSFORM and self.batch is not None:
                return self._submit_batch(job)
            elif job.route is Route.ASYNC_INFERENCE and self.async_jobs is not None:
                return self._send_async(job)
        except RouterError as e:
            log.warning("dispatch of %s deferred to the sweeper: %s", job.job_id, e.message)
        return job

    # ------------------------------------------------------------------ async inference

    def _send_async(self, job: Job) -> Job:
        """Send the job's one request to its async inference endpoint (again, for a request that was
        lost: the same InferenceId). Throttled waits; an outage counts an attempt; a refusal fails it."""
        assert self.async_jobs is not None
        try:
            model = self.service.model(job.model)
        except ModelNotFound as e:
            return self._fail(job, e.code, f"the job's model is no longer configured: {e.message}")
        try:
            sent = self.async_jobs.send(job, model, self._input_of(job))
        except Throttled:
            return job
        except (BackendUnavailable, BackendTimeout) as e:
            attempts = job.attempts + 1
            if attempts >= self.config.jobs.max_attempts:
                return self._fail(job, e.code, f"{e.message} (after {attempts} attempts)")
            return self.store.update(job.job_id, job.version, attempts=attempts) or job
        except RouterError as e:
            return self._fail(job, e.code, e.message)
        extra = {**job.extra, **async_extra_for(sent)}
        if job.status is not S.QUEUED:  # a re-send of a request that was lost
            return self.store.update(job.job_id, job.version, backend_name=sent.inference_id, attempts=job.attempts + 1, extra=extra) or job
        moved = self.store.transition(
            job.job_id, frozenset({S.QUEUED}), S.RUNNING, backend_name=sent.inference_id, attempts=job.attempts + 1, extra=extra
        )
        return moved or self.store.get(job.job_id) or job

    def on_async_outcome(self, job_id: str, outcome: AsyncOutcome) -> Job | None:
        """Apply how a job's async request ended (its SNS notification, or the sweeper's poll).
        Repeated and stale notifications are no-ops: a finished job never changes."""
        job = self.store.get(job_id)
        if job is None or job.status.finished or job.route is not Route.ASYNC_INFERENCE or self.async_jobs is None:
            return job
        if job.status is S.CANCELLING:  # the request could not be stopped: its result is discarded
            return self.store.transition(job_id, frozenset({S.CANCELLING}), S.CANCELLED)
        if outcome.status == "InProgress":
            return job
        if job.status is S.QUEUED:  # the send's own write was lost: pass through running, as the request did
            extra = {**job.extra, **async_extra_for(AsyncInvocation(outcome.inference_id, outcome.output_uri or "", outcome.failure_uri))}
            job = self.store.transition(job_id, frozenset({S.QUEUED}), S.RUNNING, backend_name=outcome.inference_id, extra=extra) or job
        if outcome.status == "Completed":
            try:
                records = self.async_jobs.collect(job)
            except BackendError as e:
                return self.store.transition(job_id, frozenset({S.RUNNING}), S.FAILED, error={"code": e.code, "message": e.message})
            done = self.store.transition(job_id, frozenset({S.RUNNING}), S.SUCCEEDED, records_done=records)
            self._record(done)
            return done or self.store.get(job_id)
        reason = outcome.failure_reason or "the async inference request failed"
        return self._fail(job, "backend_error", reason)

    def _sweep_async(self, job: Job, counts: dict[str, int]) -> None:
        assert self.async_jobs is not None
        if job.status is S.CANCELLING:
            self.store.transition(job.job_id, frozenset({S.CANCELLING}), S.CANCELLED)
            return
        if job.status is S.QUEUED and job.backend_name is None:
            self._send_async(job)
            counts["redispatched"] += 1
            return
        outcome = self.async_jobs.poll(job, self.clock.now())
        if outcome is None:  # never sent, or lost by SageMaker: send it again (bounded)
            if job.attempts >= self.config.jobs.max_attempts:
                if self._fail(job, "backend_error", f"the async inference request was lost (after {job.attempts} attempts)"):
                    counts["failed"] += 1
                return
            self._send_async(job)
            counts["redispatched"] += 1
            return
        self.on_async_outcome(job.job_id, outcome)
        counts["described"] += 1

    def _input_of(self, job: Job) -> str:
        """What the job reads: its snapshot of the input when it has one (see submit)."""
        staged = job.extra.get("staged_input") if job.extra else None
        return staged if isinstance(staged, str) and staged else job.input_uri

    def _fail(self, job: Job, code: str, message: str) -> Job:
        moved = self.store.transition(job.job_id, frozenset({S.QUEUED, S.RUNNING}), S.FAILED, error={"code": code, "message": message[:1000]})
        return moved or self.store.get(job.job_id) or job

    def _submit_batch(self, job: Job) -> Job:
        """Start (or adopt) the transform job of a queued job, or of a running one whose transform
        job vanished.

        Review fix: before, only Throttled was handled here. A model removed from the config, a
        refusal by SageMaker (BackendError: retrying cannot help) or a SageMaker outage that
        never ends left the job queued (or running) forever, the sweeper trying again every
        pass. Now: Throttled waits (quotas clear by themselves, not an attempt); an outage
        (BackendUnavailable/BackendTimeout) counts an attempt and fails the job at max_attempts;
        anything else fails it at once.
        """
        assert self.batch is not None
        try:
            model = self.service.model(job.model)
        except ModelNotFound as e:
            return self._fail(job, e.code, f"the job's model is no longer configured: {e.message}")
        settings = self.config.batch_settings(model)
        if settings is None:
            return self._fail(job, "no_feasible_route", "batch transform is no longer configured for this model")
        try:
            requests_uri = self._stage_transform_input(job, model, settings)
            name = self.batch.submit(job, model, settings, requests_uri, self._job_uri(job.job_id, "transform/"))
        except Throttled:
            return job  # stays queued; the sweeper retries
        except (BackendUnavailable, BackendTimeout) as e:
            attempts = job.attempts + 1
            if attempts >= self.config.jobs.max_attempts:
                if self.transform_name is not None:
                    # The create may have gone through before the error (a lost response): stop it.
                    self._stop_quietly(self.transform_name(job.job_id))
                return self._fail(job, e.code, f"{e.message} (after {attempts} attempts)")
            return self.store.update(job.job_id, job.version, attempts=attempts) or job
        except RouterError as e:
            return self._fail(job, e.code, e.message)
        if job.status is not S.QUEUED:  # a re-submission after the transform job vanished
            return self.store.update(job.job_id, job.version, backend_name=name, attempts=job.attempts + 1) or job
        moved = self.store.transition(job.job_id, frozenset({S.QUEUED}), S.RUNNING, backend_name=name, attempts=job.attempts + 1)
        if moved is None:  # cancelled meanwhile: stop what we just started
            current = self.store.get(job.job_id)
            if current is not None and current.status in (S.CANCELLING, S.CANCELLED):
                self.batch.stop(name)
            return current or job
        return moved

    def _transform_uris(self, job_id: str) -> tuple[str, str, str]:
        """(requests, batches, answers) of a job's transform: the staged input (the S3Prefix the
        transform job reads: it holds nothing else), its per-line counts, and SageMaker's `.out`."""
        requests = self._job_uri(job_id, f"transform-input/{contract.REQUESTS_NAME}")
        return requests, self._job_uri(job_id, contract.BATCHES_NAME), self._job_uri(job_id, f"transform/{contract.REQUESTS_NAME}.out")

    def _stage_transform_input(self, job: Job, model: ModelSpec, settings: BatchTransformDefaults) -> str:
        """Write the job's input as the model's requests, one {"instances": [...]} document per line
        (router/sagemaker_contract.py), once: the batches file is written last, so when it
        exists the requests are whole and a re-submission (adopting the same transform job) reuses
        them. The input is parsed and validated here; a bad record fails the job before SageMaker
        starts (InvalidInput naming the record)."""
        requests_uri, batches_uri, _ = self._transform_uris(job.job_id)
        if self.objects.exists(batches_uri):
            return requests_uri
        # 0 means "no limit" to SageMaker; the requests stay endpoint-sized (6 MB) then.
        max_line = (settings.max_payload_mb or 6) * contract.PAYLOAD_MB_BYTES
        chunks = contract.raw_chunks(self.objects.open_read(self._input_of(job)), contract.MAX_RECORDS_PER_REQUEST)
        with self.objects.open_write(requests_uri, "application/jsonlines") as out:
            sizes = contract.write_requests(chunks, job.input_format, model, job.output_kind.value, out, max_line)
            if not sizes:
                raise InvalidInput("the input holds no records (only empty lines)")
        contract.write_batches(self.objects, batches_uri, sizes)
        return requests_uri

    def _stop_quietly(self, name: str) -> None:
        assert self.batch is not None
        try:
            self.batch.stop(name)
        except RouterError as e:
            log.warning("stop of %s failed: %s", name, e.message)

    def _resubmit_batch(self, job: Job) -> None:
        if job.status is S.RUNNING and job.attempts >= self.config.jobs.max_attempts:
            # Review fix (bounded like every other retry): a transform job that keeps vanishing.
            self._fail(job, "backend_error", f"the transform job {job.backend_name or ''} vanished (after {job.attempts} attempts)")
            return
        self._submit_batch(job)

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
        for _ in range(5):  # a few rounds: the job may move while we look at it
            job = self.get(owner, job_id)
            if job.status in (S.CANCELLED, S.CANCELLING):
                return job  # repeating a cancel is harmless
            if job.status.finished:
                raise JobNotCancellable(f"job {job_id} already {job.status.value}", details={"status": job.status.value})
            batch = job.route is Route.BATCH_TRANSFORM and self.batch is not None
            if job.route is Route.ASYNC_INFERENCE and job.backend_name is not None:
                # The request cannot be stopped on SageMaker: the job ends cancelled now and its
                # result, when it comes, is discarded (docs/api.md).
                moved = self.store.transition(job_id, frozenset({S.QUEUED, S.RUNNING}), S.CANCELLING)
                if moved is not None:
                    moved = self.store.transition(job_id, frozenset({S.CANCELLING}), S.CANCELLED) or moved
            elif job.status is S.QUEUED and job.backend_name is None and not batch:
                moved = self.store.transition(job_id, frozenset({S.QUEUED}), S.CANCELLED)
            else:
                # Review fix: a queued batch job without a backend name may still have a transform
                # job: CreateTransformJob ran and the process died before the job was marked
                # running (or the submission is in flight). Ending it `cancelled` at once left that
                # transform job running, billed, with nobody to stop it (finished jobs are never
                # swept). So it goes through `cancelling` like a running one, and ends at once only
                # when SageMaker has no transform job by its deterministic name. (A submission
                # still in flight sees the cancel and stops what it started: _submit_batch.)
                moved = self.store.transition(job_id, frozenset({S.QUEUED, S.RUNNING}), S.CANCELLING)
                if moved is not None and batch:
                    moved = self._stop_transform(moved)
            if moved is not None:
                return moved
        return self.get(owner, job_id)

    def _stop_transform(self, job: Job) -> Job:
        """Stop the transform job of a `cancelling` job; end the cancel now when there is none."""
        assert self.batch is not None
        name = job.backend_name or (self.transform_name(job.job_id) if self.transform_name else None)
        try:
            if name is None or (job.backend_name is None and self.batch.describe(name) is None):
                return self.store.transition(job.job_id, frozenset({S.CANCELLING}), S.CANCELLED) or job
            self.batch.stop(name)
        except RouterError as e:  # the sweeper repeats the stop (or finds nothing to stop)
            log.warning("stop of %s failed, will retry: %s", name, e.message)
        return job

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
        job = self.store.get(job_id)
        if job is None or job.status.finished:
            return False
        if job.status is S.CANCELLING:
            self.store.transition(job_id, frozenset({S.CANCELLING}), S.CANCELLED)
            return False
        if job.status is S.QUEUED:
            moved = self.store.transition(job_id, frozenset({S.QUEUED}), S.RUNNING, attempts=job.attempts + 1)
            if moved is None:
                return self.run_lambda_job(job_id, remaining_s)
            job = moved
        try:
            model = self.service.model(job.model)
        except ModelNotFound as e:
            # Review fix: this lookup ran outside the error handling, so a job whose model was
            # removed from the config crashed every worker run and stayed running forever (the
            # sweeper re-dispatching it). No retry can bring the model back: fail it now.
            self._fail(job, e.code, f"the job's model is no longer configured: {e.message}")
            return False
        cp = job.checkpoint or {"offset": 0, "parts": 0}
        offset, parts = int(cp["offset"]), int(cp["parts"])
        chunk = self.config.jobs.chunk_records
        # Keep a margin for writing the last part and the checkpoint before Lambda kills us.
        reserve_s = max(5.0, 0.05 * self.config.runtime.lambda_timeout_s)
        # One chunk's part write and checkpoint (storage round trips) run in a second thread while
        # this one reads and predicts the next chunk. The order of side effects is unchanged: part
        # k+1 is written only once checkpoint k is confirmed, so parts and checkpoints stay
        # deterministic and a cancel or another worker stops this one before its next write.
        commits = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"commit-{job_id}")
        pending: Future[Job | None] | None = None
        try:
            for rows in _read_chunks(self.objects.open_read(self._input_of(job)), job.input_format, chunk, offset):
                data = _jsonl(self.service.runner.predict(model, rows, job.output_kind))
                if pending is not None:
                    updated, pending = pending.result(), None
                    if updated is None:
                        return False  # cancelled, finished, or another worker carries on
                    job = updated
                    if remaining_s() < reserve_s:
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
                if remaining_s() < reserve_s:
                    return True
            self._assemble(job_id, parts, cast(str, job.output_uri))
            done = self.store.transition(job_id, frozenset({S.RUNNING}), S.SUCCEEDED, records_done=offset, records_total=offset)
            self._record(done)
            if done is None:
                # Review fix: a cancel landed between the last checkpoint and this write. Finish
                # it now instead of leaving the job `cancelling` until the sweeper's next pass.
                self.store.transition(job_id, frozenset({S.CANCELLING}), S.CANCELLED)
            return False
        except (InvalidInput, ModelRejectedInput, OutputNotSupported, ModelIntegrityError) as e:
            # The input (as the router or the model judges it), the requested output or the artifact
            # itself is wrong: a retry cannot help.
            self.store.transition(job_id, frozenset({S.RUNNING}), S.FAILED, error={"code": e.code, "message": e.message, **({"details": e.details} if e.details else {})})
            return False
        except RouterError as e:
            return self._failed_attempt(job_id, e.code, e.message)
        except Exception as e:  # the model or storage broke unexpectedly
            log.exception("job %s failed", job_id)
            return self._failed_attempt(job_id, "internal_error", f"the worker failed unexpectedly ({type(e).__name__}); see the router's logs")
        finally:
            commits.shutdown(wait=True)  # an in-flight commit ends before the job's fate is written

    def _commit_part(self, job: Job, data: bytes, before: dict[str, int], after: dict[str, int]) -> Job | None:
        """Write part `before["parts"]`, then record it in the checkpoint (see _checkpoint)."""
        self.objects.put_bytes(self._job_uri(job.job_id, f"parts/part-{before['parts']:06d}.jsonl"), data, "application/jsonlines")
        return self._checkpoint(job, before, after)

    def _checkpoint(self, job: Job, before: dict[str, int], after: dict[str, int]) -> Job | None:
        """Record a written part (version-conditional). None when this worker must stop.

        Review fix: a failed version check used to stop the worker whatever the cause. But the
        sweeper's re-dispatch of a slow job also writes the row (touch, attempts) without
        moving the work; the live worker then gave up, and under `router serve` the sweeper's
        enqueue had been dropped (the job was in flight), so nobody ran the job until the next
        stale pass. Now the worker carries on when the job is still running and its checkpoint
        is the one this worker started the chunk from; when another worker moved it, this one
        stops (their parts are the same, so a part rewritten by the loser changes nothing)."""
        while True:
            updated = self.store.update(job.job_id, job.version, checkpoint=after, records_done=after["offset"])
            if updated is not None:
                return updated
            current = self.store.get(job.job_id)
            if current is None:
                return None
            if current.status is S.CANCELLING:
                self.store.transition(job.job_id, frozenset({S.CANCELLING}), S.CANCELLED)
                return None
            if current.status is not S.RUNNING or (current.checkpoint or {"offset": 0, "parts": 0}) != before:
                return None
            job = current

    def _failed_attempt(self, job_id: str, code: str, message: str) -> bool:
        job = self.store.get(job_id)
        if job is None or job.status.finished:
            return False
        if job.attempts >= self.config.jobs.max_attempts:
            self.store.transition(job_id, frozenset({S.RUNNING, S.QUEUED}), S.FAILED, error={"code": code, "message": f"{message} (after {job.attempts} attempts)"})
            return False
        self.store.update(job_id, job.version, attempts=job.attempts + 1)
        return True

    def _assemble(self, job_id: str, parts: int, output_uri: str) -> None:
        with self.objects.open_write(output_uri, "application/jsonlines") as out:
            for i in range(parts):
                with self.objects.open_read(self._job_uri(job_id, f"parts/part-{i:06d}.jsonl")) as f:
                    while block := f.read(1 << 20):
                        out.write(block)

    # ------------------------------------------------------------------ SageMaker events + sweeper

    def on_batch_state(self, job_id: str, state: BatchJobState) -> Job | None:
        """Apply what SageMaker says about a job's transform job. Duplicates and stale events are no-ops."""
        job = self.store.get(job_id)
        if job is None or job.status.finished or job.route is not Route.BATCH_TRANSFORM:
            return job
        if job.backend_name and job.backend_name != state.name:
            return job  # an event about some other transform job
        if job.status is S.CANCELLING:
            if state.status in ("Stopped", "Completed", "Failed"):
                return self.store.transition(job_id, frozenset({S.CANCELLING}), S.CANCELLED)
            return job
        if state.status == "InProgress":
            if job.status is S.QUEUED:
                return self.store.transition(job_id, frozenset({S.QUEUED}), S.RUNNING, backend_name=state.name)
            return job
        if job.status is S.QUEUED and state.status in ("Completed", "Failed"):
            # The InProgress event was missed: pass through running, as the job did.
            job = self.store.transition(job_id, frozenset({S.QUEUED}), S.RUNNING, backend_name=state.name) or job
        if state.status == "Completed":
            try:
                lines = self._collect_transform_output(job)
            except BackendError as e:
                # Review fix: SageMaker says Completed but an output object is missing. This used
                # to raise from the event handler and from every sweep, the job staying running
                # forever. The result can never be assembled: fail the job with the reason.
                return self.store.transition(job_id, frozenset({S.RUNNING}), S.FAILED, error={"code": e.code, "message": e.message})
            done = self.store.transition(job_id, frozenset({S.RUNNING}), S.SUCCEEDED, records_done=lines, backend_name=state.name)
            self._record(done)
            return done
        if state.status == "Failed":
            return self.store.transition(
                job_id, frozenset({S.QUEUED, S.RUNNING}), S.FAILED, error={"code": "backend_error", "message": state.failure_reason or "the transform job failed"}
            )
        if state.status == "Stopped":
            moved = self.store.transition(job_id, frozenset({S.QUEUED, S.RUNNING}), S.CANCELLING)
            if moved is not None:
                return self.store.transition(job_id, frozenset({S.CANCELLING}), S.CANCELLED)
        return job

    def _collect_transform_output(self, job: Job) -> int:
        _, batches_uri, answers_uri = self._transform_uris(job.job_id)
        try:
            batches = contract.read_batches(self.objects, batches_uri)
        except (ValueError, KeyError, TypeError):
            raise BackendError(f"the staged batches file of job {job.job_id} is unreadable") from None
        if batches is None:
            # A job submitted before the router staged requests: its transform read the JSON Lines
            # input as it was, and `.out` is one prediction per line.
            name = self._input_of(job).rsplit("/", 1)[-1]
            return int(contract.assemble_output(self.objects, self._job_uri(job.job_id, "transform/"), [name], cast(str, job.output_uri)))
        return contract.assemble_predictions(self.objects, answers_uri, batches, cast(str, job.output_uri))

    def sweep(self, limit: int = 100, stale_after_s: float | None = None) -> dict[str, int]:
        """Repair what an event or a crash left behind, bounded to `limit` jobs a run."""
        now = self.clock.now()
        age = self.config.jobs.stale_after_s if stale_after_s is None else stale_after_s
        stale = self.store.list_active(updated_before=now - timedelta(seconds=age), limit=limit)
        counts = {"seen": len(stale), "redispatched": 0, "described": 0, "failed": 0}
        for job in stale:
            try:
                if job.route is Route.LAMBDA_JOB:
                    if job.status is S.CANCELLING:
                        self.store.transition(job.job_id, frozenset({S.CANCELLING}), S.CANCELLED)
                    elif self.queue is not None:
                        self._redispatch_lambda(job, counts)
                elif job.route is Route.ASYNC_INFERENCE and self.async_jobs is not None:
                    self._sweep_async(job, counts)
                elif job.route is Route.BATCH_TRANSFORM and self.batch is not None:
                    name = job.backend_name or (self.transform_name(job.job_id) if self.transform_name else None)
                    state = self.batch.describe(name) if name else None
                    if state is None:
                        if job.status in (S.QUEUED, S.RUNNING):
                            # Never reached SageMaker (crash before CreateTransformJob), or the
                            # backend forgot it: submit again; the deterministic name adopts any
                            # transform job that does exist, so it never runs twice.
                            self._resubmit_batch(job)
                            counts["redispatched"] += 1
                        elif job.status is S.CANCELLING:
                            self.store.transition(job.job_id, frozenset({S.CANCELLING}), S.CANCELLED)
                    else:
                        if job.status is S.CANCELLING and state.status == "InProgress":
                            self.batch.stop(state.name)
                        self.on_batch_state(job.job_id, state)
                        counts["described"] += 1
            except RouterError as e:
                log.warning("sweep of %s: %s", job.job_id, e.message)
            if job.route in (Route.BATCH_TRANSFORM, Route.ASYNC_INFERENCE):
                # Review fix: list_active returns the least recently updated jobs first, and a
                # batch job that is just InProgress (for hours), throttled, or failing to describe
                # was left untouched: with `limit` of them, every run saw the same ones and never
                # reached the jobs behind. Touch what this pass left unchanged (a version-checked
                # no-op write: a job something else moved meanwhile is left alone).
                try:
                    self.store.update(job.job_id, job.version, attempts=job.attempts)
                except RouterError as e:
                    log.warning("sweep of %s: %s", job.job_id, e.message)
        return counts

    def _redispatch_lambda(self, job: Job, counts: dict[str, int]) -> None:
        """Re-dispatch a stale queued/running lambda-job.

        Review fix: a running job that went stale lost its worker (killed: OOM, timeout, a
        `router serve` restart), and each re-dispatch starts another run. Runs were only counted
        on queued -> running, so a job whose worker always dies was re-dispatched forever. Now a
        re-dispatch counts as an attempt when the job made no progress since the previous one
        (records_done unchanged; `extra.redispatched_at` remembers it): a dying worker ends
        `failed` after max_attempts, while restarts during a job that moves on cost nothing.
        A job the queue itself still holds (`router serve`'s pool: waiting behind other jobs)
        is not stale at all: it is only touched. The write (version-checked) also keeps the job
        from being stale again at once; when it fails, the job moved meanwhile, so it is not
        stale and nothing is dispatched.
        """
        assert self.queue is not None
        if self.queue.in_flight(job.job_id):
            self.store.update(job.job_id, job.version, attempts=job.attempts)
            return
        done = job.records_done or 0
        stalled = job.status is S.RUNNING and done <= int(job.extra.get("redispatched_at", 0))
        if stalled and job.attempts >= self.config.jobs.max_attempts:
            if self.store.transition(job.job_id, frozenset({S.RUNNING}), S.FAILED, error={"code": "internal_error", "message": f"the worker stopped reporting after {job.attempts} attempts"}):
                counts["failed"] += 1
            return
        extra = {**job.extra, "redispatched_at": done}
        if self.store.update(job.job_id, job.version, attempts=job.attempts + (1 if stalled else 0), extra=extra) is not None:
            self.queue.enqueue(job.job_id)
            counts["redispatched"] += 1


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
