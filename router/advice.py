"""Idle-endpoint advice (docs/operations.md "router advise"): for a model's persistent endpoint and
its traffic, the monthly cost of keeping it, of serving it from a serverless endpoint, from an
asynchronous inference endpoint that scales to zero, or of deleting it, the break-even traffic of
each, and a recommendation. Pure: no I/O, no clock; every feasibility rule is routing's own.

Each option's cost is what AWS charges for it plus the router Lambda's compute per call (waiting
for an endpoint, or running the model inline); the router's request fee, the same on every
option, is left out.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from router.config import SERVERLESS_MEMORY_SIZES, AsyncInferenceSpec, ModelSpec, RouterConfig, ServerlessSpec
from router.domain import BackendState, Mode, RequestShape, Route
from router.errors import InvalidRequest
from router.routing import decide, fmt_cost, serverless_invocation_cost

HOURS_PER_MONTH = 730.0
KEEP, SERVERLESS, ASYNC, DELETE = "keep", "serverless", "async", "delete"
# Ties go to the first: no change, then the option with least to run.
OPTIONS = (KEEP, DELETE, SERVERLESS, ASYNC)
_MAX_RATE = 1e9  # invocations per hour: beyond any real endpoint


@dataclass(frozen=True, slots=True)
class Traffic:
    """A model's traffic: invocations (sync requests) per hour, their size, and where it was read."""

    invocations_per_hour: float
    records_per_invocation: float = 1.0
    payload_bytes: float = 0.0
    source: str = ""

    def __post_init__(self) -> None:
        for name in ("invocations_per_hour", "records_per_invocation", "payload_bytes"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise InvalidRequest(f"{name} must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class Option:
    """One way to serve the traffic: its monthly cost (None: unknown price), whether it can take
    the traffic at all, the break-even traffic against keeping the endpoint, and a note."""

    name: str
    monthly_usd: float | None
    feasible: bool
    note: str
    # Invocations per hour below which this option is cheaper than keeping the endpoint: 0 never,
    # inf always, None when either cost is unknown (not for `keep` itself).
    break_even_per_hour: float | None = None

    def to_dict(self) -> dict[str, Any]:
        be = self.break_even_per_hour
        return {
            "option": self.name,
            "monthly_usd": None if self.monthly_usd is None else round(self.monthly_usd, 4),
            "feasible": self.feasible,
            "note": self.note,
            "break_even_per_hour": None if be is None else ("inf" if math.isinf(be) else round(be, 3)),
        }


@dataclass(frozen=True, slots=True)
class Advice:
    model: str
    endpoint: str
    traffic: Traffic
    options: tuple[Option, ...]
    recommendation: str
    reason: str
    extra: dict[str, Any] = field(default_factory=dict)

    def option(self, name: str) -> Option:
        return next(o for o in self.options if o.name == name)

    def to_dict(self) -> dict[str, Any]:
        t = self.traffic
        return {
            "model": self.model,
            "endpoint": self.endpoint,
            "traffic": {"invocations_per_hour": t.invocations_per_hour, "records_per_invocation": t.records_per_invocation,
                        "payload_bytes": t.payload_bytes, "source": t.source},
            "recommendation": self.recommendation,
            "reason": self.reason,
            "options": [o.to_dict() for o in self.options],
        }


# ---------------------------------------------------------------- the options


def _request(traffic: Traffic) -> RequestShape:
    return RequestShape(Mode.SYNC, max(1, math.ceil(traffic.records_per_invocation)), math.ceil(traffic.payload_bytes))


def _monthly(per_hour: float, per_invocation: float) -> float:
    return per_hour * HOURS_PER_MONTH * per_invocation


def _per_call(per_invocation: float) -> Callable[[float], float]:
    """Monthly cost by traffic of an option that costs `per_invocation` per call and nothing idle."""
    return lambda rate: _monthly(rate, per_invocation)


def fmt_rate(per_hour: float) -> str:
    """Invocations per hour for humans: '0.5', '3.5', '120', '40,816'."""
    if math.isinf(per_hour):
        return "unbounded"
    return f"{per_hour:,.0f}" if per_hour >= 100 else f"{per_hour:.3g}"


def _router_wait(config: RouterConfig, duration_s: float) -> float:
    """The router Lambda's compute while a sync call runs (its request fee is paid on every option alike)."""
    return config.prices.lambda_gb_s * config.runtime.lambda_memory_mb / 1024 * duration_s


def _endpoint_call_s(model: ModelSpec, config: RouterConfig, traffic: Traffic) -> float:
    """One call's duration on an endpoint (real-time, or serverless once warm): overhead + the model's time."""
    prof = model.profile or config.routing.default_profile
    fixed_ms, per_ms = prof.timing(Route.ENDPOINT)
    return (config.routing.endpoint_overhead_ms + fixed_ms + _request(traffic).records * per_ms) / 1000


def _keep(model: ModelSpec, config: RouterConfig, traffic: Traffic) -> Callable[[float], float] | None:
    """The endpoint always on, and the router Lambda waiting for each call."""
    ep = model.endpoint
    assert ep is not None
    price = config.prices.instance_hour.get(ep.instance_type)
    if price is None:
        return None
    fixed = price * ep.instance_count * HOURS_PER_MONTH
    wait = _router_wait(config, _endpoint_call_s(model, config, traffic))
    return lambda rate: fixed + _monthly(rate, wait)


def _serverless_option(model: ModelSpec, config: RouterConfig, traffic: Traffic) -> tuple[Callable[[float], float] | None, str, bool]:
    """(monthly cost by traffic, note, feasible): the declared serverless memory, else the smallest
    one routing accepts for this request; routing's own serverless rule decides (cold, so the cold
    start must fit the sync budget too)."""
    req = _request(traffic)
    state = BackendState(serverless_in_service=True)
    sizes = (model.serverless.memory_mb,) if model.serverless is not None else SERVERLESS_MEMORY_SIZES
    spec = model.serverless or ServerlessSpec()
    why = "no serverless memory size fits"
    for memory in sizes:
        trial = model.model_copy(update={"serverless": spec.model_copy(update={"memory_mb": memory})})
        cand = next(c for c in decide(trial, req, config, state).candidates if c.route is Route.SERVERLESS)
        if cand.feasible:
            prof = model.profile or config.routing.default_profile
            fixed_ms, per_ms = prof.timing(Route.ENDPOINT)
            inference_s = (fixed_ms + req.records * per_ms) / 1000
            charge = serverless_invocation_cost(config, memory, inference_s, req.payload_bytes)
            per_invocation = charge + _router_wait(config, _endpoint_call_s(model, config, traffic))
            declared = "declared" if model.serverless is not None else "smallest that fits"
            return _per_call(per_invocation), f"{memory} MB ({declared}), {fmt_cost(charge)} per call", True
        why = "; ".join(cand.reasons)
    return None, why, False


def _async_option(model: ModelSpec, config: RouterConfig, traffic: Traffic) -> tuple[Callable[[float], float] | None, str]:
    """Monthly cost by traffic of an async inference endpoint that scales to zero: the declared
    `async_inference`, else one on the endpoint's instance type with the defaults. Each call keeps
    an instance up for start-up + its work + the scale-in idle time, unless calls come closer
    together than that (then it stays up); never below min_instances, never under its utilisation."""
    ep = model.endpoint
    assert ep is not None
    spec = model.async_inference or AsyncInferenceSpec(instance_type=ep.instance_type)
    price = config.prices.instance_hour.get(spec.instance_type)
    if price is None:
        return None, f"no price for {spec.instance_type}"
    prof = model.profile or config.routing.default_profile
    fixed_ms, per_ms = prof.timing(Route.ASYNC_INFERENCE)
    busy_s = (fixed_ms + _request(traffic).records * per_ms) / 1000
    up_s = config.routing.async_startup_s + busy_s + spec.scale_to_zero_after_s
    # The router's submit and status calls, counted as the Lambda time of one endpoint call: what
    # a sync option's router pays, so an always-up async endpoint costs what keeping one does.
    router = _router_wait(config, _endpoint_call_s(model, config, traffic))

    def monthly(rate: float) -> float:
        instances = max(float(spec.min_instances), min(1.0, rate * up_s / 3600), rate * busy_s / 3600)
        return price * HOURS_PER_MONTH * instances + _monthly(rate, router)

    note = (f"{spec.instance_type}, min {spec.min_instances} instances, scale-in after {spec.scale_to_zero_after_s:g} s; "
            "callers get a job instead of an answer")
    return monthly, note


def _delete_option(model: ModelSpec, config: RouterConfig, traffic: Traffic) -> tuple[Callable[[float], float] | None, str, bool]:
    """Without the endpoint the requests go inline, when routing lets the model run in the router
    Lambda (warm: at steady traffic the model stays loaded); otherwise only no traffic can go."""
    without = model.model_copy(update={"endpoint": None, "serverless": None})
    cand = next(c for c in decide(without, _request(traffic), config, BackendState(warm=True)).candidates if c.route is Route.INLINE)
    if cand.feasible:
        per_invocation = _router_wait(config, cand.estimates.duration_s)
        return _per_call(per_invocation), "requests then run inline in the router Lambda", True
    if traffic.invocations_per_hour == 0:
        return _per_call(0.0), "no traffic to serve", True
    return None, "nothing else can serve its requests: " + ("; ".join(cand.reasons) or "inline not feasible"), False


# Traffic grid for the break-even search: 20 points a decade from 0.001 to 10^9 invocations/hour.
_GRID = (0.0, *(10 ** (k / 20) for k in range(-60, 181)))


def _break_even(cost: Callable[[float], float], keep: Callable[[float], float]) -> float:
    """The traffic (invocations/hour) up to which `cost` stays under `keep`: 0 never, inf always
    (within 10^9/hour). The costs need not be linear (async saturates): the first grid point where
    the option stops being cheaper is found, then the crossing within that step by bisection."""
    prev = None
    for rate in _GRID:
        if not cost(rate) < keep(rate):
            if prev is None:
                return 0.0
            lo, hi = prev, rate
            for _ in range(100):
                mid = (lo + hi) / 2
                if cost(mid) < keep(mid):
                    lo = mid
                else:
                    hi = mid
            return lo
        prev = rate
    return math.inf


# ---------------------------------------------------------------- the advice


def advise(model: ModelSpec, config: RouterConfig, traffic: Traffic) -> Advice:
    """Advice for the persistent endpoint of `model` at `traffic`. Raises InvalidRequest for a model
    without `endpoint`."""
    if model.endpoint is None:
        raise InvalidRequest(f"model {model.name} has no persistent endpoint to advise on")
    rate = traffic.invocations_per_hour
    keep_fn = _keep(model, config, traffic)
    keep = None if keep_fn is None else keep_fn(rate)
    options = [Option(KEEP, keep, True, f"{model.endpoint.instance_count} x {model.endpoint.instance_type}, always on"
                      + ("" if keep is not None else "; no price for it"))]
    sl_cost, sl_note, sl_ok = _serverless_option(model, config, traffic)
    as_cost, as_note = _async_option(model, config, traffic)
    del_cost, del_note, del_ok = _delete_option(model, config, traffic)
    for name, cost_fn, note, ok in ((SERVERLESS, sl_cost, sl_note, sl_ok), (ASYNC, as_cost, as_note, as_cost is not None),
                                    (DELETE, del_cost, del_note, del_ok)):
        monthly = None if cost_fn is None else cost_fn(rate)
        be = None if cost_fn is None or keep_fn is None else _break_even(cost_fn, keep_fn)
        options.append(Option(name, monthly, ok, note, be))
    by_name = {o.name: o for o in options}
    candidates = [by_name[n] for n in OPTIONS if by_name[n].feasible and by_name[n].monthly_usd is not None]
    if not candidates:
        return Advice(model.name, model.endpoint.name, traffic, tuple(options), KEEP,
                      "keep: no option has a known price (add the instance type to prices.instance_hour)")
    best = candidates[0]
    for o in candidates[1:]:
        assert o.monthly_usd is not None and best.monthly_usd is not None
        if o.monthly_usd < best.monthly_usd:
            best = o
    return Advice(model.name, model.endpoint.name, traffic, tuple(options), best.name, _reason(best, by_name, rate))


def _reason(best: Option, options: dict[str, Option], rate: float) -> str:
    keep = options[KEEP]
    traffic = f"{fmt_rate(rate)} invocations/hour"
    if best.name == KEEP:
        cheapest_other = [o for o in options.values() if o.name != KEEP and o.feasible and o.monthly_usd is not None]
        parts = [f"keep: {fmt_cost(keep.monthly_usd)}/month is the cheapest at {traffic}"]
        for o in cheapest_other:
            be = o.break_even_per_hour
            when = "" if be is None or be == 0 else f", cheaper below {fmt_rate(be)}/hour"
            parts.append(f"{o.name} {fmt_cost(o.monthly_usd)}{when}")
        return "; ".join(parts)
    verb = {DELETE: "delete the endpoint", SERVERLESS: "switch to serverless", ASYNC: "switch to async inference (scale to zero)"}[best.name]
    text = f"{verb}: {fmt_cost(best.monthly_usd)}/month instead of {fmt_cost(keep.monthly_usd)} to keep it at {traffic} ({best.note})"
    be = best.break_even_per_hour
    if be is not None and math.isfinite(be):
        text += f"; keeping it pays from {fmt_rate(be)} invocations/hour"
    elif be is not None:
        text += "; cheaper at any traffic"
    return text
