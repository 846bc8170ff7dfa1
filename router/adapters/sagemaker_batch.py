"""SageMaker batch transform behind the BatchClient port: CreateTransformJob / Describe / Stop.

The job's transform job name comes from router/sagemaker_names.py, the request's content type
from router/sagemaker_contract.py; this module is the SageMaker client only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from router.adapters.aws_errors import (
    ERROR_KINDS,
    Kind,
    System,
    aws_error_code,
    aws_error_message,
    is_already_exists,
    is_not_found,
    to_router_error,
)
from router.config import BatchTransformDefaults, ModelSpec
from router.domain import Job
from router.errors import BackendUnavailable, InvalidRequest, RouterError
from router.ports import BatchJobState
from router.sagemaker_contract import ACCEPT, CONTENT_TYPE
from router.sagemaker_names import sagemaker_model_name, transform_job_name
from router.transform_events import FINISHED_TRANSFORM_STATUSES

TAG_JOB_ID = "router:job-id"
TAG_MODEL = "router:model"


# ---------------------------------------------------------------- errors


def map_client_error(err: BaseException, action: str) -> RouterError:
    """A SageMaker control-plane error as a RouterError (the System.SAGEMAKER_BATCH row of
    adapters/aws_errors.py): throttling and account quotas are Throttled (the job stays queued
    and is submitted again later); service-side failures BackendUnavailable; everything else
    (validation, access denied, a missing Model) BackendError: retrying cannot succeed, so the
    job fails with this reason."""
    code = aws_error_code(err)
    message = f"SageMaker {action} failed: {aws_error_message(err)}"
    return to_router_error(err, System.SAGEMAKER_BATCH, message, details={"aws_error": code} if code else {})


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
    request document per line (router/sagemaker_contract.py): each line goes to the model
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
            raise to_router_error(e, System.SAGEMAKER_BATCH, f"SageMaker CreateTransformJob unreachable: {e}") from None
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
            raise to_router_error(e, System.SAGEMAKER_BATCH, f"SageMaker DescribeTransformJob unreachable: {e}") from None
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
            if ERROR_KINDS.get(aws_error_code(e)) is Kind.INVALID:
                # SageMaker refuses to stop a job that is not InProgress; check that this is why.
                state = self.describe(name)
                if state is None or state.status in FINISHED_TRANSFORM_STATUSES or state.status == "Stopping":
                    return
            raise map_client_error(e, "StopTransformJob") from None
        except _connection_error_types() as e:
            raise to_router_error(e, System.SAGEMAKER_BATCH, f"SageMaker StopTransformJob unreachable: {e}") from None
