"""Use cases: list and describe models, route dry runs, synchronous predictions (and, through
`router.jobs_service`, asynchronous jobs). The handlers are thin: they parse HTTP, call these and
render what they return.

Everything outside the process is reached through a port (router/ports.py), so the same service
runs on AWS and under `router serve`, and tests pass fakes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple, Protocol

from router.calibration import Recorder, Sample, calibrated, summarize_all
from router.config import ModelSpec, RouterConfig
from router.domain import BackendState, Decision, Job, Mode, OutputKind, RequestShape, Route, Submitted
from router.errors import (
    BackendError,
    BackendUnavailable,
    ModelNotFound,
    PayloadTooLarge,
    SyncNotPossible,
)
from router.ports import AsyncInferenceClient, EndpointClient, ModelRunner
from router.routing import JOB_ROUTES, SYNC_ROUTES, decide, possible_routes

_INLINE = Route.INLINE.value
# SageMaker endpoint states that pass by themselves (a local model server restarting is Creating).
TRANSIENT_ENDPOINT_STATUSES = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack"})


class Prediction(NamedTuple):
    """A synchronous prediction (immutable; a named tuple: built on every request, ~3x cheaper
    than a frozen dataclass)."""

    model: ModelSpec
    route: Route
    decision: Decision
    predictions: list[Any]
    model_ms: float

    def to_dict(self, total_ms: float) -> dict[str, Any]:
        return {
            "model": self.model.name,
            "model_version": self.model.version,
            "route": self.route.value,
            "predictions": self.predictions,
            "decision": {
                "route": self.route.value,
                "reason": self.decision.reason,
                "estimates": None if self.decision.estimates is None else self.decision.estimates.to_dict(),
            },
            "timing_ms": {"total": round(total_ms, 3), "model": round(self.model_ms, 3)},
        }


@dataclass(frozen=True, slots=True)
class _Facts:
    """What _state() reads of a spec, read once per spec object (pydantic properties run per access)."""

    spec: ModelSpec
    in_process: bool
    framework: str  # of what runs in-process (the ONNX conversion when there is one)
    endpoint: str | None
    serverless: str | None
    async_endpoint: str | None


class JobSubmitter(Protocol):
    """Where a predict request goes when it becomes a job (router.jobs_service.JobsService)."""

    def submit(self, owner: str, model: ModelSpec, *, instances: list[Any] | None, input_uri: str | None,
               input_format: str, output: OutputKind, idempotency_key: str | None) -> tuple[Job, bool]: ...


class RouterService:
    def __init__(
        self,
        config: RouterConfig,
        *,
        runner: ModelRunner,
        endpoints: EndpointClient | None = None,
        worker_shares_runner: bool = False,
        recorder: Recorder | None = None,
        async_endpoints: AsyncInferenceClient | None = None,
    ) -> None:
        self.config = config
        self.runner = runner
        self.endpoints = endpoints
        # Asynchronous inference endpoints: whether one has an instance up moves its estimate.
        self.async_endpoints = async_endpoints
        # True when the lambda-job worker runs in this process on this runner (`router serve`):
        # then routing knows whether the worker holds the model. A worker Lambda counts as cold.
        self.worker_shares_runner = worker_shares_runner
        # Estimate vs measured of recent work done in this process (sync requests, jobs it ran).
        self.recorder = recorder or Recorder()
        # Set by the composition root once the job service exists (it is built on this service).
        self.jobs: JobSubmitter | None = None
        rt = config.runtime
        # Over this many bytes no synchronous route takes a body, whatever it holds.
        self.sync_limit_bytes = int(min(rt.sync_payload_mb, rt.api_payload_mb) * 1024 * 1024)
        self._models = {m.name: m for m in config.models}  # config.model() without pydantic's private-attribute lookup
        self._routes: dict[str, list[str]] = {}
        self._inline_only: dict[str, bool] = {}  # see quick_inline()
        self._decisions: dict[tuple[Any, ...], Decision] = {}
        self._facts: dict[int, _Facts] = {}  # per spec object (id, held by the entry); see _facts_of()
        self._states: dict[tuple[Any, ...], BackendState] = {}  # interned, by _state_keyed()'s key
        self._learned: dict[str, tuple[int, ModelSpec, str]] = {}

    # ------------------------------------------------------------------ models

    def model(self, name: str) -> ModelSpec:
        spec = self._models.get(name)
        if spec is None:
            known = ", ".join(m.name for m in self.config.models) or "none"
            raise ModelNotFound(f"no model named {name!r} (known: {known})", details={"model": name})
        return spec

    def quick_inline(self, name: str, within_s: float) -> bool:
        """`name` can only run in-process when synchronous (no endpoint or other sync route), is
        loaded, and its last inline call here took at most `within_s`: a request for it computes
        in memory and is over quickly (an HTTP front may run it without a thread hand-off)."""
        spec = self._models.get(name)
        if spec is None:
            return False
        inline_only = self._inline_only.get(name)
        if inline_only is None:  # config-only: worked out once per model
            inline_only = self._inline_only[name] = all(
                r == Route.INLINE.value or Route(r).mode is not Mode.SYNC for r in self.possible_routes(spec))
        if not inline_only or not self.runner.is_warm(spec):
            return False
        measured = self.recorder.last_measured(name, _INLINE)
        return measured is not None and measured <= within_s

    def possible_routes(self, model: ModelSpec) -> list[str]:
        """Routes the model can take in principle (routing's own answer, cached: config-only)."""
        cached = self._routes.get(model.name)
        if cached is None:
            cached = self._routes[model.name] = [r.value for r in possible_routes(model, self.config).routes]
        return cached

    def describe_model(self, model: ModelSpec, *, detail: bool = False, job_samples: dict[str, list[Sample]] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": model.name,
            "framework": model.framework,
            "version": model.version,
            "features": model.features,
            "feature_count": len(model.features) if model.features else (self.runner.feature_count(model) if model.in_process else None),
            "routes": self.possible_routes(model),
        }
        if model.endpoint is not None:
            out["endpoint_status"] = self.endpoint_status(model)
        if model.serverless is not None:
            out["serverless_status"] = self.serverless_status(model)
        if model.description:
            out["description"] = model.description
        if detail:
            out["latency_ms"] = model.latency_ms
            out["size_bytes"] = model.size_bytes
            prof = model.profile or self.config.routing.default_profile
            out["profile"] = {**prof.model_dump(), "measured": model.profile is not None}
            out["endpoint"] = model.endpoint.model_dump() if model.endpoint else None
            if model.serverless is not None:
                out["serverless"] = {**model.serverless.model_dump(), "name": model.serverless_endpoint_name}
            if model.async_inference is not None:
                out["async_inference"] = {**model.async_inference.model_dump(), "endpoint_name": model.async_endpoint_name}
            bt = self.config.batch_settings(model)
            out["batch_transform"] = bt.model_dump() if bt else None
            out["envelope"] = self.envelope(model)
            out["calibration"] = self.calibration(model, job_samples)
        return out

    def calibration(self, model: ModelSpec, job_samples: dict[str, list[Sample]] | None = None) -> dict[str, Any]:
        """Estimate/measured per route over recent work: sync requests served by this process and
        `job_samples` (finished jobs from the job table) when given, else jobs this process ran."""
        samples = self.recorder.samples(model.name)
        if job_samples is not None:
            samples = {r: s for r, s in samples.items() if Route(r).mode is Mode.SYNC} | job_samples
        learned = self._effective(model)[1] if self.config.routing.calibrate else ""
        return {
            "routes": summarize_all(samples),
            "scope": "sync: this router process" + ("; jobs: your recent jobs of this model" if job_samples is not None else "; jobs: run by this process"),
            "learning": learned or ("off" if not self.config.routing.calibrate else "not enough recent work yet"),
        }

    def envelope(self, model: ModelSpec) -> dict[str, Any]:
        """The largest request (in records) each route takes, found with the routing function itself,
        so what /v1/models/{model} shows is exactly what /predict and /jobs will do."""
        state = self._state(model)
        out: dict[str, Any] = {}
        for mode, routes in ((Mode.SYNC, SYNC_ROUTES), (Mode.JOB, JOB_ROUTES)):
            for route in routes:
                if (route is Route.SERVERLESS and model.serverless is None) or (
                    route is Route.ASYNC_INFERENCE and model.async_inference is None
                ):
                    continue  # a candidate only for models that declare it
                if not _feasible_at(model, self.config, state, mode, route, 1):
                    out[route.value] = {"feasible": False, "max_records": 0}
                else:
                    out[route.value] = {"feasible": True, "max_records": _max_records(model, self.config, state, mode, route)}
        return out

    # ------------------------------------------------------------------ routing

    def backend_state(self, model: ModelSpec) -> BackendState:
        """What routing needs to know about the backends for `model` now."""
        return self._state(model)

    def _state(self, model: ModelSpec) -> BackendState:
        return self._state_keyed(model)[0]

    def _facts_of(self, model: ModelSpec) -> _Facts:
        facts = self._facts.get(id(model))
        if facts is None or facts.spec is not model:
            facts = _Facts(model, model.in_process, model.inline_source[0], model.endpoint.name if model.endpoint else None,
                           model.serverless_endpoint_name, model.async_endpoint_name)
            if len(self._facts) >= 1024:  # specs are few (the config's, calibrated copies): keep it small
                self._facts.clear()
            # The entry holds the spec: its id cannot be reused while it is cached.
            self._facts[id(model)] = facts
        return facts

    def _state_keyed(self, model: ModelSpec) -> tuple[BackendState, int]:
        """The backend state (interned: one object per distinct value) and a cheap key for it."""
        facts = self._facts.get(id(model))
        if facts is None or facts.spec is not model:
            facts = self._facts_of(model)
        runner, endpoints = self.runner, self.endpoints
        warm = facts.in_process and runner.is_warm(model)
        framework = facts.in_process and not warm and runner.framework_loaded(facts.framework)
        in_service: bool | None = None
        serverless_in_service: bool | None = None
        serverless_warm = False
        if endpoints is not None:
            if facts.endpoint is not None:
                in_service = endpoints.in_service(facts.endpoint)
            if facts.serverless is not None:
                serverless_in_service = endpoints.in_service(facts.serverless)
                serverless_warm = serverless_in_service and endpoints.warm(facts.serverless)
        async_up: bool | None = None
        if facts.async_endpoint is not None and self.async_endpoints is not None:
            async_up = self.async_endpoints.in_service(facts.async_endpoint)
        shared = self.worker_shares_runner
        key = (warm, framework, in_service, serverless_in_service, serverless_warm, async_up, shared)
        state = self._states.get(key)
        if state is None:
            state = self._states.setdefault(key, BackendState(
                warm=warm, endpoint_in_service=in_service, framework_warm=framework,
                worker_warm=shared and warm, worker_framework_warm=shared and framework,
                serverless_in_service=serverless_in_service, serverless_warm=serverless_warm, async_in_service=async_up,
            ))
        # Interned states are never dropped: the id names one value for the service's lifetime.
        return state, id(state)

    def _effective(self, model: ModelSpec) -> tuple[ModelSpec, str]:
        """The model as routing sees it: with routing.calibrate, per-record times learned from
        recent work (recomputed every few samples, not on every request), and the note saying so."""
        version = self.recorder.version(model.name)
        cached = self._learned.get(model.name)
        if cached is not None and cached[1].sha256 == model.sha256 and version - cached[0] < 8:
            return cached[1], cached[2]
        effective, notes = calibrated(model, self.recorder.samples(model.name))
        note = "; ".join(notes)
        self._learned[model.name] = (version, effective, note)
        return effective, note

    def decide(self, model: ModelSpec, mode: Mode, records: int, payload_bytes: int) -> Decision:
        return self.decide_in(model, mode, records, payload_bytes, self._state(model))

    def decide_in(self, model: ModelSpec, mode: Mode, records: int, payload_bytes: int, state: BackendState, *,
                  state_key: int | None = None) -> Decision:
        """routing.decide, memoized: it is pure and the config is frozen, so the same (model, shape,
        backend state) always gives the same immutable Decision (~50 us saved per request).
        `state_key`: _state_keyed()'s key for `state` (cheaper to hash than the dataclass)."""
        note = ""
        if self.config.routing.calibrate:
            model, note = self._effective(model)
        # An int key never equals a BackendState one: both kinds share the memo without mixing.
        key = (model.name, model.sha256, mode, records, payload_bytes, state if state_key is None else state_key, note)
        hit = self._decisions.get(key)
        if hit is not None:
            return hit
        decision = decide(model, RequestShape(mode=mode, records=records, payload_bytes=payload_bytes), self.config, state)
        if note:
            decision = replace(decision, reason=f"{decision.reason} [calibrated: {note}]")
        if len(self._decisions) >= 4096:
            self._decisions.clear()
        self._decisions[key] = decision
        return decision

    # ------------------------------------------------------------------ predict

    def attach_jobs(self, jobs: JobSubmitter) -> None:
        self.jobs = jobs

    def check_payload(self, name: str, payload_bytes: int, *, respond_async: bool = False) -> None:
        """Before the body is parsed: 413 when no synchronous route takes `payload_bytes` and the
        request may not become a job (docs/api.md)."""
        if payload_bytes <= self.sync_limit_bytes or (respond_async and self.jobs is not None):
            return
        decision = self.decide(self.model(name), Mode.SYNC, 1, payload_bytes)  # the payload alone rules sync out
        if decision.route is None:
            raise self.not_syncable_error(decision)

    def predict(self, model: ModelSpec, instances: Sequence[Any], output: OutputKind, payload_bytes: int, *,
                owner: str | None = None, respond_async: bool = False, idempotency_key: str | None = None,
                started: float | None = None) -> Prediction | Submitted:
        """Run a synchronous prediction. When no sync route is feasible: 503 while the endpoint that
        would take it is in a transient state; else, with `respond_async` (the caller's
        `Prefer: respond-async`) and a job service, the request submitted as a job for `owner`;
        else 422 sync_not_possible or 413 payload_too_large with the Decision. `started`: the
        perf_counter() when the handler began on the request (before parsing its body): the time
        recorded against the estimate runs from there, as the profile's sync timings do."""
        state, state_key = self._state_keyed(model)
        records = len(instances)
        decision = self.decide_in(model, Mode.SYNC, records, payload_bytes, state, state_key=state_key)
        route = decision.route
        if route is None:
            self._refuse_if_endpoint_transient(model, records, payload_bytes)
            if respond_async and self.jobs is not None and owner is not None:
                job, created = self.jobs.submit(owner, model, instances=instances if isinstance(instances, list) else list(instances), input_uri=None, input_format="jsonl",
                                                output=output, idempotency_key=idempotency_key)
                return Submitted(job, created)
            raise self.not_syncable_error(decision)
        start = time.perf_counter()
        if route is Route.INLINE:
            preds = self.runner.predict(model, instances, output)
        elif route is Route.SERVERLESS:
            assert model.serverless_endpoint_name is not None  # routing offers it only then
            preds = self._invoke_endpoint(model, model.serverless_endpoint_name, instances, output)
        else:
            assert model.endpoint is not None
            preds = self._invoke_endpoint(model, model.endpoint.name, instances, output)
        end = time.perf_counter()
        estimates = decision.estimates
        if estimates is not None:
            spent = end - (start if started is None or started > start else started)  # what the estimate covers
            cold = (not state.warm) if route is Route.INLINE else (route is Route.SERVERLESS and not state.serverless_warm)
            # route._value_: the plain str (Enum's .value is a Python-level property)
            self.recorder.record(model.name, route._value_, estimates.duration_s, spent, records, cold=cold)
        return Prediction(model, route, decision, preds, (end - start) * 1000)

    def endpoint_status(self, model: ModelSpec) -> str | None:
        """The model's endpoint status (None: no endpoint); never calls AWS."""
        if model.endpoint is None or self.endpoints is None:
            return None
        return self.endpoints.status(model.endpoint.name)

    def serverless_status(self, model: ModelSpec) -> str | None:
        """The model's serverless endpoint status (None: none declared); never calls AWS."""
        name = model.serverless_endpoint_name
        if name is None or self.endpoints is None:
            return None
        return self.endpoints.status(name)

    def endpoint_statuses(self) -> dict[str, str]:
        """Every declared endpoint's status (real-time and serverless), by endpoint name (for /v1/health)."""
        out: dict[str, str] = {}
        for m in self.config.models:
            status = self.endpoint_status(m)
            if m.endpoint is not None and status is not None:
                out[m.endpoint.name] = status
            serverless = self.serverless_status(m)
            if m.serverless_endpoint_name is not None and serverless is not None:
                out[m.serverless_endpoint_name] = serverless
        return out

    def _refuse_if_endpoint_transient(self, model: ModelSpec, records: int, payload_bytes: int) -> None:
        """503 + Retry-After, not 422, when the endpoint would take the request but is passing
        through a transient state (being created, updated, or its model server restarting)."""
        shape = RequestShape(mode=Mode.SYNC, records=records, payload_bytes=payload_bytes)
        for route, name, status in (
            (Route.ENDPOINT, model.endpoint.name if model.endpoint else None, self.endpoint_status(model)),
            (Route.SERVERLESS, model.serverless_endpoint_name, self.serverless_status(model)),
        ):
            if name is None or status not in TRANSIENT_ENDPOINT_STATUSES:
                continue
            ready = {"endpoint_in_service": True} if route is Route.ENDPOINT else {"serverless_in_service": True}
            state = replace(self._state(model), **ready)
            if decide(model, shape, self.config, state).route is route:
                raise BackendUnavailable(
                    f"endpoint {name} is {status}, not yet InService; retry shortly",
                    details={"endpoint": name, "endpoint_status": status},
                )

    def _invoke_endpoint(self, model: ModelSpec, endpoint_name: str, instances: Sequence[Any], output: OutputKind) -> list[Any]:
        """InvokeEndpoint on a real-time or serverless endpoint: the same call, request and answer."""
        assert self.endpoints is not None
        from router import sagemaker_contract as contract

        # The one request shape of every SageMaker path (batch transform sends the same documents).
        # Tabular rows are validated here, as inline does, so a bad row is a 422 before it costs
        # an endpoint call.
        body = contract.request_body(model, instances, output.value)
        raw = self.endpoints.invoke(endpoint_name, body, contract.CONTENT_TYPE)
        try:
            parsed = json.loads(raw)
        except ValueError:
            raise BackendError("the endpoint returned a response that is not {\"predictions\": [...]}") from None
        return contract.predictions_of(parsed, len(instances), f"endpoint {endpoint_name}")

    def not_syncable_error(self, decision: Decision) -> SyncNotPossible | PayloadTooLarge:
        details = {"decision": decision.to_dict()}
        if decision.payload_limited:
            return PayloadTooLarge(
                f"{decision.reason}. Send large inputs as a job: POST /v1/uploads for an upload slot, "
                "then POST /v1/models/{model}/jobs with {\"input\": {\"uri\": ...}}",
                details=details,
            )
        return SyncNotPossible(
            f"{decision.reason}. Retry with the header 'Prefer: respond-async' to get a job, or POST /v1/models/{{model}}/jobs",
            details=details,
        )


def _feasible_at(model: ModelSpec, config: RouterConfig, state: BackendState, mode: Mode, route: Route, n: int) -> bool:
    d = decide(model, RequestShape(mode=mode, records=n, payload_bytes=0), config, state)
    return any(c.route is route and c.feasible for c in d.candidates)


def _max_records(model: ModelSpec, config: RouterConfig, state: BackendState, mode: Mode, route: Route) -> int | None:
    """Largest record count for which `route` is feasible (payload assumed small; feasible at 1),
    by doubling then bisection over the monotone routing function. None: no limit below 10^12."""
    cap = 10**12

    def ok(n: int) -> bool:
        return _feasible_at(model, config, state, mode, route, n)
    lo, hi = 1, 2
    while hi <= cap and ok(hi):
        lo, hi = hi, hi * 2
    if hi > cap:
        return None  # no record limit (batch transform runs for hours)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid
    return lo
