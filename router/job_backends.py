"""The backend kinds of job routes: each starts, describes, collects and stops its own backend job
and answers in lifecycle events (router/lifecycle.py decides what to do with them).

`JobsService` holds one `JobBackend` per wired route and applies the lifecycle's `Dispatch`,
`Describe`, `Collect` and `StopBackend` moves through it. A new backend kind is a class here, its
status words in `lifecycle.BACKEND_PHASES`, and a line in `JobsService.__init__`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol, cast

from router import lifecycle as lc
from router import sagemaker_contract as contract
from router.async_jobs import AsyncJobs
from router.async_jobs import extra_for as async_extra_for
from router.config import ModelSpec, RouterConfig
from router.domain import Job, Route
from router.errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    InvalidInput,
    ModelNotFound,
    NoFeasibleRoute,
    RouterError,
    Throttled,
)
from router.ports import AsyncInvocation, AsyncOutcome, BatchClient, ObjectStore


class JobBackend(Protocol):
    route: Route
    wired: bool  # it can reach its backend here (collect works without)

    def default_name(self, job_id: str) -> str | None:
        """The name the job's backend job has (deterministic) before it is known, if any."""
        ...

    def dispatch(self, job: Job, model: ModelSpec) -> lc.Accepted | lc.Refused:
        """Start (or adopt, or send again) the job's backend job."""
        ...

    def describe(self, job: Job, name: str, via: lc.Via, now: datetime) -> lc.BackendReport | lc.BackendMissing:
        """What the backend says about backend job `name`. Raises RouterError when it cannot say."""
        ...

    def collect(self, job: Job) -> int:
        """Assemble the finished backend job's output into the job's result; the record count.
        BackendError when the output is missing or malformed."""
        ...

    def stop(self, name: str) -> None:
        """Ask the backend to stop `name` (a no-op for a backend that cannot)."""
        ...


def input_of(job: Job) -> str:
    """What the job reads: its snapshot of the input when it has one (JobsService.submit)."""
    staged = job.extra.get("staged_input") if job.extra else None
    return staged if isinstance(staged, str) and staged else job.input_uri


def refusal(e: RouterError, backend_name: str | None = None) -> lc.Refused:
    """A failed dispatch as the lifecycle sees it: a quota waits, an outage is an attempt, the rest is final."""
    if isinstance(e, Throttled):
        return lc.Refused(lc.Cause.THROTTLED, e.code, e.message, backend_name)
    if isinstance(e, BackendUnavailable | BackendTimeout):
        return lc.Refused(lc.Cause.UNAVAILABLE, e.code, e.message, backend_name)
    message = f"the job's model is no longer configured: {e.message}" if isinstance(e, ModelNotFound) else e.message
    return lc.Refused(lc.Cause.PERMANENT, e.code, message, backend_name)


