"""RouterService with fakes: which backend a prediction reaches, and how an unsyncable request is
reported (422 with the Decision, or 413 when it is the payload)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from router.config import RouterConfig
from router.domain import Job, JobStatus, Mode, OutputKind, Route, Submitted
from router.errors import (
    BackendError,
    BackendUnavailable,
    InvalidInput,
    ModelNotFound,
    PayloadTooLarge,
    SyncNotPossible,
)
from router.service import Prediction, RouterService
from tests.fakes import FakeEndpoints, FakeRunner

SHA = "ab" * 32


def config(**model: Any) -> RouterConfig:
    base = {"name": "m", "framework": "sklearn", "artifact": "s3://b/m.joblib", "sha256": SHA, "size_bytes": 1000,
            "features": ["a", "b"], "profile": {"load_s": 0.1, "per_record_ms": 1.0}}
    return RouterConfig.model_validate({"models": [{**base, **model}]})


def test_inline_model_runs_in_process() -> None:
    runner = FakeRunner()
    svc = RouterService(config(), runner=runner)
    out = svc.predict(svc.model("m"), [[1, 2], [3, 4]], OutputKind.PREDICT, 100)
    assert isinstance(out, Prediction) and out.route is Route.INLINE
    assert out.predictions == [3, 7] and runner.calls == [("m", 2, OutputKind.PREDICT)]
    body = out.to_dict(1.0)
    assert body["model_version"] == "sha256:" + SHA and body["decision"]["reason"]


def test_endpoint_model_validates_then_invokes_the_endpoint() -> None:
    eps = FakeEndpoints()
    svc = RouterService(config(inline=False, endpoint={"name": "ep"}), runner=FakeRunner(), endpoints=eps)
    out = svc.predict(svc.model("m"), [[1, 2], {"b": 4, "a": 3}], OutputKind.PREDICT, 100)
    assert isinstance(out, Prediction) and out.route is Route.ENDPOINT
    assert json.loads(eps.calls[0][1]) == {"instances": [[1.0, 2.0], [3.0, 4.0]], "output": "predict"}
    with pytest.raises(InvalidInput):
        svc.predict(svc.model("m"), [[1, 2, 3]], OutputKind.PREDICT, 100)
    assert len(eps.calls) == 1  # the bad request never reached the endpoint


def test_endpoint_answer_must_match_the_instances() -> None:
    eps = FakeEndpoints(reply=lambda body: b'{"predictions": [1]}')
    svc = RouterService(config(inline=False, endpoint={"name": "ep"}), runner=FakeRunner(), endpoints=eps)
    with pytest.raises(BackendError):
        svc.predict(svc.model("m"), [[1, 2], [3, 4]], OutputKind.PREDICT, 100)


def test_endpoint_out_of_service_is_not_syncable() -> None:
    svc = RouterService(config(inline=False, endpoint={"name": "ep"}), runner=FakeRunner(), endpoints=FakeEndpoints(in_service=False))
    with pytest.raises(SyncNotPossible) as e:
        svc.predict(svc.model("m"), [[1, 2]], OutputKind.PREDICT, 100)
    assert e.value.details["decision"]["route"] is None and e.value.details["decision"]["candidates"]


@pytest.mark.parametrize("status", ["Creating", "Updating", "SystemUpdating", "RollingBack"])
def test_endpoint_in_a_transient_state_is_503_with_retry_after(status: str) -> None:
    eps = FakeEndpoints(in_service=False)
    eps.status_override = status
    svc = RouterService(config(inline=False, endpoint={"name": "ep"}), runner=FakeRunner(), endpoints=eps)
    with pytest.raises(BackendUnavailable) as e:
        svc.predict(svc.model("m"), [[1, 2]], OutputKind.PREDICT, 100)
    assert e.value.status == 503 and e.value.retry_after_s and e.value.details == {"endpoint": "ep", "endpoint_status": status}
    assert not eps.calls
    assert svc.describe_model(svc.model("m"))["endpoint_status"] == status
    assert svc.endpoint_statuses() == {"ep": status}


def test_a_transient_endpoint_that_could_not_take_the_request_anyway_is_still_422() -> None:
    eps = FakeEndpoints(in_service=False)
    eps.status_override = "Creating"
    svc = RouterService(config(inline=False, endpoint={"name": "ep"}, profile={"load_s": 0.1, "per_record_ms": 1000.0}),
                        runner=FakeRunner(), endpoints=eps)
    with pytest.raises(SyncNotPossible):
        svc.predict(svc.model("m"), [[1, 2]] * 100, OutputKind.PREDICT, 100)  # ~100 s: over any sync budget


def test_payload_over_the_limit_is_413() -> None:
    svc = RouterService(config(), runner=FakeRunner())
    with pytest.raises(PayloadTooLarge) as e:
        svc.predict(svc.model("m"), [[1, 2]], OutputKind.PREDICT, 7 * 1024 * 1024)
    assert "/v1/uploads" in e.value.message and e.value.details["decision"]["route"] is None


class FakeSubmitter:
    """JobSubmitter: records what the service submits, answers with a queued job."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def submit(self, owner: str, model: Any, **kw: Any) -> tuple[Job, bool]:
        self.calls.append({"owner": owner, "model": model.name, **kw})
        now = datetime(2026, 1, 1, tzinfo=UTC)
        return Job(job_id="job_1", owner=owner, model=model.name, status=JobStatus.QUEUED, route=Route.LAMBDA_JOB,
                   reason="r", created_at=now, updated_at=now, input_uri="file:///in.jsonl"), True


