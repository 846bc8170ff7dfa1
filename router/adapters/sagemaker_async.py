"""SageMaker asynchronous inference behind the AsyncInferenceClient port: sagemaker-runtime
InvokeEndpointAsync with the router's parameters (router/async_inference.py), and whether an
instance is up (DescribeEndpoint's CurrentInstanceCount, cached briefly for routing).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from router.adapters.aws_errors import (
    System,
    aws_error_code,
    aws_error_message,
    is_not_found,
    to_router_error,
)
from router.async_inference import invoke_request
from router.errors import InvalidRequest
from router.ports import AsyncInvocation


class SageMakerAsyncClient:
    """AsyncInferenceClient on sagemaker-runtime InvokeEndpointAsync; instance counts from
    DescribeEndpoint, cached for `status_ttl_s`. Clients are injected (moto, a Stubber, real ones)."""

    def __init__(
        self, runtime_client: Any, sagemaker_client: Any, *, status_ttl_s: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._runtime = runtime_client
        self._sm = sagemaker_client
        self._ttl = status_ttl_s
        self._clock = clock
        self._status: dict[str, tuple[float, bool | None]] = {}

    def invoke(self, endpoint_name: str, input_uri: str, inference_id: str, *, invocation_timeout_s: int) -> AsyncInvocation:
        if not input_uri.startswith("s3://"):
            raise InvalidRequest(f"async inference reads its input from S3, got {input_uri!r}")
        from botocore.exceptions import ClientError, HTTPClientError
        from botocore.exceptions import ConnectionError as BotoConnectionError

        try:
            resp = self._runtime.invoke_endpoint_async(**invoke_request(endpoint_name, input_uri, inference_id, invocation_timeout_s))
        except ClientError as e:
            code = aws_error_code(e)
            message = f"SageMaker InvokeEndpointAsync failed: {aws_error_message(e)}"
            raise to_router_error(e, System.SAGEMAKER_ASYNC, message, details={"aws_error": code} if code else {}) from None
        except (BotoConnectionError, HTTPClientError) as e:
            raise to_router_error(e, System.SAGEMAKER_ASYNC, f"SageMaker InvokeEndpointAsync unreachable: {e}") from None
        return AsyncInvocation(
            inference_id=str(resp.get("InferenceId") or inference_id),
            output_uri=str(resp["OutputLocation"]),
            failure_uri=resp.get("FailureLocation") or None,
        )

    def in_service(self, endpoint_name: str) -> bool | None:
        """True when the endpoint is InService with at least one instance (no start-up); False when
        it is missing, not in service or scaled to zero; None when DescribeEndpoint cannot say."""
        now = self._clock()
        cached = self._status.get(endpoint_name)
        if cached is not None and now < cached[0]:
            return cached[1]
        from botocore.exceptions import ClientError
        from botocore.exceptions import ConnectionError as BotoConnectionError

        value: bool | None
        try:
            resp = self._sm.describe_endpoint(EndpointName=endpoint_name)
        except ClientError as e:
            value = False if is_not_found(e) else None  # throttled or denied: unknown, not "down"
        except BotoConnectionError:
            value = None
        else:
            variants = resp.get("ProductionVariants") or []
            instances = sum(int(v.get("CurrentInstanceCount") or 0) for v in variants)
            value = resp.get("EndpointStatus") == "InService" and instances > 0
        self._status[endpoint_name] = (now + self._ttl, value)
        return value
