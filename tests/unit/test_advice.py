"""router.advice: which way to serve a persistent endpoint's traffic costs least, table-tested."""

from __future__ import annotations

import math
from typing import Any

import pytest

from router.advice import ASYNC, DELETE, HOURS_PER_MONTH, KEEP, SERVERLESS, Traffic, advise
from router.config import ModelSpec, RouterConfig
from router.errors import InvalidRequest

SHA = "ab" * 32
TORCH = {"load_s": 8, "per_record_ms": 15}  # a model only SageMaker can run
SLOW = {"load_s": 8, "per_record_ms": 15_000}  # 15 s per request: over serverless' sync budget
KEEP_M5 = 0.115 * HOURS_PER_MONTH  # one ml.m5.large, always on
LAMBDA_GB_S = 0.0000166667 * 3008 / 1024  # the router Lambda's compute per second of waiting


def config(**model: Any) -> RouterConfig:
    spec = {"name": "m", "framework": "pytorch", "artifact": "s3://b/m.tar.gz", "sha256": SHA,
            "endpoint": {"name": "m-prod", "instance_type": "ml.m5.large"}, "profile": TORCH, **model}
    return RouterConfig.model_validate({"models": [spec]})


def model(cfg: RouterConfig) -> ModelSpec:
    return cfg.models[0]


@pytest.mark.parametrize(
    ("case", "model_kw", "per_hour", "expected"),
    [
        ("no traffic: nothing needs the endpoint", {}, 0, DELETE),
        ("no traffic, in-process model", {"framework": "sklearn", "profile": {"load_s": 1, "per_record_ms": 1}}, 0, DELETE),
        ("an in-process model never needs it", {"framework": "sklearn", "profile": {"load_s": 1, "per_record_ms": 1}}, 100_000, DELETE),
        ("a few calls an hour: serverless", {}, 10, SERVERLESS),
        ("busy: keep", {}, 1_000_000, KEEP),
        ("too slow for serverless, rare: async", {"profile": SLOW}, 1, ASYNC),
        ("too slow for serverless, steady: keep", {"profile": SLOW}, 60, KEEP),
    ],
)
def test_recommendation(case: str, model_kw: dict[str, Any], per_hour: float, expected: str) -> None:
    cfg = config(**model_kw)
    a = advise(model(cfg), cfg, Traffic(per_hour))
    assert a.recommendation == expected, (case, a.reason)
    assert a.endpoint == "m-prod" and a.reason


def test_costs_are_the_documented_formulas() -> None:
    cfg = config()
    a = advise(model(cfg), cfg, Traffic(100, records_per_invocation=10, payload_bytes=2**20))
    calls = 100 * HOURS_PER_MONTH
    wait = LAMBDA_GB_S * (0.020 + 10 * 0.015)  # the router Lambda waits overhead + 10 records on the endpoint
    assert a.option(KEEP).monthly_usd == pytest.approx(KEEP_M5 + calls * wait)
    # Serverless at the smallest memory routing accepts (1024 MB: the footprint is unknown, assumed to fit).
    charge = 0.00002 * 1 * (10 * 0.015) + 0.016 * (2**20 / 2**30)
    assert a.option(SERVERLESS).monthly_usd == pytest.approx(calls * (charge + wait))
    assert "1024 MB (smallest that fits)" in a.option(SERVERLESS).note
    # Async from zero: each call keeps an instance up 300 s start-up + 0.15 s + 600 s idle.
    up_share = 100 * (300 + 0.15 + 600) / 3600  # > 1: calls come closer than that, it stays up
    assert up_share > 1 and a.option(ASYNC).monthly_usd == pytest.approx(a.option(KEEP).monthly_usd)
    rare = advise(model(cfg), cfg, Traffic(1, records_per_invocation=10))
    router = HOURS_PER_MONTH * wait  # one call an hour: the router's submit/status, as one endpoint call
    assert rare.option(ASYNC).monthly_usd == pytest.approx(0.115 * HOURS_PER_MONTH * (900.15 / 3600) + router)


