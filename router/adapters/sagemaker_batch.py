"""SageMaker batch transform behind the BatchClient port: CreateTransformJob / Describe / Stop.

Also the deterministic SageMaker names shared with `sagemaker_jobs/deploy.py`, the assembly of
SageMaker's per-object `.out` files into the job's single JSON Lines result, and the parsing of
the EventBridge "SageMaker Transform Job State Change" event.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any, BinaryIO, cast

from router.adapters.sagemaker_contract import ACCEPT, CONTENT_TYPE
from router.config import BatchTransformDefaults, ModelSpec
from router.domain import Job
from router.errors import BackendError, BackendUnavailable, InvalidRequest, RouterError, Throttled
from router.ports import BatchJobState, ObjectStore

# SageMaker resource names (transform jobs, models, endpoint configs): 1-63 characters,
# ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62} (CreateTransformJob / CreateModel API reference).
SAGEMAKER_NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
SAGEMAKER_NAME_MAX = 63
NAME_PREFIX = "router"
# The router's own job ids: "job_" + a 26-character ULID (Crockford base32).
_ROUTER_JOB_ID_RE = re.compile(r"^[A-Za-z0-9]+(_[A-Za-z0-9]+)*$")
_ULID_JOB_ID_RE = re.compile(r"^job_[0-9A-Za-z]{26}$")

TRANSFORM_STATUSES = frozenset({"InProgress", "Completed", "Failed", "Stopping", "Stopped"})
FINISHED_TRANSFORM_STATUSES = frozenset({"Completed", "Failed", "Stopped"})
EVENT_SOURCE = "aws.sagemaker"
EVENT_DETAIL_TYPE = "SageMaker Transform Job State Change"
TAG_JOB_ID = "router:job-id"
TAG_MODEL = "router:model"
_COPY_CHUNK = 1 << 20  # stream .out files 1 MiB at a time: a result can exceed Lambda memory

# Codes SageMaker uses when it is overloaded or the account is at a quota: the job stays queued
# and the sweeper submits it again later (429 to a caller that submits synchronously).
_THROTTLE_CODES = frozenset({"ThrottlingException", "Throttling", "ThrottledException", "ResourceLimitExceeded"})
_TRANSIENT_CODES = frozenset({"InternalFailure", "InternalServerError", "ServiceUnavailable", "RequestTimeout"})


# ---------------------------------------------------------------- names


def _short_hash(text: str, n: int) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:n]


def _slug(text: str) -> str:
    """Letters and digits kept, every other run of characters becomes one hyphen."""
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")


def _fit(head: str, tail: str) -> str:
    """`head-tail` cut to SageMaker's 63 characters by shortening `head` (never the hash tail)."""
    room = SAGEMAKER_NAME_MAX - len(tail) - 1
    head = head[:room].rstrip("-")
    return f"{head}-{tail}" if head else tail


def transform_job_name(job_id: str) -> str:
    """The transform job name of a router job: deterministic, so a repeated submission finds the
    job it already started instead of starting a second one.

    The real id form (`job_` + ULID) maps readably and one-to-one to `router-job-<ULID>`; any
    other id is slugged and suffixed with a hash of the exact id, so distinct ids stay distinct.
    """
    if not job_id:
        raise InvalidRequest("a job id is required to name its transform job")
    direct = f"{NAME_PREFIX}-{job_id.replace('_', '-')}"
    if _ROUTER_JOB_ID_RE.match(job_id) and len(direct) <= SAGEMAKER_NAME_MAX:
        return direct
    return _fit(f"{NAME_PREFIX}-{_slug(job_id)}", _short_hash(job_id, 12))


def job_id_from_transform_job_name(name: str) -> str | None:
    """The router job id behind a transform job name, when the name is in the direct form
    (`router-job-<ULID>` -> `job_<ULID>`): lets the EventBridge handler find the job without a
    lookup. None for any other name (a hashed name cannot be reversed; its last segment is 12
    hex characters, never a 26-character ULID, so the two forms cannot be confused)."""
    prefix = f"{NAME_PREFIX}-"
    if not name.startswith(prefix):
        return None
    job_id = name[len(prefix):].replace("-", "_")
    return job_id if _ULID_JOB_ID_RE.match(job_id) and transform_job_name(job_id) == name else None


