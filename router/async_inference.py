"""Asynchronous inference, the parts without I/O: the deterministic InferenceId of a router job,
InvokeEndpointAsync's parameters, and the SNS notification SageMaker publishes when a request ends
(parsed for the events handler, built by the local emulator).

The notification (SNS `Message`, JSON) as SageMaker sends it to the SuccessTopic / ErrorTopic:

    {"awsRegion": "us-east-1", "eventTime": "...", "receivedTime": "...",
     "invocationStatus": "Completed" | "Failed", "failureReason": "..." (Failed only),
     "requestParameters": {"endpointName": "...", "inputLocation": "s3://...", "contentType": "..."},
     "responseParameters": {"contentType": "...", "outputLocation": "s3://..."},
     "inferenceId": "...", "eventVersion": "1.0", "eventSource": "aws:sagemaker", "eventName": "InferenceResult"}

A Lambda subscribed to the topic receives it wrapped as {"Records": [{"EventSource": "aws:sns",
"Sns": {"Message": "<that JSON>", "TopicArn": ...}}]}; both forms are accepted.
"""

from __future__ import annotations

import json
import re
from typing import Any

from router.errors import InvalidRequest
from router.ports import AsyncOutcome
from router.sagemaker_contract import ACCEPT, CONTENT_TYPE

INFERENCE_ID_PREFIX = "router-"
# InvokeEndpointAsync InferenceId: 1-64 printable characters, the first not a space.
INFERENCE_ID_MAX = 64
_ULID_JOB_ID_RE = re.compile(r"^job_[0-9A-Za-z]{26}$")
EVENT_SOURCE = "aws:sagemaker"
EVENT_NAME = "InferenceResult"
STATUSES = frozenset({"Completed", "Failed"})
# RequestTTLSeconds default (6 h): how long a request may wait in the endpoint's queue.
REQUEST_TTL_S = 21600


def inference_id(job_id: str) -> str:
    """The InferenceId of a router job's request: a function of the job id, so a notification names
    its job and a re-dispatch (crash, sweeper) sends the same id."""
    if not _ULID_JOB_ID_RE.match(job_id):
        raise InvalidRequest(f"not a router job id: {job_id!r}")
    return INFERENCE_ID_PREFIX + job_id


def job_id_from_inference_id(value: str) -> str | None:
    """The router job behind an InferenceId, or None for a request the router did not send."""
    if not value.startswith(INFERENCE_ID_PREFIX):
        return None
    job_id = value[len(INFERENCE_ID_PREFIX):]
    return job_id if _ULID_JOB_ID_RE.match(job_id) else None


def invoke_request(endpoint_name: str, input_uri: str, inference_id: str, invocation_timeout_s: int) -> dict[str, Any]:
    """InvokeEndpointAsync's parameters: the body is the object at `input_uri`, one
    {"instances": [...], "output": ...} document (router/sagemaker_contract.py)."""
    return {
        "EndpointName": endpoint_name,
        "InputLocation": input_uri,
        "InferenceId": inference_id,
        "ContentType": CONTENT_TYPE,
        "Accept": ACCEPT,
        # <= 3,600 s of processing per request (InvokeEndpointAsync limit).
        "InvocationTimeoutSeconds": invocation_timeout_s,
        "RequestTTLSeconds": REQUEST_TTL_S,
    }


# ---------------------------------------------------------------- notifications


def is_notification(event: Any) -> bool:
    """Does `event` look like an async inference notification (bare, or inside SNS records)?"""
    if not isinstance(event, dict):
        return False
    if event.get("eventSource") == EVENT_SOURCE and event.get("eventName") == EVENT_NAME:
        return True
    records = event.get("Records")
    return isinstance(records, list) and bool(records) and all(
        isinstance(r, dict) and isinstance(r.get("Sns"), dict) for r in records
    )