def test_break_even_is_where_the_option_costs_what_keeping_does() -> None:
    cfg = config()
    a = advise(model(cfg), cfg, Traffic(10))
    be = a.option(SERVERLESS).break_even_per_hour
    # Both pay the router Lambda's wait alike: serverless' charge against the instance decides.
    assert be == pytest.approx(KEEP_M5 / (HOURS_PER_MONTH * 0.00002 * 0.015), rel=1e-6)
    below, above = advise(model(cfg), cfg, Traffic(be * 0.99)), advise(model(cfg), cfg, Traffic(be * 1.01))
    assert below.recommendation == SERVERLESS and above.recommendation == KEEP
    assert f"keeping it pays from {be:,.0f} invocations/hour" in a.reason
    assert "serverless $" in above.reason and "cheaper below" in above.reason


def test_the_declared_serverless_memory_is_priced() -> None:
    cfg = config(serverless={"memory_mb": 4096})
    a = advise(model(cfg), cfg, Traffic(10))
    assert "4096 MB (declared)" in a.option(SERVERLESS).note
    charge = 0.00002 * 4 * 0.015
    assert a.option(SERVERLESS).monthly_usd == pytest.approx(10 * HOURS_PER_MONTH * (charge + LAMBDA_GB_S * 0.035))
    assert "4096 MB (declared), $0.0000012 per call" in a.option(SERVERLESS).note


def test_a_payload_over_serverless_limit_rules_it_out_with_routings_reason() -> None:
    cfg = config()
    a = advise(model(cfg), cfg, Traffic(10, payload_bytes=5 * 2**20))
    sl = a.option(SERVERLESS)
    assert not sl.feasible and sl.monthly_usd is None and "4 MiB SageMaker serverless payload limit" in sl.note
    assert a.recommendation != SERVERLESS


def test_a_model_that_cannot_run_elsewhere_is_not_deleted_while_it_has_traffic() -> None:
    cfg = config()
    a = advise(model(cfg), cfg, Traffic(1))
    assert not a.option(DELETE).feasible and "nothing else can serve its requests" in a.option(DELETE).note


def test_an_unpriced_instance_type_leaves_keep_unknown() -> None:
    cfg = config(endpoint={"name": "m-prod", "instance_type": "ml.c7.large"})
    a = advise(model(cfg), cfg, Traffic(10))
    assert a.option(KEEP).monthly_usd is None and a.option(SERVERLESS).break_even_per_hour is None
    assert a.recommendation == SERVERLESS  # the only priced option that can take it
    d = a.to_dict()
    assert d["options"][0] == {"option": "keep", "monthly_usd": None, "feasible": True, "note": d["options"][0]["note"],
                               "break_even_per_hour": None}


def cheap_async(profile: dict[str, Any]) -> RouterConfig:
    return RouterConfig.model_validate({
        "prices": {"instance_hour": {"ml.m5.large": 0.115, "ml.t3.medium": 0.05}},
        "models": [{"name": "m", "framework": "pytorch", "artifact": "s3://b/m", "sha256": SHA, "profile": profile,
                    "endpoint": {"name": "m-prod"}, "async_inference": {"instance_type": "ml.t3.medium"}}],
    })


def test_async_on_a_cheaper_instance_breaks_even_when_it_needs_more_instances() -> None:
    # Always up on a $0.05 instance, until the work needs more of them than one $0.115 instance costs.
    cfg = cheap_async(TORCH)
    a = advise(model(cfg), cfg, Traffic(1000))
    expected = KEEP_M5 * 3600 / (0.05 * HOURS_PER_MONTH * 0.015)
    assert a.option(ASYNC).break_even_per_hour == pytest.approx(expected, rel=1e-6)
    free = cheap_async({"load_s": 1, "per_record_ms": 0})  # work that takes no instance time
    b = advise(model(free), free, Traffic(1000))
    assert math.isinf(b.option(ASYNC).break_even_per_hour or 0) and b.to_dict()["options"][2]["break_even_per_hour"] == "inf"


def test_bad_input_is_a_clear_error() -> None:
    with pytest.raises(InvalidRequest, match="invocations_per_hour must be a finite number >= 0"):
        Traffic(-1)
    with pytest.raises(InvalidRequest, match="records_per_invocation"):
        Traffic(1, records_per_invocation=float("nan"))
    cfg = config(endpoint=None)
    with pytest.raises(InvalidRequest, match="no persistent endpoint"):
        advise(model(cfg), cfg, Traffic(1))