class TransformJobs:
    """SageMaker batch transform: the job's input staged as the model's requests, one transform job
    per router job (a deterministic name: a repeat adopts it), its `.out` assembled into the result."""

    route = Route.BATCH_TRANSFORM

    def __init__(self, config: RouterConfig, objects: ObjectStore, client: BatchClient | None, jobs_root: str,
                 transform_name: Callable[[str], str] | None) -> None:  # fmt: skip
        self.config, self.objects, self.client, self.jobs_root = config, objects, client, jobs_root
        self.transform_name = transform_name
        self.wired = client is not None

    def _uri(self, job_id: str, name: str) -> str:
        return f"{self.jobs_root}/{job_id}/{name}"

    def uris(self, job_id: str) -> tuple[str, str, str]:
        """(requests, batches, answers) of a job's transform: the staged input (the S3Prefix the
        transform job reads: it holds nothing else), its per-line counts, and SageMaker's `.out`."""
        requests = self._uri(job_id, f"transform-input/{contract.REQUESTS_NAME}")
        return requests, self._uri(job_id, contract.BATCHES_NAME), self._uri(job_id, f"transform/{contract.REQUESTS_NAME}.out")

    def default_name(self, job_id: str) -> str | None:
        return self.transform_name(job_id) if self.transform_name else None

    def dispatch(self, job: Job, model: ModelSpec) -> lc.Accepted | lc.Refused:
        assert self.client is not None
        try:
            settings = self.config.batch_settings(model)
            if settings is None:
                raise NoFeasibleRoute("batch transform is no longer configured for this model")
            requests_uri = self.stage(job, model, settings.max_payload_mb)
            started = self.client.submit(job, model, settings, requests_uri, self._uri(job.job_id, "transform/"))
        except RouterError as e:
            return refusal(e, self.default_name(job.job_id))
        return lc.Accepted(started, resubmission=job.status is not lc.S.QUEUED)

    def stage(self, job: Job, model: ModelSpec, max_payload_mb: int | None) -> str:
        """Write the job's input as the model's requests, one {"instances": [...]} document per line
        (router/sagemaker_contract.py), once: the batches file is written last, so when it exists
        the requests are whole and a re-submission reuses them. A bad record fails the job before
        SageMaker starts (InvalidInput naming the record)."""
        requests_uri, batches_uri, _ = self.uris(job.job_id)
        if self.objects.exists(batches_uri):
            return requests_uri
        # 0 means "no limit" to SageMaker; the requests stay endpoint-sized (6 MB) then.
        max_line = (max_payload_mb or 6) * contract.PAYLOAD_MB_BYTES
        chunks = contract.raw_chunks(self.objects.open_read(input_of(job)), contract.MAX_RECORDS_PER_REQUEST)
        with self.objects.open_write(requests_uri, "application/jsonlines") as out:
            sizes = contract.write_requests(chunks, job.input_format, model, job.output_kind.value, out, max_line)
            if not sizes:
                raise InvalidInput("the input holds no records (only empty lines)")
        contract.write_batches(self.objects, batches_uri, sizes)
        return requests_uri

    def describe(self, job: Job, name: str, via: lc.Via, now: datetime) -> lc.BackendReport | lc.BackendMissing:
        assert self.client is not None
        state = self.client.describe(name)
        if state is None:
            return lc.BackendMissing(via)
        return lc.BackendReport(self.route, state.name, state.status, state.failure_reason, via)

    def collect(self, job: Job) -> int:
        _, batches_uri, answers_uri = self.uris(job.job_id)
        try:
            batches = contract.read_batches(self.objects, batches_uri)
        except (ValueError, KeyError, TypeError):
            raise BackendError(f"the staged batches file of job {job.job_id} is unreadable") from None
        if batches is None:
            # A job submitted before the router staged requests: its transform read the JSON Lines
            # input as it was, and `.out` is one prediction per line.
            name = input_of(job).rsplit("/", 1)[-1]
            return int(contract.assemble_output(self.objects, self._uri(job.job_id, "transform/"), [name], cast(str, job.output_uri)))
        return contract.assemble_predictions(self.objects, answers_uri, batches, cast(str, job.output_uri))

    def stop(self, name: str) -> None:
        assert self.client is not None
        self.client.stop(name)


class AsyncInferenceJobs:
    """SageMaker asynchronous inference (router/async_jobs.py does the work): one request per job,
    InferenceId the job's own; it cannot be stopped, so a cancel discards its result."""

    route = Route.ASYNC_INFERENCE
    wired = True

    def __init__(self, jobs: AsyncJobs) -> None:
        self.jobs = jobs

    def default_name(self, job_id: str) -> str | None:
        return None

    def dispatch(self, job: Job, model: ModelSpec) -> lc.Accepted | lc.Refused:
        try:
            sent = self.jobs.send(job, model, input_of(job))
        except RouterError as e:
            return refusal(e)
        return lc.Accepted(sent.inference_id, resubmission=job.status is not lc.S.QUEUED, extra=async_extra_for(sent))

    def describe(self, job: Job, name: str, via: lc.Via, now: datetime) -> lc.BackendReport | lc.BackendMissing:
        outcome = self.jobs.poll(job, now)
        return lc.BackendMissing(via) if outcome is None else report(outcome, via)

    def collect(self, job: Job) -> int:
        return self.jobs.collect(job)

    def stop(self, name: str) -> None:
        return None


def report(outcome: AsyncOutcome, via: lc.Via) -> lc.BackendReport:
    """An async request's outcome (SNS notification or poll) as a backend report."""
    sent = AsyncInvocation(outcome.inference_id, outcome.output_uri or "", outcome.failure_uri)
    extra = async_extra_for(sent) if outcome.output_uri else {}
    return lc.BackendReport(Route.ASYNC_INFERENCE, outcome.inference_id, outcome.status, outcome.failure_reason, via, extra)
