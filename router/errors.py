"""The RouterError hierarchy: every failure a client can see, with its HTTP status and error code.

Handlers map errors by type (docs/api.md "Errors"), never by message text. Adapters raise these,
never botocore's ClientError.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

# How much of a model's own error message a client sees.
MODEL_MESSAGE_MAX = 500


class RouterError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    # Seconds a client should wait before retrying (the Retry-After header); None: not transient.
    default_retry_after_s: ClassVar[int | None] = None

    def __init__(self, message: str, *, details: dict[str, Any] | None = None, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}
        self.retry_after_s: int | None = retry_after_s if retry_after_s is not None else self.default_retry_after_s

    def to_body(self, request_id: str) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message, "request_id": request_id}
        if self.details:
            err["details"] = self.details
        return {"error": err}


# 400
class InvalidJson(RouterError):
    status, code = 400, "invalid_json"


class InvalidRequest(RouterError):
    status, code = 400, "invalid_request"


# 401 / 403
class Unauthorized(RouterError):
    status, code = 401, "unauthorized"


class Forbidden(RouterError):
    status, code = 403, "forbidden"


# 404
class ModelNotFound(RouterError):
    status, code = 404, "model_not_found"


class JobNotFound(RouterError):
    status, code = 404, "job_not_found"


class NotFound(RouterError):
    status, code = 404, "not_found"


class MethodNotAllowed(RouterError):
    status, code = 405, "method_not_allowed"


# 409
class IdempotencyInProgress(RouterError):
    status, code = 409, "idempotency_in_progress"


class JobNotCancellable(RouterError):
    status, code = 409, "job_not_cancellable"


class PayloadTooLarge(RouterError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(RouterError):
    status, code = 415, "unsupported_media_type"


# 422
class InvalidInput(RouterError):
    status, code = 422, "invalid_input"


class SyncNotPossible(RouterError):
    status, code = 422, "sync_not_possible"


class NoFeasibleRoute(RouterError):
    status, code = 422, "no_feasible_route"


class ModelRejectedInput(RouterError):
    """The model's own code refused the input: its server answered 4xx (on AWS, InvokeEndpoint's
    ModelError with a 4xx OriginalStatusCode). A model that crashes (5xx) is BackendError."""

    status, code = 422, "model_error"

    @classmethod
    def from_endpoint(cls, endpoint: str, status: int, body: bytes | str | None) -> ModelRejectedInput:
        """The endpoint's container answered `status` (4xx) with `body`: on AWS, InvokeEndpoint's
        ModelError with that OriginalStatusCode and OriginalMessage; locally, the model server's reply."""
        return cls(
            f"the model on endpoint {endpoint!r} refused the input: {model_message(body)}",
            details={"endpoint": endpoint, "aws_error": "ModelError", "model_status": status},
        )


def model_message(body: bytes | str | None) -> str:
    """The message in a model server's error body, one line, at most MODEL_MESSAGE_MAX characters.

    Reads {"error": {"message"}} (sagemaker_jobs' inference code), {"error-message"}
    (sagemaker-containers) or plain text; the sagemaker-inference toolkit appends a traceback
    after the first line, which is never returned."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes | bytearray) else (body or "")
    text = text.strip()
    first = text.split("\n", 1)[0].strip()
    for candidate in (text, first):
        try:
            found = _error_text(json.loads(candidate))
        except ValueError:
            continue
        if found:
            return _one_line(found)
    return _one_line(first) or "no message"


def _error_text(doc: Any) -> str | None:
    if not isinstance(doc, dict):
        return None
    err = doc.get("error")
    if isinstance(err, dict) and isinstance(err.get("message"), str):
        return str(err["message"])
    for key in ("error-message", "message", "errorMessage"):
        if isinstance(doc.get(key), str):
            return str(doc[key])
    return err if isinstance(err, str) else None


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= MODEL_MESSAGE_MAX else line[: MODEL_MESSAGE_MAX - 1] + "\u2026"


class OutputNotSupported(RouterError):
    status, code = 422, "output_not_supported"


class IdempotencyKeyReuse(RouterError):
    status, code = 422, "idempotency_key_reuse"


# 429
class TooManyJobs(RouterError):
    status, code = 429, "too_many_jobs"


class Throttled(RouterError):
    status, code = 429, "throttled"
    default_retry_after_s = 1


# 500
class InternalError(RouterError):
    status, code = 500, "internal_error"


class ModelIntegrityError(RouterError):
    status, code = 500, "model_integrity_error"


# 502 / 503 / 504
class BackendError(RouterError):
    status, code = 502, "backend_error"


class BackendUnavailable(RouterError):
    status, code = 503, "backend_unavailable"
    default_retry_after_s = 5


class StorageAccessDenied(BackendUnavailable):
    """The storage refused the router (S3 AccessDenied, or no AWS credentials at all): the
    operator's to fix, so 503; for an input the client named, the jobs service answers 422."""


class BackendTimeout(RouterError):
    status, code = 504, "backend_timeout"


class ConfigError(Exception):
    """The operator config is invalid. Not an HTTP error: it stops a cold start or a CLI command.

    `problems` are one line each, `path: message (line N)`.
    """

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: invalid config\n" + "\n".join(f"  {p}" for p in problems))


class StartupError(Exception):
    """The runtime cannot start where it was told to (e.g. a read-only state folder). Not an HTTP
    error: `router serve` prints the message and exits non-zero, without a traceback."""
