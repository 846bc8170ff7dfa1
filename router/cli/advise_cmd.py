"""`router advise CONFIG`: per persistent endpoint, keep it, switch to serverless, switch to async
inference (scale to zero) or delete it, by its traffic; the decision is router.advice's (pure),
this module only reads the traffic (a file, CloudWatch, or a `router serve` job table) and prints."""

from __future__ import annotations

import argparse
import json
import math
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from router.advice import OPTIONS, Advice, Traffic, advise, fmt_rate
from router.cli.common import wrap
from router.cli.route_cmd import CliError, default_payload_bytes, find_model, read_config, table
from router.config import ModelSpec, RouterConfig
from router.errors import InvalidRequest
from router.routing import fmt_cost

EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE = 0, 1, 2
MAX_DAYS = 60  # CloudWatch: one GetMetricStatistics call returns at most 1,440 hourly points
TRAFFIC_KEYS = {"invocations_per_hour", "records_per_invocation", "payload_bytes"}


class SourceUnavailable(CliError):
    """The traffic source could not be read (CloudWatch failed, no job table yet): exit 1."""


def _traffic(model: ModelSpec, per_hour: float, records: float, payload: float | None, source: str) -> Traffic:
    if payload is None:
        payload = float(default_payload_bytes(model, max(1, math.ceil(records))))
    return Traffic(per_hour, records, payload, source)


# ---------------------------------------------------------------- traffic sources


def traffic_from_file(path: Path, models: list[ModelSpec]) -> dict[str, Traffic]:
    """The traffic file: a YAML (or JSON) mapping of model name to invocations per hour, or to
    {invocations_per_hour, records_per_invocation (1), payload_bytes (20 B per feature per record)}."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise CliError([f"{path}: cannot read the traffic file: {e.strerror or e}"]) from None
    except yaml.YAMLError as e:
        raise CliError([f"{path}: not valid YAML/JSON: {getattr(e, 'problem', None) or e}"]) from None
    if not isinstance(data, dict):
        raise CliError([f"{path}: the traffic file must map model names to invocations per hour (see `router advise --help`)"])
    by_name = {m.name: m for m in models}
    problems: list[str] = []
    out: dict[str, Traffic] = {}
    for name, entry in data.items():
        model = by_name.get(str(name))
        if model is None:
            problems.append(f"{path}: {name}: no such model in the config (models: {', '.join(by_name) or 'none'})")
            continue
        if isinstance(entry, bool) or not isinstance(entry, int | float | dict):
            problems.append(f"{path}: {name}: expected invocations per hour or a mapping, got {entry!r}")
            continue
        fields: dict[str, Any] = {"invocations_per_hour": entry} if not isinstance(entry, dict) else dict(entry)
        unknown = set(fields) - TRAFFIC_KEYS
        if unknown or "invocations_per_hour" not in fields:
            what = f"unknown key(s) {', '.join(sorted(map(str, unknown)))}" if unknown else "invocations_per_hour is required"
            problems.append(f"{path}: {name}: {what} (keys: {', '.join(sorted(TRAFFIC_KEYS))})")
            continue
        try:
            values = {k: _number(v, k) for k, v in fields.items()}
            out[model.name] = _traffic(
                model, values["invocations_per_hour"], values.get("records_per_invocation", 1.0), values.get("payload_bytes"), str(path)
            )
        except (InvalidRequest, ValueError) as e:
            problems.append(f"{path}: {name}: {getattr(e, 'message', e)}")
    if problems:
        raise CliError(problems)
    return out


def _number(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key} must be a number, got {value!r}")
    return float(value)


def traffic_from_cloudwatch(client: Any, models: list[ModelSpec], *, now: datetime, days: int) -> dict[str, Traffic]:
    """Invocations per hour of each endpoint over the last `days`: CloudWatch `AWS/SageMaker`
    `Invocations` (Sum, hourly) of its variant, averaged over the whole window."""
    from botocore.exceptions import BotoCoreError, ClientError

    from sagemaker_jobs.deploy import VARIANT_NAME

    out: dict[str, Traffic] = {}
    start = now - timedelta(days=days)
    for m in models:
        assert m.endpoint is not None
        try:
            resp = client.get_metric_statistics(
                Namespace="AWS/SageMaker",
                MetricName="Invocations",
                Dimensions=[{"Name": "EndpointName", "Value": m.endpoint.name}, {"Name": "VariantName", "Value": VARIANT_NAME}],
                StartTime=start,
                EndTime=now,
                Period=3600,
                Statistics=["Sum"],
            )
        except (ClientError, BotoCoreError) as e:
            raise SourceUnavailable([f"CloudWatch GetMetricStatistics for endpoint {m.endpoint.name} failed: {e}"]) from None
        total = sum(float(p.get("Sum", 0.0)) for p in resp.get("Datapoints", []))
        out[m.name] = _traffic(m, total / (days * 24), 1.0, None, f"CloudWatch AWS/SageMaker Invocations, last {days} d")
    return out


def traffic_from_job_table(config: RouterConfig, models: list[ModelSpec], *, now: datetime, days: int) -> dict[str, Traffic]:
    """`router serve`'s job table: each job of the last `days` counts as one invocation of its size."""
    table_uri = config.storage.job_table
    if not table_uri.startswith("sqlite:///"):
        raise CliError([f"storage.job_table is {table_uri}: give --traffic FILE or --cloudwatch for traffic on AWS"])
    path = Path(table_uri[len("sqlite:///"):])
    if not path.is_file():
        raise SourceUnavailable([
            f"no traffic source: the job table {path} does not exist yet (run `router serve` with this config), "
            "or give --traffic FILE or --cloudwatch"
        ])
    from router.adapters.sqlite_jobs import SqliteJobStore

    store = SqliteJobStore(path)
    try:
        counts = store.created_since(now - timedelta(days=days))
    finally:
        store.close()
    out: dict[str, Traffic] = {}
    for m in models:
        jobs, records = counts.get(m.name, (0, 0))
        out[m.name] = _traffic(m, jobs / (days * 24), records / jobs if jobs else 1.0, None, f"job table {path}, last {days} d")
    return out


