"""WorkerQueue on AWS: an asynchronous (Event) invoke of the worker Lambda with `{"job_id": ...}`.

The payload is tiny on purpose: Lambda's async invoke payload limit is 1 MB (docs/routing.md), so the
job's input always travels through the job store, never through the invocation.
"""

from __future__ import annotations

import json
from typing import Any

from router.adapters.aws_errors import Kind, System, aws_error_code, classify, to_router_error
from router.errors import BackendUnavailable


class LambdaWorkerQueue:
    def __init__(self, lambda_client: Any, function_name: str) -> None:
        self._client = lambda_client
        self._function = function_name

    def in_flight(self, job_id: str) -> bool:
        return False  # an Event invoke is fire and forget: Lambda does not say whether it still holds it

    def enqueue(self, job_id: str) -> None:
        try:
            resp = self._client.invoke(
                FunctionName=self._function,
                InvocationType="Event",
                Payload=json.dumps({"job_id": job_id}).encode(),
            )
        except Exception as e:
            code = aws_error_code(e)
            if classify(e) is Kind.THROTTLED:
                message = f"the worker Lambda is throttled: {code}"
            else:
                message = f"could not start the worker for {job_id}: {code or type(e).__name__}"
            raise to_router_error(e, System.LAMBDA, message) from None
        if int(resp.get("StatusCode", 0)) != 202:
            raise BackendUnavailable(f"the worker invoke for {job_id} returned status {resp.get('StatusCode')}")
