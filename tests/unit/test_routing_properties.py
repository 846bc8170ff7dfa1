"""Property tests of the routing invariants (docs/routing.md) over random configs, models and requests:
limits are never exceeded, decisions are deterministic, and more records never move a job back
to lambda-job nor make an infeasible request feasible, whatever the prices.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router.calibration import Sample, calibrated
from router.config import ModelSpec, RouterConfig
from router.domain import BackendState, Decision, Mode, RequestShape, Route
from router.routing import MIB, decide, max_records

SHA = "cd" * 32
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _f(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(min_value=lo, max_value=hi, allow_nan=False, allow_infinity=False)


@st.composite
def configs(draw: st.DrawFn) -> RouterConfig:
    runtime = {
        "sync_timeout_s": draw(_f(0.5, 120)),
        "lambda_timeout_s": draw(_f(1, 900)),
        "lambda_memory_mb": draw(st.integers(128, 10240)),
        "lambda_ephemeral_mb": draw(st.integers(512, 10240)),
        "safety_margin": draw(_f(0.05, 1)),
        "sync_payload_mb": draw(_f(0.5, 6)),  # AWS fixed maxima (the config refuses more)
        "api_payload_mb": draw(_f(0.5, 10)),
        "endpoint_timeout_s": draw(_f(1, 60)),
        "endpoint_payload_mb": draw(_f(0.5, 6)),
    }
    # Odd prices on purpose: batch cheaper at small sizes and dearer at large ones must not break
    # monotonicity. A missing instance price means unknown cost.
    instance_price = draw(st.one_of(st.none(), _f(0, 50)))
    prices = {
        "lambda_gb_s": draw(_f(0, 0.001)),
        "lambda_request": draw(_f(0, 0.5)),
        "instance_hour": {} if instance_price is None else {"ml.m5.xlarge": instance_price, "ml.m5.large": instance_price / 2},
    }
    routing = {
        "prefer": draw(st.sampled_from(["latency", "cost"])),
        "batch_startup_s": draw(_f(0, 900)),
        "endpoint_overhead_ms": draw(_f(0, 200)),
        "default_profile": {"load_s": draw(_f(0, 30)), "per_record_ms": draw(_f(0, 20))},
    }
    model: dict[str, Any] = {
        "name": "m",
        "framework": draw(st.sampled_from(["sklearn", "onnx", "pytorch", "container"])),
        "artifact": "s3://bucket/m",
        "sha256": SHA,
        "inline": draw(st.booleans()),
        "size_bytes": draw(st.one_of(st.none(), st.integers(0, 4096 * MIB))),
        "latency_ms": draw(st.one_of(st.none(), _f(1, 1000))),
    }
    if draw(st.booleans()):
        load = draw(_f(0, 60))
        model["profile"] = {
            "load_s": load,
            "import_s": draw(st.one_of(st.none(), _f(0, 1).map(lambda share: share * load))),
            "per_record_ms": draw(st.one_of(st.just(0.0), _f(0.0001, 50))),
            "memory_mb": draw(st.one_of(st.none(), _f(1, 12000))),
            # Per-route timings (router profile), some routes only: the rest fall back to per_record_ms.
            "routes": draw(st.dictionaries(
                st.sampled_from(["inline", "endpoint", "lambda-job", "batch-transform"]),
                st.fixed_dictionaries({"fixed_ms": _f(0, 5000), "per_record_ms": st.one_of(st.just(0.0), _f(0.0001, 50))}),
            )),
        }
    if draw(st.booleans()):
        model["endpoint"] = {"name": "ep", "instance_type": "ml.m5.large", "instance_count": draw(st.integers(1, 4))}
    if draw(st.booleans()):
        model["serverless"] = {"memory_mb": draw(st.sampled_from([1024, 2048, 3072, 4096, 5120, 6144]))}
        if "profile" in model and draw(st.booleans()):
            model["profile"]["serverless_cold_start_s"] = draw(_f(0, 30))
    sagemaker: dict[str, Any] = {}
    if draw(st.booleans()):
        sagemaker["batch_transform"] = {
            "instance_type": "ml.m5.xlarge",
            "instance_count": draw(st.integers(1, 8)),
            "max_payload_mb": 1,
            "max_concurrent_transforms": draw(st.integers(1, 10)),
        }
    if draw(st.booleans()):
        model["batch_transform"] = {"enabled": draw(st.booleans())}
    return RouterConfig.model_validate(
        {"runtime": runtime, "prices": prices, "routing": routing, "sagemaker": sagemaker, "models": [model]}
    )


@st.composite
def skewed_cost_configs(draw: st.DrawFn) -> RouterConfig:
    """prefer=cost where batch has the lower intercept and the steeper slope: cheaper for small
    jobs, dearer for large ones. The naive "cheapest now" rule flips back to lambda-job here."""
    return RouterConfig.model_validate(
        {
            "runtime": {"lambda_timeout_s": draw(_f(1, 900)), "safety_margin": draw(_f(0.1, 1))},
            "routing": {"prefer": "cost", "batch_startup_s": draw(_f(0, 5))},
            "prices": {
                "lambda_request": draw(_f(0.001, 0.5)),
                "lambda_gb_s": draw(_f(0, 0.00001)),
                "instance_hour": {"ml.m5.xlarge": draw(_f(1, 100))},
            },
            "sagemaker": {"batch_transform": {"instance_type": "ml.m5.xlarge", "max_payload_mb": 1,
                                              "max_concurrent_transforms": draw(st.integers(1, 3))}},
            "models": [
                {"name": "m", "framework": "sklearn", "artifact": "s3://bucket/m", "sha256": SHA,
                 "profile": {"load_s": draw(_f(0, 1)), "per_record_ms": draw(_f(0.01, 10))}}
            ],
        }
    )


states = st.builds(
    BackendState, warm=st.booleans(), endpoint_in_service=st.one_of(st.none(), st.booleans()),
    framework_warm=st.booleans(), worker_warm=st.booleans(), worker_framework_warm=st.booleans(),
    serverless_in_service=st.one_of(st.none(), st.booleans()), serverless_warm=st.booleans(),
)
records = st.integers(0, 10**10)
payloads = st.integers(0, 30 * MIB)


def _model(cfg: RouterConfig) -> ModelSpec:
    return cfg.models[0]


def _check_limits(d: Decision, cfg: RouterConfig, req: RequestShape, state: BackendState) -> None:
    rt = cfg.runtime
    m = _model(cfg)
    feasible = [c for c in d.candidates if c.feasible]
    assert (d.route is None) == (not feasible)
    assert "\n" not in d.reason and d.reason
    if d.route is not None:
        chosen = next(c for c in d.candidates if c.route is d.route)
        assert chosen.feasible and chosen.reasons == ()
        assert d.estimates == chosen.estimates
        assert d.route.mode is req.mode
        assert not d.payload_limited
    est = d.estimates.duration_s if d.estimates else 0.0
    if d.route is Route.INLINE:
        assert m.in_process
        assert est <= rt.safety_margin * rt.sync_timeout_s
        assert req.payload_bytes <= min(rt.sync_payload_mb, rt.api_payload_mb) * MIB
    if d.route is Route.ENDPOINT:
        assert m.endpoint is not None and state.endpoint_in_service is True
        assert req.payload_bytes <= rt.endpoint_payload_mb * MIB
        assert est <= rt.safety_margin * min(rt.endpoint_timeout_s, rt.sync_timeout_s)
    if d.route is Route.SERVERLESS:
        assert m.serverless is not None and state.serverless_in_service is True
        assert req.payload_bytes <= rt.serverless_payload_mb * MIB
        assert est <= rt.safety_margin * min(rt.serverless_timeout_s, rt.sync_timeout_s)
    if d.route is Route.LAMBDA_JOB:
        assert m.in_process
        assert est <= rt.safety_margin * rt.lambda_timeout_s
    if d.route is Route.BATCH_TRANSFORM:
        assert cfg.batch_settings(m) is not None


@SETTINGS
@given(cfg=configs(), n=records, payload=payloads, state=states, mode=st.sampled_from(list(Mode)))
def test_no_limit_is_ever_exceeded_and_decisions_are_deterministic(
    cfg: RouterConfig, n: int, payload: int, state: BackendState, mode: Mode
) -> None:
    req = RequestShape(mode, n, payload)
    d = decide(_model(cfg), req, cfg, state)
    _check_limits(d, cfg, req, state)
    assert decide(_model(cfg), req, cfg, state) == d


@SETTINGS
@given(cfg=st.one_of(configs(), skewed_cost_configs()), a=records, b=records, state=states)
def test_more_records_never_move_a_job_back_to_lambda_job(cfg: RouterConfig, a: int, b: int, state: BackendState) -> None:
    small, large = sorted((a, b))
    d_small = decide(_model(cfg), RequestShape(Mode.JOB, small, 0), cfg, state)
    d_large = decide(_model(cfg), RequestShape(Mode.JOB, large, 0), cfg, state)
    if d_small.route is Route.BATCH_TRANSFORM:
        assert d_large.route is Route.BATCH_TRANSFORM
    if d_small.route is None:
        assert d_large.route is None


@SETTINGS
@given(cfg=st.one_of(configs(), skewed_cost_configs()), state=states, data=st.data())
def test_job_routes_switch_at_most_once_over_a_size_sweep(cfg: RouterConfig, state: BackendState, data: st.DataObject) -> None:
    # Denser than two random points: sizes around lambda-job's limit, where a bad rule would flip.
    limit = max_records(_model(cfg), cfg, Route.LAMBDA_JOB, state)
    anchor = 1000 if limit is None or limit < 0 else limit
    fractions = {anchor * k // 100 for k in (0, 1, 2, 5, 10, 20, 50, 90)}
    sizes = sorted({max(0, anchor + k) for k in (-2, -1, 0, 1, 2)} | fractions | set(data.draw(st.lists(records, max_size=8))))
    routes = [decide(_model(cfg), RequestShape(Mode.JOB, n, 0), cfg, state).route for n in sizes]
    order = {Route.LAMBDA_JOB: 0, Route.BATCH_TRANSFORM: 1, None: 2}
    ranks = [order[r] for r in routes]
    assert ranks == sorted(ranks), list(zip(sizes, routes, strict=True))


@SETTINGS
@given(cfg=configs(), a=records, b=records, pa=payloads, pb=payloads, state=states)
def test_more_records_or_bytes_never_make_a_sync_request_feasible(
    cfg: RouterConfig, a: int, b: int, pa: int, pb: int, state: BackendState
) -> None:
    small, large = sorted((a, b))
    p_small, p_large = sorted((pa, pb))
    d_small = decide(_model(cfg), RequestShape(Mode.SYNC, small, p_small), cfg, state)
    d_large = decide(_model(cfg), RequestShape(Mode.SYNC, large, p_large), cfg, state)
    if d_small.route is None:
        assert d_large.route is None


@SETTINGS
@given(cfg=configs(), n=records, payload=payloads, state=states)
def test_payload_limited_means_only_the_payload_is_in_the_way(cfg: RouterConfig, n: int, payload: int, state: BackendState) -> None:
    d = decide(_model(cfg), RequestShape(Mode.SYNC, n, payload), cfg, state)
    if d.payload_limited:
        assert d.route is None
        assert decide(_model(cfg), RequestShape(Mode.SYNC, n, 0), cfg, state).route is not None
    elif d.route is None:
        # Not payload-limited: a tiny payload does not make it syncable either.
        assert decide(_model(cfg), RequestShape(Mode.SYNC, n, 0), cfg, state).route is None
    assert not decide(_model(cfg), RequestShape(Mode.JOB, n, payload), cfg, state).payload_limited


@SETTINGS
@given(cfg=st.one_of(configs(), skewed_cost_configs()), n=records, state=states)
def test_batch_is_chosen_over_a_feasible_lambda_job_only_when_it_is_better(cfg: RouterConfig, n: int, state: BackendState) -> None:
    d = decide(_model(cfg), RequestShape(Mode.JOB, n, 0), cfg, state)
    lam, bat = d.candidates
    if d.route is Route.BATCH_TRANSFORM and lam.feasible:
        if cfg.routing.prefer == "latency":
            assert bat.estimates.duration_s <= lam.estimates.duration_s * (1 + 1e-9) + 1e-9
        else:
            assert bat.estimates.cost_usd is not None and lam.estimates.cost_usd is not None
            assert bat.estimates.cost_usd <= lam.estimates.cost_usd * (1 + 1e-9) + 1e-12


@SETTINGS
@given(cfg=configs(), state=states, route=st.sampled_from([Route.INLINE, Route.ENDPOINT, Route.SERVERLESS, Route.LAMBDA_JOB]))
def test_max_records_is_the_exact_time_boundary(cfg: RouterConfig, state: BackendState, route: Route) -> None:
    m = _model(cfg)
    limit = max_records(m, cfg, route, state)
    if limit is None or limit < 0 or (route is Route.ENDPOINT and m.endpoint is None) or (route is Route.SERVERLESS and m.serverless is None):
        return  # unbounded, impossible, or no time rule evaluated (no endpoint to time)
    mode = route.mode
    time_ok = [
        not any(r.startswith("est.") for r in next(c for c in decide(m, RequestShape(mode, n, 0), cfg, state).candidates if c.route is route).reasons)
        for n in (limit, limit + 1)
    ]
    assert time_ok == [True, False]


@SETTINGS
@given(cfg=configs(), n=records, state=states, mode=st.sampled_from(list(Mode)))
def test_holding_the_model_never_makes_an_estimate_longer(cfg: RouterConfig, n: int, state: BackendState, mode: Mode) -> None:
    # Warm/cold is an input: a process that holds the model (or its framework) pays less load, never more.
    m = _model(cfg)
    cold = decide(
        m, RequestShape(mode, n, 0), cfg,
        BackendState(endpoint_in_service=state.endpoint_in_service, serverless_in_service=state.serverless_in_service),
    )
    other = decide(m, RequestShape(mode, n, 0), cfg, state)
    for c, o in zip(cold.candidates, other.candidates, strict=True):
        assert o.estimates.duration_s <= c.estimates.duration_s
        assert c.feasible <= o.feasible


@SETTINGS
@given(
    cfg=configs(), n=records, payload=payloads, state=states, mode=st.sampled_from(list(Mode)),
    measured=st.lists(st.tuples(_f(1e-6, 1e4), st.integers(0, 10**7), st.booleans()), max_size=40),
    route=st.sampled_from(["inline", "endpoint", "lambda-job", "batch-transform"]),
)
def test_calibrated_profiles_still_keep_every_limit(
    cfg: RouterConfig, n: int, payload: int, state: BackendState, mode: Mode,
    measured: list[tuple[float, int, bool]], route: str,
) -> None:
    # Whatever recent work measured, the learned profile goes through the same rules: the safety
    # margin applies to the calibrated figure and monotonicity holds.
    samples = {route: [Sample(1.0, t, max(k, 0), cold) for t, k, cold in measured]}
    learned, _ = calibrated(_model(cfg), samples)
    cal = cfg.model_copy(update={"models": [learned]})
    req = RequestShape(mode, n, payload)
    d = decide(learned, req, cal, state)
    _check_limits(d, cal, req, state)
    if mode is Mode.JOB:
        bigger = decide(learned, RequestShape(mode, n + 1 + n // 3, payload), cal, state)
        if d.route is Route.BATCH_TRANSFORM:
            assert bigger.route is Route.BATCH_TRANSFORM


@st.composite
def async_configs(draw: st.DrawFn) -> RouterConfig:
    """configs() whose model also has an async inference endpoint, with batch transform always
    available (the tier order is then kept without exception) or never."""
    data = draw(st.one_of(configs(), skewed_cost_configs())).model_dump(exclude_none=True)
    data["runtime"]["async_timeout_s"] = draw(_f(1, 3600))
    data["runtime"]["async_payload_mb"] = draw(_f(0.5, 1024))
    data["routing"]["async_startup_s"] = draw(_f(0, 900))
    model = data["models"][0]
    model.pop("batch_transform", None)
    model["async_inference"] = {
        "instance_type": draw(st.sampled_from(["ml.m5.large", "ml.g4dn.xlarge"])),  # the second has no price in configs()
        "min_instances": draw(st.integers(0, 1)),
        "max_instances": 2,
        "invocation_timeout_s": draw(st.integers(1, 3600)),
        "scale_to_zero_after_s": draw(_f(1, 3600)),
    }
    if draw(st.booleans()):
        data["sagemaker"]["batch_transform"] = {"instance_type": "ml.m5.xlarge", "max_payload_mb": 1}
    else:
        data["sagemaker"].pop("batch_transform", None)
    return RouterConfig.model_validate(data)


async_states = st.builds(
    BackendState, warm=st.booleans(), endpoint_in_service=st.one_of(st.none(), st.booleans()),
    async_in_service=st.one_of(st.none(), st.booleans()), worker_warm=st.booleans(),
)


@SETTINGS
@given(cfg=async_configs(), state=async_states, data=st.data())
def test_with_async_inference_job_routes_only_move_up_the_tiers(cfg: RouterConfig, state: BackendState, data: st.DataObject) -> None:
    m = _model(cfg)
    anchors = [x for x in (max_records(m, cfg, Route.LAMBDA_JOB, state), max_records(m, cfg, Route.ASYNC_INFERENCE, state)) if x is not None and x >= 0]
    sizes = sorted({max(0, a + k) for a in anchors or [1000] for k in (-1, 0, 1, 2)} | set(data.draw(st.lists(records, max_size=8))))
    bytes_per_record = data.draw(st.integers(0, 2000))
    decisions = [decide(m, RequestShape(Mode.JOB, n, n * bytes_per_record), cfg, state) for n in sizes]
    for n, d in zip(sizes, decisions, strict=True):
        if d.route is not None:  # only a feasible candidate is ever chosen, and the async one within its limits
            chosen = next(c for c in d.candidates if c.route is d.route)
            assert chosen.feasible, (n, d.reason)
        if d.route is Route.ASYNC_INFERENCE:
            assert n * bytes_per_record <= cfg.runtime.async_payload_mb * MIB
    if cfg.batch_settings(m) is not None:
        order = {Route.LAMBDA_JOB: 0, Route.ASYNC_INFERENCE: 1, Route.BATCH_TRANSFORM: 2, None: 3}
        ranks = [order[d.route] for d in decisions]
        assert ranks == sorted(ranks), [(n, d.route) for n, d in zip(sizes, decisions, strict=True)]
