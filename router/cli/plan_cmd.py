"""`router plan FILE`: where each model's requests would run, for a grid of sizes, and when a
persistent endpoint beats inline Lambda on price. Offline: the same routing.decide as the API,
with declared endpoints assumed InService (it previews the designed system).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import dataclass
from typing import Any

from router.cli.common import wrap
from router.cli.route_cmd import (
    BYTES_PER_FEATURE,
    BYTES_PER_RECORD_NO_FEATURES,
    EXIT_USAGE,
    CliError,
    backend_state,
    default_payload_bytes,
    find_model,
    read_config,
    table,
)
from router.config import ModelSpec, RouterConfig
from router.domain import BackendState, Mode, RequestShape, Route
from router.routing import decide, fmt_cost, fmt_count, fmt_duration, lambda_request_cost, max_records

GRID = (1, 1_000, 100_000, 10_000_000)
# A persistent endpoint bills every hour of the month: AWS prices a month as 730 hours.
HOURS_PER_MONTH = 730
# Lambda bills duration rounded up to the next millisecond (1 ms minimum).
LAMBDA_BILLING_MS = 1


@dataclass(frozen=True, slots=True)
class BreakEven:
    """Monthly request volume above which a persistent endpoint costs less than inline Lambda."""

    requests_per_month: float | None
    lambda_request_usd: float | None
    endpoint_month_usd: float | None
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests_per_month": None if self.requests_per_month is None else round(self.requests_per_month),
            "lambda_request_usd": self.lambda_request_usd,
            "endpoint_month_usd": self.endpoint_month_usd,
            "text": self.text,
        }


def fmt_volume(n: float) -> str:
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f}"


def break_even(model: ModelSpec, cfg: RouterConfig) -> BreakEven:
    """Endpoint instance price x count x 730 h divided by the Lambda cost of one warm 1-record
    inline request (billed duration rounded up to 1 ms). Warm, because at volumes where the
    question matters almost every invocation finds the model loaded."""
    if model.endpoint is None:
        return BreakEven(None, None, None, "break-even: n/a (no endpoint declared)")
    ep = model.endpoint
    inline_limit = max_records(model, cfg, Route.INLINE, BackendState(warm=True))
    if inline_limit is not None and inline_limit < 1:
        return BreakEven(None, None, None, "break-even: n/a (inline is not possible for this model)")
    price = cfg.prices.instance_hour.get(ep.instance_type)
    if price is None:
        return BreakEven(None, None, None, f"break-even: n/a (no price for {ep.instance_type} in prices.instance_hour)")
    prof = model.profile or cfg.routing.default_profile
    fixed_ms, per_ms = prof.timing(Route.INLINE)
    billed_s = max(1, math.ceil((fixed_ms + per_ms) / LAMBDA_BILLING_MS)) * LAMBDA_BILLING_MS / 1000
    per_request = lambda_request_cost(cfg, billed_s)
    month = price * ep.instance_count * HOURS_PER_MONTH
    volume = month / per_request if per_request > 0 else math.inf
    what = f"{ep.instance_count} x {ep.instance_type}" if ep.instance_count > 1 else ep.instance_type
    text = (
        f"break-even: {fmt_volume(volume)} requests/month (above that a persistent {what} endpoint, "
        f"{fmt_cost(month)}/month, is cheaper than inline Lambda at {fmt_cost(per_request)} per request)"
    )
    return BreakEven(volume, per_request, month, text)


def _short_reason(reason: str) -> str:
    # routing.decide appends assumptions as " [note]" suffixes; the plan prints them once per model.
    return reason.split(" [", 1)[0]


def _model_notes(model: ModelSpec, cfg: RouterConfig) -> list[str]:
    notes = []
    if model.profile is None:
        p = cfg.routing.default_profile
        notes.append(
            f"no profile: default assumed (load {fmt_duration(p.load_s)}, {fmt_duration(p.per_record_ms / 1000)}/record); "
            "measure with `router profile`"
        )
    return notes


def _limits(model: ModelSpec, cfg: RouterConfig, state: BackendState) -> str:
    """Largest request each route takes by its time budget (payload and availability aside)."""
    parts = []
    for route in (Route.INLINE, Route.ENDPOINT, Route.SERVERLESS, Route.LAMBDA_JOB, Route.ASYNC_INFERENCE):
        if (
            (route is Route.ENDPOINT and model.endpoint is None)
            or (route is Route.SERVERLESS and model.serverless is None)
            or (route is Route.ASYNC_INFERENCE and model.async_inference is None)
        ):
            continue
        n = max_records(model, cfg, route, state)
        if n is None:
            parts.append(f"{route.value} unbounded")
        elif n < 0:
            parts.append(f"{route.value} not possible")
        else:
            parts.append(f"{route.value} {fmt_count(n)} records")
    return "largest request by time budget: " + ", ".join(parts)


def plan_model(model: ModelSpec, cfg: RouterConfig, state: BackendState) -> dict[str, Any]:
    rows = []
    for mode in (Mode.SYNC, Mode.JOB):
        for records in GRID:
            request = RequestShape(mode=mode, records=records, payload_bytes=default_payload_bytes(model, records))
            rows.append({"records": records, "mode": mode.value, "payload_bytes": request.payload_bytes,
                         "decision": decide(model, request, cfg, state)})
    return {"model": model, "state": state, "rows": rows, "break_even": break_even(model, cfg)}


def render_text(plans: list[dict[str, Any]], cfg: RouterConfig, state_note: str) -> str:
    out = [f"routing plan (prefer {cfg.routing.prefer}; {state_note})", ""]
    for plan in plans:
        model: ModelSpec = plan["model"]
        bt = cfg.batch_settings(model)
        facts = [
            model.framework,
            "in-process" if model.in_process else "SageMaker only",
            f"endpoint {model.endpoint.name} ({model.endpoint.instance_count} x {model.endpoint.instance_type})"
            if model.endpoint else "no endpoint",
            *([f"serverless {model.serverless_endpoint_name} ({model.serverless.memory_mb} MB, max concurrency "
               f"{model.serverless.max_concurrency})"] if model.serverless else []),
            *([f"async {model.async_endpoint_name} ({model.async_inference.instance_type}, "
               f"{model.async_inference.min_instances}-{model.async_inference.max_instances} instances)"] if model.async_inference else []),
            f"batch-transform {bt.instance_count} x {bt.instance_type}" if bt else "no batch-transform",
        ]
        out.append(f"{model.name}: " + ", ".join(facts))
        rows = []
        for row in plan["rows"]:
            d = row["decision"]
            rows.append([
                fmt_count(row["records"]),
                row["mode"],
                d.route.value if d.route else ("none (413)" if d.payload_limited else "none"),
                fmt_duration(d.estimates.duration_s) if d.estimates else "-",
                fmt_cost(d.estimates.cost_usd) if d.estimates else "-",
                _short_reason(d.reason),
            ])
        out += table(["records", "mode", "route", "est.", "cost", "why"], rows)
        out.append("  " + _limits(model, cfg, plan["state"]))
        out.append("  " + plan["break_even"].text)
        out += [f"  note: {n}" for n in _model_notes(model, cfg)]
        out.append("")
    return "\n".join(out)


def to_json(plans: list[dict[str, Any]], cfg: RouterConfig, state: BackendState) -> dict[str, Any]:
    return {
        "prefer": cfg.routing.prefer,
        "assumed_state": {"warm": state.warm, "endpoints_in_service": bool(state.endpoint_in_service)},
        "models": [
            {
                "model": p["model"].name,
                "rows": [
                    {"records": r["records"], "mode": r["mode"], "payload_bytes": r["payload_bytes"],
                     "payload_limited": r["decision"].payload_limited, "decision": r["decision"].to_dict()}
                    for r in p["rows"]
                ],
                "break_even": p["break_even"].to_dict(),
            }
            for p in plans
        ],
    }


def fetch_calibration(args: argparse.Namespace, models: list[ModelSpec]) -> dict[str, Any]:
    """{model: calibration} from a running router's GET /v1/models/{name}. Raises ApiError."""
    from router.client import RouterClient

    client = RouterClient(args.url, args.api_key, sigv4_region=args.sigv4, timeout_s=30.0)
    return {m.name: client.request("GET", f"/v1/models/{m.name}")[2].get("calibration") or {} for m in models}


