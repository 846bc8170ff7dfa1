"""`router route FILE MODEL`: the routing decision for one described request, offline.

Runs the very function the API uses (router.routing.decide) on the config file and prints the
route, its one-line reason and every candidate; `router plan` reuses the helpers here.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from router.cli.common import wrap
from router.config import ModelSpec, RouterConfig, load_config
from router.domain import BackendState, Decision, Mode, RequestShape
from router.errors import ConfigError, RouterError
from router.routing import decide, fmt_bytes, fmt_cost, fmt_count, fmt_duration

EXIT_ROUTED = 0
EXIT_NO_ROUTE = 1
EXIT_USAGE = 2

# Default payload when --payload-bytes is not given: about 20 bytes per feature per record as
# JSON ("5.1234567, " plus brackets), or 200 bytes per record for models without declared features.
BYTES_PER_FEATURE = 20
BYTES_PER_RECORD_NO_FEATURES = 200


class CliError(Exception):
    """A problem the user must fix (bad file, unknown model): printed to stderr, exit 2."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def default_payload_bytes(model: ModelSpec, records: int) -> int:
    """Estimated JSON request size of `records` records (BYTES_PER_FEATURE per feature)."""
    per_record = BYTES_PER_FEATURE * len(model.features) if model.features else BYTES_PER_RECORD_NO_FEATURES
    return records * per_record


def read_config(path: str) -> RouterConfig:
    """Load the config for a what-if command. Artifacts need not exist yet (a plan previews the
    designed system; `router config validate` checks them); their size then counts as unknown."""
    try:
        return load_config(path, check_artifacts=False)
    except ConfigError as e:
        raise CliError([f"{e.source}: invalid config", *(f"  {p}" for p in e.problems)]) from None


def find_model(cfg: RouterConfig, name: str, source: str) -> ModelSpec:
    model = cfg.model(name)
    if model is None:
        names = ", ".join(m.name for m in cfg.models) or "none"
        raise CliError([f"unknown model {name!r} in {source} (models declared: {names})"])
    return model


def backend_state(model: ModelSpec, *, warm: bool, endpoint_down: bool, serverless_down: bool = False) -> BackendState:
    """Offline state: declared endpoints (real-time and serverless) count as InService unless
    --endpoint-down / --serverless-down; --warm means the model is loaded where it runs (the router
    Lambda, the lambda-job worker, an instance of its serverless or async endpoint: no cold start)."""
    in_service = None if model.endpoint is None else not endpoint_down
    serverless = None if model.serverless is None else not serverless_down
    return BackendState(
        warm=warm, endpoint_in_service=in_service, worker_warm=warm, serverless_in_service=serverless, serverless_warm=warm,
        async_in_service=None if model.async_inference is None else warm
    )


_SUFFIXES = {"k": 10**3, "m": 10**6, "g": 10**9}


def non_negative_int(text: str) -> int:
    """A count as people type it: 1000, 1_000, 1,000, 10k, 10M."""
    cleaned = text.strip().replace("_", "").replace(",", "")
    scale = 1
    if cleaned[-1:].lower() in _SUFFIXES:
        scale = _SUFFIXES[cleaned[-1].lower()]
        cleaned = cleaned[:-1]
    try:
        value = int(cleaned) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


_BINARY = {"kib": 1024, "mib": 1024**2, "gib": 1024**3}


def byte_count(text: str) -> int:
    """A size in bytes: 7000000, 7_000_000, or binary units 512KiB, 6MiB (decimal k/M are refused:
    AWS's "6 MB" limits are 6 MiB here, see docs/routing.md)."""
    cleaned = text.strip().replace("_", "").replace(",", "").replace(" ", "")
    for unit, scale in _BINARY.items():
        if cleaned.lower().endswith(unit):
            try:
                value = int(float(cleaned[: -len(unit)]) * scale)
            except ValueError:
                break
            if value < 0:
                break
            return value
    if cleaned[-1:].lower() in _SUFFIXES:
        raise argparse.ArgumentTypeError(f"ambiguous size {text!r}: give bytes, or KiB / MiB / GiB")
    return non_negative_int(cleaned)


