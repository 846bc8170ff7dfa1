"""Unit tests of router.routing.decide: every rule just under and just over each limit.

Numbers are chosen to be exact in binary floating point (margins of 0.5, whole milliseconds) so
"just under / exactly at / just over" is unambiguous.
"""

from __future__ import annotations

from typing import Any

import pytest

from router.config import ModelSpec, RouterConfig
from router.domain import BackendState, Decision, Mode, RequestShape, Route
from router.errors import InvalidRequest
from router.routing import MIB, decide, fmt_bytes, fmt_cost, fmt_duration, max_records

SHA = "ab" * 32
WARM = BackendState(warm=True)
UP = BackendState(endpoint_in_service=True)
WARM_UP = BackendState(warm=True, endpoint_in_service=True)


def make(models: list[dict[str, Any]], **sections: Any) -> RouterConfig:
    return RouterConfig.model_validate({"version": 1, "models": models, **sections})


def spec(name: str = "m", framework: str = "sklearn", **kw: Any) -> dict[str, Any]:
    return {"name": name, "framework": framework, "artifact": f"s3://bucket/{name}", "sha256": SHA, **kw}


def only(cfg: RouterConfig) -> ModelSpec:
    assert len(cfg.models) == 1
    return cfg.models[0]


def sync(records: int, payload: int = 0) -> RequestShape:
    return RequestShape(Mode.SYNC, records, payload)


def job(records: int) -> RequestShape:
    return RequestShape(Mode.JOB, records, 0)


def cand(d: Decision, route: Route) -> Any:
    return next(c for c in d.candidates if c.route is route)


# A fast in-process model: 1 ms per record, no load, margin 0.5 so budgets are exact.
HALF = {"safety_margin": 0.5}
PROFILE_1MS = {"load_s": 0, "per_record_ms": 1}
BATCH = {"batch_transform": {"instance_type": "ml.m5.xlarge"}}


# ------------------------------------------------------------------ inline: sync budget


@pytest.mark.parametrize(("records", "route"), [(9_999, Route.INLINE), (10_000, Route.INLINE), (10_001, None)])
def test_inline_within_margin_times_sync_budget(records: int, route: Route | None) -> None:
    # 0.5 x 20 s = 10 s budget; 1 ms per record.
    cfg = make([spec(profile=PROFILE_1MS)], runtime={**HALF, "sync_timeout_s": 20})
    d = decide(only(cfg), sync(records), cfg, WARM)
    assert d.route is route
    if route is None:
        assert not d.payload_limited
        assert "exceeds 0.5 x 20 s sync budget" in cand(d, Route.INLINE).reasons[0]
    else:
        assert d.estimates is not None and d.estimates.duration_s == pytest.approx(records / 1000)


def test_cold_load_counts_against_the_sync_budget_warm_does_not() -> None:
    cfg = make([spec(profile={"load_s": 2, "per_record_ms": 1})], runtime={**HALF, "sync_timeout_s": 20})
    m = only(cfg)
    assert decide(m, sync(8_000), cfg).route is Route.INLINE
    assert decide(m, sync(8_001), cfg).route is None  # 2 s load + 8.001 s > 10 s
    assert decide(m, sync(10_000), cfg, WARM).route is Route.INLINE
    assert "cold load 2 s" in decide(m, sync(8_000), cfg).reason
    assert "warm" in decide(m, sync(8_000), cfg, WARM).reason


@pytest.mark.parametrize(("margin", "route"), [(0.5, None), (0.75, Route.INLINE)])
def test_safety_margin_scales_the_budget(margin: float, route: Route | None) -> None:
    cfg = make([spec(profile=PROFILE_1MS)], runtime={"safety_margin": margin, "sync_timeout_s": 20})
    # 15 s of work: over 0.5 x 20, within 0.75 x 20.
    assert decide(only(cfg), sync(15_000), cfg, WARM).route is route


# ------------------------------------------------------------------ payload


@pytest.mark.parametrize(("payload", "ok"), [(6 * MIB - 1, True), (6 * MIB, True), (6 * MIB + 1, False)])
def test_inline_payload_limit_is_6_mib(payload: int, ok: bool) -> None:
    cfg = make([spec(profile=PROFILE_1MS)])
    d = decide(only(cfg), sync(1, payload), cfg, WARM)
    assert (d.route is Route.INLINE) is ok
    assert d.payload_limited is (not ok)
    if not ok:
        assert "exceeds the 6 MiB Lambda sync payload limit" in d.reason
        assert cand(d, Route.INLINE).reasons == ("payload 6 MiB exceeds the 6 MiB Lambda sync payload limit",)