def _ratio(r: dict[str, Any] | None) -> tuple[str, str]:
    if not r:
        return "-", "-"
    return f"{r['median']:.2f}", f"{r['p10']:.2f}-{r['p90']:.2f}"


def render_calibration(found: dict[str, Any], url: str) -> str:
    out = [f"calibration (estimate / measured duration; 1.00 is exact, above 1 pessimistic) from {url}", ""]
    for name, cal in found.items():
        routes = cal.get("routes") or {}
        out.append(f"{name}: {cal.get('scope', '')}")
        if not routes:
            out.append("  no finished work yet")
        else:
            rows = []
            for route, summary in routes.items():
                median, spread = _ratio(summary.get("ratio"))
                recs = summary.get("records") or {}
                size = f"{fmt_count(recs['min'])}-{fmt_count(recs['max'])}" if recs else "-"
                rows.append([route, str(summary.get("samples", 0)), median, spread, size])
            out += table(["route", "samples", "ratio", "p10-p90", "records"], rows)
        out.append(f"  learning: {cal.get('learning', 'off')}")
        out.append("")
    return "\n".join(out)


def cmd_calibration(args: argparse.Namespace, models: list[ModelSpec]) -> int:
    from router.client import ApiError

    try:
        found = fetch_calibration(args, models)
    except ApiError as e:
        print(f"router plan --calibration: {e.message or e.code} (is `router serve` running? --url, --api-key)", file=sys.stderr)
        return 1
    if args.json:
        sys.stdout.write(json.dumps({"url": args.url, "models": found}, indent=2) + "\n")
    else:
        sys.stdout.write(render_calibration(found, args.url))
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    try:
        cfg = read_config(args.file)
        models = [find_model(cfg, args.model, args.file)] if args.model else list(cfg.models)
    except CliError as e:
        print("\n".join(e.lines), file=sys.stderr)
        return EXIT_USAGE
    if args.calibration:
        return cmd_calibration(args, models)
    if not models:
        # A valid config with no models yet (config validate accepts it): nothing to plan, not an error.
        if args.json:
            any_state = BackendState(warm=args.warm, endpoint_in_service=not args.endpoint_down, worker_warm=args.warm)
            sys.stdout.write(json.dumps(to_json([], cfg, any_state), indent=2) + "\n")
        else:
            print(f"{args.file} declares no models: nothing to plan")
        return 0
    plans = [plan_model(m, cfg, backend_state(m, warm=args.warm, endpoint_down=args.endpoint_down)) for m in models]
    if args.json:
        any_state = BackendState(warm=args.warm, endpoint_in_service=not args.endpoint_down, worker_warm=args.warm)
        sys.stdout.write(json.dumps(to_json(plans, cfg, any_state), indent=2) + "\n")
    else:
        note = ("warm" if args.warm else "cold models") + ", " + (
            "endpoints down" if args.endpoint_down else "declared endpoints InService"
        ) + f", payload {default_payload_note()}"
        sys.stdout.write(render_text(plans, cfg, note))
    return 0


