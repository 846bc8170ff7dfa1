"""TopicPublisher on SNS: one Publish per notification, its id as a message attribute (for
subscription filter policies and de-duplication)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from router.errors import BackendUnavailable, Throttled


class SnsTopicPublisher:
    def __init__(self, sns_client: Any) -> None:
        self._client = sns_client

    def publish(self, topic_arn: str, message: str, attributes: Mapping[str, str]) -> None:
        try:
            self._client.publish(
                TopicArn=topic_arn,
                Message=message,
                Subject="Router job finished",
                MessageAttributes={k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()},
            )
        except Exception as e:
            code = str(getattr(e, "response", {}).get("Error", {}).get("Code", ""))
            if code in ("Throttling", "ThrottlingException", "ThrottledException"):
                raise Throttled(f"SNS is throttling: {code}") from None
            raise BackendUnavailable(f"SNS Publish to {topic_arn} failed: {code or type(e).__name__}") from None
