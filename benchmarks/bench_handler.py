"""Benchmark `handler`: the router's Lambda handler (make_handler on a local runtime, bearer auth,
an API Gateway REST event as `router serve` builds it, metrics off) on the cheap-model case, a
20-feature LogisticRegression, and on a 100-tree random forest, at 1 and 1,000 rows, against
(a) the bare `model.predict(np.array(rows))` and (b) a hand-written tutorial handler
(`json.loads` -> `model.predict` -> `json.dumps`). The handler's overhead over bare predict on
one LR row is what the predict fast path is for (docs/benchmarks.md).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.fixtures import bench_config, check_ok, forest_rows, lr20, predict_event, tutorial_handler
from benchmarks.harness import Context, compare, fmt_s, overhead, run_calls
from router.kernels import kernel_for

NAME = "handler"
TITLE = "router handler vs bare predict and a tutorial handler: 20-feature LR and a 100-tree forest, 1 and 1,000 rows"


def run(ctx: Context) -> None:
    import joblib

    from router.bootstrap import build_local
    from router.config import uri_to_path
    from router.handlers.api import make_handler
    from router.local.server import LocalContext

    os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
    state = ctx.scratch / NAME
    entries = [lr20(state / "models")]
    if ctx.settings.quick:  # training and converting the forest takes seconds
        ctx.report.note(NAME, "forest100: skipped in --quick")
    else:
        try:
            from benchmarks.fixtures import forest100

            entries.append(forest100(state / "models")[0])
        except ImportError as e:  # forest100 also writes its ONNX conversion: the [onnx] extra
            ctx.report.note(NAME, f"forest100 skipped: {e}")
    cfg = bench_config(ctx.demo_config, state, models=(), extra_models=entries)
    runtime = build_local(cfg, state_dir=state, with_jobs=True)  # every route registered, as deployed
    try:
        handler = make_handler(runtime)
        lctx = LocalContext("bench", 29.0)
        sizes = (1,) if ctx.settings.quick else (1, 1000)
        for entry in entries:
            spec = cfg.model(entry["name"])
            model: Any = joblib.load(uri_to_path(spec.artifact))
            for n in sizes:
                _one(ctx, spec.name, model, handler, tutorial_handler(model), lctx, forest_rows(n, seed=n))
            _layers(ctx, runtime, spec, model, forest_rows(1, seed=1))
    finally:
        runtime.close()


def _one(ctx: Context, name: str, model: Any, handler: Any, tutorial: Any, lctx: Any, rows: list[list[float]]) -> None:
    event = predict_event(name, rows)
    expected = model.predict(np.array(rows)).tolist()
    check_ok(handler(event, lctx), expected)  # also the model's load: outside every measurement
    check_ok(tutorial(event, lctx), expected)
    what = f"{name}, {'1 row' if len(rows) == 1 else f'{len(rows):,} rows'}"
    bare, tut, router = f"bare model.predict ({what})", f"tutorial handler ({what})", f"router handler ({what})"
    fns: dict[str, Callable[[], object]] = {
        bare: lambda: model.predict(np.array(rows)),
        tut: lambda: tutorial(event, lctx),
        router: lambda: handler(event, lctx),
    }
    kernel = kernel_for(model)  # what the runner calls instead of model.predict, when it has one
    direct = f"bare router.kernels predict ({what})"
    if kernel is not None:
        fns[direct] = lambda: kernel.predict(np.array(rows, dtype=np.float64))
    times = run_calls(fns, ctx.settings)
    rep = ctx.report
    over = overhead(times, router, bare)
    first = rep.add(compare(NAME, times, router, bare, note=f"handler overhead {fmt_s(over)}/call"))
    if kernel is not None:
        r = rep.add(compare(NAME, times, router, direct, note=f"the router's own work around its model call: {fmt_s(overhead(times, router, direct))}/call ({kernel.what})"))
        r.extra["rows"] = len(rows)
        rep.add(compare(NAME, times, direct, bare, note="the direct kernel against scikit-learn's own predict"))
    vs_tut = compare(NAME, times, router, tut, note="")
    vs_tut.note = f"throughput {1 / vs_tut.ratio:.2f}x the tutorial's; difference {fmt_s(overhead(times, router, tut))}/call"
    rep.add(vs_tut)
    rep.add(compare(NAME, times, tut, bare, note=f"tutorial overhead {fmt_s(overhead(times, tut, bare))}/call"))
    for r in (first, vs_tut, rep.results[-1]):
        r.extra["rows"] = len(rows)
        r.extra["overhead_s"] = overhead(times, r.subject, r.baseline)


def _layers(ctx: Context, runtime: Any, spec: Any, model: Any, rows: list[list[float]]) -> None:
    """Where one row's overhead goes: the runner (validation, matrix, JSON-able result) over bare
    predict, and the service (routing, timing) over the runner; the rest is the HTTP layer."""
    from router.domain import OutputKind

    runner, service = runtime.service.runner, runtime.service
    what = f"{spec.name}, 1 row"
    bare, inner, layer = f"bare model.predict ({what})", f"InlineRunner.predict ({what})", f"service.predict ({what})"
    times = run_calls({
        bare: lambda: model.predict(np.array(rows)),
        inner: lambda: runner.predict(spec, rows, OutputKind.PREDICT),
        layer: lambda: service.predict(spec, rows, OutputKind.PREDICT, 100),
    }, ctx.settings)
    ctx.report.add(compare(NAME, times, inner, bare, note=f"runner overhead {fmt_s(overhead(times, inner, bare))}/call"))
    ctx.report.add(compare(NAME, times, layer, inner, note=f"service overhead {fmt_s(overhead(times, layer, inner))}/call"))
