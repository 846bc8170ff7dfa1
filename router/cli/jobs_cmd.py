"""`router jobs submit|get|list|cancel|wait` against a running router (URL + API key).

The URL and key come from --url/--api-key or ROUTER_URL/ROUTER_API_KEY.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from router.client import ApiError, RouterClient


def register(sub: Any) -> None:
    p = sub.add_parser(
        "jobs",
        help="submit, inspect, cancel and wait for asynchronous jobs on a running router",
        description="Work with asynchronous jobs on a running router (`router serve` or the AWS API).",
    )
    p.add_argument("--url", default=os.environ.get("ROUTER_URL", "http://127.0.0.1:8080"), help="router base URL (env ROUTER_URL; default http://127.0.0.1:8080)")
    p.add_argument("--api-key", default=os.environ.get("ROUTER_API_KEY"), help="API key for `router serve` (env ROUTER_API_KEY)")
    p.add_argument(
        "--sigv4",
        metavar="REGION",
        default=os.environ.get("ROUTER_SIGV4_REGION"),
        help="sign requests with your AWS credentials for the deployed API's IAM auth (env ROUTER_SIGV4_REGION)",
    )
    js = p.add_subparsers(dest="jobs_command", metavar="SUBCOMMAND", required=True)

    s = js.add_parser(
        "submit",
        help="submit a job from a JSON Lines or CSV file (uploaded first), or an s3:// object already in place",
        description=(
            "Submit a job. JSON Lines input: one record per line, a list of numbers in feature order or an "
            "object keyed by feature name, e.g. [5.1, 3.5, 1.4, 0.2]. CSV input: rows of numbers in feature "
            "order, no header. See docs/api.md, \"Job input files\"."
        ),
    )
    s.add_argument("model", help="the model's name (GET /v1/models lists them)")
    s.add_argument("input", help="a .jsonl/.csv file to upload, or an s3:// URI already in place")
    s.add_argument("--format", choices=["jsonl", "csv"], help="input format (default: from the file name, else jsonl)")
    s.add_argument("--output", choices=["predict", "proba"], default="predict", help="predictions (default) or class probabilities")
    s.add_argument("--idempotency-key", help="makes the submission safe to repeat")
    s.add_argument("--wait", action="store_true", help="wait for the job and download its output")
    s.add_argument("--out", type=Path, help="with --wait: where to write the output (default: JOB_ID.jsonl)")
    s.set_defaults(func=_submit)

    g = js.add_parser("get", help="show one job")
    g.add_argument("job_id", help="the job's id (job_...)")
    g.set_defaults(func=_get)

    ls = js.add_parser("list", help="your jobs, newest first")
    ls.add_argument("--status", choices=["queued", "running", "succeeded", "failed", "cancelling", "cancelled"], help="only jobs in this status")
    ls.add_argument("--model", help="only this model's jobs")
    ls.add_argument("--limit", type=int, default=20, help="jobs per page (default 20, at most 100)")
    ls.add_argument("--cursor", help="the next_cursor of the previous page")
    ls.add_argument("--json", action="store_true", help="print the raw API response")
    ls.set_defaults(func=_list)

    c = js.add_parser("cancel", help="cancel a job (repeating it is harmless)")
    c.add_argument("job_id", help="the job's id (job_...)")
    c.set_defaults(func=_cancel)

    w = js.add_parser("wait", help="wait for a job with a progress bar, then download its output")
    w.add_argument("job_id", help="the job's id (job_...)")
    w.add_argument("--out", type=Path, help="where to write the output (default: JOB_ID.jsonl)")
    w.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait at most (default 3600)")
    w.set_defaults(func=_wait)


def _client(args: argparse.Namespace) -> RouterClient:
    return RouterClient(args.url, args.api_key, sigv4_region=args.sigv4)


def _print(obj: Any) -> None:
    print(json.dumps(obj, indent=2))


def _guard(fn: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            return int(fn(args) or 0)
        except ApiError as e:
            print(f"error: {e.status} {e.code}: {e.message}", file=sys.stderr)
            return 1
        except OSError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1

    return run


@_guard
def _submit(args: argparse.Namespace) -> int:
    c = _client(args)
    fmt = args.format or ("csv" if str(args.input).endswith(".csv") else "jsonl")
    if str(args.input).startswith("s3://"):
        uri = args.input
    else:
        path = Path(args.input)
        with path.open("rb") as f:
            print(f"uploading {path} ({path.stat().st_size:,} bytes)...", file=sys.stderr)
            uri = c.upload(f)
    job = c.submit_job(args.model, input_uri=uri, input_format=fmt, output=args.output, idempotency_key=args.idempotency_key)
    print(f"{job['job_id']}  {job['status']}  route={job['route']}  ({job['reason']})", file=sys.stderr)
    if args.wait:
        return _wait_and_download(c, job["job_id"], args.out, 3600.0)
    _print(job)
    return 0


@_guard
def _get(args: argparse.Namespace) -> int:
    _print(_client(args).get_job(args.job_id))
    return 0


@_guard
def _list(args: argparse.Namespace) -> int:
    page = _client(args).list_jobs(status=args.status, model=args.model, limit=args.limit, cursor=args.cursor)
    if args.json:
        _print(page)
        return 0
    print(f"{'JOB':30} {'MODEL':14} {'STATUS':11} {'ROUTE':16} {'DONE/TOTAL':>17}  CREATED")
    for j in page["jobs"]:
        rec = j.get("records") or {}
        done = f"{rec.get('done') or 0:,}/{rec.get('total') or 0:,}"
        print(f"{j['job_id']:30} {j['model']:14} {j['status']:11} {j['route']:16} {done:>17}  {j['created_at']}")
    if page.get("next_cursor"):
        print(f"(more: --cursor {page['next_cursor']})")
    return 0


@_guard
def _cancel(args: argparse.Namespace) -> int:
    _print(_client(args).cancel_job(args.job_id))
    return 0


@_guard
def _wait(args: argparse.Namespace) -> int:
    return _wait_and_download(_client(args), args.job_id, args.out, args.timeout)


def _wait_and_download(c: RouterClient, job_id: str, out: Path | None, timeout_s: float) -> int:
    tty = sys.stderr.isatty()

    def show(job: dict[str, Any]) -> None:
        rec = job.get("records") or {}
        total, done = rec.get("total") or 0, rec.get("done") or 0
        frac = (done / total) if total else 0.0
        bar = "#" * int(frac * 30)
        line = f"{job_id} {job['status']:10} [{bar:<30}] {done:,}/{total:,}"
        print(("\r" + line) if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)

    job = c.wait(job_id, timeout_s=timeout_s, on_update=show)
    if tty:
        print(file=sys.stderr)
    if job["status"] != "succeeded":
        err = job.get("error") or {}
        print(f"job {job_id} {job['status']}: {err.get('message', '')}", file=sys.stderr)
        return 1
    dest = out or Path(f"{job_id}.jsonl")
    c.download(job, dest)
    print(f"output written to {dest}", file=sys.stderr)
    return 0
