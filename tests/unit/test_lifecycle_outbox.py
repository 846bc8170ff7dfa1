"""The job-end notification is part of the lifecycle's terminal transition (the outbox): every
move that ends a job with somewhere to announce it carries the pending record; no other move does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from router import lifecycle as lc
from router.domain import Job, JobStatus, Route
from router.jobs import format_time

S = JobStatus
NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
HOOK = {"kind": "webhook", "url": "https://hooks.example.com/a"}
MODEL_HOOK = {"kind": "webhook", "url": "https://hooks.example.com/model"}


def job(status: JobStatus, route: Route = Route.BATCH_TRANSFORM, **kw: Any) -> Job:
    base: dict[str, Any] = {
        "job_id": "job_X", "owner": "alice", "model": "m", "status": status, "route": route, "reason": "r",
        "created_at": NOW - timedelta(hours=1), "updated_at": NOW - timedelta(minutes=1), "input_uri": "s3://b/in",
    }  # fmt: skip
    base.update(kw)
    return Job(**base)


ENDINGS = [
    (job(S.RUNNING, backend_name="n"), lc.OutputReady("n", 3), S.SUCCEEDED),
    (job(S.RUNNING, backend_name="n"), lc.OutputBroken("backend_error", "gone"), S.FAILED),
    (job(S.QUEUED, Route.LAMBDA_JOB), lc.CancelRequested(stoppable=False), S.CANCELLED),
    (job(S.RUNNING, backend_name="n"), lc.BackendReport(Route.BATCH_TRANSFORM, "n", "Failed", "boom"), S.FAILED),
]


@pytest.mark.parametrize(("current", "event", "final"), ENDINGS)
def test_a_terminal_transition_carries_the_pending_record(current: Job, event: lc.Event, final: JobStatus) -> None:
    policy = lc.Policy(max_attempts=3, notify={"m": (MODEL_HOOK,)})
    plan = lc.decide(current.evolve(notify={"webhook": HOOK["url"]}), event, policy, NOW)
    [end] = [m for m in plan if isinstance(m, lc.Transition) and m.ends_job]
    assert end.to is final
    assert end.changes["notification"] == {
        "id": "ntf_X", "state": "pending", "attempts": 0, "due_at": format_time(NOW), "targets": [HOOK, MODEL_HOOK], "done": [],
    }  # fmt: skip
    # The same decision without a target: the moves of the plain lifecycle, unchanged.
    plain = lc.decide(current, event, lc.Policy(max_attempts=3), NOW)
    assert all("notification" not in m.changes for m in plain if isinstance(m, lc.Transition))
    assert [type(m) for m in plain] == [type(m) for m in plan]


def test_moves_that_do_not_end_the_job_carry_no_record() -> None:
    policy = lc.Policy(max_attempts=3, notify={"m": (MODEL_HOOK,)})
    plan = lc.decide(job(S.QUEUED), lc.BackendReport(Route.BATCH_TRANSFORM, "n", "InProgress"), policy, NOW)
    assert plan and all("notification" not in getattr(m, "changes", {}) for m in plan)


def test_targets_are_the_jobs_own_then_the_models_without_repeats() -> None:
    policy = lc.Policy(max_attempts=3, notify={"m": (HOOK, MODEL_HOOK)})
    assert lc.notify_targets(job(S.RUNNING, notify={"webhook": HOOK["url"]}), policy) == [HOOK, MODEL_HOOK]
    assert lc.notify_targets(job(S.RUNNING, model="other"), policy) == []
