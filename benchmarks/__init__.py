"""`make bench` / `python -m benchmarks`: reproducible benchmarks that print ratios against named
baselines measured in the same run (docs/benchmarks.md). Each benchmark is a module with NAME,
TITLE and run(ctx); this package imports none of them until it runs them.
"""

from __future__ import annotations

# Run order; `--only NAME[,NAME]` picks from these.
BENCHMARKS: dict[str, str] = {
    "inline": "benchmarks.bench_inline",
    "handler": "benchmarks.bench_handler",
    "routing": "benchmarks.bench_routing",
    "coldstart": "benchmarks.bench_coldstart",
    "package": "benchmarks.bench_package",
    "jobs": "benchmarks.bench_jobs",
    "onnx": "benchmarks.bench_onnx",
    "estimates": "benchmarks.bench_estimates",
    "serve": "benchmarks.bench_serve",
}
