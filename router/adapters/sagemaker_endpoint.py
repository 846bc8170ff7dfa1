"""SageMaker real-time endpoints behind the EndpointClient port (sagemaker-runtime InvokeEndpoint).

Maps every runtime failure to a RouterError (422 the model rejected the input, 502 the model
failed, 503 unavailable, 504 timeout),
caches DescribeEndpoint status briefly for routing, and builds a runtime client whose timeouts
and retries fit inside the synchronous budget.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from router.adapters.aws_errors import (
    Kind,
    System,
    aws_error_code,
    aws_error_message,
    classify,
    to_router_error,
)
from router.errors import BackendError, BackendTimeout, ModelRejectedInput

# Statuses in which an endpoint answers InvokeEndpoint: during Updating / SystemUpdating the old
# variant keeps serving until the new one is ready (UpdateEndpoint API reference).
SERVING_STATUSES = frozenset({"InService", "Updating", "SystemUpdating"})

# ---- timeouts of the runtime client (make_runtime_client), and why
# API Gateway REST cuts a request at 29 s (the default sync budget) and answers with its own
# body; the router must answer first, with its JSON error and X-Request-Id (docs/api.md). So the
# whole botocore retry sequence, not one attempt, must fit in the budget:
#   attempts x (connect + read) + backoff + headroom <= sync budget.
# One attempt: routing admits endpoint calls estimated up to safety_margin x min(60 s, budget)
# (23.2 s by default), so a single attempt must be allowed that long; a retry would have to halve
# it. A throttle or 5xx surfaces as 503 and the client retries.
MAX_ATTEMPTS = 1
CONNECT_TIMEOUT_S = 1.0  # a regional HTTPS connect takes tens of ms; a slow one is a network fault
RETRY_BACKOFF_S = 1.0  # botocore "standard" mode: the first retry waits random() x 1 s
HEADROOM_S = 1.0  # Lambda handler work, JSON encoding and API Gateway overhead
# A real-time endpoint gives up on a request after 60 s by itself; waiting longer per attempt is
# pointless, 1 s more lets SageMaker's own timeout error reach us instead of ours.
ENDPOINT_LIMIT_S = 60.0
MIN_READ_TIMEOUT_S = 1.0

def endpoint_read_timeout(sync_timeout_s: float) -> float:
    """The per-attempt read timeout for a sync budget: 26 s for API Gateway's 29 s.

    Routing can use it as the longest endpoint call that can still succeed.
    """
    per_attempt = (sync_timeout_s - HEADROOM_S - RETRY_BACKOFF_S) / MAX_ATTEMPTS - CONNECT_TIMEOUT_S
    return max(MIN_READ_TIMEOUT_S, min(per_attempt, ENDPOINT_LIMIT_S + 1.0))


def make_runtime_client(sync_timeout_s: float, region: str | None = None, endpoint_url: str | None = None) -> Any:
    """A boto3 sagemaker-runtime client whose timeouts and retries fit in `sync_timeout_s`.

    boto3 is imported here, not at module import: the API handler stays free of boto3 until an
    AWS call is needed (lean cold start).
    """
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=endpoint_read_timeout(sync_timeout_s),
        retries={"mode": "standard", "total_max_attempts": MAX_ATTEMPTS},
    )
    return boto3.client("sagemaker-runtime", region_name=region, endpoint_url=endpoint_url, config=config)


class SageMakerEndpointClient:
    """EndpointClient on sagemaker-runtime InvokeEndpoint, with DescribeEndpoint status cached
    for `status_ttl_s` (routing asks on every request; SageMaker control-plane calls are
    rate-limited). Clients are injected: moto, a Stubber, or real ones."""

    def __init__(
        self,
        runtime_client: Any,
        sagemaker_client: Any,
        *,
        status_ttl_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._runtime = runtime_client
        self._sm = sagemaker_client
        self._ttl = status_ttl_s
        self._clock = clock
        self._status: dict[str, tuple[float, bool]] = {}
        self._last_status: dict[str, str] = {}

    def invoke(self, endpoint_name: str, body: bytes, content_type: str = "application/json") -> bytes:
        """The endpoint's response body. Raises BackendError (the model failed), BackendUnavailable
        (missing, not in service, throttled, overloaded), BackendTimeout (no answer in time)."""
        from botocore.exceptions import ClientError, ConnectTimeoutError, HTTPClientError, ReadTimeoutError
        from botocore.exceptions import ConnectionError as BotoConnectionError

        try:
            resp = self._runtime.invoke_endpoint(
                EndpointName=endpoint_name, Body=body, ContentType=content_type, Accept="application/json"
            )
            data = resp["Body"].read()
        except ClientError as e:
            raise self._map_invoke_error(endpoint_name, e) from None
        except (ReadTimeoutError, ConnectTimeoutError) as e:
            self.forget(endpoint_name)
            raise BackendTimeout(f"endpoint {endpoint_name} did not answer in time", details={"endpoint": endpoint_name}) from e
        except (BotoConnectionError, HTTPClientError) as e:
            self.forget(endpoint_name)
            message = f"endpoint {endpoint_name} is unreachable: {e}"
            raise to_router_error(e, System.SAGEMAKER_ENDPOINT, message, details={"endpoint": endpoint_name}) from None
        return bytes(data)

    def _map_invoke_error(self, endpoint_name: str, err: Exception) -> Exception:
        code = aws_error_code(err)
        message = aws_error_message(err)
        kind = classify(err)
        details: dict[str, Any] = {"endpoint": endpoint_name, "aws_error": code}
        if kind is Kind.MODEL_ERROR and "timed out" in message.lower():
            # SageMaker gave up waiting for the container (60 s real-time limit).
            return BackendTimeout(f"endpoint {endpoint_name}: the model did not answer in time", details=details)
        if kind is Kind.MODEL_ERROR:
            # The container answered with an error. 4xx: the model refused the input, and says why
            # (its message, one line, truncated). 5xx or no status: it failed; its body (possibly a
            # traceback) stays in its CloudWatch log stream.
            response = getattr(err, "response", {}) or {}
            status = response.get("OriginalStatusCode")
            if isinstance(status, int):
                details["model_status"] = status
            if isinstance(status, int) and 400 <= status < 500:
                return ModelRejectedInput.from_endpoint(endpoint_name, status, response.get("OriginalMessage"))
            return BackendError(f"endpoint {endpoint_name}: the model failed on this request", details=details)
        if kind in (Kind.NOT_FOUND, Kind.NOT_IN_SERVICE):
            self._remember(endpoint_name, False)
            text = f"endpoint {endpoint_name} is not in service"
        elif kind in (Kind.THROTTLED, Kind.UNAVAILABLE):
            text = f"endpoint {endpoint_name} is unavailable ({code}); retry later"
        elif kind is Kind.INVALID:
            text = f"endpoint {endpoint_name} rejected the request: {message}"
        else:
            text = f"endpoint {endpoint_name} call failed: {code or message}"
        return to_router_error(err, System.SAGEMAKER_ENDPOINT, text, details=details)

    def in_service(self, endpoint_name: str) -> bool:
        """True when the endpoint can take InvokeEndpoint calls. A missing endpoint is False; both
        answers are cached for `status_ttl_s`. A throttled or failing DescribeEndpoint serves the
        last known answer if there is one, else raises BackendUnavailable."""
        now = self._clock()
        cached = self._status.get(endpoint_name)
        if cached is not None and now < cached[0]:
            return cached[1]
        from botocore.exceptions import ClientError
        from botocore.exceptions import ConnectionError as BotoConnectionError

        try:
            resp = self._sm.describe_endpoint(EndpointName=endpoint_name)
        except ClientError as e:
            if classify(e) is Kind.NOT_FOUND:
                self._last_status[endpoint_name] = "NotFound"
                return self._remember(endpoint_name, False)
            if cached is not None:
                return cached[1]
            message = f"cannot read endpoint {endpoint_name} status ({aws_error_code(e)}): {aws_error_message(e)}"
            raise to_router_error(e, System.SAGEMAKER_ENDPOINT, message) from None
        except BotoConnectionError as e:
            if cached is not None:
                return cached[1]
            raise to_router_error(e, System.SAGEMAKER_ENDPOINT, f"cannot read endpoint {endpoint_name} status: {e}") from None
        status = str(resp.get("EndpointStatus"))
        self._last_status[endpoint_name] = status
        return self._remember(endpoint_name, status in SERVING_STATUSES)

    def warm(self, endpoint_name: str) -> bool:
        """SageMaker does not tell whether a serverless endpoint has an instance up: count it cold."""
        return False

    def status(self, endpoint_name: str) -> str:
        """The EndpointStatus DescribeEndpoint last gave ("Unknown" before the first look)."""
        return self._last_status.get(endpoint_name, "Unknown")

    def forget(self, endpoint_name: str) -> None:
        """Drop the cached status (after a failure that suggests it changed)."""
        self._status.pop(endpoint_name, None)

    def _remember(self, endpoint_name: str, value: bool) -> bool:
        self._status[endpoint_name] = (self._clock() + self._ttl, value)
        return value