def test_unsyncable_request_with_respond_async_is_submitted_as_a_job() -> None:
    svc = RouterService(config(inline=False, endpoint={"name": "ep"}), runner=FakeRunner(), endpoints=FakeEndpoints(in_service=False))
    jobs = FakeSubmitter()
    svc.attach_jobs(jobs)
    out = svc.predict(svc.model("m"), [[1, 2]], OutputKind.PROBA, 100, owner="alice", respond_async=True, idempotency_key="k1")
    assert isinstance(out, Submitted) and out.job.job_id == "job_1" and out.created
    assert jobs.calls == [{"owner": "alice", "model": "m", "instances": [[1, 2]], "input_uri": None, "input_format": "jsonl",
                           "output": OutputKind.PROBA, "idempotency_key": "k1"}]


def test_respond_async_is_a_fallback_only() -> None:
    """A request a sync route takes is answered synchronously, `Prefer: respond-async` or not; without
    the header (or without a job service) an unsyncable one is the 422, and nothing is submitted."""
    runner = FakeRunner()
    svc = RouterService(config(), runner=runner)
    jobs = FakeSubmitter()
    svc.attach_jobs(jobs)
    assert isinstance(svc.predict(svc.model("m"), [[1, 2]], OutputKind.PREDICT, 100, owner="a", respond_async=True), Prediction)
    off = RouterService(config(inline=False, endpoint={"name": "ep"}), runner=runner, endpoints=FakeEndpoints(in_service=False))
    off.attach_jobs(jobs)
    with pytest.raises(SyncNotPossible):
        off.predict(off.model("m"), [[1, 2]], OutputKind.PREDICT, 100, owner="a")
    no_jobs = RouterService(config(inline=False, endpoint={"name": "ep"}), runner=runner, endpoints=FakeEndpoints(in_service=False))
    with pytest.raises(SyncNotPossible):
        no_jobs.predict(no_jobs.model("m"), [[1, 2]], OutputKind.PREDICT, 100, owner="a", respond_async=True)
    assert jobs.calls == []


def test_a_transient_endpoint_is_503_even_with_respond_async() -> None:
    eps = FakeEndpoints(in_service=False)
    eps.status_override = "Creating"
    svc = RouterService(config(inline=False, endpoint={"name": "ep"}), runner=FakeRunner(), endpoints=eps)
    jobs = FakeSubmitter()
    svc.attach_jobs(jobs)
    with pytest.raises(BackendUnavailable):
        svc.predict(svc.model("m"), [[1, 2]], OutputKind.PREDICT, 100, owner="a", respond_async=True)
    assert jobs.calls == []


def test_an_oversized_body_is_413_before_parsing_unless_it_may_become_a_job() -> None:
    svc = RouterService(config(), runner=FakeRunner())
    big = svc.sync_limit_bytes + 1
    svc.check_payload("m", svc.sync_limit_bytes)  # at the limit: parsed and routed as usual
    with pytest.raises(PayloadTooLarge):
        svc.check_payload("m", big, respond_async=True)  # no job service: it cannot become a job
    svc.attach_jobs(FakeSubmitter())
    svc.check_payload("m", big, respond_async=True)
    with pytest.raises(PayloadTooLarge):
        svc.check_payload("m", big)