def test_api_gateway_limit_applies_when_it_is_the_lower_one() -> None:
    # The Lambda's 6 MB cannot be raised (config refuses more); a deployment's API limit can be lower.
    cfg = make([spec(profile=PROFILE_1MS)], runtime={"sync_payload_mb": 6, "api_payload_mb": 5})
    m = only(cfg)
    assert decide(m, sync(1, 5 * MIB), cfg, WARM).route is Route.INLINE
    d = decide(m, sync(1, 5 * MIB + 1), cfg, WARM)
    assert d.route is None and d.payload_limited
    assert "5 MiB API Gateway payload limit" in d.reason


@pytest.mark.parametrize(("payload", "ok"), [(6 * MIB, True), (6 * MIB + 1, False)])
def test_endpoint_payload_limit_is_6_mib(payload: int, ok: bool) -> None:
    cfg = make([spec(framework="pytorch", profile=PROFILE_1MS, endpoint={"name": "ep"})])
    d = decide(only(cfg), sync(1, payload), cfg, UP)
    assert (d.route is Route.ENDPOINT) is ok
    assert d.payload_limited is (not ok)
    if not ok:
        assert "SageMaker endpoint payload" in cand(d, Route.ENDPOINT).reasons[0]


def test_not_payload_limited_when_time_also_fails() -> None:
    cfg = make([spec(profile=PROFILE_1MS)], runtime={**HALF, "sync_timeout_s": 20})
    d = decide(only(cfg), sync(20_000, 7 * MIB), cfg, WARM)
    assert d.route is None
    assert not d.payload_limited
    assert len(cand(d, Route.INLINE).reasons) == 2


def test_payload_limited_when_one_route_fails_only_on_payload() -> None:
    # The endpoint is unavailable, inline fails only on size: shrinking the payload would help -> 413.
    cfg = make([spec(profile=PROFILE_1MS, endpoint={"name": "ep"})])
    d = decide(only(cfg), sync(1, 7 * MIB), cfg, BackendState(warm=True, endpoint_in_service=False))
    assert d.route is None and d.payload_limited
    assert "only the payload size" in d.reason


def test_job_mode_ignores_payload_size() -> None:
    cfg = make([spec(profile=PROFILE_1MS)])
    d = decide(only(cfg), RequestShape(Mode.JOB, 1, 500 * MIB), cfg)
    assert d.route is Route.LAMBDA_JOB and not d.payload_limited


# ------------------------------------------------------------------ endpoint


@pytest.mark.parametrize(("records", "ok"), [(29_999, True), (30_000, True), (30_001, False)])
def test_endpoint_within_margin_times_60_s_invocation_timeout(records: int, ok: bool) -> None:
    # sync budget raised to 120 s so the endpoint's 60 s is binding: 0.5 x 60 = 30 s.
    cfg = make(
        [spec(framework="pytorch", profile=PROFILE_1MS, endpoint={"name": "ep"})],
        runtime={**HALF, "sync_timeout_s": 120},
        routing={"endpoint_overhead_ms": 0},
    )
    d = decide(only(cfg), sync(records), cfg, UP)
    assert (d.route is Route.ENDPOINT) is ok
    if not ok:
        assert "exceeds 0.5 x 60 s endpoint timeout" in cand(d, Route.ENDPOINT).reasons[0]


def test_endpoint_also_within_the_sync_budget() -> None:
    cfg = make(
        [spec(framework="pytorch", profile=PROFILE_1MS, endpoint={"name": "ep"})],
        runtime={**HALF, "sync_timeout_s": 20},
        routing={"endpoint_overhead_ms": 0},
    )
    m = only(cfg)
    assert decide(m, sync(10_000), cfg, UP).route is Route.ENDPOINT
    assert decide(m, sync(10_001), cfg, UP).route is None


@pytest.mark.parametrize(
    ("in_service", "text"), [(False, "ep is not InService"), (None, "status unknown")]
)
def test_endpoint_must_be_in_service(in_service: bool | None, text: str) -> None:
    cfg = make([spec(framework="pytorch", profile=PROFILE_1MS, endpoint={"name": "ep"})])
    d = decide(only(cfg), sync(1), cfg, BackendState(endpoint_in_service=in_service))
    assert d.route is None
    assert not d.payload_limited
    assert text in cand(d, Route.ENDPOINT).reasons[0]


