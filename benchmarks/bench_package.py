"""Benchmark `package`: the Lambda package's own cold start under the runtime's Python (3.12, `-I
-S`, the package alone on sys.path, as Lambda runs /var/task): import the API handler, numpy and
scikit-learn, load a 100-tree forest and answer one record through the inline runner, with the
bytecode `router package` compiles into it, against the same package without that bytecode
(what Lambda's read-only /var/task compiles on every cold start). Uses a package already built by
`router package` from this checkout (build/lambda, or the test suite's build/sandbox/lambda); none is
built here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

from benchmarks.fixtures import REPO, forest100, forest_rows
from benchmarks.harness import Context, compare, fmt_s, overhead, run_rounds

NAME = "package"
TITLE = "the Lambda package under python3.12: cold start with the bytecode router package compiles vs without"

COLD = """
import json, sys
sys.path.insert(0, sys.argv[1])
from router.lambdas.api import handler  # noqa: F401  the entry module, as Lambda imports it
import joblib, numpy as np
from router.kernels import kernel_for
est = joblib.load(sys.argv[2])
kernel = kernel_for(est)  # as the inline runner loads a model
x = np.array(json.loads(sys.argv[3]), dtype=np.float64)
print(json.dumps({"predictions": kernel.predict(x).tolist(), "kernel": kernel.what}))
"""


def _current(folder: Path) -> bool:
    """The package holds this checkout's router source, file for file (not an older build)."""
    src = REPO / "router"
    ours = {p.relative_to(src): p for p in src.rglob("*.py") if "__pycache__" not in p.parts}
    theirs = {p.relative_to(folder / "router") for p in (folder / "router").rglob("*.py") if "__pycache__" not in p.parts}
    return set(ours) == theirs and all(p.read_bytes() == (folder / "router" / rel).read_bytes() for rel, p in ours.items())


def _package() -> tuple[Path | None, list[Path]]:
    """The first built package holding the current router source; and the stale ones passed over."""
    stale: list[Path] = []
    for folder in (REPO / "build" / "lambda", REPO / "build" / "sandbox" / "lambda"):
        if (folder / ".router-package.json").is_file():
            if _current(folder):
                return folder, stale
            stale.append(folder)
    return None, stale


def run(ctx: Context) -> None:
    from router.cli.package_cmd import RUNTIMES, find_python

    pkg, stale = _package()
    if pkg is None:
        older = f" ({', '.join(str(p) for p in stale)}: built from an older router)" if stale else ""
        ctx.report.note(NAME, f"skipped: no package of this checkout built{older}; run `router package` first, or the test suite")
        return
    version = RUNTIMES[json.loads((pkg / ".router-package.json").read_text())["result"]["runtime"]]
    python = find_python(version)
    if python is None:
        ctx.report.note(NAME, f"skipped: no Python {version} here")
        return
    bare = ctx.scratch / NAME / "no-bytecode"
    shutil.copytree(pkg, bare, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    compiled = sum(1 for _ in pkg.rglob("*.pyc"))
    if not compiled:
        ctx.report.note(NAME, f"{pkg} has no bytecode: built with --no-compile or before `router package` compiled it")
    sk, _ = forest100()
    model = sk["artifact"].removeprefix("file://")
    rows = json.dumps(forest_rows(1, seed=5))

    def cold(folder: Path) -> float:
        start = time.perf_counter()
        # -B: the interpreter writes no bytecode, as on Lambda's read-only /var/task.
        out = subprocess.run([str(python), "-I", "-S", "-B", "-c", COLD, str(folder), model, rows],
                             check=True, capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        answer = json.loads(out.stdout)
        assert len(answer["predictions"]) == 1, answer
        return elapsed

    with_pyc = f"package with its bytecode ({compiled:,} .pyc)"
    without = "the same package without bytecode"
    rounds = 1 if ctx.settings.quick else max(3, ctx.settings.rounds // 3)
    times = run_rounds({with_pyc: lambda: cold(pkg), without: lambda: cold(bare)}, rounds)
    ctx.report.add(compare(NAME, times, with_pyc, without, unit="process",
                           note=f"each cold start saves {fmt_s(-overhead(times, with_pyc, without))} ({python.name} {pkg.name})"))