def sagemaker_model_name(model: ModelSpec) -> str:
    """The SageMaker Model for a model version: `router-<name>-<sha256 prefix>`.

    Keyed by the artifact digest, so a new artifact is a new Model (and a new endpoint config),
    and the same artifact deploys to the same Model. When the name had to be altered to fit
    SageMaker's alphabet, a hash of the exact name keeps two models apart.
    """
    slug = _slug(model.name)
    tail = model.sha256[:12]
    if slug != model.name:
        tail = f"{tail}-{_short_hash(model.name, 4)}"
    return _fit(f"{NAME_PREFIX}-{slug}", tail)


# ---------------------------------------------------------------- errors


def aws_error_code(err: Exception) -> str:
    response = getattr(err, "response", None)
    if isinstance(response, Mapping):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def aws_error_message(err: Exception) -> str:
    response = getattr(err, "response", None)
    if isinstance(response, Mapping):
        return str(response.get("Error", {}).get("Message", ""))
    return str(err)


def _http_status(err: Exception) -> int:
    response = getattr(err, "response", None)
    if isinstance(response, Mapping):
        return int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return 0


def is_not_found(err: Exception) -> bool:
    """SageMaker reports a missing resource as ResourceNotFound, or as a ValidationException
    "Could not find ..." (DescribeTransformJob, DescribeEndpoint)."""
    code = aws_error_code(err)
    if code in ("ResourceNotFound", "ResourceNotFoundException"):
        return True
    msg = aws_error_message(err).lower()
    return code in ("ValidationException", "ValidationError") and (
        "could not find" in msg or "not found" in msg or "does not exist" in msg
    )


def is_already_exists(err: Exception) -> bool:
    """A Create* call for a name that is taken: ResourceInUse, or a ValidationException
    ("Cannot create already existing ...", "... with this name already exists")."""
    code = aws_error_code(err)
    if code in ("ResourceInUse", "ResourceInUseException"):
        return True
    msg = aws_error_message(err).lower()
    return code in ("ValidationException", "ValidationError") and ("already exist" in msg or "must be unique" in msg)


def map_client_error(err: Exception, action: str) -> RouterError:
    """A SageMaker control-plane error as a RouterError.

    Throttling and account quotas -> Throttled (retry later: the job stays queued).
    Service-side failures (5xx, InternalFailure, ServiceUnavailable) -> BackendUnavailable.
    Everything else (validation, access denied, a missing Model) -> BackendError: retrying the
    same call cannot succeed, so the job should fail with this reason.
    """
    code = aws_error_code(err)
    details = {"aws_error": code} if code else {}
    message = f"SageMaker {action} failed: {aws_error_message(err)}"[:1000]
    if code in _THROTTLE_CODES:
        return Throttled(message, details=details)
    if code in _TRANSIENT_CODES or _http_status(err) >= 500:
        return BackendUnavailable(message, details=details)
    return BackendError(message, details=details)


def _client_error_type() -> type[Exception]:
    # botocore is imported lazily: this module stays importable without touching boto3.
    from botocore.exceptions import ClientError

    return ClientError


def _connection_error_types() -> tuple[type[Exception], ...]:
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from botocore.exceptions import HTTPClientError

    return (BotoConnectionError, HTTPClientError)


# ---------------------------------------------------------------- the request


