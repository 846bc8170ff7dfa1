"""Timing and reporting shared by every benchmark: a subject and its named baseline are measured in
the same run, in interleaved rounds (the order flips every round), and compared by the median of
the per-round ratios, which holds on a shared, noisy machine where absolute times drift.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Measure = Callable[[], float]  # one measurement: seconds for one unit of work (a call, a run, a job)


@dataclass(frozen=True)
class Settings:
    quick: bool
    rounds: int
    min_batch_s: float  # a micro-benchmark's batch of calls lasts at least this long


FULL = Settings(quick=False, rounds=15, min_batch_s=0.04)
QUICK = Settings(quick=True, rounds=3, min_batch_s=0.004)


@dataclass
class Result:
    """subject / baseline for one benchmark. Times are medians over the rounds; `ratio` is the
    median of the per-round ratios (both measured in the same round, so drift cancels)."""

    bench: str
    subject: str
    baseline: str
    subject_s: float
    baseline_s: float
    ratio: float
    rounds: int
    unit: str = "call"
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    measure: str = "time"  # "time": subject_s/baseline_s are seconds; "bytes": they are bytes (memory)

    def line(self) -> str:
        fmt = fmt_bytes if self.measure == "bytes" else fmt_s
        text = (
            f"[{self.bench}] {self.subject}: {fmt(self.subject_s)}/{self.unit} = {fmt_ratio(self.ratio)}x "
            f"vs baseline {self.baseline}: {fmt(self.baseline_s)}/{self.unit}"
        )
        return f"{text}; {self.note}" if self.note else text

    def to_dict(self) -> dict[str, Any]:
        return {
            "bench": self.bench,
            "subject": self.subject,
            "baseline": self.baseline,
            "subject_s": self.subject_s,
            "baseline_s": self.baseline_s,
            "ratio": self.ratio,
            "rounds": self.rounds,
            "unit": self.unit,
            "note": self.note,
            "measure": self.measure,
            **self.extra,
        }


def fmt_s(seconds: float) -> str:
    """'0.42 µs', '385 µs', '5.21 ms', '1.34 s' (signed when negative: overheads can be)."""
    sign = "-" if seconds < 0 else ""
    s = abs(seconds)
    if s < 1e-3:
        v, unit = s * 1e6, "µs"
    elif s < 1:
        v, unit = s * 1e3, "ms"
    else:
        v, unit = s, "s"
    return f"{sign}{v:.3g} {unit}" if v < 100 else f"{sign}{v:.0f} {unit}"


def fmt_bytes(n: float) -> str:
    """'183 MB', '1.2 GB' (memory figures)."""
    return f"{n / 1e9:.3g} GB" if n >= 1e9 else f"{n / 1e6:.3g} MB"


def fmt_ratio(r: float) -> str:
    """'1.07', '55.5', '467', and small ratios with two significant digits ('0.0016')."""
    if r != r:  # NaN
        return "nan"
    if r >= 100:
        return f"{r:.0f}"
    if r >= 10:
        return f"{r:.1f}"
    if r >= 0.1:
        return f"{r:.2f}"
    return f"{r:.2g}"


def fmt_rate(per_s: float) -> str:
    return f"{per_s:,.0f}"


# ---------------------------------------------------------------- measuring


def batched(fn: Callable[[], object], calls: int) -> Measure:
    """A Measure of the mean time of one call, over a batch of `calls` back-to-back calls."""

    def measure() -> float:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        return (time.perf_counter() - start) / calls

    return measure


def calibrate(fn: Callable[[], object], min_batch_s: float) -> int:
    """Calls per batch so one batch lasts about min_batch_s (after a warm-up call)."""
    fn()
    calls = 1
    while True:
        elapsed = batched(fn, calls)() * calls
        if elapsed >= min_batch_s or calls >= 1 << 22:
            return calls
        calls *= 2 if elapsed <= 0 else max(2, min(100, int(min_batch_s / elapsed * 1.2) + 1))


def run_rounds(measures: Mapping[str, Measure], rounds: int) -> dict[str, list[float]]:
    """Every measure once per round, in an order that flips each round (ABC, CBA, ABC, ...)."""
    names = list(measures)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        gc.collect()
        for name in names if r % 2 == 0 else reversed(names):
            times[name].append(measures[name]())
    return times


def run_calls(fns: Mapping[str, Callable[[], object]], settings: Settings) -> dict[str, list[float]]:
    """run_rounds for micro-benchmarks: each function is timed in calibrated batches of calls."""
    measures = {name: batched(fn, calibrate(fn, settings.min_batch_s)) for name, fn in fns.items()}
    return run_rounds(measures, settings.rounds)


def compare(
    bench: str, times: Mapping[str, list[float]], subject: str, baseline: str, *, unit: str = "call", note: str = ""
) -> Result:
    s, b = times[subject], times[baseline]
    ratios = [x / y for x, y in zip(s, b, strict=True) if y > 0]
    return Result(
        bench=bench,
        subject=subject,
        baseline=baseline,
        subject_s=statistics.median(s),
        baseline_s=statistics.median(b),
        ratio=statistics.median(ratios) if ratios else float("nan"),
        rounds=len(s),
        unit=unit,
        note=note,
    )


def overhead(times: Mapping[str, list[float]], subject: str, baseline: str) -> float:
    """Median of the per-round differences subject - baseline, in seconds."""
    return statistics.median(x - y for x, y in zip(times[subject], times[baseline], strict=True))


# ---------------------------------------------------------------- reporting


class Report:
    """Prints each line as it comes (a long run shows progress) and keeps the results for --json."""

    def __init__(self) -> None:
        self.results: list[Result] = []
        self.notes: dict[str, list[str]] = {}

    def section(self, name: str, title: str) -> None:
        print(f"\n== {name}: {title}", flush=True)

    def add(self, result: Result) -> Result:
        self.results.append(result)
        print(result.line(), flush=True)
        return result

    def note(self, bench: str, text: str) -> None:
        self.notes.setdefault(bench, []).append(text)
        print(f"[{bench}] {text}", flush=True)


@dataclass
class Context:
    """What every benchmark gets: the settings, the report, the demo config and a scratch folder."""

    settings: Settings
    report: Report
    demo_config: Path  # the demo's operator.yaml
    scratch: Path  # removed after the run
