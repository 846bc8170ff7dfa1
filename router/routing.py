"""The routing decision (docs/routing.md): a pure, deterministic function of model,
request shape, config and backend state that picks inline, endpoint, serverless, lambda-job,
async-inference or batch-transform,
with estimates and a one-line reason. No I/O, no AWS imports: requests, `/route` and `router plan` share it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from router.config import BatchTransformDefaults, ModelSpec, Profile, RouterConfig
from router.domain import BackendState, Candidate, Decision, Estimates, Mode, RequestShape, Route
from router.errors import InvalidRequest

# Every "MB" limit in the config is read as MiB (1,048,576 bytes). AWS documents the Lambda
# 6 MB payload and the SageMaker 6 MB endpoint payload in binary megabytes; using one unit
# everywhere keeps "payload_limited" and the limits shown to users consistent.
MIB = 1_048_576
GIB = 1024 * MIB

# Memory footprint of a loaded model when only its artifact size is known: deserialised
# scikit-learn/ONNX models typically take 2-3x their file size (numpy arrays, tree nodes).
MEMORY_PER_ARTIFACT_BYTE = 3

SYNC_ROUTES = (Route.INLINE, Route.ENDPOINT, Route.SERVERLESS)
JOB_ROUTES = (Route.LAMBDA_JOB, Route.ASYNC_INFERENCE, Route.BATCH_TRANSFORM)

_COLD = BackendState()

# Record counts beyond 2**53 are not exactly representable as floats; a limit that high is
# no limit for any real request, so it counts as unbounded.
_UNBOUNDED = 2.0**53

# Failure kinds: only "payload" matters to callers (413 vs 422); the others document the rule.
_PAYLOAD = "payload"
_TIME = "time"
_OTHER = "other"


@dataclass(frozen=True, slots=True)
class _Failure:
    kind: str
    text: str


@dataclass(frozen=True, slots=True)
class _Eval:
    """One candidate route being evaluated: failures (empty when feasible), estimates, and a
    human summary of the estimate ("est. 250 ms (cold load 200 ms + 1,000 x 0.05 ms) <= ...")."""

    route: Route
    failures: tuple[_Failure, ...]
    estimates: Estimates
    summary: str

    @property
    def feasible(self) -> bool:
        return not self.failures

    def candidate(self) -> Candidate:
        return Candidate(self.route, self.feasible, tuple(f.text for f in self.failures), self.estimates)

    def why_not(self) -> str:
        return f"{self.route.value}: " + ", ".join(f.text for f in self.failures)


@dataclass(frozen=True, slots=True)
class _Facts:
    """What routing knows about a model, independent of the request."""

    profile: Profile
    profile_assumed: bool
    memory_mb: float | None
    memory_source: str
    # Reasons the model cannot run inside a Lambda at all (framework, operator, memory, /tmp).
    in_process_failures: tuple[_Failure, ...]


# ---------------------------------------------------------------------------- formatting


def _sig(x: float) -> str:
    """Three significant digits, no exponent for everyday magnitudes."""
    if x >= 100:
        return f"{x:.0f}"
    return f"{x:.3g}"


def fmt_duration(seconds: float) -> str:
    """A duration for humans: '50 µs', '250 ms', '1.5 s', '41 min', '2.5 h', '3.2 d'."""
    if math.isnan(seconds):
        return "unknown"
    if math.isinf(seconds):
        return "forever" if seconds > 0 else "-forever"
    sign = "-" if seconds < 0 else ""
    s = abs(seconds)
    if s == 0:
        return "0 s"
    if s < 1e-3:
        return f"{sign}{_sig(s * 1e6)} µs"
    if s < 1:
        return f"{sign}{_sig(s * 1e3)} ms"
    if s < 60:
        return f"{sign}{_sig(s)} s"
    if s < 3600:
        return f"{sign}{_sig(s / 60)} min"
    if s < 2 * 86400:
        return f"{sign}{_sig(s / 3600)} h"
    return f"{sign}{_sig(s / 86400)} d"


def fmt_cost(usd: float | None) -> str:
    """A price with two significant digits, without exponent: '$0.0000032', '$0.03', '$12.50'."""
    if usd is None:
        return "n/a"
    if math.isinf(usd):
        return "$inf"
    if usd == 0:
        return "$0"
    if usd >= 0.01:
        return f"${usd:,.2f}"
    rounded = float(f"{usd:.2g}")
    decimals = min(12, -math.floor(math.log10(rounded)) + 1)
    return f"${rounded:.{decimals}f}"


def fmt_bytes(n: float) -> str:
    """A size in binary units: '512 B', '12.5 KiB', '6 MiB', '1.2 GiB'."""
    if n < 1024:
        return f"{n:.0f} B"
    for unit, scale in (("KiB", 1024), ("MiB", MIB), ("GiB", 1024 * MIB)):
        if n < scale * 1024 or unit == "GiB":
            return f"{_sig(n / scale)} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def fmt_count(n: float) -> str:
    """A record count with thousands separators ('1,000'); 'unbounded' for infinity."""
    if math.isinf(n):
        return "unbounded"
    return f"{int(n):,}"


def _num(x: float) -> str:
    """A config value as the operator wrote it: 29, 0.8, 900."""
    return f"{x:g}"


def _per_record(ms: float) -> str:
    return fmt_duration(ms / 1000)


# ---------------------------------------------------------------------------- model facts


def _facts(model: ModelSpec, config: RouterConfig) -> _Facts:
    profile = model.profile or config.routing.default_profile
    assumed = model.profile is None
    memory: float | None
    if model.profile is not None and model.profile.memory_mb is not None:
        memory, source = model.profile.memory_mb, "measured"
    elif model.size_bytes is not None:
        memory, source = MEMORY_PER_ARTIFACT_BYTE * model.size_bytes / MIB, f"{MEMORY_PER_ARTIFACT_BYTE} x artifact size"
    elif config.routing.default_profile.memory_mb is not None:
        memory, source = config.routing.default_profile.memory_mb, "default profile"
    else:
        memory, source = None, "unknown"

    rt = config.runtime
    failures: list[_Failure] = []
    if not model.inline:
        failures.append(_Failure(_OTHER, "in-process runs disabled for this model (inline: false)"))
    elif not model.in_process:
        failures.append(_Failure(_OTHER, f"framework {model.framework} does not run in-process (only sklearn and onnx do)"))
    else:
        # Lambda memory: 128-10,240 MB; keep the safety margin for the runtime and the request.
        if memory is not None and memory > rt.safety_margin * rt.lambda_memory_mb:
            failures.append(
                _Failure(
                    _OTHER,
                    f"model needs ~{_sig(memory)} MB ({source}), over {_num(rt.safety_margin)} x "
                    f"{rt.lambda_memory_mb} MB Lambda memory",
                )
            )
        # The artifact is cached in Lambda /tmp (ephemeral storage, 512-10,240 MB).
        if model.size_bytes is not None and model.size_bytes > rt.lambda_ephemeral_mb * MIB:
            failures.append(
                _Failure(
                    _OTHER,
                    f"artifact {fmt_bytes(model.size_bytes)} does not fit the {rt.lambda_ephemeral_mb} MiB Lambda /tmp",
                )
            )
    return _Facts(profile, assumed, memory, source, tuple(failures))


# ---------------------------------------------------------------------------- estimates


def _load_s(prof: Profile, held: bool, framework_imported: bool) -> float:
    """What a process pays before its first prediction: nothing when it holds the model, the load
    without the framework import when it imported the framework already, else the full cold load."""
    if held:
        return 0.0
    return prof.load_after_import_s() if framework_imported else prof.load_s


def _fixed(load_s: float, fixed_ms: float) -> str:
    """'cold load 3.3 s + 0.15 ms' / '0.15 ms' / 'warm' parts of an estimate's breakdown."""
    parts = ([f"cold load {fmt_duration(load_s)}"] if load_s else []) + ([fmt_duration(fixed_ms / 1000)] if fixed_ms else [])
    return " + ".join(parts)