def test_endpoint_cost_is_marginal_instance_time_or_none_without_price() -> None:
    cfg = make(
        [spec(framework="pytorch", profile={"load_s": 0, "per_record_ms": 1000}, endpoint={"name": "ep", "instance_type": "ml.m5.large"})],
        routing={"endpoint_overhead_ms": 0},
        prices={"instance_hour": {"ml.m5.large": 3.6}},
    )
    d = decide(only(cfg), sync(10), cfg, UP)
    assert d.estimates is not None and d.estimates.cost_usd == pytest.approx(3.6 * 10 / 3600)
    cfg2 = make([spec(framework="pytorch", endpoint={"name": "ep", "instance_type": "ml.c5.large"})])
    d2 = decide(only(cfg2), sync(1), cfg2, UP)
    assert d2.route is Route.ENDPOINT and d2.estimates is not None and d2.estimates.cost_usd is None


# ------------------------------------------------------------------ in-process eligibility


def test_pytorch_is_never_inline_or_lambda_job() -> None:
    cfg = make([spec(framework="pytorch", profile={"load_s": 0, "per_record_ms": 0}, size_bytes=1)], sagemaker=BATCH)
    m = only(cfg)
    s = decide(m, sync(1), cfg, WARM)
    assert s.route is None and not s.payload_limited
    assert "pytorch does not run in-process" in cand(s, Route.INLINE).reasons[0]
    j = decide(m, job(1), cfg, WARM)
    assert j.route is Route.BATCH_TRANSFORM
    assert not cand(j, Route.LAMBDA_JOB).feasible


def test_inline_false_keeps_an_sklearn_model_out_of_the_lambda() -> None:
    cfg = make([spec(inline=False, profile=PROFILE_1MS)])
    d = decide(only(cfg), sync(1), cfg, WARM)
    assert d.route is None
    assert "inline: false" in cand(d, Route.INLINE).reasons[0]


@pytest.mark.parametrize(("memory_mb", "ok"), [(1500, True), (1500.5, False)])
def test_measured_memory_within_margin_times_lambda_memory(memory_mb: float, ok: bool) -> None:
    cfg = make(
        [spec(profile={**PROFILE_1MS, "memory_mb": memory_mb})],
        runtime={**HALF, "lambda_memory_mb": 3000},
    )
    m = only(cfg)
    assert (decide(m, sync(1), cfg, WARM).route is Route.INLINE) is ok
    j = decide(m, job(1), cfg)
    assert (j.route is Route.LAMBDA_JOB) is ok
    if not ok:
        assert "over 0.5 x 3000 MB Lambda memory" in cand(j, Route.LAMBDA_JOB).reasons[0]


@pytest.mark.parametrize(("size", "ok"), [(500 * MIB, True), (500 * MIB + 1, False)])
def test_memory_defaults_to_three_times_artifact_size(size: int, ok: bool) -> None:
    # 3 x 500 MiB = 1500 MB = 0.5 x 3000 MB.
    cfg = make([spec(profile=PROFILE_1MS, size_bytes=size)], runtime={**HALF, "lambda_memory_mb": 3000})
    d = decide(only(cfg), sync(1), cfg, WARM)
    assert (d.route is Route.INLINE) is ok
    if not ok:
        assert "3 x artifact size" in cand(d, Route.INLINE).reasons[0]


def test_unknown_memory_is_assumed_to_fit_and_said_so() -> None:
    cfg = make([spec(profile=PROFILE_1MS)])
    d = decide(only(cfg), sync(1), cfg, WARM)
    assert d.route is Route.INLINE
    assert "memory footprint unknown" in d.reason


@pytest.mark.parametrize(("size", "ok"), [(512 * MIB, True), (512 * MIB + 1, False)])
def test_artifact_must_fit_lambda_tmp(size: int, ok: bool) -> None:
    cfg = make(
        [spec(profile={**PROFILE_1MS, "memory_mb": 100}, size_bytes=size)],
        runtime={"lambda_ephemeral_mb": 512},
    )
    d = decide(only(cfg), sync(1), cfg, WARM)
    assert (d.route is Route.INLINE) is ok
    if not ok:
        assert "Lambda /tmp" in cand(d, Route.INLINE).reasons[0]


# ------------------------------------------------------------------ lambda-job and batch


