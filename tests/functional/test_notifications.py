"""Job-end notifications through JobsService and the real SQLite job store: the terminal
transition records the notification itself (the outbox), delivery is immediate, retried with
exponential backoff and re-done by the sweep after a crash, and never changes the job; SNS
Publish as moto checks it. Time is a fake clock; nothing sleeps."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from router import jobs as jm
from router.adapters.sns_topic import SnsTopicPublisher
from router.adapters.sqlite_jobs import SqliteJobStore
from router.config import RouterConfig
from router.domain import Job, JobStatus, OutputKind
from router.errors import BackendUnavailable, InvalidRequest
from router.jobs_service import JobsService
from router.notifications import ID_HEADER, Notifier, verify
from router.service import RouterService
from tests.fakes import FakeClock, FakeQueue, FakeRunner, MemoryObjectStore

S = JobStatus
SECRET = "functional-secret-0123456789"
HOOK = "https://hooks.example.com/router"
TOPIC = "arn:aws:sns:us-east-1:123456789012:router-jobs"


class FakeWebhook:
    """Answers with the given statuses in turn (an exception: no answer at all)."""

    def __init__(self, *answers: int | Exception) -> None:
        self.answers = list(answers)
        self.posts: list[tuple[str, bytes, dict[str, str]]] = []

    def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float) -> int:
        self.posts.append((url, body, dict(headers)))
        answer = self.answers.pop(0) if self.answers else 204
        if isinstance(answer, Exception):
            raise answer
        return answer


def make(
    tmp_path: Path, webhook: FakeWebhook, *, model_notify: dict[str, Any] | None = None, topic: Any = None,
    dispatch: Callable[[Callable[[], None]], None] | None = None, secret: bool = True,
) -> tuple[JobsService, SqliteJobStore, FakeClock]:
    spec: dict[str, Any] = {"name": "m", "framework": "sklearn", "artifact": "s3://b/m.joblib", "sha256": "cd" * 32, "size_bytes": 1000,
                            "profile": {"load_s": 0.1, "per_record_ms": 1.0}}
    if model_notify is not None:
        spec["notify"] = model_notify
    notifications: dict[str, Any] = {"max_attempts": 3, "backoff_s": 10, "backoff_max_s": 15}
    if secret:
        notifications["webhook_secret"] = SECRET
    if topic is not None:
        notifications["sns_topic_arn"] = TOPIC
    cfg = RouterConfig.model_validate({
        "storage": {"jobs": "s3://bucket/jobs", "artifacts": "s3://bucket/models", "job_table": "sqlite:///x.db"},
        "notifications": notifications, "models": [spec],
    })
    clock = FakeClock()
    store = SqliteJobStore(tmp_path / "jobs.db", clock=clock)
    svc = JobsService(cfg, service=RouterService(cfg, runner=FakeRunner()), store=store, objects=MemoryObjectStore(), clock=clock, queue=FakeQueue())
    svc.attach_notifier(Notifier(cfg, store, clock, svc.to_dict, webhook=webhook, topic=topic, dispatch=dispatch))
    return svc, store, clock


def run(svc: JobsService, notify: dict[str, Any] | None = {"webhook": HOOK}) -> Job:  # noqa: B006 - never mutated
    job, _ = svc.submit("alice", svc.service.model("m"), instances=[[1.0, 2.0]] * 3, input_uri=None, input_format="jsonl",
                        output=OutputKind.PREDICT, idempotency_key=None, notify=notify)
    while svc.run_lambda_job(job.job_id, lambda: 1e9):
        pass
    done = svc.store.get(job.job_id)
    assert done is not None and done.status is S.SUCCEEDED
    return done


def test_a_finished_job_is_announced_once_signed_with_its_stable_id(tmp_path: Path) -> None:
    webhook = FakeWebhook()
    svc, store, clock = make(tmp_path, webhook)
    done = run(svc)
    [(url, body, headers)] = webhook.posts
    assert url == HOOK and verify(SECRET.encode(), body, headers, now_s=clock.now().timestamp())
    doc = json.loads(body)
    assert doc["notification_id"] == headers[ID_HEADER] == "ntf_" + done.job_id[4:]
    assert (doc["job_id"], doc["status"], doc["records"]) == (done.job_id, "succeeded", {"total": 3, "done": 3})
    assert done.notification is not None and done.notification["state"] == "delivered"
    assert svc.sweep()["notified"] == 0 and len(webhook.posts) == 1  # nothing left to deliver


def test_a_cancel_is_announced_and_jobs_without_a_target_record_nothing(tmp_path: Path) -> None:
    webhook = FakeWebhook()
    svc, store, _ = make(tmp_path, webhook)
    job, _ = svc.submit("alice", svc.service.model("m"), instances=[[1.0, 2.0]], input_uri=None, input_format="jsonl",
                        output=OutputKind.PREDICT, idempotency_key=None, notify={"webhook": HOOK})
    assert svc.cancel("alice", job.job_id).status is S.CANCELLED
    assert [json.loads(b)["status"] for _, b, _ in webhook.posts] == ["cancelled"]
    quiet = run(svc, notify=None)
    assert quiet.notification is None and len(webhook.posts) == 1


def test_failed_deliveries_back_off_exponentially_then_give_up_without_touching_the_job(tmp_path: Path) -> None:
    webhook = FakeWebhook(500, BackendUnavailable("connection refused"), 503)
    svc, store, clock = make(tmp_path, webhook)
    done = run(svc)  # attempt 1: HTTP 500
    n = done.notification or {}
    assert (n["state"], n["attempts"], n["last_error"]) == ("pending", 1, "webhook: HTTP 500")
    assert n["due_at"] == jm.format_time(clock.now() + timedelta(seconds=10))
    assert svc.sweep()["notify_retry"] == 0 and len(webhook.posts) == 1  # not due yet
    clock.advance(10)
    assert svc.sweep()["notify_retry"] == 1  # attempt 2: no answer
    clock.advance(15)  # 20 s, capped at backoff_max_s
    assert svc.sweep()["notify_failed"] == 1  # attempt 3 of 3: given up
    final = store.get(done.job_id)
    assert final is not None and final.notification is not None and final.notification["state"] == "failed"
    assert (final.status, final.records_done, final.error) == (S.SUCCEEDED, 3, None)
    clock.advance(3600)
    assert svc.sweep()["notify_failed"] == 0 and len(webhook.posts) == 3


def test_the_sweep_delivers_what_a_crash_left_in_the_outbox(tmp_path: Path) -> None:
    # The process dies right after the terminal transition: nothing was sent, the record is there.
    webhook = FakeWebhook()
    svc, store, _ = make(tmp_path, webhook, dispatch=lambda fn: None)
    done = run(svc)
    assert webhook.posts == [] and done.notification is not None and done.notification["state"] == "pending"
    restarted, _, _ = make(tmp_path, webhook)  # a new process on the same job table
    assert restarted.sweep(stale_after_s=0.0)["notified"] == 1
    assert [json.loads(b)["job_id"] for _, b, _ in webhook.posts] == [done.job_id]


def test_a_delivery_claimed_by_another_process_is_not_sent_twice(tmp_path: Path) -> None:
    webhook = FakeWebhook()
    svc, store, _ = make(tmp_path, webhook, dispatch=lambda fn: None)
    done = run(svc)
    assert svc.notifier is not None
    assert svc.notifier.deliver(done) == "delivered"
    assert svc.notifier.deliver(done) is None  # the same snapshot again: its version is gone
    assert len(webhook.posts) == 1


def test_the_models_webhook_and_the_jobs_own_are_both_served_each_once(tmp_path: Path) -> None:
    other = "https://other.example.com/h"
    webhook = FakeWebhook(204, 500, 204)  # the model's webhook fails once
    svc, store, clock = make(tmp_path, webhook, model_notify={"webhook": other})
    done = run(svc)
    clock.advance(10)
    svc.sweep()
    assert [u for u, _, _ in webhook.posts] == [HOOK, other, other]  # the job's own hook is not sent again
    final = store.get(done.job_id)
    assert final is not None and final.notification is not None and final.notification["state"] == "delivered"


def test_submissions_refuse_bad_webhooks_and_a_router_without_a_key(tmp_path: Path) -> None:
    svc, _, _ = make(tmp_path / "a", FakeWebhook())
    for notify in ({"webhook": "ftp://x.example.com/"}, {"webhook": "https://u:p@x.example.com/"}, {"url": HOOK}, {"webhook": 3}):
        with pytest.raises(InvalidRequest):
            run(svc, notify=notify)
    keyless, _, _ = make(tmp_path / "b", FakeWebhook(), secret=False)
    with pytest.raises(InvalidRequest, match="webhook_secret"):
        run(keyless)


def test_sns_targets_publish_the_document_with_its_id(tmp_path: Path) -> None:
    with mock_aws():
        sns = boto3.client("sns", region_name="us-east-1")
        arn = sns.create_topic(Name="router-jobs")["TopicArn"]
        assert arn == TOPIC
        sqs = boto3.client("sqs", region_name="us-east-1")
        queue = sqs.create_queue(QueueName="sub")["QueueUrl"]
        qarn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=qarn, Attributes={"RawMessageDelivery": "true"})
        svc, _, _ = make(tmp_path, FakeWebhook(), model_notify={"sns": True}, topic=SnsTopicPublisher(sns))
        done = run(svc, notify=None)
        [msg] = sqs.receive_message(QueueUrl=queue, MessageAttributeNames=["All"])["Messages"]
        body = json.loads(msg["Body"])
        assert (body["notification_id"], body["job_id"], body["status"]) == ("ntf_" + done.job_id[4:], done.job_id, "succeeded")
        assert msg["MessageAttributes"]["notification_id"]["StringValue"] == "ntf_" + done.job_id[4:]