def _run_time(fixed_s: float, records: int, per_record_ms: float, parallelism: int = 1) -> float:
    """fixed + records x per-record / parallelism. The single formula behind every estimate, so the
    feasibility check and `max_records` agree to the last bit (floating point ops are monotone)."""
    return fixed_s + records * per_record_ms / 1000 / parallelism


def _lambda_cost(config: RouterConfig, duration_s: float) -> float:
    """Lambda price of one invocation: GB-seconds at the configured memory + the request fee."""
    p = config.prices
    return p.lambda_gb_s * (config.runtime.lambda_memory_mb / 1024) * duration_s + p.lambda_request


def _largest_fitting(duration: Callable[[int], float], budget_s: float, per_record_ms: float, fixed_s: float) -> float:
    """The largest record count n with duration(n) <= budget: -1 when not even 0 fits, inf when
    records cost nothing. Starts from the closed form and corrects it with the very same predicate."""
    if not duration(0) <= budget_s:
        return -1
    per_record_s = per_record_ms / 1000
    if per_record_s <= 0:  # zero, or a denormal that underflows to zero: records cost nothing
        return math.inf
    guess = (budget_s - fixed_s) / per_record_s
    if guess >= _UNBOUNDED:
        return math.inf
    n = int(max(guess, 0))
    for _ in range(64):
        if n > 0 and not duration(n) <= budget_s:
            n -= 1
        else:
            break
    for _ in range(64):
        if duration(n + 1) <= budget_s:
            n += 1
        else:
            break
    return n


# ---------------------------------------------------------------------------- candidates


def _payload_failure(payload_bytes: int, limits: list[tuple[float, str]]) -> _Failure | None:
    mb, name = min(limits, key=lambda limit: limit[0])  # the first listed wins a tie
    if payload_bytes > mb * MIB:
        return _Failure(_PAYLOAD, f"payload {fmt_bytes(payload_bytes)} exceeds the {_num(mb)} MiB {name} limit")
    return None


def _inline(model: ModelSpec, req: RequestShape, config: RouterConfig, state: BackendState, facts: _Facts) -> _Eval:
    rt = config.runtime
    prof = facts.profile
    load = _load_s(prof, state.warm, state.framework_warm)
    fixed_ms, per_ms = prof.timing(Route.INLINE)
    duration = _run_time(load + fixed_ms / 1000, req.records, per_ms)
    estimates = Estimates(duration, _lambda_cost(config, duration))
    work = f"{fmt_count(req.records)} x {_per_record(per_ms)}"
    head = _fixed(load, fixed_ms)
    breakdown = ("warm: " if state.warm else "") + (f"{head} + {work}" if head else work)
    est = f"est. {fmt_duration(duration)} ({breakdown})"
    budget = f"{_num(rt.safety_margin)} x {_num(rt.sync_timeout_s)} s sync budget"
    if not model.in_process:
        return _Eval(Route.INLINE, facts.in_process_failures, estimates, est)
    failures = list(facts.in_process_failures)
    # Lambda synchronous invocation: 6 MB request; API Gateway REST: 10 MB.
    pf = _payload_failure(req.payload_bytes, [(rt.sync_payload_mb, "Lambda sync payload"), (rt.api_payload_mb, "API Gateway payload")])
    if pf is not None:
        failures.append(pf)
    if not duration <= rt.safety_margin * rt.sync_timeout_s:
        failures.append(_Failure(_TIME, f"{est} exceeds {budget}"))
    return _Eval(Route.INLINE, tuple(failures), estimates, f"{est} <= {budget}")