@pytest.mark.parametrize(
    ("records", "route"),
    [(449_999, Route.LAMBDA_JOB), (450_000, Route.LAMBDA_JOB), (450_001, Route.BATCH_TRANSFORM)],
)
def test_lambda_job_within_margin_times_15_minute_timeout(records: int, route: Route) -> None:
    cfg = make([spec(profile=PROFILE_1MS)], runtime={**HALF, "lambda_timeout_s": 900}, sagemaker=BATCH)
    d = decide(only(cfg), job(records), cfg)
    assert d.route is route
    if route is Route.BATCH_TRANSFORM:
        assert "not lambda-job" in d.reason and "exceeds 0.5 x 900 s Lambda timeout" in d.reason
    assert max_records(only(cfg), cfg, Route.LAMBDA_JOB) == 450_000


def test_lambda_job_load_time_always_counts() -> None:
    cfg = make([spec(profile={"load_s": 50, "per_record_ms": 1})], runtime={**HALF, "lambda_timeout_s": 100})
    m = only(cfg)
    assert decide(m, job(0), cfg, WARM).route is Route.LAMBDA_JOB  # 50 s <= 50 s
    d = decide(m, job(1), cfg, WARM)
    assert d.route is None
    assert d.reason.startswith("no feasible route: lambda-job: est.")
    assert "batch transform not configured" in d.reason


def test_lambda_job_cost_is_gb_seconds_plus_request() -> None:
    cfg = make([spec(profile={"load_s": 0, "per_record_ms": 1000})], runtime={"lambda_memory_mb": 2048})
    d = decide(only(cfg), job(10), cfg)
    assert d.estimates is not None
    assert d.estimates.cost_usd == pytest.approx(0.0000166667 * 2 * 10 + 0.0000002)


def test_batch_transform_estimates_use_parallelism_and_instance_price() -> None:
    cfg = make(
        [spec(framework="pytorch", profile={"load_s": 10, "per_record_ms": 100})],
        sagemaker={"batch_transform": {"instance_type": "ml.m5.xlarge", "instance_count": 2, "max_concurrent_transforms": 2, "max_payload_mb": 6}},
        routing={"batch_startup_s": 290},
        prices={"instance_hour": {"ml.m5.xlarge": 0.36}},
    )
    d = decide(only(cfg), job(4_000), cfg)
    assert d.route is Route.BATCH_TRANSFORM
    assert d.estimates is not None
    assert d.estimates.duration_s == pytest.approx(290 + 10 + 4_000 * 0.1 / 4)  # 400 s
    assert d.estimates.cost_usd == pytest.approx(0.36 * 2 * 400 / 3600)


def test_batch_transform_is_time_feasible_for_huge_jobs_and_needs_no_role() -> None:
    cfg = make([spec(framework="pytorch", profile=PROFILE_1MS)], sagemaker=BATCH)
    assert cfg.sagemaker.execution_role_arn is None
    assert decide(only(cfg), job(10**10), cfg).route is Route.BATCH_TRANSFORM


def test_batch_transform_disabled_per_model() -> None:
    cfg = make([spec(framework="pytorch", batch_transform={"enabled": False})], sagemaker=BATCH)
    d = decide(only(cfg), job(1), cfg)
    assert d.route is None
    assert "batch transform disabled for this model" in cand(d, Route.BATCH_TRANSFORM).reasons


# ------------------------------------------------------------------ preference


def _both_sync(prefer: str, price: float, load_s: float = 1.0) -> RouterConfig:
    return make(
        [spec(profile={"load_s": load_s, "per_record_ms": 1}, endpoint={"name": "ep", "instance_type": "ml.m5.large"})],
        routing={"prefer": prefer},
        prices={"instance_hour": {"ml.m5.large": price}},
    )


def test_prefer_latency_in_sync_picks_the_faster_route() -> None:
    cfg = _both_sync("latency", 0.115)
    m = only(cfg)
    # Latency is judged in the steady state: a cold inline model pays its 1 s load once per Lambda
    # instance, then beats the endpoint's 20 ms overhead on every later request. (Judging by the
    # first request would send everything to the endpoint and inline would never warm up.)
    cold = decide(m, sync(10), cfg, UP)
    assert cold.route is Route.INLINE and "faster than endpoint" in cold.reason and "once loaded" in cold.reason
    assert cold.estimates is not None and cold.estimates.duration_s > 1.0  # the estimate still shows the load
    warm = decide(m, sync(10), cfg, WARM_UP)  # no load vs 20 ms overhead
    assert warm.route is Route.INLINE and "faster than endpoint" in warm.reason and "once loaded" not in warm.reason
    # A cold model whose load does not fit the sync budget is not feasible inline at all.
    slow = _both_sync("latency", 0.115, load_s=30.0)
    assert decide(only(slow), sync(10), slow, UP).route is Route.ENDPOINT


