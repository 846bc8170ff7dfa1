"""The one map from AWS errors to RouterErrors, for every AWS adapter.

An error is classified once (`classify`): by its code in ERROR_KINDS (one table over the codes of
SageMaker, sagemaker-runtime, DynamoDB, S3 and Lambda), by the message where SageMaker answers
"missing" or "already exists" as a ValidationException, and by the HTTP status where a reply has
no code of its own (S3's HEAD). ROUTER_ERRORS then says which RouterError that kind of failure is
for each outside system: `to_router_error` is what adapters raise, never botocore's ClientError.
`sagemaker_jobs/deploy.py` reads AWS errors through the same `classify`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from router.errors import (
    BackendError,
    BackendUnavailable,
    NotFound,
    RouterError,
    StorageAccessDenied,
    Throttled,
)


class Kind(enum.Enum):
    """What an AWS error says happened, whichever service said it."""

    NOT_FOUND = "not_found"  # the named resource does not exist
    ALREADY_EXISTS = "already_exists"  # a Create* for a name that is taken
    NOT_IN_SERVICE = "not_in_service"  # an endpoint that exists but is not InService
    CONDITION_FAILED = "condition_failed"  # a conditional write lost (DynamoDB)
    THROTTLED = "throttled"  # the caller's rate or an account quota: retry later
    UNAVAILABLE = "unavailable"  # the service failed on its side (5xx, internal failure): retry
    DENIED = "denied"  # the credentials or the role may not do this
    INVALID = "invalid"  # the request was refused as built: retrying it cannot succeed
    MODEL_ERROR = "model_error"  # the model's container answered an error (InvokeEndpoint)
    OTHER = "other"  # anything else


class System(enum.Enum):
    """The outside systems the adapters talk to, one adapter each."""

    SAGEMAKER_BATCH = "sagemaker-batch"  # CreateTransformJob / Describe / Stop (adapters/sagemaker_batch.py)
    SAGEMAKER_ENDPOINT = "sagemaker-endpoint"  # InvokeEndpoint, DescribeEndpoint (adapters/sagemaker_endpoint.py)
    SAGEMAKER_ASYNC = "sagemaker-async"  # InvokeEndpointAsync (adapters/sagemaker_async.py)
    DYNAMODB = "dynamodb"  # the job table (adapters/dynamodb_jobs.py)
    S3 = "s3"  # artifacts, job inputs and outputs (adapters/s3_store.py)
    LAMBDA = "lambda"  # the worker's async invoke (adapters/lambda_worker.py)


_K = Kind
# Every AWS error code the router tells apart. A code missing here is classified by its HTTP status.
ERROR_KINDS: Mapping[str, Kind] = {
    # throttling and quotas
    "ThrottlingException": _K.THROTTLED,
    "Throttling": _K.THROTTLED,
    "ThrottledException": _K.THROTTLED,
    "ThrottlingError": _K.THROTTLED,
    "TooManyRequestsException": _K.THROTTLED,  # Lambda
    "RequestLimitExceeded": _K.THROTTLED,  # DynamoDB, S3
    "ProvisionedThroughputExceededException": _K.THROTTLED,  # DynamoDB
    "ProvisionedThroughputExceeded": _K.THROTTLED,  # DynamoDB, a TransactionCanceled reason
    "ResourceLimitExceeded": _K.THROTTLED,  # SageMaker account quota: clears as jobs finish
    "SlowDown": _K.THROTTLED,  # S3
    "503": _K.THROTTLED,  # S3 HEAD: SlowDown without a body to name it
    # the service's own failures
    "InternalFailure": _K.UNAVAILABLE,
    "InternalServerError": _K.UNAVAILABLE,
    "InternalError": _K.UNAVAILABLE,  # S3
    "ServiceUnavailable": _K.UNAVAILABLE,
    "ServiceException": _K.UNAVAILABLE,  # Lambda
    "RequestTimeout": _K.UNAVAILABLE,
    "ModelNotReadyException": _K.UNAVAILABLE,  # sagemaker-runtime: the model is still loading
    "InternalDependencyException": _K.UNAVAILABLE,  # sagemaker-runtime
    # missing resources
    "ResourceNotFound": _K.NOT_FOUND,  # SageMaker
    "ResourceNotFoundException": _K.NOT_FOUND,  # DynamoDB, Lambda
    "NoSuchKey": _K.NOT_FOUND,
    "NoSuchBucket": _K.NOT_FOUND,
    "NotFound": _K.NOT_FOUND,
    "404": _K.NOT_FOUND,  # S3 HEAD
    # names taken
    "ResourceInUse": _K.ALREADY_EXISTS,
    "ResourceInUseException": _K.ALREADY_EXISTS,
    # lost conditions
    "ConditionalCheckFailedException": _K.CONDITION_FAILED,
    # access
    "AccessDenied": _K.DENIED,  # S3
    "AccessDeniedException": _K.DENIED,  # SageMaker, DynamoDB, Lambda
    "AllAccessDisabled": _K.DENIED,  # S3
    "403": _K.DENIED,  # S3 HEAD
    # refused requests (SageMaker also says "missing" and "exists" this way: see classify)
    "ValidationException": _K.INVALID,
    "ValidationError": _K.INVALID,
    # the model's own answer
    "ModelError": _K.MODEL_ERROR,
}
del _K

# A SageMaker job backend (batch transform, async inference): a throttle leaves the job queued.
_JOB_BACKEND: Mapping[Kind, type[RouterError]] = {
    Kind.THROTTLED: Throttled,
    Kind.UNAVAILABLE: BackendUnavailable,
    **{kind: BackendError for kind in Kind if kind not in (Kind.THROTTLED, Kind.UNAVAILABLE)},
}

# What each kind of failure is to a caller, per outside system. SageMaker's refusals are final for
# the request (502: a job fails with the reason); the router's own storage and queue failing is
# an outage whatever the reason (503 + Retry-After). On the synchronous endpoint path a throttle is
# the endpoint's state, not the caller's rate: 503 backend_unavailable, like an endpoint not in service.
ROUTER_ERRORS: Mapping[System, Mapping[Kind, type[RouterError]]] = {
    System.SAGEMAKER_BATCH: _JOB_BACKEND,
    System.SAGEMAKER_ASYNC: _JOB_BACKEND,
    System.SAGEMAKER_ENDPOINT: {
        Kind.THROTTLED: BackendUnavailable,
        Kind.UNAVAILABLE: BackendUnavailable,
        Kind.NOT_FOUND: BackendUnavailable,
        Kind.NOT_IN_SERVICE: BackendUnavailable,
        Kind.ALREADY_EXISTS: BackendError,
        Kind.CONDITION_FAILED: BackendError,
        Kind.DENIED: BackendError,
        Kind.INVALID: BackendError,
        Kind.MODEL_ERROR: BackendError,
        Kind.OTHER: BackendError,
    },
    System.DYNAMODB: {
        Kind.THROTTLED: Throttled,
        Kind.UNAVAILABLE: BackendUnavailable,
        Kind.NOT_FOUND: BackendUnavailable,
        Kind.ALREADY_EXISTS: BackendUnavailable,
        Kind.NOT_IN_SERVICE: BackendUnavailable,
        Kind.CONDITION_FAILED: BackendUnavailable,
        Kind.DENIED: BackendUnavailable,
        Kind.INVALID: BackendUnavailable,
        Kind.MODEL_ERROR: BackendUnavailable,
        Kind.OTHER: BackendUnavailable,
    },
    System.S3: {
        Kind.THROTTLED: Throttled,
        Kind.UNAVAILABLE: BackendUnavailable,
        Kind.NOT_FOUND: NotFound,
        Kind.DENIED: StorageAccessDenied,
        Kind.ALREADY_EXISTS: BackendUnavailable,
        Kind.NOT_IN_SERVICE: BackendUnavailable,
        Kind.CONDITION_FAILED: BackendUnavailable,
        Kind.INVALID: BackendUnavailable,
        Kind.MODEL_ERROR: BackendUnavailable,
        Kind.OTHER: BackendUnavailable,
    },
    System.LAMBDA: {
        Kind.THROTTLED: Throttled,
        Kind.UNAVAILABLE: BackendUnavailable,
        Kind.NOT_FOUND: BackendUnavailable,
        Kind.ALREADY_EXISTS: BackendUnavailable,
        Kind.NOT_IN_SERVICE: BackendUnavailable,
        Kind.CONDITION_FAILED: BackendUnavailable,
        Kind.DENIED: BackendUnavailable,
        Kind.INVALID: BackendUnavailable,
        Kind.MODEL_ERROR: BackendUnavailable,
        Kind.OTHER: BackendUnavailable,
    },
}


def aws_error_code(err: BaseException) -> str:
    response = getattr(err, "response", None)
    if isinstance(response, Mapping):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def aws_error_message(err: BaseException) -> str:
    response = getattr(err, "response", None)
    if isinstance(response, Mapping):
        return str(response.get("Error", {}).get("Message", ""))
    return str(err)


def http_status(err: BaseException) -> int:
    response = getattr(err, "response", None)
    if isinstance(response, Mapping):
        return int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return 0


def _by_status(status: int) -> Kind:
    if status >= 500:
        return Kind.UNAVAILABLE
    return {404: Kind.NOT_FOUND, 403: Kind.DENIED, 429: Kind.THROTTLED}.get(status, Kind.OTHER)


def classify(err: BaseException) -> Kind:
    """The kind of an AWS failure: a ClientError by code (then message, then HTTP status); a
    botocore error without a reply (no credentials, no connection) as DENIED or UNAVAILABLE."""
    response = getattr(err, "response", None)
    if not isinstance(response, Mapping):
        return _without_reply(err)
    code = aws_error_code(err)
    status = http_status(err)
    kind = ERROR_KINDS.get(code) if code else None
    if kind is None:
        return _by_status(status)
    if kind is Kind.INVALID:
        # SageMaker answers "missing", "exists" and "not InService" as ValidationExceptions.
        msg = aws_error_message(err).lower()
        if "could not find" in msg or "not found" in msg or "does not exist" in msg:
            return Kind.NOT_FOUND
        if "already exist" in msg or "must be unique" in msg:
            return Kind.ALREADY_EXISTS
        if "inservice" in msg.replace(" ", ""):
            return Kind.NOT_IN_SERVICE
    if status >= 500 and kind not in (Kind.THROTTLED, Kind.MODEL_ERROR):
        return Kind.UNAVAILABLE  # a 5xx is the service's failure, whatever its code names
    return kind


def _without_reply(err: BaseException) -> Kind:
    if not type(err).__module__.startswith(("botocore", "s3transfer", "urllib3")):
        return Kind.OTHER
    # botocore is loaded already when one of its errors exists: the import costs nothing here.
    from botocore.exceptions import NoCredentialsError, PartialCredentialsError

    if isinstance(err, NoCredentialsError | PartialCredentialsError):
        return Kind.DENIED
    return Kind.UNAVAILABLE  # connection refused, DNS, a timeout, a broken stream


def is_not_found(err: BaseException) -> bool:
    """SageMaker reports a missing resource as ResourceNotFound, or as a ValidationException
    "Could not find ..." (DescribeTransformJob, DescribeEndpoint)."""
    return classify(err) is Kind.NOT_FOUND


def is_already_exists(err: BaseException) -> bool:
    """A Create* call for a name that is taken: ResourceInUse, or a ValidationException
    ("Cannot create already existing ...", "... with this name already exists")."""
    return classify(err) is Kind.ALREADY_EXISTS


def is_throttled(code: str) -> bool:
    """An error code (or a DynamoDB cancellation reason) that names throttling."""
    return ERROR_KINDS.get(code) is Kind.THROTTLED


def router_error_type(system: System, kind: Kind) -> type[RouterError]:
    return ROUTER_ERRORS[system][kind]


def to_router_error(err: BaseException, system: System, message: str, *, details: dict[str, object] | None = None) -> RouterError:
    """`err` from `system` as the RouterError a caller sees, with the adapter's `message`."""
    cls = router_error_type(system, classify(err))
    return cls(message[:1000], details=dict(details or {}))
