"""Benchmark `onnx`: the ONNX fast path on a 100-tree random forest (20 features) and its skl2onnx
conversion. The router's full Lambda handler on the ONNX model against (a) a bare onnxruntime
`session.run` on the same graph, the least an ONNX Lambda could do, and (b) the same handler on
the scikit-learn forest (and the bare sklearn `predict`); then the layers underneath (service,
runner) and 1,000 rows. Also states how often float32 ONNX and sklearn agree.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from benchmarks.fixtures import (
    bench_config,
    check_ok,
    forest100,
    forest_rows,
    iris_onnx,
    iris_rows,
    predict_event,
)
from benchmarks.harness import Context, Result, compare, fmt_s, overhead, run_calls

NAME = "onnx"
TITLE = "100-tree forest compiled to ONNX: router handler vs bare session.run and vs the sklearn forest"


def run(ctx: Context) -> None:
    try:
        import onnxruntime as ort
        import skl2onnx  # noqa: F401
    except ImportError as e:  # the [onnx] extra is not installed
        ctx.report.note(NAME, f"skipped: {e} (pip install -e '.[onnx]')")
        return
    import joblib

    from router.bootstrap import build_local
    from router.config import uri_to_path
    from router.domain import OutputKind
    from router.handlers.api import make_handler
    from router.local.server import LocalContext

    os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
    state = ctx.scratch / NAME
    sk_entry, onnx_entry = forest100()
    iris_entry = iris_onnx(ctx.demo_config, state / "models")
    cfg = bench_config(ctx.demo_config, state, extra_models=[sk_entry, onnx_entry, iris_entry])
    runtime = build_local(cfg, state_dir=state, with_jobs=True)
    try:
        runner, service = runtime.service.runner, runtime.service
        sk, ox = cfg.model("forest100"), cfg.model("forest100-onnx")
        for a, b, rows, what in (
            (sk, ox, forest_rows(5_000, seed=2), "5,000 standard-normal forest100 records"),
            (cfg.model("iris"), cfg.model("iris-onnx"), iris_rows(5_000, seed=2), "5,000 iris-like records"),
        ):
            agree = np.mean(np.array(runner.predict(a, rows, OutputKind.PREDICT)) == np.array(runner.predict(b, rows, OutputKind.PREDICT)))
            ctx.report.note(NAME, f"float32 ONNX and sklearn labels agree on {agree:.2%} of {what}")

        row = forest_rows(1, seed=7)
        assert ox.onnx is not None
        sess = ort.InferenceSession(str(uri_to_path(ox.onnx.artifact)), providers=["CPUExecutionProvider"])
        inp, label = sess.get_inputs()[0].name, sess.get_outputs()[0].name
        model = joblib.load(uri_to_path(sk.artifact))
        handler = make_handler(runtime)
        lctx = LocalContext("bench", 29.0)
        ev_onnx, ev_sk = predict_event("forest100-onnx", row), predict_event("forest100", row)
        check_ok(handler(ev_onnx, lctx), sess.run([label], {inp: np.array(row, dtype=np.float32)})[0].tolist())
        check_ok(handler(ev_sk, lctx), model.predict(np.array(row)).tolist())

        routed = "router handler, forest100-onnx (1 row)"
        bare = "bare onnxruntime session.run (1 row)"
        routed_sk = "router handler, forest100 sklearn (1 row)"
        bare_sk = "bare sklearn model.predict (1 row)"
        layer = "service.predict, forest100-onnx (1 row)"
        inner = "InlineRunner.predict, forest100-onnx (1 row)"
        fns: dict[str, Callable[[], object]] = {
            bare: lambda: sess.run([label], {inp: np.array(row, dtype=np.float32)}),
            routed: lambda: handler(ev_onnx, lctx),
            inner: lambda: runner.predict(ox, row, OutputKind.PREDICT),
            layer: lambda: service.predict(ox, row, OutputKind.PREDICT, 120),
            routed_sk: lambda: handler(ev_sk, lctx),
            bare_sk: lambda: model.predict(np.array(row)),
        }
        big = 100 if ctx.settings.quick else 1000
        rows_big = forest_rows(big, seed=3)
        what = f"{big:,} rows"
        fns[f"InlineRunner onnx ({what})"] = lambda: runner.predict(ox, rows_big, OutputKind.PREDICT)
        fns[f"InlineRunner sklearn ({what})"] = lambda: runner.predict(sk, rows_big, OutputKind.PREDICT)

        times = run_calls(fns, ctx.settings)
        def ratio_note(res: Result, fmt: Callable[[float], str]) -> Result:
            res.note = fmt(res.ratio)
            return ctx.report.add(res)

        add = ctx.report.add
        add(compare(NAME, times, routed, bare, note=f"router overhead {fmt_s(overhead(times, routed, bare))}/call; target <= 3x"))
        ratio_note(compare(NAME, times, routed, bare_sk),
                   lambda r: f"onnx through the handler {1 / r:.0f}x faster than scikit-learn's own predict; target >= 50x")
        ratio_note(compare(NAME, times, routed, routed_sk),
                   lambda r: f"onnx {1 / r:.1f}x faster through the same handler (whose sklearn path is router.kernels' direct forest)")
        add(compare(NAME, times, layer, bare, note=f"service (routing + runner) overhead {fmt_s(overhead(times, layer, bare))}/call"))
        add(compare(NAME, times, inner, bare, note=f"runner (validation, conversion, output) overhead {fmt_s(overhead(times, inner, bare))}/call"))
        ratio_note(
            compare(NAME, times, f"InlineRunner onnx ({what})", f"InlineRunner sklearn ({what})"),
            lambda r: f"onnx {1 / r:.1f}x faster" if r < 1 else f"onnx {r:.1f}x slower",
        )
    finally:
        runtime.close()