@pytest.mark.parametrize(("price", "route"), [(1000.0, Route.INLINE), (0.0001, Route.ENDPOINT)])
def test_prefer_cost_in_sync_picks_the_cheaper_route(price: float, route: Route) -> None:
    cfg = _both_sync("cost", price)
    d = decide(only(cfg), sync(10), cfg, WARM_UP)
    assert d.route is route
    assert "cheaper than" in d.reason


def test_ties_go_to_the_first_candidate() -> None:
    cfg = make(
        [spec(profile={"load_s": 0, "per_record_ms": 1}, endpoint={"name": "ep"})],
        routing={"endpoint_overhead_ms": 0},
    )
    d = decide(only(cfg), sync(10), cfg, WARM_UP)  # both exactly 10 ms
    assert d.route is Route.INLINE
    assert "first on ties" in d.reason


def _both_job(prefer: str, **batch: Any) -> RouterConfig:
    bt = {"instance_type": "ml.m5.xlarge", "max_payload_mb": 1, **batch}
    return make([spec(profile=PROFILE_1MS)], routing={"prefer": prefer}, sagemaker={"batch_transform": bt})


def test_prefer_latency_in_job_mode_keeps_lambda_job_when_batch_cannot_be_faster() -> None:
    cfg = _both_job("latency")  # one instance: batch is start-up + the same work
    d = decide(only(cfg), job(700_000), cfg)
    assert d.route is Route.LAMBDA_JOB and "faster than batch-transform" in d.reason


def test_prefer_latency_in_job_mode_switches_to_parallel_batch_from_a_size_on() -> None:
    # 4-way parallel batch with 300 s start-up beats lambda-job once 0.75 x n x 1 ms > 300 s: n > 400,000.
    cfg = _both_job("latency", instance_count=4)
    m = only(cfg)
    assert decide(m, job(400_000), cfg).route is Route.LAMBDA_JOB
    d = decide(m, job(400_001), cfg)
    assert d.route is Route.BATCH_TRANSFORM
    assert "faster than lambda-job" in d.reason and "from 400,001 records up" in d.reason


def test_prefer_cost_in_job_mode_with_unknown_batch_price_keeps_lambda_job() -> None:
    cfg = make(
        [spec(profile=PROFILE_1MS)],
        routing={"prefer": "cost"},
        sagemaker={"batch_transform": {"instance_type": "ml.c5.xlarge"}},
    )
    d = decide(only(cfg), job(100_000), cfg)
    assert d.route is Route.LAMBDA_JOB
    assert cand(d, Route.BATCH_TRANSFORM).estimates.cost_usd is None


def test_prefer_cost_in_job_mode_takes_cheap_batch() -> None:
    cfg = make(
        [spec(profile=PROFILE_1MS)],
        routing={"prefer": "cost", "batch_startup_s": 0},
        prices={"instance_hour": {"ml.m5.xlarge": 0.0000001}},
        sagemaker=BATCH,
    )
    d = decide(only(cfg), job(1_000), cfg)
    assert d.route is Route.BATCH_TRANSFORM and "cheaper than lambda-job" in d.reason


def _batch_cheap_when_small(lambda_timeout_s: float) -> RouterConfig:
    # Lambda: $0.01 per request, almost free per second. Batch: no fixed cost, $0.01 per second.
    # Batch is cheaper below ~1,000 records and dearer above.
    return make(
        [spec(profile=PROFILE_1MS)],
        runtime={"lambda_timeout_s": lambda_timeout_s, "safety_margin": 0.5},
        routing={"prefer": "cost", "batch_startup_s": 0},
        prices={"lambda_request": 0.01, "lambda_gb_s": 0.0000001, "instance_hour": {"ml.m5.xlarge": 36.0}},
        sagemaker=BATCH,
    )


def test_prefer_cost_never_moves_larger_jobs_back_to_lambda_job() -> None:
    cfg = _batch_cheap_when_small(900)  # lambda-job takes up to 450,000 records, batch loses there
    m = only(cfg)
    small = decide(m, job(10), cfg)
    # Batch is cheaper at 10 records, but choosing it would send 10 records to batch and
    # 10,000 back to lambda-job: lambda-job keeps every size it can take.
    assert cand(small, Route.BATCH_TRANSFORM).estimates.cost_usd < cand(small, Route.LAMBDA_JOB).estimates.cost_usd
    assert small.route is Route.LAMBDA_JOB
    assert "monotone" in small.reason
    assert decide(m, job(10_000), cfg).route is Route.LAMBDA_JOB
    assert decide(m, job(450_001), cfg).route is Route.BATCH_TRANSFORM


