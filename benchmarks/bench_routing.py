"""Benchmark `routing`: one `routing.decide` call (the pure decision every request pays, with its
estimates and reason text) per route the demo's models take, against constructing the RequestShape
alone (the least any decision costs) and a dict lookup of a precomputed route.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from benchmarks.harness import Context, compare, run_calls

NAME = "routing"
TITLE = "routing.decide per call vs constructing its RequestShape (and a dict lookup)"


def run(ctx: Context) -> None:
    from router.config import load_config
    from router.domain import BackendState, Mode, RequestShape
    from router.routing import decide

    cfg = load_config(ctx.demo_config)
    iris, xl, mlp = cfg.model("iris"), cfg.model("forest-xl"), cfg.model("digits-mlp")
    assert iris is not None and xl is not None and mlp is not None
    warm = BackendState(warm=True, endpoint_in_service=True)
    cases = {
        "decide: iris sync 1 record -> inline": (iris, RequestShape(Mode.SYNC, 1, 120), warm),
        "decide: digits-mlp sync 10 records -> endpoint": (mlp, RequestShape(Mode.SYNC, 10, 6_000), warm),
        "decide: iris job 100k records -> lambda-job": (iris, RequestShape(Mode.JOB, 100_000, 2_500_000), warm),
        "decide: forest-xl job 1M records -> batch-transform": (xl, RequestShape(Mode.JOB, 1_000_000, 400_000_000), warm),
    }
    for label, (spec, shape, state) in cases.items():
        route = decide(spec, shape, cfg, state).route
        expected = label.rsplit("-> ", 1)[1]
        if route is None or route.value != expected:
            raise RuntimeError(f"{label}: routing chose {route}, the benchmark expects {expected}")

    shape_label = "RequestShape(...) construction"
    lookup_label = "dict lookup of a cached route"
    routes = {"iris": "inline"}
    fns: dict[str, Callable[[], object]] = {
        shape_label: lambda: RequestShape(Mode.SYNC, 1, 120),
        lookup_label: lambda: routes["iris"],
    }
    for label, (spec, shape, state) in cases.items():
        fns[label] = functools.partial(decide, spec, shape, cfg, state)
    times = run_calls(fns, ctx.settings)
    for label in cases:
        ctx.report.add(compare(NAME, times, label, shape_label))
    first = next(iter(cases))
    ctx.report.add(compare(NAME, times, first, lookup_label))
