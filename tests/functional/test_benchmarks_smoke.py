"""`python -m benchmarks --quick` runs end to end and every benchmark prints at least one ratio
line against a named baseline. No timing is asserted: the machine is shared, only the shape of
the report is checked (docs/benchmarks.md)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import BENCHMARKS

REPO = Path(__file__).resolve().parents[2]
RATIO_LINE = re.compile(r"^\[(?P<bench>[a-z]+)\] .+: \S+ \S+/\w+ = [0-9.e+-]+x vs baseline \S.*$", re.MULTILINE)


# A bound only for a hung run: a quick run takes a minute or so, several times that on a loaded machine.
@pytest.mark.timeout(1200)
def test_quick_run_prints_a_ratio_per_benchmark(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--json", str(tmp_path / "bench.json")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=1100, check=False,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    with_ratio = {m["bench"] for m in RATIO_LINE.finditer(out.stdout)}
    skipped = set(re.findall(r"^\[(\w+)\] skipped:", out.stdout, re.MULTILINE))
    assert set(BENCHMARKS) - skipped <= with_ratio, out.stdout
    assert (tmp_path / "bench.json").is_file()