def test_prefer_cost_takes_batch_everywhere_when_cheaper_even_at_lambda_jobs_limit() -> None:
    cfg = _batch_cheap_when_small(1)  # lambda-job takes only up to 500 records, batch cheaper there
    m = only(cfg)
    for n in (0, 10, 500, 501, 10_000):
        assert decide(m, job(n), cfg).route is Route.BATCH_TRANSFORM, n


# ------------------------------------------------------------------ reasons and formats


def test_default_profile_is_used_and_called_assumed() -> None:
    cfg = make([spec()], routing={"default_profile": {"load_s": 0, "per_record_ms": 2}})
    d = decide(only(cfg), sync(1_000), cfg)
    assert d.estimates is not None and d.estimates.duration_s == pytest.approx(2.0)
    assert "default profile assumed" in d.reason


def test_latency_objective_miss_is_noted() -> None:
    cfg = make([spec(profile=PROFILE_1MS, latency_ms=5)])
    assert "above the 5 ms latency objective" in decide(only(cfg), sync(10), cfg, WARM).reason
    assert "latency objective" not in decide(only(cfg), sync(5), cfg, WARM).reason


def test_reason_is_one_line_and_names_the_numbers() -> None:
    cfg = make([spec(profile={"load_s": 0.2, "per_record_ms": 0.05})])
    d = decide(only(cfg), sync(1_000), cfg)
    assert "\n" not in d.reason
    assert d.reason.startswith("inline: est. 250 ms (cold load 200 ms + 1,000 x 50 µs) <= 0.8 x 29 s sync budget")


def test_every_candidate_of_the_mode_is_returned_in_order() -> None:
    cfg = make([spec(profile=PROFILE_1MS)])
    m = only(cfg)
    assert [c.route for c in decide(m, sync(1), cfg).candidates] == [Route.INLINE, Route.ENDPOINT]
    assert [c.route for c in decide(m, job(1), cfg).candidates] == [Route.LAMBDA_JOB, Route.BATCH_TRANSFORM]
    feasible = decide(m, sync(1), cfg)
    assert cand(feasible, Route.INLINE).reasons == ()
    assert cand(feasible, Route.ENDPOINT).reasons == ("no endpoint configured for this model",)


def test_negative_sizes_are_rejected() -> None:
    cfg = make([spec()])
    with pytest.raises(InvalidRequest):
        decide(only(cfg), sync(-1), cfg)
    with pytest.raises(InvalidRequest):
        decide(only(cfg), sync(1, -1), cfg)


def test_max_records_per_route() -> None:
    cfg = make([spec(profile={"load_s": 2, "per_record_ms": 1})], runtime={**HALF, "sync_timeout_s": 20})
    m = only(cfg)
    assert max_records(m, cfg, Route.INLINE) == 8_000
    assert max_records(m, cfg, Route.INLINE, WARM) == 10_000
    assert max_records(m, cfg, Route.BATCH_TRANSFORM) is None
    pt = make([spec(framework="pytorch")])
    assert max_records(only(pt), pt, Route.INLINE) == -1
    free = make([spec(profile={"load_s": 0, "per_record_ms": 0})])
    assert max_records(only(free), free, Route.LAMBDA_JOB) is None


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 s"), (0.00005, "50 µs"), (0.25, "250 ms"), (1.5, "1.5 s"), (29, "29 s"), (2460, "41 min"), (9000, "2.5 h"), (86400 * 3, "3 d")],
)
def test_fmt_duration(seconds: float, text: str) -> None:
    assert fmt_duration(seconds) == text


def test_fmt_cost_and_bytes() -> None:
    assert fmt_cost(None) == "n/a"
    assert fmt_cost(0.0000032) == "$0.0000032"
    assert fmt_cost(12.5) == "$12.50"
    assert fmt_bytes(6 * MIB) == "6 MiB"
    assert fmt_bytes(512) == "512 B"


# ------------------------------------------------------------------ per-route timings and warm/cold


