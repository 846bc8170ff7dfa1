"""Benchmark `onnx`: the ONNX fast path. The demo's iris forest converted with skl2onnx and run by
InlineRunner's onnx loader, against the same forest through its sklearn loader (one row and 1,000
rows); then the full router handler on the ONNX model against a bare onnxruntime session.run, which
shows what the router's own overhead is once the model itself is fast.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from benchmarks.fixtures import IRIS_ROW, bench_config, check_ok, iris_onnx, iris_rows, predict_event
from benchmarks.harness import Context, compare, fmt_s, overhead, run_calls

NAME = "onnx"
TITLE = "iris via InlineRunner's onnx loader vs its sklearn loader; router handler vs bare onnxruntime"


def run(ctx: Context) -> None:
    try:
        import onnxruntime as ort
        import skl2onnx  # noqa: F401
    except ImportError as e:  # the [onnx] extra is not installed
        ctx.report.note(NAME, f"skipped: {e} (pip install -e '.[onnx]')")
        return
    from router.bootstrap import build_local
    from router.config import uri_to_path
    from router.domain import OutputKind
    from router.handlers.api import make_handler
    from router.local.server import LocalContext

    os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
    state = ctx.scratch / NAME
    onnx_entry = iris_onnx(ctx.demo_config, state / "models")
    cfg = bench_config(ctx.demo_config, state, extra_models=[onnx_entry])
    runtime = build_local(cfg, state_dir=state, with_jobs=True)
    try:
        runner = runtime.service.runner
        sk, ox = cfg.model("iris"), cfg.model("iris-onnx")
        check = iris_rows(2_000, seed=2)
        agree = np.mean(np.array(runner.predict(sk, check, OutputKind.PREDICT)) == np.array(runner.predict(ox, check, OutputKind.PREDICT)))
        ctx.report.note(NAME, f"ONNX and sklearn predictions agree on {agree:.2%} of 2,000 iris-like records")

        big = 100 if ctx.settings.quick else 1000
        cases = {1: [IRIS_ROW], big: iris_rows(big, seed=3)}
        fns: dict[str, Callable[[], object]] = {}
        for n, rows in cases.items():
            what = "1 row" if n == 1 else f"{n:,} rows"
            fns[f"InlineRunner sklearn loader ({what})"] = lambda rows=rows: runner.predict(sk, rows, OutputKind.PREDICT)
            fns[f"InlineRunner onnx loader ({what})"] = lambda rows=rows: runner.predict(ox, rows, OutputKind.PREDICT)

        # The router handler on the ONNX model vs the least an ONNX Lambda could do.
        sess = ort.InferenceSession(str(uri_to_path(ox.artifact)), providers=["CPUExecutionProvider"])
        inp, label = sess.get_inputs()[0].name, sess.get_outputs()[0].name
        x1 = np.array([IRIS_ROW], dtype=np.float32)
        handler = make_handler(runtime)
        event = predict_event("iris-onnx", [IRIS_ROW])
        lctx = LocalContext("bench", 29.0)
        check_ok(handler(event, lctx), sess.run([label], {inp: x1})[0].tolist())
        bare = "bare onnxruntime session.run (1 row)"
        routed = "router handler, iris-onnx (1 row)"
        layer = "service.predict, iris-onnx: routing + runner (1 row)"
        service = runtime.service
        fns[bare] = lambda: sess.run([label], {inp: np.array([IRIS_ROW], dtype=np.float32)})
        fns[layer] = lambda: service.predict(ox, [IRIS_ROW], OutputKind.PREDICT, 120)
        fns[routed] = lambda: handler(event, lctx)

        times = run_calls(fns, ctx.settings)
        for n in cases:
            what = "1 row" if n == 1 else f"{n:,} rows"
            res = compare(NAME, times, f"InlineRunner onnx loader ({what})", f"InlineRunner sklearn loader ({what})")
            res.note = f"onnx {1 / res.ratio:.0f}x faster" if res.ratio < 1 else f"onnx {res.ratio:.1f}x slower"
            ctx.report.add(res)
        ctx.report.add(compare(NAME, times, layer, bare, note=f"service overhead {fmt_s(overhead(times, layer, bare))}/call"))
        ctx.report.add(compare(NAME, times, routed, bare, note=f"router overhead {fmt_s(overhead(times, routed, bare))}/call"))
        ctx.report.add(compare(NAME, times, routed, layer, note=f"HTTP layer (Powertools resolver, validation, auth, JSON) {fmt_s(overhead(times, routed, layer))}/call"))
    finally:
        runtime.close()