# ---------------------------------------------------------------- output


def render(advice: list[Advice], skipped: list[str]) -> str:
    rows = []
    for a in advice:
        cells = [a.endpoint, a.model, fmt_rate(a.traffic.invocations_per_hour)]
        for name in OPTIONS:
            o = a.option(name)
            cells.append(fmt_cost(o.monthly_usd) if o.feasible and o.monthly_usd is not None else "-")
        cells.append(a.recommendation)
        rows.append(cells)
    lines = ["monthly cost of each option (730 h; the router Lambda's request fee, the same for all, left out)", ""]
    lines += table(["endpoint", "model", "calls/h", *OPTIONS, "advice"], rows, indent="")
    for a in advice:
        lines += ["", f"{a.endpoint} ({a.model}): {a.reason}"]
        for name in OPTIONS[1:]:
            o = a.option(name)
            be = o.break_even_per_hour
            when = (
                "" if be is None or not o.feasible
                else "; never cheaper than keeping it" if be == 0
                else "; cheaper at any traffic" if math.isinf(be)
                else f"; cheaper below {fmt_rate(be)} calls/h"
            )
            lines.append(f"  {name}: {o.note}{when}")
        lines.append(f"  traffic: {a.traffic.source}")
    lines += [f"note: {s}" for s in skipped]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- the command


