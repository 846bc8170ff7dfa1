"""Benchmark `jobs`: the lambda-job worker's reader/writer. An uploaded JSON Lines input of iris
records (100,000 and 1,000,000) is submitted to JobsService on a local runtime (file store, SQLite
job table) and run to the end by `run_lambda_job` (read, validate, predict, write parts and
checkpoints, assemble the output), against a hand-written JSON Lines script over the same file
(json.loads per line, model.predict per chunk of the same size, json.dumps per prediction).
Then the peak resident memory of each, in a fresh interpreter, at both sizes.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.fixtures import REPO, bench_config, iris_rows
from benchmarks.harness import Context, Result, compare, fmt_rate, run_rounds

NAME = "jobs"
TITLE = "lambda-job worker (run_lambda_job) vs a hand-written JSON Lines script, time and peak memory"
OWNER = "bench"


def hand_written(model: Any, src: Path, dst: Path, chunk: int) -> None:
    """What a hand-written batch script does: one json.loads per line, predict per chunk, one
    json.dumps per prediction."""
    with src.open() as f, dst.open("w") as out:
        batch: list[Any] = []
        for line in f:
            batch.append(json.loads(line))
            if len(batch) == chunk:
                out.writelines(json.dumps(p) + "\n" for p in model.predict(np.array(batch)).tolist())
                batch = []
        if batch:
            out.writelines(json.dumps(p) + "\n" for p in model.predict(np.array(batch)).tolist())


def write_input(path: Path, n: int) -> None:
    """n iris-like records as JSON Lines, written 100,000 at a time (the parent stays small)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for start in range(0, n, 100_000):
            rows = iris_rows(min(100_000, n - start), seed=start)
            f.write("".join(json.dumps(r) + "\n" for r in rows))


class Worker:
    """A local runtime with a job table and no worker queue: this thread runs the worker, as one
    Lambda would."""

    def __init__(self, demo_config: Path, state: Path) -> None:
        from router.adapters.sqlite_jobs import SqliteJobStore
        from router.bootstrap import build_local
        from router.jobs import UtcClock
        from router.jobs_service import JobsService

        self.cfg = bench_config(demo_config, state)
        self.runtime = build_local(self.cfg, state_dir=state, with_jobs=False)
        self.store = SqliteJobStore(state / "jobs.db", ttl_days=self.cfg.jobs.ttl_days)
        self.jobs = JobsService(self.cfg, service=self.runtime.service, store=self.store, objects=self.runtime.objects, clock=UtcClock(), queue=None)
        self.spec = self.runtime.service.model("iris")
        self.runtime.service.runner.load(self.spec)  # warm, as for the script

    def upload_uri(self, n: int) -> str:
        return f"{self.jobs._uploads_prefix(OWNER)}bench-{n}/input.jsonl"

    def run(self, n: int) -> tuple[float, float]:
        """(submit seconds, worker seconds) for one job over the uploaded n-record input."""
        from router.domain import JobStatus, OutputKind, Route

        t0 = time.perf_counter()
        job, _ = self.jobs.submit(OWNER, self.spec, instances=None, input_uri=self.upload_uri(n), input_format="jsonl",
                                  output=OutputKind.PREDICT, idempotency_key=None)
        t1 = time.perf_counter()
        if job.route is not Route.LAMBDA_JOB:
            raise RuntimeError(f"a {n:,}-record iris job routed to {job.route.value}, not lambda-job: {job.reason}")
        while self.jobs.run_lambda_job(job.job_id, lambda: 1e9):
            pass
        t2 = time.perf_counter()
        done = self.store.get(job.job_id)
        if done is None or done.status is not JobStatus.SUCCEEDED or done.records_done != n:
            raise RuntimeError(f"job {job.job_id} ended {done and done.status.value} with {done and done.records_done} records")
        return t1 - t0, t2 - t1

    def close(self) -> None:
        self.store.close()
        self.runtime.close()


