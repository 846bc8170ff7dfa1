"""The serverless route (docs/routing.md "serverless (sync)"): config, limits, cold start, price,
and when it wins. Margins of 0.5 and whole milliseconds keep every boundary exact in floating point."""

from __future__ import annotations

from typing import Any

import pytest

from router.config import ModelSpec, RouterConfig, parse_config
from router.domain import BackendState, Decision, Mode, RequestShape, Route
from router.errors import ConfigError
from router.routing import GIB, MIB, decide, max_records, possible_routes

SHA = "ab" * 32
HALF = {"safety_margin": 0.5}
# No cold start, 1 ms per record: budgets and estimates are exact.
FAST = {"load_s": 0, "per_record_ms": 1, "serverless_cold_start_s": 0}
NO_OVERHEAD = {"endpoint_overhead_ms": 0}
SL = {"memory_mb": 2048, "max_concurrency": 5}
READY = BackendState(serverless_in_service=True)
READY_WARM = BackendState(serverless_in_service=True, serverless_warm=True)


def make(models: list[dict[str, Any]], **sections: Any) -> RouterConfig:
    return RouterConfig.model_validate({"version": 1, "models": models, **sections})


def spec(name: str = "m", framework: str = "pytorch", **kw: Any) -> dict[str, Any]:
    return {"name": name, "framework": framework, "artifact": f"s3://bucket/{name}", "sha256": SHA, **kw}


def only(cfg: RouterConfig) -> ModelSpec:
    assert len(cfg.models) == 1
    return cfg.models[0]


def sync(records: int, payload: int = 0) -> RequestShape:
    return RequestShape(Mode.SYNC, records, payload)


def cand(d: Decision, route: Route) -> Any:
    return next(c for c in d.candidates if c.route is route)


# ------------------------------------------------------------------ config


def test_serverless_config_defaults_and_endpoint_name() -> None:
    cfg = make([spec("iris_v2.1", serverless={})])
    m = only(cfg)
    assert m.serverless is not None and (m.serverless.memory_mb, m.serverless.max_concurrency) == (2048, 5)
    assert m.serverless_endpoint_name == "router-iris-v2-1-serverless"
    named = only(make([spec(serverless={"name": "my-sl", **SL})]))
    assert named.serverless_endpoint_name == "my-sl"


@pytest.mark.parametrize(
    ("serverless", "message"),
    [
        ({"memory_mb": 1500}, "must be one of 1024, 2048, 3072, 4096, 5120, 6144"),
        ({"memory_mb": 8192}, "less than or equal to 6144"),
        ({"max_concurrency": 0}, "greater than or equal to 1"),
        ({"max_concurrency": 201}, "less than or equal to 200"),
        ({"name": "bad_name"}, "should match pattern"),
        ({"instance_type": "ml.m5.large"}, "unknown key"),
    ],
)
def test_serverless_config_is_validated_with_its_path(serverless: dict[str, Any], message: str) -> None:
    text = (
        "models:\n  - name: m\n    framework: pytorch\n    artifact: s3://bucket/m\n    sha256: " + SHA + "\n"
        f"    serverless: {serverless}\n"
    )
    with pytest.raises(ConfigError) as e:
        parse_config(text)
    assert any(p.startswith("models[0].serverless") and message in p for p in e.value.problems), e.value.problems


def test_a_serverless_name_cannot_be_another_endpoint() -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(
            "models:\n"
            f"  - {{name: a, framework: pytorch, artifact: s3://b/a, sha256: {SHA}, endpoint: {{name: shared}}}}\n"
            f"  - {{name: b, framework: pytorch, artifact: s3://b/b, sha256: {SHA}, serverless: {{name: shared}}}}\n"
        )
    assert any("models[1].serverless" in p and "already the endpoint of model 'a'" in p for p in e.value.problems)


# ------------------------------------------------------------------ candidates


def test_serverless_is_a_candidate_only_for_models_that_declare_it() -> None:
    plain = make([spec()])
    assert [c.route for c in decide(only(plain), sync(1), plain).candidates] == [Route.INLINE, Route.ENDPOINT]
    cfg = make([spec(serverless=SL)])
    assert [c.route for c in decide(only(cfg), sync(1), cfg, READY).candidates] == [Route.INLINE, Route.ENDPOINT, Route.SERVERLESS]
    assert Route.SERVERLESS.mode is Mode.SYNC