def test_route_timings_replace_per_record_ms_and_keep_the_budget_boundary() -> None:
    # inline: 1 s fixed + 1 ms/record, budget 0.5 x 20 s = 10 s: 9,000 records fit exactly.
    prof = {"load_s": 5, "per_record_ms": 50, "routes": {"inline": {"fixed_ms": 1000, "per_record_ms": 1}}}
    cfg = make([spec(profile=prof)], runtime={**HALF, "sync_timeout_s": 20})
    m = only(cfg)
    assert decide(m, sync(9_000), cfg, WARM).route is Route.INLINE
    assert decide(m, sync(9_001), cfg, WARM).route is None
    assert max_records(m, cfg, Route.INLINE, WARM) == 9_000
    d = decide(m, sync(1_000), cfg, WARM)
    assert d.estimates is not None and d.estimates.duration_s == 2.0
    assert "warm: 1 s + 1,000 x 1 ms" in d.reason
    # A route without an entry keeps the profile's per_record_ms and no fixed part.
    lam = cand(decide(m, job(1_000), cfg), Route.LAMBDA_JOB)
    assert lam.estimates.duration_s == 5 + 50.0


def test_a_warm_worker_pays_no_load_a_cold_one_pays_it_all() -> None:
    # lambda-job: 0.5 x 100 s = 50 s budget; load 10 s; 2 s fixed + 1 ms/record.
    prof = {"load_s": 10, "import_s": 6, "per_record_ms": 9, "routes": {"lambda-job": {"fixed_ms": 2000, "per_record_ms": 1}}}
    cfg = make([spec(profile=prof)], runtime={**HALF, "lambda_timeout_s": 100})
    m = only(cfg)
    cold, warm, framework = BackendState(), BackendState(worker_warm=True), BackendState(worker_framework_warm=True)
    assert max_records(m, cfg, Route.LAMBDA_JOB, cold) == 38_000  # 10 + 2 + n/1000 <= 50
    assert max_records(m, cfg, Route.LAMBDA_JOB, framework) == 44_000  # 4 + 2 + n/1000
    assert max_records(m, cfg, Route.LAMBDA_JOB, warm) == 48_000  # 2 + n/1000
    for state, limit in ((cold, 38_000), (framework, 44_000), (warm, 48_000)):
        assert decide(m, job(limit), cfg, state).route is Route.LAMBDA_JOB
        assert decide(m, job(limit + 1), cfg, state).route is None
    assert "(worker warm: 2 s + 1,000 x 1 ms)" in decide(m, job(1_000), cfg, warm).reason
    assert "cold load 10 s + 2 s + 1,000 x 1 ms" in decide(m, job(1_000), cfg, cold).reason


def test_a_framework_loaded_in_this_process_skips_the_import_inline() -> None:
    prof = {"load_s": 3, "import_s": 2, "per_record_ms": 1}
    cfg = make([spec(profile=prof)], runtime={**HALF, "sync_timeout_s": 20})
    m = only(cfg)
    assert max_records(m, cfg, Route.INLINE, BackendState()) == 7_000
    assert max_records(m, cfg, Route.INLINE, BackendState(framework_warm=True)) == 9_000
    assert "cold load 1 s" in decide(m, sync(10), cfg, BackendState(framework_warm=True)).reason


def test_endpoint_and_batch_use_their_own_timings() -> None:
    prof = {"load_s": 1, "per_record_ms": 10, "routes": {
        "endpoint": {"fixed_ms": 5, "per_record_ms": 2}, "batch-transform": {"fixed_ms": 1000, "per_record_ms": 4}}}
    cfg = make([spec(profile=prof, inline=False, endpoint={"name": "ep"})], sagemaker=BATCH, routing={"batch_startup_s": 100})
    m = only(cfg)
    ep = cand(decide(m, sync(10), cfg, UP), Route.ENDPOINT)
    assert ep.estimates.duration_s == pytest.approx((20 + 5 + 10 * 2) / 1000)  # overhead + fixed + per-record
    bat = cand(decide(m, job(1_000), cfg), Route.BATCH_TRANSFORM)
    assert bat.estimates.duration_s == pytest.approx(100 + 1 + 1 + 4.0)


def test_an_old_profile_means_what_it_meant() -> None:
    # {load_s, per_record_ms} without routes: every route uses per_record_ms, jobs pay the load cold.
    cfg = make([spec(profile={"load_s": 2, "per_record_ms": 1})])
    m = only(cfg)
    assert cand(decide(m, job(1_000), cfg), Route.LAMBDA_JOB).estimates.duration_s == 3.0
    assert decide(m, sync(1_000), cfg, WARM).estimates.duration_s == 1.0  # type: ignore[union-attr]