def test_unknown_model() -> None:
    svc = RouterService(config(), runner=FakeRunner())
    with pytest.raises(ModelNotFound) as e:
        svc.model("nope")
    assert "m" in e.value.message


def test_envelope_is_what_routing_decides() -> None:
    svc = RouterService(config(), runner=FakeRunner())
    env = svc.describe_model(svc.model("m"), detail=True)["envelope"]
    inline_max = env["inline"]["max_records"]
    # 0.1 s load + n x 1 ms <= 0.8 x 29 s  ->  n <= 23,100
    assert inline_max == 23_100
    assert env["endpoint"] == {"feasible": False, "max_records": 0}
    assert env["lambda-job"]["max_records"] == 719_900
    assert svc.decide(svc.model("m"), Mode.SYNC, inline_max, 0).route is Route.INLINE
    assert svc.decide(svc.model("m"), Mode.SYNC, inline_max + 1, 0).route is None


# ------------------------------------------------------------------ serverless


def test_serverless_takes_the_request_when_the_endpoint_is_down_through_invoke_endpoint() -> None:
    eps = FakeEndpoints()
    eps.down.add("ep")
    svc = RouterService(
        config(inline=False, endpoint={"name": "ep"}, serverless={"name": "ep-sl", "memory_mb": 1024}),
        runner=FakeRunner(), endpoints=eps,
    )
    model = svc.model("m")
    state = svc.backend_state(model)
    assert (state.endpoint_in_service, state.serverless_in_service, state.serverless_warm) == (False, True, False)
    out = svc.predict(model, [[1, 2], {"b": 4, "a": 3}], OutputKind.PREDICT, 100)
    assert isinstance(out, Prediction) and out.route is Route.SERVERLESS
    assert "cold start" in out.decision.reason and "not endpoint: endpoint ep is not InService" in out.decision.reason
    # The very request body of the real-time endpoint, sent to the serverless endpoint's name.
    assert [(name, json.loads(body)) for name, body in eps.calls] == [("ep-sl", {"instances": [[1.0, 2.0], [3.0, 4.0]], "output": "predict"})]
    assert out.predictions == [2, 2]
    eps.warm_endpoints.add("ep-sl")
    assert svc.backend_state(model).serverless_warm
    detail = svc.describe_model(model, detail=True)
    assert detail["serverless"] == {"name": "ep-sl", "memory_mb": 1024, "max_concurrency": 5}
    assert detail["serverless_status"] == "InService" and "serverless" in detail["routes"] and "serverless" in detail["envelope"]
    assert svc.endpoint_statuses() == {"ep": "OutOfService", "ep-sl": "InService"}


def test_a_model_without_serverless_has_no_serverless_envelope() -> None:
    svc = RouterService(config(), runner=FakeRunner())
    assert "serverless" not in svc.envelope(svc.model("m"))


def test_a_serverless_endpoint_being_created_is_503_with_retry_after() -> None:
    eps = FakeEndpoints(in_service=False)
    eps.status_override = "Creating"
    svc = RouterService(config(inline=False, serverless={"name": "ep-sl"}), runner=FakeRunner(), endpoints=eps)
    with pytest.raises(BackendUnavailable) as e:
        svc.predict(svc.model("m"), [[1, 2]], OutputKind.PREDICT, 100)
    assert e.value.details == {"endpoint": "ep-sl", "endpoint_status": "Creating"} and not eps.calls


def test_the_envelope_shows_async_inference_only_for_a_model_that_declares_it() -> None:
    cfg = RouterConfig.model_validate({"sagemaker": {"batch_transform": {}}, "models": [
        {"name": "a", "framework": "pytorch", "artifact": "s3://b/a", "sha256": "0" * 64, "async_inference": {"invocation_timeout_s": 600}},
        {"name": "b", "framework": "pytorch", "artifact": "s3://b/b", "sha256": "0" * 64},
    ]})
    svc = RouterService(cfg, runner=FakeRunner())
    a, b = cfg.model("a"), cfg.model("b")
    assert a is not None and b is not None
    # 0.8 x 600 s invocation limit at the default 1 ms per record.
    assert svc.envelope(a)["async-inference"] == {"feasible": True, "max_records": 480_000}
    assert "async-inference" not in svc.envelope(b)
