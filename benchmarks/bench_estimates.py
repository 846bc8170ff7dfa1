"""Benchmark `estimates`: how close routing's estimates are to what the work then takes, on the
local runtime. Four rounds, each: the demo's iris profiled with `router profile --write` (its
own process, real rows; skipped with --quick, which keeps the demo's own profile, one round), a
fresh `router serve` app on that config on a free port, then over real HTTP 1- and 1,000-row sync
requests (interleaved, each after a pause) and lambda-jobs of 2k, 20k and 100k records (the model
warm in the worker; plus one cold 2k job first in round 1). A shared machine's load drifts over
tens of seconds, so each profile's estimate is compared with the work measured just before it
and just after it (a linear drift cancels); the first of the four profiles only sets up the cold
job and the first "before".

Sync: the recorder's estimate vs the time the router spent on the request (body parse, routing,
predict: the span the estimate covers; the HTTP transport is not in it), each size's `typical`
time of the requests around the profile (the trimmed mean `router profile` takes: on a busy machine timings cluster at
whole scheduler slices and their median jumps). Jobs: the decision's estimate vs started ->
finished, the median of the runs around the profile. Each line: ratio = estimate / measured, the median of
the rounds' ratios (1.00 is exact, above 1 pessimistic). Then `router plan --calibration` prints
what the last round's router reports.
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
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks.fixtures import API_KEY, IRIS_ROW, REPO, bench_config
from benchmarks.harness import Context, Result
from router.cli.profiling import typical

NAME = "estimates"
TITLE = "routing estimate vs measured duration under router serve, after router profile (1.00 = exact)"


def run(ctx: Context) -> None:
    from router.cli import main
    from router.client import RouterClient
    from router.config import load_config
    from router.serve_app import create_app

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
    inputs = {n: _rows(state, n, n) for n in job_sizes}
    sync_inputs = {1: [IRIS_ROW], 1_000: _rows(state, 1_000, 1_000)}
    # Rounds of (router profile --write, a fresh router on that config, its work measured). A
    # shared machine's load drifts over tens of seconds, so each profile is compared with the work
    # measured just before it and just after it (a linear drift cancels); the first profile only
    # sets up the cold job and the first "before". A subject is the median of the rounds' ratios.
    rounds = 1 if quick else ROUNDS + 1
    blocks: list[dict[str, tuple[float, list[float]]]] = []  # per round: subject -> (estimate, measured)
    for r in range(rounds):
        if not quick:
            # As an operator runs it: its own process, with real rows to time.
            done = subprocess.run(
                [sys.executable, "-m", "router.cli", "profile", str(path), "iris", "--sample", str(sample), "--write"],
                capture_output=True, text=True, check=False, timeout=600,
            )
            if done.returncode != 0:
                raise RuntimeError(f"router profile failed ({done.returncode}): {done.stdout}{done.stderr}")
            ctx.report.note(NAME, f"profile {r + 1}, load average {os.getloadavg()[0]:.1f}: {done.stdout.strip()}")
        app = create_app(load_config(path), port=0)
        server = threading.Thread(target=app.serve_forever, daemon=True)
        server.start()
        client = RouterClient(app.url, API_KEY, timeout_s=120)
        block: dict[str, tuple[float, list[float]]] = {}
        try:
            if r == 0 and not quick:
                if "sklearn" in sys.modules:
                    ctx.report.note(NAME, "cold worker: skipped (an earlier benchmark imported scikit-learn into this process)")
                else:
                    est, took = _job(client, inputs[2_000])  # before anything loads the model
                    _add(ctx, "lambda-job 2,000 records, cold worker", [est], [took], "job")
            client.predict("iris", [IRIS_ROW])  # loads the model: later work is warm
            recorder = app.runtime.service.recorder
            for n, (ests, took) in _sync(client, recorder, sync_inputs, 10 if quick else SYNC_ROUNDS).items():
                block[f"inline {n:,} rows"] = (typical(ests), took)
            runs_of: dict[int, list[tuple[float, float]]] = {n: [] for n in job_sizes}
            for _ in range(1 if quick else JOB_RUNS):  # sizes interleaved: each sees the same load
                for n in job_sizes:
                    runs_of[n].append(_job(client, inputs[n]))
            for n, pairs in runs_of.items():
                block[f"lambda-job {n:,} records, warm worker"] = (statistics.median(e for e, _ in pairs), [m for _, m in pairs])
            blocks.append(block)
            if r == rounds - 1:
                out = io.StringIO()
                with contextlib.redirect_stdout(out):
                    main(["plan", str(path), "--model", "iris", "--calibration", "--url", app.url, "--api-key", API_KEY])
                ctx.report.note(NAME, "router plan --calibration (the last round's router):\n" + out.getvalue().rstrip())
        finally:
            app.shutdown()
            server.join(timeout=10)
    for subject in blocks[0]:
        estimates: list[float] = []
        measured: list[float] = []
        for k in range(1, len(blocks)) if len(blocks) > 1 else (0,):
            around = blocks[k - 1][subject][1] + blocks[k][subject][1] if k else blocks[k][subject][1]
            estimates.append(blocks[k][subject][0])
            measured.append(typical(around) if subject.startswith("inline") else statistics.median(around))
        _add(ctx, subject, estimates, measured, "request" if subject.startswith("inline") else "job")


ROUNDS = 3  # profiles compared (each with the work before and after it)
SYNC_ROUNDS = 120  # requests of each sync size per round
JOB_RUNS = 3  # jobs of each size per round


def _rows(state: Path, n: int, seed: int) -> list[Any]:
    return [json.loads(line) for line in (state / f"rows-{n}-{seed}.jsonl").read_text().splitlines()]


def _sync(client: Any, recorder: Any, requests: dict[int, list[Any]], rounds: int) -> dict[int, tuple[list[float], list[float]]]:
    """(estimates, times spent) of sync requests of each size, interleaved, each after a pause as
    requests reach a server (and as the profile timed them)."""
    pairs: dict[int, tuple[list[float], list[float]]] = {n: ([], []) for n in requests}
    for _ in range(rounds):
        for n, rows in requests.items():
            time.sleep(0.002)
            client.predict("iris", rows)
            sample = recorder.samples("iris")["inline"][-1]  # one client, one request at a time
            if sample.records != n:
                raise RuntimeError(f"the last inline sample has {sample.records} records, expected {n}")
            pairs[n][0].append(sample.estimate_s)
            pairs[n][1].append(sample.measured_s)
    return pairs


def _job(client: Any, rows: list[Any]) -> tuple[float, float]:
    """(the decision's estimate, started -> finished) of one lambda-job of `rows`."""
    job = client.wait(client.submit_job("iris", instances=rows)["job_id"], poll_s=0.05, max_poll_s=0.5)
    if job["status"] != "succeeded" or job["route"] != "lambda-job":
        raise RuntimeError(f"a {len(rows):,}-record job: {job['status']} on {job['route']}: {job.get('error') or job['reason']}")
    return float(job["estimate"]["duration_s"]), float(job["duration_s"])


def _add(ctx: Context, subject: str, estimates: list[float], measured: list[float], unit: str) -> Result:
    """One subject: per round, its estimate and what it took; ratio = the median of the rounds' ratios."""
    ratios = [e / m for e, m in zip(estimates, measured, strict=True) if m > 0]
    res = Result(NAME, f"{subject} estimate", "measured", statistics.median(estimates), statistics.median(measured),
                 statistics.median(ratios), len(ratios), unit=unit,
                 note=f"{len(ratios)} round(s), ratios {', '.join(f'{x:.2f}' for x in ratios)}")
    res.extra.update(estimate_s=statistics.median(estimates), measured_s=statistics.median(measured), round_ratios=ratios)
    return ctx.report.add(res)
