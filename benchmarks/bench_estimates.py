"""Benchmark `estimates`: how close routing's estimates are to what the work then takes, on the
local runtime. The demo's iris is profiled with `router profile --write` (skipped with --quick,
which keeps the demo's own profile), served by `router serve`'s app on a free port, and sent
lambda-jobs of 2k, 20k and 100k records (started -> finished, the model warm in the worker; plus
one cold 2k job first) and 1- and 1,000-row sync requests (the recorder's estimate vs the time
the route took), over real HTTP. Each line: estimate vs measured, ratio = estimate / measured
(median over the runs; 1.00 is exact, above 1 pessimistic). Then `router plan --calibration`
prints what the running router reports.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import yaml

from benchmarks.fixtures import API_KEY, IRIS_ROW, REPO, bench_config
from benchmarks.harness import Context, Result, compare

NAME = "estimates"
TITLE = "routing estimate vs measured duration under router serve, after router profile (1.00 = exact)"


def run(ctx: Context) -> None:
    from router.cli import main
    from router.client import RouterClient
    from router.config import load_config
    from router.local.app import create_app

    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")  # as `router serve` runs
    quick = ctx.settings.quick
    state = ctx.scratch / NAME
    state.mkdir(parents=True, exist_ok=True)
    path = state / "operator.yaml"
    cfg = bench_config(ctx.demo_config, state)
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json", exclude_none=True), sort_keys=False))
    job_sizes = (2_000, 20_000) if quick else (2_000, 20_000, 100_000)
    # The rows, made in another process: this one stays without scikit-learn until the router
    # loads the model, as `router serve` starts (the cold job below pays the whole import).
    rows_code = (
        "import json, sys\nfrom benchmarks.fixtures import iris_rows\n"
        f"for n, seed in {[(n, n) for n in (1_000, *job_sizes)] + [(1_000, 99)]}:\n"
        "    open(f'{sys.argv[1]}/rows-{n}-{seed}.jsonl', 'w').write(''.join(json.dumps(r) + '\\n' for r in iris_rows(n, seed=seed)))\n"
    )
    subprocess.run([sys.executable, "-c", rows_code, str(state)], check=True, timeout=300, cwd=REPO)
    sample = state / "rows-1000-99.jsonl"
    if not quick:
        # As an operator runs it: its own process, with real rows to time.
        done = subprocess.run(
            [sys.executable, "-m", "router.cli", "profile", str(path), "iris", "--sample", str(sample), "--write"],
            capture_output=True, text=True, check=False, timeout=600,
        )
        if done.returncode != 0:
            raise RuntimeError(f"router profile failed ({done.returncode}): {done.stdout}{done.stderr}")
        ctx.report.note(NAME, done.stdout.strip())
    cfg = load_config(path)
    app = create_app(cfg, port=0)
    server = threading.Thread(target=app.serve_forever, daemon=True)
    server.start()
    client = RouterClient(app.url, API_KEY, timeout_s=120)
    try:
        runs = 1 if quick else max(3, ctx.settings.rounds // 2)
        if not quick and "sklearn" in sys.modules:
            ctx.report.note(NAME, "cold worker: skipped (an earlier benchmark imported scikit-learn into this process)")
        elif not quick:
            cold = _job(client, _rows(state, 2_000, 2_000))  # before anything loads the model
            _add(ctx, "lambda-job 2,000 records, cold worker", [cold[0]], [cold[1]], "job")
        client.predict("iris", [IRIS_ROW])  # loads the model: later work is warm
        inputs = {n: _rows(state, n, n) for n in job_sizes}
        runs_of: dict[int, list[tuple[float, float]]] = {n: [] for n in job_sizes}
        for _ in range(runs):  # sizes interleaved: each sees the same spread of machine load
            for n in job_sizes:
                runs_of[n].append(_job(client, inputs[n]))
        for n, pairs in runs_of.items():
            _add(ctx, f"lambda-job {n:,} records, warm worker", [e for e, _ in pairs], [m for _, m in pairs], "job")
        recorder = app.runtime.service.recorder
        for n in (1, 1_000):
            rows = [IRIS_ROW] if n == 1 else _rows(state, n, n)
            before = len(recorder.samples("iris").get("inline", []))
            for _ in range(3 if quick else 15 * runs):
                client.predict("iris", rows)
            samples = recorder.samples("iris").get("inline", [])[before:]
            _add(ctx, f"inline {n:,} rows", [s.estimate_s for s in samples], [s.measured_s for s in samples], "request")
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            main(["plan", str(path), "--model", "iris", "--calibration", "--url", app.url, "--api-key", API_KEY])
        ctx.report.note(NAME, "router plan --calibration:\n" + out.getvalue().rstrip())
    finally:
        app.shutdown()
        server.join(timeout=10)


def _rows(state: Path, n: int, seed: int) -> list[Any]:
    return [json.loads(line) for line in (state / f"rows-{n}-{seed}.jsonl").read_text().splitlines()]


def _job(client: Any, rows: list[Any]) -> tuple[float, float]:
    """(the decision's estimate, started -> finished) of one lambda-job of `rows`."""
    job = client.wait(client.submit_job("iris", instances=rows)["job_id"], poll_s=0.05, max_poll_s=0.5)
    if job["status"] != "succeeded" or job["route"] != "lambda-job":
        raise RuntimeError(f"a {len(rows):,}-record job: {job['status']} on {job['route']}: {job.get('error') or job['reason']}")
    return float(job["estimate"]["duration_s"]), float(job["duration_s"])


def _add(ctx: Context, subject: str, estimates: list[float], measured: list[float], unit: str) -> Result:
    times = {f"{subject} estimate": estimates, "measured": measured}
    res = compare(NAME, times, f"{subject} estimate", "measured", unit=unit,
                  note=f"{len(measured)} runs, ratio spread {min(_ratios(times)):.2f}-{max(_ratios(times)):.2f}")
    res.extra.update(estimate_s=statistics.median(estimates), measured_s=statistics.median(measured))
    return ctx.report.add(res)


def _ratios(times: dict[str, list[float]]) -> list[float]:
    est, meas = times.values()
    return [e / m for e, m in zip(est, meas, strict=True) if m > 0]