def default_payload_note() -> str:
    return f"{BYTES_PER_FEATURE} B per feature per record ({BYTES_PER_RECORD_NO_FEATURES} B/record without features)"


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "plan",
        help="preview where every model's requests would run, for 1 to 10M records, and the endpoint break-even",
        description=wrap(
            "For each model in FILE, print the routing decision for sync and job requests of 1, 1k, 100k and 10M "
            "records (route, estimated duration and cost, and why), then the break-even: the monthly request volume "
            "above which a persistent SageMaker endpoint is cheaper than inline Lambda (endpoint price x instances x 730 h / "
            "Lambda cost of one warm 1-record request, billed to the next 1 ms). Offline and side-effect free: "
            "the same routing function as the API, with declared endpoints assumed InService (a plan previews "
            "the designed system) and models cold, unless told otherwise. Payloads are estimated at 20 bytes "
            "per feature per record. Exit status: 0, or 2 for a bad config or model name."
        ),
        epilog=(
            "examples:\n  router plan router.yaml\n  router plan router.yaml --model iris --json\n"
            "  router plan router.yaml --calibration --api-key KEY   # estimate vs measured on a running router"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", metavar="FILE", help="the operator config file (YAML)")
    parser.add_argument("--model", metavar="NAME", help="plan only this model (default: every model)")
    parser.add_argument("--warm", action="store_true", help="assume models already loaded in the Lambda and the lambda-job worker (no load time)")
    parser.add_argument("--endpoint-down", action="store_true", help="assume declared endpoints are not InService")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON (each row carries the full Decision)")
    cal = parser.add_argument_group(
        "calibration", "--calibration asks a running router (GET /v1/models/NAME) how its estimates compared with what "
        "recent work took, per route: the ratio estimate / measured (median, 10th-90th percentile) over the sync "
        "requests that router process served and your recent succeeded jobs (docs/routing.md \"Calibration\")"
    )
    cal.add_argument("--calibration", action="store_true", help="show estimate / measured ratios per route instead of the plan")
    cal.add_argument("--url", default=os.environ.get("ROUTER_URL", "http://127.0.0.1:8080"), help="router base URL (env ROUTER_URL; default http://127.0.0.1:8080)")
    cal.add_argument("--api-key", default=os.environ.get("ROUTER_API_KEY"), help="API key for `router serve` (env ROUTER_API_KEY)")
    cal.add_argument("--sigv4", metavar="REGION", default=os.environ.get("ROUTER_SIGV4_REGION"), help="sign requests for the deployed API's IAM auth (env ROUTER_SIGV4_REGION)")
    parser.set_defaults(func=cmd_plan)