# ------------------------------------------------------------------ async-inference (job)

ASYNC_UP = BackendState(async_in_service=True)


def async_model(**kw: Any) -> dict[str, Any]:
    return spec(inline=False, profile={"load_s": 2, "per_record_ms": 1}, async_inference={"min_instances": 0, **kw})


def test_async_inference_takes_a_job_batch_would_take_when_an_instance_is_up() -> None:
    cfg = make([async_model()], runtime=HALF, sagemaker=BATCH)
    d = decide(only(cfg), job(1000), cfg, ASYNC_UP)
    assert d.route is Route.ASYNC_INFERENCE
    assert [c.route for c in d.candidates] == [Route.LAMBDA_JOB, Route.ASYNC_INFERENCE, Route.BATCH_TRANSFORM]
    assert d.reason.startswith("async-inference: est. 1.02 s (20 ms overhead + 1,000 x 1 ms) on router-m-async (ml.m5.large, scales to zero)")
    assert "faster than batch-transform" in d.reason and "not lambda-job" in d.reason


def test_async_from_zero_pays_the_start_up_and_the_idle_tail() -> None:
    cfg = make([async_model(scale_to_zero_after_s=600)], routing={"async_startup_s": 100}, prices={"instance_hour": {"ml.m5.large": 3.6}})
    cold = cand(decide(only(cfg), job(1000), cfg), Route.ASYNC_INFERENCE)
    warm = cand(decide(only(cfg), job(1000), cfg, ASYNC_UP), Route.ASYNC_INFERENCE)
    assert cold.estimates.duration_s == pytest.approx(100 + 2 + 1.0)  # the overhead is inside the start-up
    assert cold.estimates.cost_usd == pytest.approx(3.6 * (103.0 + 600) / 3600)
    assert warm.estimates.cost_usd == pytest.approx(3.6 * 1.02 / 3600)


@pytest.mark.parametrize(("records", "route"), [(1_799, Route.ASYNC_INFERENCE), (1_800, Route.BATCH_TRANSFORM)])
def test_async_within_margin_times_the_invocation_limit(records: int, route: Route) -> None:
    # 0.5 x 900 s invocation limit = 450 s, run = 20 ms + records x 250 ms.
    m = spec(inline=False, profile={"load_s": 0, "per_record_ms": 250}, async_inference={"invocation_timeout_s": 900})
    cfg = make([m], runtime=HALF, sagemaker=BATCH)
    d = decide(only(cfg), job(records), cfg, ASYNC_UP)
    assert d.route is route, d.reason
    assert max_records(only(cfg), cfg, Route.ASYNC_INFERENCE, ASYNC_UP) == 1_799


def test_a_request_over_one_gib_never_goes_to_async_inference() -> None:
    cfg = make([async_model()], sagemaker=BATCH)
    d = decide(only(cfg), RequestShape(Mode.JOB, 10, 1024 * MIB + 1), cfg, ASYNC_UP)
    assert d.route is Route.BATCH_TRANSFORM
    assert "payload 1 GiB exceeds the 1024 MiB SageMaker async inference payload limit" in d.reason


def test_without_batch_lambda_job_takes_back_what_async_cannot() -> None:
    m = spec(profile={"load_s": 0, "per_record_ms": 1}, async_inference={})
    cfg = make([m], runtime=HALF)
    over = RequestShape(Mode.JOB, 1000, 1024 * MIB + 1)
    assert decide(only(cfg), job(1000), cfg, ASYNC_UP).route is Route.LAMBDA_JOB
    assert decide(only(cfg), over, cfg, ASYNC_UP).route is Route.LAMBDA_JOB


def test_cold_async_ties_a_one_instance_batch_and_is_taken_first() -> None:
    cfg = make([async_model()], sagemaker=BATCH)  # both start-ups 300 s by default
    d = decide(only(cfg), job(1000), cfg)
    assert d.route is Route.ASYNC_INFERENCE
    assert cand(d, Route.ASYNC_INFERENCE).estimates.duration_s == cand(d, Route.BATCH_TRANSFORM).estimates.duration_s
    assert "batch-transform as fast, async-inference first on ties" in d.reason


def test_a_model_without_async_inference_keeps_two_job_candidates() -> None:
    cfg = make([spec()], sagemaker=BATCH)
    assert [c.route for c in decide(only(cfg), job(1), cfg).candidates] == [Route.LAMBDA_JOB, Route.BATCH_TRANSFORM]