def _endpoint(model: ModelSpec, req: RequestShape, config: RouterConfig, state: BackendState, facts: _Facts) -> _Eval:
    rt = config.runtime
    prof = facts.profile
    fixed_ms, per_ms = prof.timing(Route.ENDPOINT)
    overhead = (config.routing.endpoint_overhead_ms + fixed_ms) / 1000
    duration = _run_time(overhead, req.records, per_ms)
    ep = model.endpoint
    price = None if ep is None else config.prices.instance_hour.get(ep.instance_type)
    # Marginal cost: the share of one instance-hour this request occupies (the endpoint runs anyway).
    estimates = Estimates(duration, None if price is None else price * duration / 3600)
    est = f"est. {fmt_duration(duration)} ({fmt_duration(overhead)} overhead + {fmt_count(req.records)} x {_per_record(per_ms)})"
    limit_s = min(rt.endpoint_timeout_s, rt.sync_timeout_s)
    budget = f"{_num(rt.safety_margin)} x {_num(limit_s)} s " + (
        "endpoint timeout" if rt.endpoint_timeout_s <= rt.sync_timeout_s else "sync budget"
    )
    if ep is None:
        return _Eval(Route.ENDPOINT, (_Failure(_OTHER, "no endpoint configured for this model"),), estimates, est)
    failures: list[_Failure] = []
    if state.endpoint_in_service is None:
        failures.append(_Failure(_OTHER, f"endpoint {ep.name} status unknown (not checked), treated as not in service"))
    elif not state.endpoint_in_service:
        failures.append(_Failure(_OTHER, f"endpoint {ep.name} is not InService"))
    # SageMaker real-time InvokeEndpoint: 6 MB; the request also passes the router Lambda (6 MB)
    # and API Gateway (10 MB).
    pf = _payload_failure(
        req.payload_bytes,
        [
            (rt.endpoint_payload_mb, "SageMaker endpoint payload"),
            (rt.sync_payload_mb, "Lambda sync payload"),
            (rt.api_payload_mb, "API Gateway payload"),
        ],
    )
    if pf is not None:
        failures.append(pf)
    if not duration <= rt.safety_margin * limit_s:
        failures.append(_Failure(_TIME, f"{est} exceeds {budget}"))
    return _Eval(Route.ENDPOINT, tuple(failures), estimates, f"{est} on {ep.name} <= {budget}")


def serverless_cold_start_s(prof: Profile, config: RouterConfig) -> float:
    """What a serverless endpoint with no instance up adds to a call: the profile's measured
    cold start, else the assumed instance start plus the model's cold load."""
    if prof.serverless_cold_start_s is not None:
        return prof.serverless_cold_start_s
    return config.routing.serverless_startup_s + prof.load_s


def serverless_invocation_cost(config: RouterConfig, memory_mb: int, inference_s: float, payload_bytes: int) -> float:
    """SageMaker's charge for one serverless invocation: memory GB x inference seconds x the
    GB-second price (cold start not billed) + the data processed (request bytes)."""
    p = config.prices
    return p.serverless_gb_s * memory_mb / 1024 * inference_s + p.serverless_data_gb * payload_bytes / GIB


def _serverless_fixed(facts: _Facts, config: RouterConfig, state: BackendState) -> tuple[float, float, float, float]:
    """(cold_s, call_s, fixed_s, per_record_ms) of a serverless call: the cold start unless an
    instance is up, then the endpoint's call (overhead + fixed, the very expression `_endpoint`
    uses, so a warm serverless call ties with the endpoint exactly), and the model's own fixed part."""
    prof = facts.profile
    fixed_ms, per_ms = prof.timing(Route.ENDPOINT)
    cold = 0.0 if state.serverless_warm else serverless_cold_start_s(prof, config)
    return cold, (config.routing.endpoint_overhead_ms + fixed_ms) / 1000, fixed_ms / 1000, per_ms


def _serverless_budget_s(config: RouterConfig) -> tuple[float, str]:
    rt = config.runtime
    limit_s = min(rt.serverless_timeout_s, rt.sync_timeout_s)
    name = "serverless timeout" if rt.serverless_timeout_s <= rt.sync_timeout_s else "sync budget"
    return rt.safety_margin * limit_s, f"{_num(rt.safety_margin)} x {_num(limit_s)} s {name}"


def _serverless(model: ModelSpec, req: RequestShape, config: RouterConfig, state: BackendState, facts: _Facts) -> _Eval:
    rt = config.runtime
    spec = model.serverless
    name = model.serverless_endpoint_name
    assert spec is not None and name is not None  # only models that declare it have the candidate
    cold, call, fixed, per_ms = _serverless_fixed(facts, config, state)
    inference = _run_time(fixed, req.records, per_ms)
    duration = _run_time(cold + call, req.records, per_ms)
    # SageMaker bills the inference and the data; the router Lambda waits for the whole call.
    cost = serverless_invocation_cost(config, spec.memory_mb, inference, req.payload_bytes) + _lambda_cost(config, duration)
    estimates = Estimates(duration, cost)
    head = (f"cold start {fmt_duration(cold)} + " if cold else "warm: ") + f"{fmt_duration(call)} overhead"
    est = f"est. {fmt_duration(duration)} ({head} + {fmt_count(req.records)} x {_per_record(per_ms)})"
    budget_s, budget = _serverless_budget_s(config)
    failures: list[_Failure] = []
    if state.serverless_in_service is None:
        failures.append(_Failure(_OTHER, f"serverless endpoint {name} status unknown (not checked), treated as not in service"))
    elif not state.serverless_in_service:
        failures.append(_Failure(_OTHER, f"serverless endpoint {name} is not InService"))
    # ServerlessConfig.MemorySizeInMB holds the container and the model.
    if facts.memory_mb is not None and facts.memory_mb > rt.safety_margin * spec.memory_mb:
        failures.append(
            _Failure(
                _OTHER,
                f"model needs ~{_sig(facts.memory_mb)} MB ({facts.memory_source}), over {_num(rt.safety_margin)} x "
                f"{spec.memory_mb} MB serverless memory",
            )
        )
    # Serverless InvokeEndpoint: 4 MB request and response; the request also passes the router
    # Lambda (6 MB) and API Gateway (10 MB).
    pf = _payload_failure(
        req.payload_bytes,
        [
            (rt.serverless_payload_mb, "SageMaker serverless payload"),
            (rt.sync_payload_mb, "Lambda sync payload"),
            (rt.api_payload_mb, "API Gateway payload"),
        ],
    )
    if pf is not None:
        failures.append(pf)
    if not duration <= budget_s:
        failures.append(_Failure(_TIME, f"{est} exceeds {budget}"))
    return _Eval(Route.SERVERLESS, tuple(failures), estimates, f"{est} on {name} ({spec.memory_mb} MB) <= {budget}")


