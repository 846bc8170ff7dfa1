"""python -m benchmarks [--quick] [--only NAME[,NAME]] [--json FILE] [--demo-dir DIR] [--rounds N]

Runs the benchmarks in order and prints one line per comparison:
`[name] subject: time/unit = R.RRx vs baseline NAME: time/unit; ...`. Exit status 1 when any
benchmark failed to run (a ratio is never a failure: no timing is asserted).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from benchmarks import BENCHMARKS
from benchmarks.harness import FULL, QUICK, Context, Report


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description="Benchmarks: ratios against named baselines.")
    p.add_argument("--quick", action="store_true", help="a tiny version (seconds): checks every benchmark runs")
    p.add_argument("--only", metavar="NAME[,NAME]", help=f"run only these: {', '.join(BENCHMARKS)}")
    p.add_argument("--json", metavar="FILE", type=Path, help="also write the results as JSON")
    p.add_argument("--demo-dir", metavar="DIR", type=Path, help="build/reuse the demo models here (default: examples/demo if built, else a temp cache)")
    p.add_argument("--rounds", type=int, help="interleaved rounds per comparison (default 15, quick 3)")
    args = p.parse_args(argv)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in BENCHMARKS]
        if unknown:
            p.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
        args.names = names
    else:
        args.names = list(BENCHMARKS)
    return args


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    # Fake credentials and no metadata lookups: nothing here may reach AWS (the local runtime never does).
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    settings = QUICK if args.quick else FULL
    if args.rounds:
        settings = dataclasses.replace(settings, rounds=max(1, args.rounds))
    today = datetime.date.today().isoformat()
    print(
        f"benchmarks {'(quick) ' if settings.quick else ''}{today}: Python {platform.python_version()}, "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs; {settings.rounds} interleaved rounds, "
        "medians; ratio = subject / baseline (median of per-round ratios)",
        flush=True,
    )
    from benchmarks.fixtures import demo_config

    demo = demo_config(args.demo_dir)
    print(f"demo models: {demo.parent}", flush=True)
    report = Report()
    failed: list[str] = []
    scratch = Path(tempfile.mkdtemp(prefix="router-bench-"))
    started = time.perf_counter()
    try:
        for name in args.names:
            module = importlib.import_module(BENCHMARKS[name])
            report.section(name, module.TITLE)
            t0 = time.perf_counter()
            try:
                module.run(Context(settings, report, demo, scratch))
            except Exception:
                failed.append(name)
                print(f"[{name}] FAILED", file=sys.stderr)
                traceback.print_exc()
            print(f"({name}: {time.perf_counter() - t0:.1f} s)", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"\ndone in {time.perf_counter() - started:.1f} s" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "date": today,
                    "python": platform.python_version(),
                    "cpus": os.cpu_count(),
                    "quick": settings.quick,
                    "rounds": settings.rounds,
                    "results": [r.to_dict() for r in report.results],
                    "notes": report.notes,
                    "failed": failed,
                },
                indent=2,
            )
            + "\n",
            encoding="utf-8",
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
