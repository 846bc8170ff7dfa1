"""Benchmark `inline`: one-row and 1,000-row predictions of the demo's iris forest through the
router's full Lambda handler (make_handler on a local runtime, an API Gateway proxy event, auth on)
against two baselines: the bare `model.predict(np.array(rows))` and a hand-written tutorial handler.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.fixtures import IRIS_ROW, bench_config, check_ok, iris_rows, predict_event, tutorial_handler
from benchmarks.harness import Context, Measure, batched, calibrate, compare, fmt_s, overhead, run_rounds

NAME = "inline"
TITLE = "iris predict through the router's Lambda handler vs bare model.predict and a tutorial handler"

METRICS_ENV = "POWERTOOLS_METRICS_DISABLED"


@contextlib.contextmanager
def emf_metrics_on() -> Iterator[None]:
    """Powertools metrics flushed as on AWS (one EMF JSON line per event), printed into /dev/null."""
    before = os.environ.get(METRICS_ENV)
    os.environ[METRICS_ENV] = "false"
    try:
        with Path(os.devnull).open("w") as sink, contextlib.redirect_stdout(sink):
            yield
    finally:
        if before is None:
            os.environ.pop(METRICS_ENV, None)
        else:
            os.environ[METRICS_ENV] = before


def _with_emf(fn: Callable[[], object], calls: int) -> Measure:
    inner = batched(fn, calls)

    def measure() -> float:
        with emf_metrics_on():
            return inner()

    return measure


def run(ctx: Context) -> None:
    import joblib

    from router.bootstrap import build_local
    from router.config import uri_to_path
    from router.handlers.api import make_handler
    from router.local.server import LocalContext

    os.environ[METRICS_ENV] = "true"  # the main subject: metrics off, as `router serve` runs
    state = ctx.scratch / NAME
    cfg = bench_config(ctx.demo_config, state)
    runtime = build_local(cfg, state_dir=state, with_jobs=True)  # all routes registered, as deployed
    try:
        handler = make_handler(runtime)
        spec = cfg.model("iris")
        model: Any = joblib.load(uri_to_path(spec.artifact))
        tutorial = tutorial_handler(model)
        lctx = LocalContext("bench", 29.0)
        sizes = (1, 100) if ctx.settings.quick else (1, 1000)
        for n in sizes:
            _one_size(ctx, n, model, handler, tutorial, lctx)
    finally:
        runtime.close()


def _one_size(ctx: Context, n: int, model: Any, handler: Any, tutorial: Any, lctx: Any) -> None:
    rows = [IRIS_ROW] if n == 1 else iris_rows(n)
    event = predict_event("iris", rows)
    expected = model.predict(np.array(rows)).tolist()
    check_ok(handler(event, lctx), expected)  # also the cold load: outside every measurement
    check_ok(tutorial(event, lctx), expected)

    what = "1 row" if n == 1 else f"{n:,} rows"
    bare = f"bare model.predict ({what})"
    tut = f"tutorial handler ({what})"
    router = f"router handler ({what})"
    router_emf = f"router handler + EMF metrics ({what})"
    fns: dict[str, Callable[[], object]] = {
        bare: lambda: model.predict(np.array(rows)),
        tut: lambda: tutorial(event, lctx),
        router: lambda: handler(event, lctx),
    }
    measures: dict[str, Measure] = {name: batched(fn, calibrate(fn, ctx.settings.min_batch_s)) for name, fn in fns.items()}

    def emf_call() -> object:
        return handler(event, lctx)

    with emf_metrics_on():
        emf_calls = calibrate(emf_call, ctx.settings.min_batch_s)
    measures[router_emf] = _with_emf(emf_call, emf_calls)

    times = run_rounds(measures, ctx.settings.rounds)
    rep = ctx.report
    over_bare = overhead(times, router, bare)
    over_tut = overhead(times, router, tut)
    rep.add(compare(NAME, times, router, bare, note=f"router overhead {fmt_s(over_bare)}/call"))
    rep.add(compare(NAME, times, router, tut, note=f"router overhead {fmt_s(over_tut)}/call"))
    rep.add(compare(NAME, times, tut, bare, note=f"tutorial overhead {fmt_s(overhead(times, tut, bare))}/call"))
    rep.add(compare(NAME, times, router_emf, router, note=f"EMF flush {fmt_s(overhead(times, router_emf, router))}/call"))
    for r in rep.results[-4:]:
        r.extra["rows"] = n
        r.extra["overhead_s"] = overhead(times, r.subject, r.baseline)