def _lambda_job_fixed(facts: _Facts, state: BackendState) -> tuple[float, float, float]:
    """(load_s, fixed_s, per_record_ms) of a lambda-job: the worker pays no load when it holds the model."""
    prof = facts.profile
    fixed_ms, per_ms = prof.timing(Route.LAMBDA_JOB)
    return _load_s(prof, state.worker_warm, state.worker_framework_warm), fixed_ms / 1000, per_ms


def _lambda_job(model: ModelSpec, req: RequestShape, config: RouterConfig, state: BackendState, facts: _Facts) -> _Eval:
    rt = config.runtime
    load, fixed, per_ms = _lambda_job_fixed(facts, state)
    duration = _run_time(load + fixed, req.records, per_ms)
    estimates = Estimates(duration, _lambda_cost(config, duration))
    work = f"{fmt_count(req.records)} x {_per_record(per_ms)}"
    head = _fixed(load, fixed * 1000)
    breakdown = ("worker warm: " if state.worker_warm else "") + (f"{head} + {work}" if head else work)
    est = f"est. {fmt_duration(duration)} ({breakdown})"
    budget = f"{_num(rt.safety_margin)} x {_num(rt.lambda_timeout_s)} s Lambda timeout"
    failures = list(facts.in_process_failures)
    # Lambda timeout: at most 900 s (15 minutes).
    if model.in_process and not duration <= rt.safety_margin * rt.lambda_timeout_s:
        failures.append(_Failure(_TIME, f"{est} exceeds {budget}"))
    return _Eval(Route.LAMBDA_JOB, tuple(failures), estimates, f"{est} <= {budget}")


def _batch(model: ModelSpec, req: RequestShape, config: RouterConfig, facts: _Facts) -> _Eval:
    prof = facts.profile
    bt = config.batch_settings(model)
    startup = config.routing.batch_startup_s
    count = 1 if bt is None else bt.instance_count
    parallel = count * (1 if bt is None else bt.max_concurrent_transforms)
    fixed_ms, per_ms = prof.timing(Route.BATCH_TRANSFORM)
    duration = _run_time(startup + prof.load_s + fixed_ms / 1000, req.records, per_ms, parallel)
    price = None if bt is None else config.prices.instance_hour.get(bt.instance_type)
    # Batch transform bills every instance for the whole job, start-up included.
    cost = None if price is None else price * count * duration / 3600
    estimates = Estimates(duration, cost)
    spread = "" if parallel == 1 else f" / {parallel} in parallel"
    est = (
        f"est. {fmt_duration(duration)} (start-up {fmt_duration(startup)} + load {fmt_duration(prof.load_s)} + "
        f"{fmt_count(req.records)} x {_per_record(per_ms)}{spread})"
    )
    if bt is None:
        override = model.batch_transform
        why = (
            "batch transform disabled for this model"
            if override is not None and not override.enabled
            else "batch transform not configured (no sagemaker.batch_transform and no model batch_transform)"
        )
        return _Eval(Route.BATCH_TRANSFORM, (_Failure(_OTHER, why),), estimates, est)
    # No time limit applies: a transform job runs for hours (each invocation <= 3,600 s).
    return _Eval(Route.BATCH_TRANSFORM, (), estimates, f"{est} on {count} x {bt.instance_type}")


def _async_parts(model: ModelSpec, config: RouterConfig, state: BackendState, facts: _Facts) -> tuple[float, float, float]:
    """(start_s, fixed_s, per_record_ms) of one async inference request: start-up and load when the
    endpoint may have scaled to zero and no instance is known to be up (the queue and S3 round trip
    are inside it, as in batch's start-up), else the endpoint overhead; then the timing."""
    spec = model.async_inference
    prof = facts.profile
    fixed_ms, per_ms = prof.timing(Route.ASYNC_INFERENCE)
    cold = spec is not None and spec.min_instances == 0 and not state.async_in_service
    if cold:
        return config.routing.async_startup_s + prof.load_s, fixed_ms / 1000, per_ms
    return 0.0, (config.routing.endpoint_overhead_ms + fixed_ms) / 1000, per_ms


def _async_budget(model: ModelSpec, config: RouterConfig) -> float:
    spec = model.async_inference
    limit = config.runtime.async_timeout_s if spec is None else min(spec.invocation_timeout_s, config.runtime.async_timeout_s)
    return config.runtime.safety_margin * limit


def _async_idle_s(model: ModelSpec, state: BackendState) -> float:
    """The instance-time a request pays beyond its own run: a start from zero keeps the instance
    until the endpoint scales in again (scale_to_zero_after_s); an instance already up costs only the run."""
    spec = model.async_inference
    if spec is None or spec.min_instances > 0 or state.async_in_service:
        return 0.0
    return spec.scale_to_zero_after_s