def child(kind: str, demo_config: str, state: str, n: int) -> None:
    """In a fresh interpreter: one worker run, or the hand-written script alone (numpy, joblib,
    the model), then the peak RSS in bytes."""
    if kind == "worker":
        w = Worker(Path(demo_config), Path(state))
        try:
            w.run(n)
        finally:
            w.close()
    else:
        import joblib

        model = joblib.load(Path(demo_config))  # for the script: the model file
        src = Path(state)  # and the input file
        hand_written(model, src, src.with_name("script-output.jsonl"), n)
    print(peak_rss_bytes())


def peak_rss_bytes() -> int:
    """This process's resident high-water mark. VmHWM belongs to the process's own address space;
    getrusage's ru_maxrss would also count the parent's, inherited across fork and exec on Linux."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # not Linux: ru_maxrss, in KiB


def _peak_rss(kind: str, demo_config: Path, state: Path, n: int) -> float:
    code = f"from benchmarks.bench_jobs import child; child({kind!r}, {str(demo_config)!r}, {str(state)!r}, {n})"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True, timeout=1800)
    return float(out.stdout.split()[-1])


def run(ctx: Context) -> None:
    import joblib

    from router.config import uri_to_path

    sizes = (2_000, 10_000) if ctx.settings.quick else (100_000, 1_000_000)
    state = ctx.scratch / NAME
    w = Worker(ctx.demo_config, state)
    model: Any = joblib.load(uri_to_path(w.spec.artifact))
    chunk = w.cfg.jobs.chunk_records
    try:
        for n in sizes:
            write_input(uri_to_path(w.upload_uri(n)), n)
        rounds = 2 if ctx.settings.quick else max(3, ctx.settings.rounds // 3)
        for n in sizes:
            src = uri_to_path(w.upload_uri(n))
            dst = state / f"script-{n}.jsonl"
            submits: list[float] = []

            def worker(n: int = n, submits: list[float] = submits) -> float:
                submit_s, run_s = w.run(n)
                submits.append(submit_s)
                return run_s

            def script(src: Path = src, dst: Path = dst) -> float:
                start = time.perf_counter()
                hand_written(model, src, dst, chunk)
                return time.perf_counter() - start

            subject, baseline = f"run_lambda_job, {n:,} records", f"hand-written JSON Lines script, {n:,} records"
            times = run_rounds({baseline: script, subject: worker}, rounds)
            res = compare(NAME, times, subject, baseline, unit="job")
            res.note = (
                f"{1 / res.ratio:.2f}x the script's speed (target >= 1.0 at 1M); {fmt_rate(n / res.subject_s)} vs "
                f"{fmt_rate(n / res.baseline_s)} records/s; submit (count + snapshot) {statistics.median(submits) * 1e3:.0f} ms more"
            )
            res.extra.update(records=n, subject_records_per_s=n / res.subject_s, baseline_records_per_s=n / res.baseline_s)
            ctx.report.add(res)
    finally:
        w.close()

    if ctx.settings.quick:
        ctx.report.note(NAME, "peak memory: measured by the full run only (a fresh interpreter per size)")
        return
    # Peak memory: one fresh interpreter per run (ru_maxrss is a high-water mark).
    small, large = sizes
    model_path = uri_to_path(w.spec.artifact)
    worker_rss = {n: _peak_rss("worker", ctx.demo_config, state, n) for n in sizes}
    script_rss = _peak_rss("script", model_path, uri_to_path(w.upload_uri(large)), chunk)
    a, b = worker_rss[large], worker_rss[small]
    ctx.report.add(Result(NAME, f"peak RSS, run_lambda_job, {large:,} records", f"peak RSS, run_lambda_job, {small:,} records",
                          a, b, a / b, 1, unit="process", note=f"memory {'stays flat' if a / b <= 1.5 else 'grows'}; target <= 1.5x",
                          measure="bytes"))
    ctx.report.add(Result(NAME, f"peak RSS, run_lambda_job, {large:,} records", f"peak RSS, hand-written script, {large:,} records",
                          a, script_rss, a / script_rss, 1, unit="process",
                          note="the worker also holds the router's runtime and the job table", measure="bytes"))