@pytest.mark.parametrize(
    ("in_service", "text"),
    [(None, "status unknown (not checked), treated as not in service"), (False, "is not InService")],
)
def test_serverless_needs_its_endpoint_in_service(in_service: bool | None, text: str) -> None:
    cfg = make([spec(serverless=SL, profile=FAST)])
    d = decide(only(cfg), sync(1), cfg, BackendState(serverless_in_service=in_service))
    assert d.route is None
    assert text in cand(d, Route.SERVERLESS).reasons[0]
    assert "router-m-serverless" in cand(d, Route.SERVERLESS).reasons[0]


def test_chosen_when_no_persistent_endpoint_is_in_service_and_the_reason_says_why() -> None:
    cfg = make([spec(serverless=SL, profile=FAST, endpoint={"name": "m-prod"})])
    d = decide(only(cfg), sync(10), cfg, BackendState(endpoint_in_service=False, serverless_in_service=True))
    assert d.route is Route.SERVERLESS
    assert d.reason.startswith("serverless: est. ")
    assert "on router-m-serverless (2048 MB)" in d.reason
    assert "not endpoint: endpoint m-prod is not InService" in d.reason
    assert "not inline: framework pytorch does not run in-process" in d.reason


def test_an_endpoint_in_service_wins_ties_under_latency() -> None:
    # Same model server, same overhead: once warm, serverless is as fast as the endpoint, and
    # the candidate order gives the endpoint the tie.
    cfg = make([spec(serverless=SL, profile=FAST, endpoint={"name": "m-prod"})])
    d = decide(only(cfg), sync(10), cfg, BackendState(endpoint_in_service=True, serverless_in_service=True, serverless_warm=True))
    assert d.route is Route.ENDPOINT
    assert "serverless as fast, endpoint first on ties" in d.reason


def test_a_cold_serverless_endpoint_ties_with_an_endpoint_in_service_once_warm() -> None:
    # 12 s cold start + 170 ms: subtracting 12 from 12.17 in floating point would leave a hair
    # under 170 ms and call serverless "faster"; the steady estimate is computed warm instead.
    cfg = make([spec(serverless=SL, profile={"load_s": 8, "per_record_ms": 15, "serverless_cold_start_s": 12}, endpoint={"name": "m-prod"})])
    d = decide(only(cfg), sync(10), cfg, BackendState(endpoint_in_service=True, serverless_in_service=True))
    assert d.route is Route.ENDPOINT
    assert "serverless as fast, endpoint first on ties" in d.reason


@pytest.mark.parametrize("prefer", ["latency", "cost"])
def test_inline_beats_serverless_when_it_can_run_the_model(prefer: str) -> None:
    # Serverless adds the call overhead, and under cost the router Lambda waits for it anyway.
    cfg = make([spec(framework="sklearn", serverless=SL, profile=FAST)], routing={"prefer": prefer})
    assert decide(only(cfg), sync(100), cfg, READY_WARM).route is Route.INLINE


@pytest.mark.parametrize(("price", "route"), [(0.736, Route.SERVERLESS), (0.001, Route.ENDPOINT)])
def test_chosen_under_cost_when_cheaper_than_the_endpoint(price: float, route: Route) -> None:
    cfg = make(
        [spec(serverless=SL, profile=FAST, endpoint={"name": "m-prod", "instance_type": "ml.g4dn.xlarge"})],
        routing={"prefer": "cost"},
        prices={"instance_hour": {"ml.g4dn.xlarge": price}},
    )
    state = BackendState(endpoint_in_service=True, serverless_in_service=True, serverless_warm=True)
    d = decide(only(cfg), sync(100), cfg, state)
    assert d.route is route
    if route is Route.SERVERLESS:
        assert "cheaper than endpoint" in d.reason


# ------------------------------------------------------------------ limits


@pytest.mark.parametrize(("payload", "ok"), [(4 * MIB, True), (4 * MIB + 1, False)])
def test_serverless_payload_limit_is_4_mib(payload: int, ok: bool) -> None:
    cfg = make([spec(serverless=SL, profile=FAST)])
    d = decide(only(cfg), sync(1, payload), cfg, READY)
    assert (d.route is Route.SERVERLESS) is ok
    if not ok:
        assert cand(d, Route.SERVERLESS).reasons == ("payload 4 MiB exceeds the 4 MiB SageMaker serverless payload limit",)
        assert d.payload_limited  # a smaller payload would go: 413, send it as a job


@pytest.mark.parametrize(("records", "ok"), [(10_000, True), (10_001, False)])
def test_serverless_time_budget_is_the_margin_of_min_timeout_and_sync_budget(records: int, ok: bool) -> None:
    # 0.5 x min(60 s, 20 s) = 10 s; 1 ms per record, no overhead, no cold start.
    cfg = make([spec(serverless=SL, profile=FAST)], runtime={**HALF, "sync_timeout_s": 20}, routing=NO_OVERHEAD)
    d = decide(only(cfg), sync(records), cfg, READY)
    assert (d.route is Route.SERVERLESS) is ok
    if not ok:
        assert "exceeds 0.5 x 20 s sync budget" in cand(d, Route.SERVERLESS).reasons[0]
    assert max_records(only(cfg), cfg, Route.SERVERLESS, READY) == 10_000