def _async_inference(model: ModelSpec, req: RequestShape, config: RouterConfig, state: BackendState, facts: _Facts) -> _Eval:
    """One InvokeEndpointAsync request: <= async_payload_mb of input, <= the invocation time limit."""
    spec = model.async_inference
    rt = config.runtime
    start, fixed, per_ms = _async_parts(model, config, state, facts)
    run = _run_time(fixed, req.records, per_ms)
    duration = start + run
    price = None if spec is None else config.prices.instance_hour.get(spec.instance_type)
    # One instance serves the request: billed for the start-up, the run and the idle tail before scale-in.
    cost = None if price is None else price * (duration + _async_idle_s(model, state)) / 3600
    estimates = Estimates(duration, cost)
    head = (
        f"start-up {fmt_duration(config.routing.async_startup_s)} + load {fmt_duration(facts.profile.load_s)}"
        if start else f"{fmt_duration(config.routing.endpoint_overhead_ms / 1000)} overhead"
    )
    fixed_ms = fixed * 1000 - (0.0 if start else config.routing.endpoint_overhead_ms)
    head += f" + {fmt_duration(fixed_ms / 1000)}" if fixed_ms > 0 else ""
    est = f"est. {fmt_duration(duration)} ({head} + {fmt_count(req.records)} x {_per_record(per_ms)})"
    if spec is None:
        return _Eval(Route.ASYNC_INFERENCE, (_Failure(_OTHER, "no async_inference configured for this model"),), estimates, est)
    limit_s = min(spec.invocation_timeout_s, rt.async_timeout_s)
    budget = f"{_num(rt.safety_margin)} x {_num(limit_s)} s async invocation limit"
    failures: list[_Failure] = []
    pf = _payload_failure(req.payload_bytes, [(rt.async_payload_mb, "SageMaker async inference payload")])
    if pf is not None:
        failures.append(pf)
    # The limit bounds the request's processing; start-up is queue time (RequestTTLSeconds, 6 h).
    if not run <= _async_budget(model, config):
        failures.append(_Failure(_TIME, f"{est} exceeds {budget}"))
    scale = ", scales to zero" if spec.min_instances == 0 else f", at least {spec.min_instances} in service"
    where = f"on {model.async_endpoint_name} ({spec.instance_type}{scale})"
    return _Eval(Route.ASYNC_INFERENCE, tuple(failures), estimates, f"{est} {where}; run <= {budget}")


# ---------------------------------------------------------------------------- job threshold


def _lambda_job_limit(config: RouterConfig, facts: _Facts, state: BackendState) -> float:
    """Largest record count lambda-job takes (-1: none, inf: unbounded)."""
    if facts.in_process_failures:
        return -1
    load, fixed, per_ms = _lambda_job_fixed(facts, state)
    budget = config.runtime.safety_margin * config.runtime.lambda_timeout_s
    return _largest_fitting(lambda n: _run_time(load + fixed, n, per_ms), budget, per_ms, load + fixed)


def _batch_threshold(
    config: RouterConfig, facts: _Facts, state: BackendState, bt: BatchTransformDefaults, lambda_limit: float
) -> float:
    """The record count from which batch-transform wins over a *feasible* lambda-job (inf: never).

    Both routes' durations and costs are linear in records, f(n) = a + b*n. Batch is strictly
    better at n iff d*n > e with d = b_lambda - b_batch, e = a_batch - a_lambda. When d > 0 that is
    a suffix of sizes: switch from its start. When d < 0 batch is better only *below* a size, which
    would move larger jobs back to lambda-job; then batch is taken only if it is still better at
    lambda-job's largest feasible size (so it is better on all of [0, limit]), never otherwise.
    Returning one threshold makes the decision monotone in records by construction.
    """
    prof = facts.profile
    load, fixed, per_ms = _lambda_job_fixed(facts, state)
    per = per_ms / 1000
    b_fixed_ms, b_per_ms = prof.timing(Route.BATCH_TRANSFORM)
    per_b = b_per_ms / 1000
    parallel = bt.instance_count * bt.max_concurrent_transforms
    startup = config.routing.batch_startup_s + prof.load_s + b_fixed_ms / 1000
    if config.routing.prefer == "latency":
        a_l, b_l = load + fixed, per
        a_b, b_b = startup, per_b / parallel
    else:
        price = config.prices.instance_hour.get(bt.instance_type)
        if price is None:
            return math.inf  # unknown batch cost counts as +inf: never cheaper
        gb_s = config.prices.lambda_gb_s * config.runtime.lambda_memory_mb / 1024
        a_l, b_l = config.prices.lambda_request + gb_s * (load + fixed), gb_s * per
        rate = price * bt.instance_count / 3600
        a_b, b_b = rate * startup, rate * per_b / parallel
    d = b_l - b_b
    e = a_b - a_l
    if d > 0:
        if e < 0:
            return 0.0
        x = e / d
        return float(math.floor(x) + 1) if x < _UNBOUNDED else math.inf
    if d == 0:
        return 0.0 if e < 0 else math.inf
    return 0.0 if math.isfinite(lambda_limit) and lambda_limit >= 0 and d * lambda_limit > e else math.inf


# ---------------------------------------------------------------------------- choice


def _notes(model: ModelSpec, facts: _Facts, chosen: _Eval | None) -> str:
    """Assumptions a reader should know about, appended to the reason in brackets."""
    notes: list[str] = []
    if facts.profile_assumed:
        p = facts.profile
        notes.append(
            f"default profile assumed: load {fmt_duration(p.load_s)}, {_per_record(p.per_record_ms)}/record; measure with `router profile`"
        )
    if chosen is not None and chosen.route in (Route.INLINE, Route.LAMBDA_JOB, Route.SERVERLESS) and facts.memory_mb is None:
        notes.append("memory footprint unknown (no profile.memory_mb or size_bytes), assumed to fit")
    if (
        chosen is not None
        and chosen.route.mode is Mode.SYNC
        and model.latency_ms is not None
        and chosen.estimates.duration_s > model.latency_ms / 1000
    ):
        notes.append(f"above the {_num(model.latency_ms)} ms latency objective")
    return "".join(f" [{n}]" for n in notes)


def _better(prefer: str, a: _Eval, b: _Eval) -> bool:
    """Is a strictly better than b under the preference? Unknown cost counts as +inf."""
    if prefer == "cost":
        ca = math.inf if a.estimates.cost_usd is None else a.estimates.cost_usd
        cb = math.inf if b.estimates.cost_usd is None else b.estimates.cost_usd
        return ca < cb
    return a.estimates.duration_s < b.estimates.duration_s


def _comparison(prefer: str, chosen: _Eval, other: _Eval) -> str:
    if prefer == "cost":
        return f"cheaper than {other.route.value} ({fmt_cost(chosen.estimates.cost_usd)} vs {fmt_cost(other.estimates.cost_usd)})"
    return f"faster than {other.route.value} (est. {fmt_duration(other.estimates.duration_s)})"


