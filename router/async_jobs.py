"""An async-inference job's backend work, behind its ports: stage the job's records as one request
document, send it with InvokeEndpointAsync, find out how it ended by its output objects (the
sweeper's poll), and turn the model's answer into the job's JSON Lines result.

The job lifecycle (which move, when) is not decided here: JobsService asks this module to do a
`Dispatch`, `Describe` or `Collect` of an async-inference job and reports what happened back as a
lifecycle event. Files of job J under storage.jobs: `J/async-input.json` (the request body),
`J/async-batches.json` (its instance count, written last: when it exists the request is whole),
`J/output.jsonl` (the result); SageMaker's answer and error live at the locations it returned,
kept in `job.extra["async"]` as {"output": URI, "failure": URI | None}.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from router import sagemaker_contract as contract
from router.async_inference import REQUEST_TTL_S, inference_id
from router.config import ModelSpec, RouterConfig
from router.domain import Job
from router.errors import BackendError, InvalidInput
from router.ports import AsyncInferenceClient, AsyncInvocation, AsyncOutcome, ObjectStore
from router.routing import MIB

INPUT_NAME = "async-input.json"
BATCHES_NAME = "async-batches.json"
EXTRA_KEY = "async"
_FAILURE_READ_BYTES = 4096


def locations(job: Job) -> tuple[str | None, str | None]:
    """(output, failure) locations SageMaker returned for the job's request, when it was sent."""
    rec = job.extra.get(EXTRA_KEY) if job.extra else None
    if not isinstance(rec, dict):
        return None, None
    output, failure = rec.get("output"), rec.get("failure")
    return (output if isinstance(output, str) else None), (failure if isinstance(failure, str) else None)


def extra_for(invocation: AsyncInvocation) -> dict[str, Any]:
    """What the job records about its sent request (merged into job.extra)."""
    return {EXTRA_KEY: {"output": invocation.output_uri, "failure": invocation.failure_uri}}


@dataclass
class AsyncJobs:
    config: RouterConfig
    objects: ObjectStore
    client: AsyncInferenceClient
    jobs_root: str

    def _uri(self, job_id: str, name: str) -> str:
        return f"{self.jobs_root}/{job_id}/{name}"

    def stage(self, job: Job, model: ModelSpec, input_uri: str) -> str:
        """Write the job's records as one {"instances": [...], "output": ...} document (once: a
        re-dispatch reuses it). InvalidInput for a bad record or a document over the payload limit."""
        request_uri, batches_uri = self._uri(job.job_id, INPUT_NAME), self._uri(job.job_id, BATCHES_NAME)
        if self.objects.exists(batches_uri):
            return request_uri
        limit = int(self.config.runtime.async_payload_mb * MIB)
        # One chunk of every record: the request is one document, at most `limit` bytes.
        chunks = contract.raw_chunks(self.objects.open_read(input_uri), 1 << 62)
        with self.objects.open_write(request_uri, "application/json") as out:
            sizes = contract.write_requests(chunks, job.input_format, model, job.output_kind.value, out, limit + 1)
        if not sizes:
            raise InvalidInput("the input holds no records (only empty lines)")
        if len(sizes) > 1:
            raise InvalidInput(f"the input is over the {self.config.runtime.async_payload_mb:g} MiB async inference payload limit as one request")
        contract.write_batches(self.objects, batches_uri, sizes)
        return request_uri

    def send(self, job: Job, model: ModelSpec, input_uri: str) -> AsyncInvocation:
        """Stage and send the job's request; the InferenceId is the job's own, so the notification
        names the job. Raises what AsyncInferenceClient.invoke raises, or InvalidInput."""
        spec, name = model.async_inference, model.async_endpoint_name
        if spec is None or name is None:
            raise BackendError(f"model {model.name} has no async_inference configured")
        request = self.stage(job, model, input_uri)
        timeout = int(min(spec.invocation_timeout_s, self.config.runtime.async_timeout_s))
        return self.client.invoke(name, request, inference_id(job.job_id), invocation_timeout_s=timeout)

    def poll(self, job: Job, now: datetime) -> AsyncOutcome | None:
        """How the job's request ended, from its output objects (HeadObject): Completed when the
        answer is there, Failed when the error is; InProgress while neither is and SageMaker may still
        answer; None when it cannot any more (queue TTL and invocation time passed: lost)."""
        output, failure = locations(job)
        iid = inference_id(job.job_id)
        if output is None:
            return None
        if self.objects.exists(output):
            return AsyncOutcome(iid, "Completed", output_uri=output)
        if failure is not None and self.objects.exists(failure):
            return AsyncOutcome(iid, "Failed", failure_uri=failure, failure_reason=self.failure_reason(failure))
        started = job.started_at or job.updated_at
        if now - started > timedelta(seconds=REQUEST_TTL_S + self.config.runtime.async_timeout_s):
            return None
        return AsyncOutcome(iid, "InProgress")

    def failure_reason(self, failure_uri: str) -> str:
        """The model's error as SageMaker stored it (its first few KB), for the job's error message."""
        with self.objects.open_read(failure_uri) as f:
            text = f.read(_FAILURE_READ_BYTES).decode("utf-8", "replace").strip()
        try:
            doc = json.loads(text)
            message = doc.get("error", {}).get("message") if isinstance(doc, dict) else None
            if isinstance(message, str) and message:
                return f"the model failed on the request: {message}"
        except ValueError:
            pass
        return f"the model failed on the request: {text or 'no error body'}"

    def collect(self, job: Job) -> int:
        """Write the answer as the job's result, one prediction per record in input order; returns
        the record count. BackendError when the answer is missing or does not match the request."""
        output, _ = locations(job)
        if output is None or not self.objects.exists(output):
            raise BackendError("async inference output is missing", details={"missing": [output]})
        batches = contract.read_batches(self.objects, self._uri(job.job_id, BATCHES_NAME))
        if batches is None or len(batches) != 1:
            raise BackendError(f"the staged request of job {job.job_id} is unreadable")
        try:
            answer = json.loads(self.objects.get_bytes(output))
        except ValueError as e:
            raise BackendError(f"async inference output is not the model's JSON answer: {e}") from None
        preds = contract.predictions_of(answer, batches[0], "async inference answer")
        assert job.output_uri is not None
        with self.objects.open_write(job.output_uri, "application/jsonlines") as out:
            for start in range(0, len(preds), 10_000):
                out.write("".join(json.dumps(p, separators=(",", ":")) + "\n" for p in preds[start:start + 10_000]).encode())
        return len(preds)