def cmd_advise(args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    try:
        cfg = read_config(args.config)
        models = [find_model(cfg, args.model, args.config)] if args.model else list(cfg.models)
        with_endpoint = [m for m in models if m.endpoint is not None]
        if not with_endpoint:
            raise CliError([f"{args.config}: no model{' ' + repr(args.model) if args.model else ''} with a persistent endpoint: nothing to advise"])
        if args.traffic is not None:
            traffic = traffic_from_file(args.traffic, models)
        elif args.cloudwatch:
            import boto3

            client = boto3.client("cloudwatch", region_name=cfg.sagemaker.region)
            traffic = traffic_from_cloudwatch(client, with_endpoint, now=now, days=args.days)
        else:
            traffic = traffic_from_job_table(cfg, with_endpoint, now=now, days=args.days)
    except SourceUnavailable as e:
        print("\n".join(e.lines), file=sys.stderr)
        return EXIT_UNAVAILABLE
    except CliError as e:
        print("\n".join(e.lines), file=sys.stderr)
        return EXIT_USAGE
    except Exception as e:  # botocore: no credentials, no region, no network
        print(f"router advise: cannot read the traffic: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    advice = [advise(m, cfg, traffic[m.name]) for m in with_endpoint if m.name in traffic]
    skipped = [f"no traffic for {m.name} in {args.traffic}: not advised" for m in with_endpoint if m.name not in traffic]
    skipped += [f"{name} has no persistent endpoint: nothing to advise" for name in traffic if cfg.model(name) not in with_endpoint]
    if args.json:
        sys.stdout.write(json.dumps({"endpoints": [a.to_dict() for a in advice], "skipped": skipped}, indent=2) + "\n")
    else:
        sys.stdout.write(render(advice, skipped))
    return EXIT_OK


def _days(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_DAYS:
        raise argparse.ArgumentTypeError(f"must be a whole number of days from 1 to {MAX_DAYS}, not {text!r}")
    return value


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "advise",
        help="per persistent endpoint: keep it, switch to serverless or async inference, or delete it, by its traffic",
        description=wrap(
            "For every model of CONFIG with a persistent (real-time) endpoint, read its traffic and print the monthly cost "
            "of each option — keep the endpoint, switch to a serverless endpoint, switch to an asynchronous inference "
            "endpoint that scales to zero, delete it (requests then run inline when the model can) — the traffic at which "
            "each breaks even with keeping it, and the cheapest one that can take the traffic (routing's own limits decide "
            "which can). Traffic comes from --traffic FILE, from CloudWatch (--cloudwatch, on AWS), or by default from the "
            "job table of `router serve` for this config (each job counts as one call of its size). "
            "Exit status: 0 advice printed, 1 the traffic source could not be read, 2 bad config, traffic file or arguments."
        ),
        epilog=(
            "traffic file (YAML or JSON): model name -> calls per hour, or a mapping\n"
            "  iris: 120\n"
            "  embedder: {invocations_per_hour: 3.5, records_per_invocation: 10, payload_bytes: 4096}\n"
            "(records_per_invocation defaults to 1, payload_bytes to 20 B per feature per record.)\n\n"
            "examples:\n"
            "  router advise router.yaml --traffic traffic.yaml\n"
            "  router advise router.yaml --cloudwatch --days 30 --json\n"
            "  router advise examples/demo/operator.yaml          # from router serve's job table"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", metavar="CONFIG", help="the operator config file (YAML)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--traffic", type=Path, metavar="FILE", help="a traffic file (format below)")
    source.add_argument(
        "--cloudwatch", action="store_true",
        help="read AWS/SageMaker Invocations of each endpoint (variant AllTraffic) from CloudWatch (AWS credentials needed)",
    )
    parser.add_argument("--days", type=_days, default=14, metavar="N", help=f"window of CloudWatch or job-table traffic, 1-{MAX_DAYS} days (default 14)")
    parser.add_argument("--model", metavar="NAME", help="only this model")
    parser.add_argument("--json", action="store_true", help="print {endpoints: [advice...], skipped: [...]} as JSON")
    parser.set_defaults(func=cmd_advise)