def parse_notifications(event: Any) -> list[AsyncOutcome]:
    """The outcomes an SNS event (or one bare notification message) carries. InvalidRequest when
    a message is not SageMaker's InferenceResult notification."""
    if not isinstance(event, dict):
        raise InvalidRequest("event must be a JSON object")
    if "Records" not in event:
        return [parse_message(event)]
    records = event["Records"]
    if not isinstance(records, list):
        raise InvalidRequest("event Records must be a list")
    out = []
    for record in records:
        sns = record.get("Sns") if isinstance(record, dict) else None
        if not isinstance(sns, dict) or not isinstance(sns.get("Message"), str):
            raise InvalidRequest("an SNS record has no Sns.Message string")
        try:
            message = json.loads(sns["Message"])
        except ValueError:
            raise InvalidRequest("an SNS message is not JSON") from None
        out.append(parse_message(message))
    return out


def parse_message(message: Any) -> AsyncOutcome:
    if not isinstance(message, dict):
        raise InvalidRequest("notification message must be a JSON object")
    if message.get("eventSource") != EVENT_SOURCE or message.get("eventName") != EVENT_NAME:
        raise InvalidRequest(
            f"not an async inference result: eventSource={message.get('eventSource')!r}, eventName={message.get('eventName')!r}"
        )
    inference = message.get("inferenceId")
    if not isinstance(inference, str) or not 1 <= len(inference) <= INFERENCE_ID_MAX:
        raise InvalidRequest(f"notification has an invalid inferenceId: {inference!r}")
    status = message.get("invocationStatus")
    if status not in STATUSES:
        raise InvalidRequest(f"notification has an unknown invocationStatus: {status!r}")
    response = message.get("responseParameters") or {}
    if not isinstance(response, dict):
        raise InvalidRequest("notification responseParameters must be an object")
    output, failure = response.get("outputLocation"), response.get("failureLocation")
    reason = message.get("failureReason")
    for name, value in (("outputLocation", output), ("failureLocation", failure), ("failureReason", reason)):
        if value is not None and not isinstance(value, str):
            raise InvalidRequest(f"notification {name} must be a string")
    if status == "Completed" and not output:
        raise InvalidRequest("a Completed notification has no responseParameters.outputLocation")
    return AsyncOutcome(inference_id=inference, status=str(status), output_uri=output or None, failure_uri=failure or None,
                        failure_reason=reason or None)


def notification_message(
    outcome: AsyncOutcome, *, endpoint_name: str, input_uri: str, region: str, event_time: str, received_time: str
) -> dict[str, Any]:
    """The notification SageMaker publishes for `outcome` (the local emulator sends this very shape)."""
    message: dict[str, Any] = {
        "awsRegion": region,
        "eventTime": event_time,
        "receivedTime": received_time,
        "invocationStatus": outcome.status,
        "requestParameters": {"contentType": CONTENT_TYPE, "endpointName": endpoint_name, "inputLocation": input_uri},
        "responseParameters": {"contentType": ACCEPT},
        "inferenceId": outcome.inference_id,
        "eventVersion": "1.0",
        "eventSource": EVENT_SOURCE,
        "eventName": EVENT_NAME,
    }
    if outcome.output_uri:
        message["responseParameters"]["outputLocation"] = outcome.output_uri
    if outcome.failure_uri:
        message["responseParameters"]["failureLocation"] = outcome.failure_uri
    if outcome.failure_reason:
        message["failureReason"] = outcome.failure_reason
    return message


def sns_event(message: dict[str, Any], *, topic_arn: str, message_id: str, timestamp: str) -> dict[str, Any]:
    """`message` as a Lambda subscribed to the SNS topic receives it."""
    return {
        "Records": [
            {
                "EventSource": "aws:sns",
                "EventVersion": "1.0",
                "EventSubscriptionArn": f"{topic_arn}:{message_id}",
                "Sns": {
                    "Type": "Notification",
                    "MessageId": message_id,
                    "TopicArn": topic_arn,
                    "Subject": None,
                    "Message": json.dumps(message),
                    "Timestamp": timestamp,
                    "SignatureVersion": "1",
                    "MessageAttributes": {},
                },
            }
        ]
    }