def _tie(prefer: str, chosen: _Eval, other: _Eval) -> str:
    word = "cheap" if prefer == "cost" else "fast"
    return f"{other.route.value} as {word}, {chosen.route.value} first on ties"


def _steady(e: _Eval, facts: _Facts, config: RouterConfig, state: BackendState, records: int) -> _Eval:
    """The candidate as it runs once its model is loaded. A cold inline model pays its load once
    per Lambda instance, then serves every later request warm; judging inline's latency by that
    first request would send every request to the endpoint and inline would never warm up."""
    if e.route is Route.INLINE and not state.warm:
        load = _load_s(facts.profile, state.warm, state.framework_warm)
    elif e.route is Route.SERVERLESS and not state.serverless_warm:
        # The same for a serverless endpoint: its cold start is paid once per instance it starts.
        # Recomputed warm rather than subtracted, so it ties with the endpoint to the last bit.
        _, call, _, per_ms = _serverless_fixed(facts, config, state)
        return _Eval(e.route, e.failures, Estimates(_run_time(call, records, per_ms), e.estimates.cost_usd), e.summary)
    else:
        return e
    est = Estimates(max(0.0, e.estimates.duration_s - load), e.estimates.cost_usd)
    return _Eval(e.route, e.failures, est, e.summary)


def _decide_sync(
    model: ModelSpec, config: RouterConfig, facts: _Facts, evals: tuple[_Eval, ...], records: int, state: BackendState = _COLD
) -> Decision:
    prefer = config.routing.prefer
    if prefer == "latency":
        # Feasibility (above) counts the cold load; the preference compares steady-state latency.
        order = {e.route: _steady(e, facts, config, state, records) for e in evals}
    else:
        order = {e.route: e for e in evals}
    candidates = tuple(e.candidate() for e in evals)
    feasible = [e for e in evals if e.feasible]
    if not feasible:
        payload_limited = any(all(f.kind == _PAYLOAD for f in e.failures) for e in evals)
        reason = "no synchronous route: " + "; ".join(e.why_not() for e in evals)
        if payload_limited:
            reason += " (only the payload size is in the way: send it as a job)"
        return Decision(None, Mode.SYNC, reason + _notes(model, facts, None), None, candidates, payload_limited)
    # Candidate order (inline, endpoint, serverless) breaks ties: only a strictly better one replaces the first.
    chosen = feasible[0]
    for e in feasible[1:]:
        if _better(prefer, order[e.route], order[chosen.route]):
            chosen = e
    parts = [f"{chosen.route.value}: {chosen.summary}"]
    for other in evals:
        if other is chosen:
            continue
        if not other.feasible:
            if other.route is Route.INLINE:  # an endpoint answer needs "why not in the Lambda"
                parts.append(f"not {other.why_not()}")
            elif other.route is Route.ENDPOINT and chosen.route is Route.SERVERLESS and model.endpoint is not None:
                parts.append(f"not {other.why_not()}")  # a serverless answer says why not the declared endpoint
        elif _better(prefer, order[chosen.route], order[other.route]):
            steady = order[chosen.route] is not chosen
            parts.append(_comparison(prefer, order[chosen.route], other) + (" once loaded" if steady else ""))
        else:
            parts.append(_tie(prefer, chosen, other))
    reason = "; ".join(parts) + _notes(model, facts, chosen)
    return Decision(chosen.route, Mode.SYNC, reason, chosen.estimates, candidates)


def _decide_job(
    model: ModelSpec, req: RequestShape, config: RouterConfig, state: BackendState, facts: _Facts, lam: _Eval, bat: _Eval
) -> Decision:
    prefer = config.routing.prefer
    candidates = (lam.candidate(), bat.candidate())
    if not lam.feasible and not bat.feasible:
        reason = "no feasible route: " + "; ".join(e.why_not() for e in (lam, bat))
        return Decision(None, Mode.JOB, reason + _notes(model, facts, None), None, candidates)
    if not bat.feasible:
        chosen, reason = lam, f"lambda-job: {lam.summary}"
    elif not lam.feasible:
        chosen, reason = bat, f"batch-transform: {bat.summary}; not {lam.why_not()}"
    else:
        bt = config.batch_settings(model)
        assert bt is not None  # batch is feasible
        limit = _lambda_job_limit(config, facts, state)
        threshold = _batch_threshold(config, facts, state, bt, limit)
        if req.records >= threshold:
            chosen = bat
            basis = "cheaper" if prefer == "cost" else "faster"
            reason = (
                f"batch-transform: {bat.summary}; {_comparison(prefer, bat, lam)}, "
                f"as it is {basis} from {fmt_count(threshold)} records up"
            )
        else:
            chosen = lam
            reason = f"lambda-job: {lam.summary}"
            if _better(prefer, bat, lam):
                # Only reachable when batch wins small jobs but loses at lambda-job's limit.
                reason += (
                    f"; batch-transform would be cheaper here ({fmt_cost(bat.estimates.cost_usd)} vs "
                    f"{fmt_cost(lam.estimates.cost_usd)}) but not at lambda-job's limit of {fmt_count(limit)} records, "
                    "so lambda-job keeps every size it can take (routing stays monotone in records)"
                )
            elif _better(prefer, lam, bat):
                reason += "; " + _comparison(prefer, lam, bat)
            else:
                reason += "; " + _tie(prefer, lam, bat)
    reason += _notes(model, facts, chosen)
    return Decision(chosen.route, Mode.JOB, reason, chosen.estimates, candidates)


# ---------------------------------------------------------------- job choice with async-inference


def _switch(lo: tuple[float, float], hi: tuple[float, float], lo_limit: float) -> float:
    """The record count from which route `hi` (f = a + b*n) is strictly better than route `lo`,
    as in _batch_threshold: a suffix of sizes, or only when `hi` still wins at `lo`'s largest size."""
    d = lo[1] - hi[1]
    e = hi[0] - lo[0]
    if d > 0:
        if e < 0:
            return 0.0
        x = e / d
        return float(math.floor(x) + 1) if x < _UNBOUNDED else math.inf
    if d == 0:
        return 0.0 if e < 0 else math.inf
    return 0.0 if math.isfinite(lo_limit) and lo_limit >= 0 and d * lo_limit > e else math.inf