def table(header: list[str], rows: list[list[str]], indent: str = "  ") -> list[str]:
    """Left-aligned columns; the last column is not padded (it holds free text)."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    out = []
    for r in [header, *rows]:
        cells = [c.ljust(w) for c, w in zip(r, widths, strict=False)] + [r[-1]]
        out.append((indent + "  ".join(cells)).rstrip())
    return out


def candidate_table(decision: Decision) -> list[str]:
    rows = [
        [
            c.route.value,
            "yes" if c.feasible else "no",
            fmt_duration(c.estimates.duration_s),
            fmt_cost(c.estimates.cost_usd),
            "; ".join(c.reasons) or "-",
        ]
        for c in decision.candidates
    ]
    return table(["candidate", "feasible", "est.", "cost", "why not"], rows)


def render_decision(model: ModelSpec, request: RequestShape, state: BackendState, decision: Decision, payload_note: str) -> str:
    warm = "warm (model loaded)" if state.warm else "cold (model not loaded)"
    endpoint = ""
    if model.endpoint is not None:
        endpoint = f", endpoint {model.endpoint.name} " + ("InService" if state.endpoint_in_service else "down")
    if model.serverless is not None:
        endpoint += f", serverless {model.serverless_endpoint_name} " + (
            ("warm" if state.serverless_warm else "scaled to zero") if state.serverless_in_service else "down"
        )
    if model.async_inference is not None and request.mode.value == "job":
        endpoint += f", async {model.async_endpoint_name} " + ("instance up" if state.async_in_service else "scaled to zero")
    lines = [
        f"{model.name} ({model.framework}), {request.mode.value} request: {fmt_count(request.records)} record{'' if request.records == 1 else 's'}, "
        f"{fmt_bytes(request.payload_bytes)} payload{payload_note}; {warm}{endpoint}",
        f"route:  {decision.route.value if decision.route else 'none'}"
        + (" (payload too large: the API answers 413)" if decision.payload_limited else ""),
        f"reason: {decision.reason}",
    ]
    if decision.estimates is not None:
        lines.append(
            f"estimate: {fmt_duration(decision.estimates.duration_s)}, {fmt_cost(decision.estimates.cost_usd)}"
        )
    lines.append("")
    lines += candidate_table(decision)
    return "\n".join(lines) + "\n"


def cmd_route(args: argparse.Namespace) -> int:
    try:
        cfg = read_config(args.file)
        model = find_model(cfg, args.model, args.file)
    except CliError as e:
        print("\n".join(e.lines), file=sys.stderr)
        return EXIT_USAGE
    if args.payload_bytes is None:
        payload = default_payload_bytes(model, args.records)
        per = f"{BYTES_PER_FEATURE} B x {len(model.features)} features" if model.features else f"{BYTES_PER_RECORD_NO_FEATURES} B"
        note = f" (estimated: {per} per record; set --payload-bytes)"
    else:
        payload, note = args.payload_bytes, ""
    request = RequestShape(mode=Mode(args.mode), records=args.records, payload_bytes=payload)
    state = backend_state(model, warm=args.warm, endpoint_down=args.endpoint_down, serverless_down=args.serverless_down)
    try:
        decision = decide(model, request, cfg, state)
    except RouterError as e:  # pragma: no cover - argparse already rejects negative sizes
        print(f"router route: {e.message}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        out: dict[str, Any] = decision.to_dict()
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
    else:
        sys.stdout.write(render_decision(model, request, state, decision, note))
    return EXIT_ROUTED if decision.route is not None else EXIT_NO_ROUTE


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "route",
        help="show where one request would run and why (a dry run of the routing decision)",
        description=wrap(
            "Print the routing decision for one described request: the route, a one-line reason, and "
            "every candidate route with its estimated duration and cost and why it is or is not feasible. "
            "Nothing runs and no AWS call is made. Endpoints declared in the config (real-time and serverless) "
            "are assumed InService (this previews the designed system) unless --endpoint-down / --serverless-down "
            "is given; the model is assumed cold (a serverless or async inference endpoint scaled to zero) unless --warm. Artifacts need not exist. "
            "Exit status: 0 a route was found, 1 no route is feasible, 2 bad config, model or arguments."
        ),
        epilog=(
            "examples:\n"
            "  router route router.yaml iris --mode sync --records 1000\n"
            "  router route router.yaml embedder --mode job --records 2_000_000 --json\n"
            "  router route router.yaml iris --mode sync --records 1 --payload-bytes 7000000"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", metavar="FILE", help="the operator config file (YAML)")
    parser.add_argument("model", metavar="MODEL", help="a model name declared in FILE")
    parser.add_argument(
        "--mode", required=True, choices=[m.value for m in Mode],
        help="sync: a /predict request (inline, endpoint or serverless); job: a /jobs request (lambda-job, async-inference or batch-transform)",
    )
    parser.add_argument("--records", required=True, type=non_negative_int, metavar="N", help="number of records (rows) in the request; 1000, 1_000, 1,000, 10k and 10M are accepted")
    parser.add_argument(
        "--payload-bytes", type=byte_count, default=None, metavar="B",
        help=(
            f"request body size in bytes, or with a binary unit (6MiB = 6,291,456 bytes); default: {BYTES_PER_FEATURE} bytes per feature per record, "
            f"or {BYTES_PER_RECORD_NO_FEATURES} bytes per record when the model declares no features"
        ),
    )
    parser.add_argument("--warm", action="store_true", help="the model is already loaded in the Lambda and the lambda-job worker (no load time)")
    parser.add_argument("--endpoint-down", action="store_true", help="treat the model's real-time endpoint as not InService")
    parser.add_argument("--serverless-down", action="store_true", help="treat the model's serverless endpoint as not InService")
    parser.add_argument("--json", action="store_true", help="print the Decision as JSON (the /route response body)")
    parser.set_defaults(func=cmd_route)
