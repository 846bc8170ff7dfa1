"""SageMaker transform job statuses and the EventBridge "SageMaker Transform Job State Change"
event, parsed into the BatchJobState the jobs service applies. Pure: no AWS calls."""

from __future__ import annotations

from typing import Any

from router.errors import InvalidRequest
from router.ports import BatchJobState
from router.sagemaker_names import SAGEMAKER_NAME_RE

TRANSFORM_STATUSES = frozenset({"InProgress", "Completed", "Failed", "Stopping", "Stopped"})
FINISHED_TRANSFORM_STATUSES = frozenset({"Completed", "Failed", "Stopped"})
EVENT_SOURCE = "aws.sagemaker"
EVENT_DETAIL_TYPE = "SageMaker Transform Job State Change"


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