def _job_lines(
    model: ModelSpec, config: RouterConfig, state: BackendState, facts: _Facts, bt: BatchTransformDefaults | None
) -> dict[Route, tuple[float, float] | None]:
    """Each job route's estimate (duration or cost, by the preference) as a + b*records; None when
    its cost is unknown (never cheaper)."""
    prof = facts.profile
    cost = config.routing.prefer == "cost"
    load, fixed, per_ms = _lambda_job_fixed(facts, state)
    gb_s = config.prices.lambda_gb_s * config.runtime.lambda_memory_mb / 1024
    lines: dict[Route, tuple[float, float] | None] = {
        Route.LAMBDA_JOB: (config.prices.lambda_request + gb_s * (load + fixed), gb_s * per_ms / 1000) if cost else (load + fixed, per_ms / 1000)
    }
    spec = model.async_inference
    start, a_fixed, a_per_ms = _async_parts(model, config, state, facts)
    if spec is not None:
        price = config.prices.instance_hour.get(spec.instance_type)
        if not cost:
            lines[Route.ASYNC_INFERENCE] = (start + a_fixed, a_per_ms / 1000)
        elif price is not None:
            rate = price / 3600
            lines[Route.ASYNC_INFERENCE] = (rate * (start + a_fixed + _async_idle_s(model, state)), rate * a_per_ms / 1000)
        else:
            lines[Route.ASYNC_INFERENCE] = None
    if bt is not None:
        b_fixed_ms, b_per_ms = prof.timing(Route.BATCH_TRANSFORM)
        parallel = bt.instance_count * bt.max_concurrent_transforms
        b_start = config.routing.batch_startup_s + prof.load_s + b_fixed_ms / 1000
        price = config.prices.instance_hour.get(bt.instance_type)
        if not cost:
            lines[Route.BATCH_TRANSFORM] = (b_start, b_per_ms / 1000 / parallel)
        elif price is not None:
            rate = price * bt.instance_count / 3600
            lines[Route.BATCH_TRANSFORM] = (rate * b_start, rate * b_per_ms / 1000 / parallel)
        else:
            lines[Route.BATCH_TRANSFORM] = None
    return lines


def _async_limit(model: ModelSpec, config: RouterConfig, state: BackendState, facts: _Facts) -> float:
    """Largest record count async-inference takes by its time limit (-1: none, inf: unbounded)."""
    _, fixed, per_ms = _async_parts(model, config, state, facts)
    return _largest_fitting(lambda n: _run_time(fixed, n, per_ms), _async_budget(model, config), per_ms, fixed)


def _tier_thresholds(
    model: ModelSpec, config: RouterConfig, state: BackendState, facts: _Facts, bt: BatchTransformDefaults | None
) -> tuple[float, float]:
    """(T1, T2): the preferred job route is lambda-job below T1, async-inference from T1, batch-transform
    from T2 (T1 <= T2 where async is skipped). Functions of the config and state only, never of the
    request, so the preference is monotone in records: lambda-job -> async-inference -> batch-transform."""
    lines = _job_lines(model, config, state, facts, bt)
    lam_ok = not facts.in_process_failures
    lam_limit = _lambda_job_limit(config, facts, state)
    lam = lines[Route.LAMBDA_JOB]
    assert lam is not None

    def switch(lo: tuple[float, float] | None, hi: tuple[float, float] | None, lo_limit: float) -> float:
        if hi is None:
            return math.inf  # unknown cost: never preferred
        return 0.0 if lo is None else _switch(lo, hi, lo_limit)

    asy, bat = lines.get(Route.ASYNC_INFERENCE), lines.get(Route.BATCH_TRANSFORM)
    t_la = 0.0 if not lam_ok else switch(lam, asy, lam_limit)
    if Route.BATCH_TRANSFORM not in lines:
        return t_la, math.inf
    t_lb = 0.0 if not lam_ok else switch(lam, bat, lam_limit)
    t_ab = switch(asy, bat, _async_limit(model, config, state, facts))
    # Batch beating lambda-job before async does: async is never preferred.
    t1, t2 = (math.inf, t_lb) if t_lb < t_la else (t_la, max(t_la, t_ab))
    if lam_ok and math.isfinite(lam_limit):
        # Beyond lambda-job's limit only async and batch compete: batch from t_ab (still one suffix).
        t2 = min(t2, max(lam_limit + 1, t_ab))
    return t1, t2


def _decide_job_tiers(
    model: ModelSpec, req: RequestShape, config: RouterConfig, state: BackendState, facts: _Facts, evals: tuple[_Eval, _Eval, _Eval]
) -> Decision:
    """Jobs of a model with async_inference: lambda-job, async-inference, batch-transform as tiers.

    The preferred tier steps up at the thresholds T1, T2; the chosen route is the first feasible
    one from the preferred tier up (feasibility is a prefix of sizes for lambda-job and async, and
    batch has no size limit), so more records never move a job to a lower tier. Only when nothing
    at or above the preferred tier is feasible, the highest feasible lower tier takes the job."""
    prefer = config.routing.prefer
    lam, asy, bat = evals
    candidates = tuple(e.candidate() for e in evals)
    if not any(e.feasible for e in evals):
        reason = "no feasible route: " + "; ".join(e.why_not() for e in evals)
        return Decision(None, Mode.JOB, reason + _notes(model, facts, None), None, candidates)
    bt = config.batch_settings(model)
    t1, t2 = _tier_thresholds(model, config, state, facts, bt)
    preferred = 2 if req.records >= t2 else 1 if req.records >= t1 else 0
    order = list(evals)
    up = [e for e in order[preferred:] if e.feasible]
    chosen = up[0] if up else [e for e in order[:preferred] if e.feasible][-1]
    parts = [f"{chosen.route.value}: {chosen.summary}"]
    for other in evals:
        if other is chosen:
            continue
        if not other.feasible:
            parts.append(f"not {other.why_not()}")
        elif _better(prefer, chosen, other):
            parts.append(_comparison(prefer, chosen, other))
        elif _better(prefer, other, chosen):
            basis = "cheaper" if prefer == "cost" else "faster"
            parts.append(
                f"{other.route.value} would be {basis} here ({_comparison(prefer, other, chosen).split(' (', 1)[1]} but routes keep the "
                "order lambda-job -> async-inference -> batch-transform as records grow (monotone)"
            )
        else:
            parts.append(_tie(prefer, chosen, other))
    reason = "; ".join(parts) + _notes(model, facts, chosen)
    return Decision(chosen.route, Mode.JOB, reason, chosen.estimates, candidates)