def test_the_serverless_timeout_binds_when_the_sync_budget_is_longer() -> None:
    cfg = make([spec(serverless=SL, profile=FAST)], runtime={**HALF, "sync_timeout_s": 120, "serverless_timeout_s": 30}, routing=NO_OVERHEAD)
    d = decide(only(cfg), sync(15_001), cfg, READY)
    assert "exceeds 0.5 x 30 s serverless timeout" in cand(d, Route.SERVERLESS).reasons[0]
    assert max_records(only(cfg), cfg, Route.SERVERLESS, READY) == 15_000


def test_cold_start_counts_against_the_budget_unless_an_instance_is_up() -> None:
    prof = {"load_s": 1, "per_record_ms": 1}  # no measured cold start: startup 5 s + load 1 s
    cfg = make([spec(serverless=SL, profile=prof)], runtime={**HALF, "sync_timeout_s": 20}, routing=NO_OVERHEAD)
    m = only(cfg)
    assert decide(m, sync(4_000), cfg, READY).route is Route.SERVERLESS
    assert decide(m, sync(4_001), cfg, READY).route is None  # 6 s + 4.001 s > 10 s
    assert decide(m, sync(10_000), cfg, READY_WARM).route is Route.SERVERLESS
    assert "cold start 6 s" in decide(m, sync(10), cfg, READY).reason
    measured = make([spec(serverless=SL, profile={**prof, "serverless_cold_start_s": 2})], routing=NO_OVERHEAD)
    assert "cold start 2 s" in decide(only(measured), sync(10), measured, READY).reason


@pytest.mark.parametrize(("memory_mb", "ok"), [(1024, True), (1025, False)])
def test_the_model_must_fit_the_serverless_memory(memory_mb: float, ok: bool) -> None:
    cfg = make([spec(serverless={"memory_mb": 2048}, profile={**FAST, "memory_mb": memory_mb})], runtime=HALF)
    d = decide(only(cfg), sync(1), cfg, READY)
    assert (d.route is Route.SERVERLESS) is ok
    if not ok:
        assert "over 0.5 x 2048 MB serverless memory" in cand(d, Route.SERVERLESS).reasons[0]


# ------------------------------------------------------------------ price


def test_serverless_cost_is_gb_seconds_plus_data_plus_the_waiting_router_lambda() -> None:
    prices = {"serverless_gb_s": 0.00002, "serverless_data_gb": 0.016, "lambda_gb_s": 0.0000166667, "lambda_request": 0.0000002}
    cfg = make([spec(serverless={"memory_mb": 4096}, profile=FAST)], prices=prices, routing={"endpoint_overhead_ms": 20})
    d = decide(only(cfg), sync(1000, GIB // 8), cfg, READY_WARM)
    c = cand(d, Route.SERVERLESS)
    inference_s, duration_s = 1.0, 1.02
    expected = 0.00002 * 4 * inference_s + 0.016 / 8 + 0.0000166667 * 3008 / 1024 * duration_s + 0.0000002
    assert c.estimates.duration_s == pytest.approx(duration_s)
    assert c.estimates.cost_usd == pytest.approx(expected)


def test_cold_start_time_is_paid_by_the_router_lambda_only() -> None:
    prof = {"load_s": 0, "per_record_ms": 1, "serverless_cold_start_s": 4}
    cfg = make([spec(serverless=SL, profile=prof)], routing=NO_OVERHEAD)
    warm = cand(decide(only(cfg), sync(10), cfg, READY_WARM), Route.SERVERLESS).estimates
    cold = cand(decide(only(cfg), sync(10), cfg, READY), Route.SERVERLESS).estimates
    assert cold.duration_s - warm.duration_s == pytest.approx(4)
    lam = cfg.prices.lambda_gb_s * cfg.runtime.lambda_memory_mb / 1024
    assert cold.cost_usd - warm.cost_usd == pytest.approx(lam * 4)


def test_possible_routes_lists_serverless_for_a_model_that_declares_it() -> None:
    cfg = make([spec(serverless=SL, profile=FAST)])
    assert Route.SERVERLESS in possible_routes(only(cfg), cfg).routes
    plain = make([spec(profile=FAST)])
    opts = possible_routes(only(plain), plain)
    assert Route.SERVERLESS not in opts.routes and Route.SERVERLESS not in opts.excluded
