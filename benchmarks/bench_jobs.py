"""Benchmark `jobs`: the lambda-job worker's throughput. A 100,000-record iris job is submitted to
JobsService on a local runtime (file store, SQLite job table) and run to the end by
`run_lambda_job` (read JSON Lines, validate, predict, write parts and checkpoints, assemble),
against the bare `model.predict` over the same rows in the same chunks.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

from benchmarks.fixtures import bench_config, iris_rows
from benchmarks.harness import Context, compare, fmt_rate, run_rounds

NAME = "jobs"
TITLE = "lambda-job worker (JobsService.run_lambda_job) records/s vs bare model.predict in the same chunks"


def run(ctx: Context) -> None:
    import joblib

    from router.adapters.sqlite_jobs import SqliteJobStore
    from router.bootstrap import build_local
    from router.config import uri_to_path
    from router.domain import JobStatus, OutputKind, Route
    from router.jobs import UtcClock
    from router.jobs_service import JobsService

    n = 10_000 if ctx.settings.quick else 100_000
    state = ctx.scratch / NAME
    cfg = bench_config(ctx.demo_config, state)
    runtime = build_local(cfg, state_dir=state, with_jobs=False)
    # No worker queue: the benchmark runs the worker itself, in this thread, as one Lambda would.
    store = SqliteJobStore(state / "jobs.db", ttl_days=cfg.jobs.ttl_days)
    jobs = JobsService(cfg, service=runtime.service, store=store, objects=runtime.objects, clock=UtcClock(), queue=None)
    spec = runtime.service.model("iris")
    model: Any = joblib.load(uri_to_path(spec.artifact))
    rows = iris_rows(n, seed=1)
    chunk = cfg.jobs.chunk_records
    chunks = [rows[i:i + chunk] for i in range(0, n, chunk)]
    runtime.service.runner.load(spec)  # the model is warm for the worker, as for the baseline
    submit_times: list[float] = []

    def job_run() -> float:
        t0 = time.perf_counter()
        job, _ = jobs.submit("bench", spec, instances=rows, input_uri=None, input_format="jsonl",
                             output=OutputKind.PREDICT, idempotency_key=None)
        start = time.perf_counter()
        submit_times.append(start - t0)
        if job.route is not Route.LAMBDA_JOB:
            raise RuntimeError(f"a {n:,}-record iris job routed to {job.route.value}, not lambda-job: {job.reason}")
        while jobs.run_lambda_job(job.job_id, lambda: 1e9):
            pass
        elapsed = time.perf_counter() - start
        done = store.get(job.job_id)
        if done is None or done.status is not JobStatus.SUCCEEDED or done.records_done != n:
            raise RuntimeError(f"job {job.job_id} ended {done and done.status.value} with {done and done.records_done} records")
        return elapsed

    def bare() -> float:
        start = time.perf_counter()
        for part in chunks:
            model.predict(np.array(part))
        return time.perf_counter() - start

    subject = f"run_lambda_job, {n:,} records"
    baseline = f"bare model.predict, {len(chunks)} chunks of {chunk:,}"
    try:
        bare()  # warm-up
        rounds = 2 if ctx.settings.quick else max(3, ctx.settings.rounds // 3)
        times = run_rounds({baseline: bare, subject: job_run}, rounds)
    finally:
        store.close()
        runtime.close()
    res = compare(
        NAME, times, subject, baseline, unit="job",
        note=f"{fmt_rate(n / statistics.median(times[subject]))} vs {fmt_rate(n / statistics.median(times[baseline]))} records/s; "
        f"submit (stage {n:,} inline records) {statistics.median(submit_times) * 1e3:.0f} ms more",
    )
    res.extra.update(records=n, subject_records_per_s=n / res.subject_s, baseline_records_per_s=n / res.baseline_s)
    ctx.report.add(res)

