"""Reading botocore errors: the error code, message and HTTP status of a ClientError, and the
"missing" / "already exists" answers SageMaker gives in several shapes. Every AWS adapter (and
`sagemaker_jobs/deploy.py`) reads AWS errors through this module."""

from __future__ import annotations

from collections.abc import Mapping


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


def is_not_found(err: BaseException) -> bool:
    """SageMaker reports a missing resource as ResourceNotFound, or as a ValidationException
    "Could not find ..." (DescribeTransformJob, DescribeEndpoint)."""
    code = aws_error_code(err)
    if code in ("ResourceNotFound", "ResourceNotFoundException"):
        return True
    msg = aws_error_message(err).lower()
    return code in ("ValidationException", "ValidationError") and (
        "could not find" in msg or "not found" in msg or "does not exist" in msg
    )


def is_already_exists(err: BaseException) -> bool:
    """A Create* call for a name that is taken: ResourceInUse, or a ValidationException
    ("Cannot create already existing ...", "... with this name already exists")."""
    code = aws_error_code(err)
    if code in ("ResourceInUse", "ResourceInUseException"):
        return True
    msg = aws_error_message(err).lower()
    return code in ("ValidationException", "ValidationError") and ("already exist" in msg or "must be unique" in msg)