def _serverless_candidates(model: ModelSpec, req: RequestShape, config: RouterConfig, state: BackendState, facts: _Facts) -> tuple[_Eval, ...]:
    """The serverless rule: a candidate only for a model that declares `serverless`."""
    return () if model.serverless is None else (_serverless(model, req, config, state, facts),)


# ---------------------------------------------------------------------------- public API


def decide(model: ModelSpec, request: RequestShape, config: RouterConfig, state: BackendState = _COLD) -> Decision:
    """Route one request (docs/routing.md). Pure and deterministic.

    Sync candidates are inline, endpoint, then serverless (only for a model that declares it), job
    candidates lambda-job, async-inference (only for a model with `async_inference`) then
    batch-transform; every candidate is returned with estimates and, when infeasible, its reasons. Raises
    InvalidRequest for a negative record count or payload size.
    """
    if request.records < 0:
        raise InvalidRequest(f"records must be >= 0, got {request.records}")
    if request.payload_bytes < 0:
        raise InvalidRequest(f"payload_bytes must be >= 0, got {request.payload_bytes}")
    facts = _facts(model, config)
    if request.mode is Mode.SYNC:
        evals: tuple[_Eval, ...] = (_inline(model, request, config, state, facts), _endpoint(model, request, config, state, facts))
        evals += _serverless_candidates(model, request, config, state, facts)
        return _decide_sync(model, config, facts, evals, request.records, state)
    lam = _lambda_job(model, request, config, state, facts)
    bat = _batch(model, request, config, facts)
    if model.async_inference is not None:
        asy = _async_inference(model, request, config, state, facts)
        return _decide_job_tiers(model, request, config, state, facts, (lam, asy, bat))
    return _decide_job(model, request, config, state, facts, lam, bat)


def max_records(model: ModelSpec, config: RouterConfig, route: Route, state: BackendState = _COLD) -> int | None:
    """The largest record count whose estimate fits `route`'s time budget, ignoring payload size
    and availability (endpoint state, batch settings). None when unbounded (batch-transform, no
    per-record time, or a limit beyond 2**53 records); -1 when the route can never take the model (or not even 0 records fit)."""
    facts = _facts(model, config)
    prof = facts.profile
    rt = config.runtime
    if route is Route.BATCH_TRANSFORM:
        return None
    if route is Route.ASYNC_INFERENCE:
        n = _async_limit(model, config, state, facts)
        return None if math.isinf(n) else int(n)
    if route is Route.ENDPOINT:
        fixed_ms, per_ms = prof.timing(Route.ENDPOINT)
        fixed = (config.routing.endpoint_overhead_ms + fixed_ms) / 1000
        budget = rt.safety_margin * min(rt.endpoint_timeout_s, rt.sync_timeout_s)
    elif route is Route.SERVERLESS:
        cold, call, _, per_ms = _serverless_fixed(facts, config, state)
        fixed = cold + call
        budget = _serverless_budget_s(config)[0]
    elif facts.in_process_failures:
        return -1
    elif route is Route.INLINE:
        fixed_ms, per_ms = prof.timing(Route.INLINE)
        fixed = _load_s(prof, state.warm, state.framework_warm) + fixed_ms / 1000
        budget = rt.safety_margin * rt.sync_timeout_s
    elif route is Route.LAMBDA_JOB:
        load, fixed_s, per_ms = _lambda_job_fixed(facts, state)
        fixed = load + fixed_s
        budget = rt.safety_margin * rt.lambda_timeout_s
    else:
        raise InvalidRequest(f"route {route.value} is not modelled by routing")
    n = _largest_fitting(lambda k: _run_time(fixed, k, per_ms), budget, per_ms, fixed)
    return None if math.isinf(n) else int(n)


def lambda_request_cost(config: RouterConfig, duration_s: float) -> float:
    """The Lambda price of one invocation of `duration_s` at the configured memory (linear, not
    rounded to Lambda's 1 ms billing granularity)."""
    return _lambda_cost(config, duration_s)


# ---------------------------------------------------------------- routes in principle


@dataclass(frozen=True, slots=True)
class RouteOptions:
    """The routes a model can take in principle (one record, warm, endpoint in service) and, for
    each route it cannot take, why. Derived from `decide` itself, so `router config validate`,
    GET /v1/models and real requests cannot disagree."""

    routes: tuple[Route, ...]
    excluded: dict[Route, str]


_ORDER = SYNC_ROUTES + JOB_ROUTES


def possible_routes(model: ModelSpec, config: RouterConfig) -> RouteOptions:
    state = BackendState(warm=True, endpoint_in_service=True, async_in_service=True, serverless_in_service=True, serverless_warm=True)
    routes: list[Route] = []
    excluded: dict[Route, str] = {}
    for mode in (Mode.SYNC, Mode.JOB):
        decision = decide(model, RequestShape(mode=mode, records=1, payload_bytes=0), config, state)
        for c in decision.candidates:
            if c.feasible:
                routes.append(c.route)
            else:
                excluded[c.route] = "; ".join(c.reasons) or "not feasible"
    return RouteOptions(routes=tuple(sorted(routes, key=_ORDER.index)), excluded=excluded)
