"""S3 object-created events as they arrive (bucket notification, EventBridge, test event) become
the same ObjectCreated, and one object version always gets the same idempotency key."""

from __future__ import annotations

from typing import Any

from router.triggers import ObjectCreated, idempotency_key, parse_event


def s3_notification(key: str, *, version_id: str | None = None, name: str = "ObjectCreated:Put") -> dict[str, Any]:
    # The shape S3 sends to Lambda (docs: "Event message structure"): keys URL-encoded.
    obj: dict[str, Any] = {"key": key, "size": 1024, "eTag": "0123456789abcdef0123456789abcdef", "sequencer": "0A1B2C3D4E5F678901"}
    if version_id is not None:
        obj["versionId"] = version_id
    return {
        "Records": [
            {
                "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1", "eventTime": "2026-01-01T00:00:00.000Z",
                "eventName": name, "userIdentity": {"principalId": "EXAMPLE"}, "requestParameters": {"sourceIPAddress": "127.0.0.1"},
                "responseElements": {"x-amz-request-id": "EXAMPLE123456789", "x-amz-id-2": "EXAMPLE123/abc"},
                "s3": {
                    "s3SchemaVersion": "1.0", "configurationId": "router-trigger",
                    "bucket": {"name": "inbox-bucket", "ownerIdentity": {"principalId": "EXAMPLE"}, "arn": "arn:aws:s3:::inbox-bucket"},
                    "object": obj,
                },
            }
        ]
    }


def eventbridge(key: str, *, version_id: str | None = None, detail_type: str = "Object Created") -> dict[str, Any]:
    # The shape EventBridge delivers for S3 (docs: "EventBridge event message structure"): raw keys.
    obj: dict[str, Any] = {"key": key, "size": 1024, "etag": "0123456789abcdef0123456789abcdef", "sequencer": "0A1B2C3D4E5F678901"}
    if version_id is not None:
        obj["version-id"] = version_id
    return {
        "version": "0", "id": "17793124-05d4-b198-2fde-7ededc63b103", "detail-type": detail_type, "source": "aws.s3",
        "account": "123456789012", "time": "2026-01-01T00:00:00Z", "region": "us-east-1", "resources": ["arn:aws:s3:::inbox-bucket"],
        "detail": {
            "version": "0", "bucket": {"name": "inbox-bucket"}, "object": obj, "request-id": "N4N7GDK58NMKJ12R",
            "requester": "123456789012", "source-ip-address": "1.2.3.4", "reason": "PutObject",
        },
    }


def test_a_bucket_notification_decodes_its_url_encoded_key() -> None:
    objects, ignored = parse_event(s3_notification("in/day+1/r%C3%A9sultats+%282%29.csv"))
    assert ignored == []
    assert objects == [ObjectCreated("s3://inbox-bucket/in/day 1/résultats (2).csv", "etag:0123456789abcdef0123456789abcdef", 1024)]


def test_eventbridge_and_the_notification_of_one_object_give_one_key() -> None:
    a, _ = parse_event(s3_notification("in/a+b.jsonl", version_id="v123"))
    b, _ = parse_event(eventbridge("in/a b.jsonl", version_id="v123"))
    assert a == b == [ObjectCreated("s3://inbox-bucket/in/a b.jsonl", "v:v123", 1024)]
    assert idempotency_key(a[0]) == idempotency_key(b[0])


def test_the_version_id_wins_over_the_etag_and_each_version_is_its_own_job() -> None:
    one = parse_event(s3_notification("k.jsonl", version_id="v1"))[0][0]
    two = parse_event(s3_notification("k.jsonl", version_id="v2"))[0][0]
    unversioned = parse_event(s3_notification("k.jsonl", version_id="null"))[0][0]  # S3's "null" version
    assert one.version == "v:v1" and unversioned.version.startswith("etag:")
    assert len({idempotency_key(one), idempotency_key(two), idempotency_key(unversioned)}) == 3
    key = idempotency_key(one)
    assert key.startswith("trigger-") and len(key) <= 255 and " " not in key


def test_the_s3_test_event_and_other_events_are_acknowledged_and_ignored() -> None:
    test_event = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2026-01-01T00:00:00.000Z",
                  "Bucket": "inbox-bucket", "RequestId": "5582815E1AEA5ADF", "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE"}
    assert parse_event(test_event) == ([], ["s3:TestEvent"])
    objects, ignored = parse_event(s3_notification("k", name="ObjectRemoved:Delete"))
    assert objects == [] and ignored == ["ObjectRemoved:Delete is not ObjectCreated"]
    objects, ignored = parse_event(eventbridge("k", detail_type="Object Deleted"))
    assert objects == [] and "Object Deleted" in ignored[0]
    for other in ([], "x", {}, {"Records": "x"}, {"Records": [{"eventSource": "aws:sqs"}]}, {"source": "aws.s3", "detail-type": "Object Created"}):
        objects, ignored = parse_event(other)
        assert objects == [] and len(ignored) == 1, other
