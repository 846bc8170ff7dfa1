"""Estimates against what happened: a bounded in-process record of recent work per (model, route),
its summary (estimate/measured ratio and spread) and, when enabled, the calibrated profile that
routing then uses (docs/routing.md "Calibration").

No I/O and no third-party imports: the sync path records with one deque append.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from router.config import ModelSpec, Profile, RouteTiming

# Samples kept per (model, route): enough for a stable median, bounded memory (~100 B each).
KEEP = 256
# A learned per-record time stays within this factor of the profile's: a few odd samples (a
# paging machine, a tiny job dominated by its fixed part) cannot move routing far.
MAX_FACTOR = 4.0
# Fewer samples than this teach nothing.
MIN_SAMPLES = 5
# Samples with at least this many records teach the per-record time (smaller ones are mostly fixed cost).
MIN_RECORDS = 100


@dataclass(frozen=True, slots=True)
class Sample:
    """One finished piece of work: the decision's estimate and what it took (seconds), records."""

    estimate_s: float
    measured_s: float
    records: int
    cold: bool = False

    @property
    def ratio(self) -> float:
        return self.estimate_s / max(self.measured_s, 1e-9)


class Recorder:
    """Recent samples per (model, route), newest last; appends are thread-safe (deque). Kept as
    plain tuples (a Sample is built when read: the sync path records on every request)."""

    def __init__(self, keep: int = KEEP) -> None:
        self._keep = keep
        self._samples: dict[tuple[str, str], deque[tuple[float, float, int, bool]]] = {}
        self._versions: dict[str, int] = {}

    def record(self, model: str, route: str, estimate_s: float, measured_s: float, records: int, *, cold: bool = False) -> None:
        key = (model, route)
        ring = self._samples.get(key)
        if ring is None:
            ring = self._samples.setdefault(key, deque(maxlen=self._keep))
        ring.append((estimate_s, measured_s, records, cold))
        versions = self._versions
        versions[model] = versions.get(model, 0) + 1  # a lost increment only delays a recompute

    def last(self, model: str, route: str) -> Sample | None:
        """The most recent sample of `model` on `route` (None before the first)."""
        ring = self._samples.get((model, route))
        return Sample(*ring[-1]) if ring else None

    def last_measured(self, model: str, route: str) -> float | None:
        """last(...).measured_s without building the Sample."""
        ring = self._samples.get((model, route))
        return ring[-1][1] if ring else None

    def version(self, model: str) -> int:
        """How many samples of `model` were recorded so far (to know when to recompute)."""
        return self._versions.get(model, 0)

    def samples(self, model: str) -> dict[str, list[Sample]]:
        # list(ring) copies in one C call (no append can interleave); Samples are built from the copy.
        rings = [(route, list(ring)) for (name, route), ring in list(self._samples.items()) if name == model]
        return {route: [Sample(*t) for t in items] for route, items in rings}


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank quantile of an already sorted sequence."""
    i = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[i]


def summarize(samples: Iterable[Sample]) -> dict[str, Any]:
    """{samples, ratio: {median, p10, p90, min, max}, records: {min, max}}: ratio = estimate /
    measured (1 is exact, above 1 the estimate was pessimistic)."""
    items = list(samples)
    if not items:
        return {"samples": 0, "ratio": None, "records": None}
    ratios = sorted(s.ratio for s in items)
    recs = [s.records for s in items]
    return {
        "samples": len(items),
        "ratio": {
            "median": round(statistics.median(ratios), 3),
            "p10": round(_quantile(ratios, 0.1), 3),
            "p90": round(_quantile(ratios, 0.9), 3),
            "min": round(ratios[0], 3),
            "max": round(ratios[-1], 3),
        },
        "records": {"min": min(recs), "max": max(recs)},
    }


def summarize_all(by_route: dict[str, list[Sample]]) -> dict[str, dict[str, Any]]:
    return {route: summarize(items) for route, items in sorted(by_route.items()) if items}


@dataclass(frozen=True, slots=True)
class Learned:
    """A per-record time learned from recent work, and the words the routing reason uses."""

    per_record_ms: float
    samples: int
    note: str


def learn(profile: Profile, route: str, samples: Sequence[Sample]) -> Learned | None:
    """The per-record time recent warm work of `route` implies, or None when too few samples.

    Each sample's per-record time is (measured - the profile's fixed part) / records; the median of
    those is clamped to [1/MAX_FACTOR, MAX_FACTOR] x the profile's per-record time, so it stays
    bounded. Cold samples (the load dominates) and tiny ones teach nothing."""
    fixed_ms, per_ms = profile.timing(route)
    useful = [s for s in samples if not s.cold and s.records >= MIN_RECORDS]
    if len(useful) < MIN_SAMPLES:
        return None
    observed = statistics.median(max(0.0, s.measured_s * 1000 - fixed_ms) / s.records for s in useful)
    if per_ms > 0:
        observed = min(max(observed, per_ms / MAX_FACTOR), per_ms * MAX_FACTOR)
    from router.routing import fmt_duration

    kind = "jobs" if route in ("lambda-job", "batch-transform") else "requests"
    return Learned(observed, len(useful), f"per-record {fmt_duration(observed / 1000)}, from {len(useful)} recent {kind}")


def calibrated(model: ModelSpec, by_route: dict[str, list[Sample]]) -> tuple[ModelSpec, tuple[str, ...]]:
    """The model with its profile's per-record times replaced by what recent work taught, and the
    notes saying so (one per route). The model itself when nothing was learned, or when it has no
    measured profile (the default profile's note must stay: measure it with `router profile`)."""
    base = model.profile
    if base is None:
        return model, ()
    routes = dict(base.routes or {})
    notes: list[str] = []
    for route, items in sorted(by_route.items()):
        learned = learn(base, route, items)
        if learned is None:
            continue
        fixed_ms, _ = base.timing(route)
        routes[route] = RouteTiming(fixed_ms=fixed_ms, per_record_ms=learned.per_record_ms)  # type: ignore[index]
        notes.append(f"{route}: {learned.note}")
    if not notes:
        return model, ()
    return model.model_copy(update={"profile": base.model_copy(update={"routes": routes})}), tuple(notes)