def transform_job_request(
    job: Job, model: ModelSpec, settings: BatchTransformDefaults, input_uri: str, output_uri: str, *, model_name: str
) -> dict[str, Any]:
    """CreateTransformJob's parameters for a router job whose input the router staged as one
    request document per line (router/adapters/sagemaker_contract.py): each line goes to the model
    alone, as the endpoint's very body, and each answer becomes one line of `<input>.out`. The
    local emulator runs the same parameters."""
    return {
        "TransformJobName": transform_job_name(job.job_id),
        "ModelName": model_name,
        # SplitType=Line + SingleRecord: one line (one {"instances": [...]} document) per invocation.
        "BatchStrategy": "SingleRecord",
        "MaxConcurrentTransforms": settings.max_concurrent_transforms,
        # SageMaker: MaxConcurrentTransforms x MaxPayloadInMB <= 100 (checked by the config).
        "MaxPayloadInMB": settings.max_payload_mb,
        "ModelClientConfig": {
            # <= 3600 s per invocation and <= 3 retries (CreateTransformJob limits).
            "InvocationsTimeoutInSeconds": settings.invocation_timeout_s,
            "InvocationsMaxRetries": settings.max_retries,
        },
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": input_uri}},
            "ContentType": CONTENT_TYPE,
            "SplitType": "Line",
        },
        "TransformOutput": {
            "S3OutputPath": output_uri,
            "Accept": ACCEPT,
            # A newline after each answer, in request order, in `<input-object>.out`.
            "AssembleWith": "Line",
        },
        "TransformResources": {"InstanceType": settings.instance_type, "InstanceCount": settings.instance_count},
        "Tags": [{"Key": TAG_JOB_ID, "Value": job.job_id}, {"Key": TAG_MODEL, "Value": model.name}],
    }


# ---------------------------------------------------------------- the adapter


class SageMakerBatchClient:
    """BatchClient on SageMaker batch transform. Takes its boto3 `sagemaker` client as an argument
    (moto, a Stubber, or a real client)."""

    def __init__(self, sagemaker_client: Any, *, model_name_for: Callable[[ModelSpec], str] = sagemaker_model_name) -> None:
        self._sm = sagemaker_client
        self._model_name_for = model_name_for

    @staticmethod
    def transform_job_name(job_id: str) -> str:
        return transform_job_name(job_id)

    def create_request(
        self, job: Job, model: ModelSpec, settings: BatchTransformDefaults, input_uri: str, output_uri: str
    ) -> dict[str, Any]:
        """The exact CreateTransformJob parameters for `job` (also shown by dry runs)."""
        for label, uri in (("input", input_uri), ("output", output_uri)):
            if not uri.startswith("s3://"):
                raise InvalidRequest(f"batch transform needs an s3:// {label} location, got {uri!r}")
        return transform_job_request(job, model, settings, input_uri, output_uri, model_name=self._model_name_for(model))

    def submit(self, job: Job, model: ModelSpec, settings: BatchTransformDefaults, input_uri: str, output_uri: str) -> str:
        """Start the transform job for `job`, or adopt the one a previous attempt started.

        The name is a function of the job id, so a retried submission (crash after
        CreateTransformJob, sweeper re-submit) finds the existing job: first by Describe, and
        when two submitters race, by CreateTransformJob's "already exists" error.
        """
        params = self.create_request(job, model, settings, input_uri, output_uri)
        name = str(params["TransformJobName"])
        if self.describe(name) is not None:
            return name
        client_error = _client_error_type()
        try:
            self._sm.create_transform_job(**params)
        except client_error as e:
            if is_already_exists(e):
                if self.describe(name) is None:  # "exists" yet not describable: let the caller retry
                    raise BackendUnavailable(f"transform job {name} reported as existing but cannot be described") from None
                return name
            raise map_client_error(e, "CreateTransformJob") from None
        except _connection_error_types() as e:
            raise BackendUnavailable(f"SageMaker CreateTransformJob unreachable: {e}") from None
        return name

    def describe(self, name: str) -> BatchJobState | None:
        """The transform job's state, or None when SageMaker has no job by that name."""
        client_error = _client_error_type()
        try:
            resp = self._sm.describe_transform_job(TransformJobName=name)
        except client_error as e:
            if is_not_found(e):
                return None
            raise map_client_error(e, "DescribeTransformJob") from None
        except _connection_error_types() as e:
            raise BackendUnavailable(f"SageMaker DescribeTransformJob unreachable: {e}") from None
        return BatchJobState(
            name=str(resp["TransformJobName"]),
            status=str(resp["TransformJobStatus"]),
            failure_reason=resp.get("FailureReason") or None,
        )

    def stop(self, name: str) -> None:
        """Ask SageMaker to stop the job. Idempotent: stopping a job that is missing, finished or
        already stopping is not an error (cancel may be repeated; docs/api.md)."""
        client_error = _client_error_type()
        try:
            self._sm.stop_transform_job(TransformJobName=name)
        except client_error as e:
            if is_not_found(e):
                return
            if aws_error_code(e) in ("ValidationException", "ValidationError"):
                # SageMaker refuses to stop a job that is not InProgress; check that this is why.
                state = self.describe(name)
                if state is None or state.status in FINISHED_TRANSFORM_STATUSES or state.status == "Stopping":
                    return
            raise map_client_error(e, "StopTransformJob") from None
        except _connection_error_types() as e:
            raise BackendUnavailable(f"SageMaker StopTransformJob unreachable: {e}") from None


# ---------------------------------------------------------------- output assembly


def _join_uri(prefix_uri: str, name: str) -> str:
    return f"{prefix_uri.rstrip('/')}/{name.lstrip('/')}"


def assemble_output(objects: ObjectStore, output_prefix_uri: str, input_names: list[str], result_uri: str) -> int:
    """Concatenate SageMaker's `<input-object-name>.out` files, in input order, into the job's
    single JSON Lines result at `result_uri`; returns the number of lines (= records).

    `input_names` are the input objects' names relative to the input prefix (SageMaker keeps that
    relative path under the output path). A missing `.out` means SageMaker lost records: that is
    a BackendError, never a silently short result. Streams through the store's `open_write` when
    it has one (atomic on close), else builds the result in memory for `put_bytes`.
    """
    parts = [_join_uri(output_prefix_uri, f"{name}.out") for name in input_names]
    missing = [uri for uri in parts if not objects.exists(uri)]
    if missing:
        raise BackendError(
            f"batch transform output is missing {len(missing)} of {len(parts)} part(s)", details={"missing": missing[:10]}
        )
    open_write = getattr(objects, "open_write", None)
    if callable(open_write):
        with cast(AbstractContextManager[BinaryIO], open_write(result_uri, "application/jsonlines")) as out:
            return _copy_parts(objects, parts, out.write)
    chunks: list[bytes] = []
    lines = _copy_parts(objects, parts, chunks.append)
    objects.put_bytes(result_uri, b"".join(chunks), "application/jsonlines")
    return lines


def _copy_parts(objects: ObjectStore, parts: list[str], write: Callable[[bytes], object]) -> int:
    lines = 0
    for uri in parts:
        last = b""
        with objects.open_read(uri) as src:
            while chunk := src.read(_COPY_CHUNK):
                write(chunk)
                lines += chunk.count(b"\n")
                last = chunk
        if last and not last.endswith(b"\n"):
            # AssembleWith=Line separates records with newlines but may not end the file with one.
            write(b"\n")
            lines += 1
    return lines


# ---------------------------------------------------------------- events


def parse_state_change_event(event: dict[str, Any]) -> BatchJobState:
    """The BatchJobState carried by an EventBridge "SageMaker Transform Job State Change" event
    (source aws.sagemaker; detail = DescribeTransformJob's fields). InvalidRequest when malformed."""
    if not isinstance(event, dict):
        raise InvalidRequest("event must be a JSON object")
    if event.get("source") != EVENT_SOURCE or event.get("detail-type") != EVENT_DETAIL_TYPE:
        raise InvalidRequest(
            f"not a transform job state change: source={event.get('source')!r}, detail-type={event.get('detail-type')!r}"
        )
    detail = event.get("detail")
    if not isinstance(detail, dict):
        raise InvalidRequest("event has no detail object")
    name = detail.get("TransformJobName")
    if not isinstance(name, str) or not SAGEMAKER_NAME_RE.match(name):
        raise InvalidRequest(f"event detail has an invalid TransformJobName: {name!r}")
    status = detail.get("TransformJobStatus")
    if status not in TRANSFORM_STATUSES:
        raise InvalidRequest(f"event detail has an unknown TransformJobStatus: {status!r}")
    reason = detail.get("FailureReason")
    if reason is not None and not isinstance(reason, str):
        raise InvalidRequest("event detail FailureReason must be a string")
    return BatchJobState(name=name, status=str(status), failure_reason=reason or None)
