"""Estimates beside what happened: the recorder's bounds, the ratio summary, the bounded learning,
the profile schema (old keys still valid), and the service recording every sync response."""

from __future__ import annotations

import time
from typing import Any

import pytest

from router.calibration import KEEP, MAX_FACTOR, Recorder, Sample, calibrated, learn, summarize
from router.config import ModelSpec, Profile, RouterConfig, parse_config
from router.domain import BackendState, Mode, OutputKind
from router.errors import ConfigError
from router.service import Prediction, RouterService
from tests.fakes import FakeRunner

SHA = "ab" * 32


def model(profile: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"name": "m", "framework": "sklearn", "artifact": "s3://b/m.joblib", "sha256": SHA, "size_bytes": 1000}
    if profile is not None:
        base["profile"] = profile
    return {**base, **kw}


def config(profile: dict[str, Any] | None = None, **routing: Any) -> RouterConfig:
    return RouterConfig.model_validate({"routing": routing, "models": [model(profile)]})


# ------------------------------------------------------------------ recorder and summary


def test_the_recorder_keeps_the_most_recent_samples_per_model_and_route() -> None:
    rec = Recorder()
    for i in range(KEEP + 10):
        rec.record("m", "inline", 1.0, 1.0, i)
    rec.record("m", "lambda-job", 2.0, 1.0, 5)
    rec.record("other", "inline", 1.0, 1.0, 1)
    got = rec.samples("m")
    assert set(got) == {"inline", "lambda-job"}
    assert len(got["inline"]) == KEEP and got["inline"][0].records == 10 and got["inline"][-1].records == KEEP + 9
    assert rec.version("m") == KEEP + 11 and rec.version("nobody") == 0


def test_summary_is_estimate_over_measured_with_its_spread() -> None:
    samples = [Sample(2.0, 1.0, 10), Sample(1.0, 1.0, 100), Sample(0.5, 1.0, 1000), Sample(1.0, 0.5, 50)]
    s = summarize(samples)
    assert s["samples"] == 4
    assert s["ratio"] == {"median": 1.5, "p10": 0.5, "p90": 2.0, "min": 0.5, "max": 2.0}
    assert s["records"] == {"min": 10, "max": 1000}
    assert summarize([]) == {"samples": 0, "ratio": None, "records": None}


# ------------------------------------------------------------------ learning


def test_learning_needs_enough_warm_samples_of_real_size() -> None:
    prof = Profile(load_s=1, per_record_ms=0.01)
    few = [Sample(1.0, 0.07, 10_000)] * 4
    assert learn(prof, "lambda-job", few) is None
    small = [Sample(1.0, 0.07, 10)] * 10
    assert learn(prof, "lambda-job", small) is None  # tiny work is mostly fixed cost
    cold = [Sample(1.0, 3.07, 10_000, cold=True)] * 10
    assert learn(prof, "lambda-job", cold) is None  # the load dominates
    got = learn(prof, "lambda-job", [Sample(1.0, 0.07, 10_000)] * 12)
    assert got is not None and got.per_record_ms == pytest.approx(0.007)
    assert got.note == "per-record 7 µs, from 12 recent jobs"


def test_learning_subtracts_the_fixed_part_and_stays_bounded() -> None:
    prof = Profile(load_s=1, per_record_ms=1.0, routes={"inline": {"fixed_ms": 100, "per_record_ms": 0.01}})  # type: ignore[dict-item]
    got = learn(prof, "inline", [Sample(1.0, 0.1 + 1000 * 0.02 / 1000, 1000)] * 5)
    assert got is not None and got.per_record_ms == pytest.approx(0.02)
    slow = learn(prof, "inline", [Sample(1.0, 100.0, 1000)] * 5)
    fast = learn(prof, "inline", [Sample(1.0, 0.0, 1000)] * 5)
    assert slow is not None and slow.per_record_ms == pytest.approx(0.01 * MAX_FACTOR)
    assert fast is not None and fast.per_record_ms == pytest.approx(0.01 / MAX_FACTOR)


def test_calibrated_replaces_only_learned_routes_and_never_a_default_profile() -> None:
    cfg = config({"load_s": 1, "per_record_ms": 0.01, "routes": {"lambda-job": {"fixed_ms": 20, "per_record_ms": 0.01}}})
    m = cfg.models[0]
    samples = {"lambda-job": [Sample(1.0, 0.02 + 0.07, 10_000)] * 6, "inline": [Sample(1.0, 1.0, 1)]}
    learned, notes = calibrated(m, samples)
    assert notes == ("lambda-job: per-record 7 µs, from 6 recent jobs",)
    assert learned.profile is not None and learned.profile.timing("lambda-job") == (20.0, pytest.approx(0.007))
    assert learned.profile.timing("inline") == (0.0, 0.01)
    unprofiled = ModelSpec.model_validate(model())
    assert calibrated(unprofiled, samples) == (unprofiled, ())


# ------------------------------------------------------------------ config schema


def test_old_profiles_stay_valid_and_new_keys_are_checked() -> None:
    head = f"models:\n- {{name: m, framework: sklearn, artifact: s3://b/m, sha256: {SHA}, profile: "
    old = parse_config(head + "{load_s: 2, per_record_ms: 0.5}}\n", check_artifacts=False)
    assert old.models[0].profile == Profile(load_s=2, per_record_ms=0.5)
    new = parse_config(head + "{load_s: 2, import_s: 1.5, per_record_ms: 0.5, routes: {lambda-job: {fixed_ms: 9, per_record_ms: 0.007}}}}\n", check_artifacts=False)
    prof = new.models[0].profile
    assert prof is not None and prof.timing("lambda-job") == (9.0, 0.007) and prof.load_after_import_s() == 0.5
    with pytest.raises(ConfigError, match="import_s .* cannot exceed load_s"):
        parse_config(head + "{load_s: 1, import_s: 2, per_record_ms: 0.5}}\n", check_artifacts=False)
    with pytest.raises(ConfigError, match="routes"):
        parse_config(head + "{load_s: 1, per_record_ms: 0.5, routes: {lambda_job: {per_record_ms: 1}}}}\n", check_artifacts=False)
    with pytest.raises(ConfigError, match="unknown key"):
        parse_config(head + "{load_s: 1, per_record_ms: 0.5, routes: {inline: {per_record_ms: 1, slope: 2}}}}\n", check_artifacts=False)


# ------------------------------------------------------------------ the service records every sync response


def test_every_sync_response_records_its_estimate_and_what_it_took() -> None:
    svc = RouterService(config({"load_s": 0.5, "per_record_ms": 1.0}), runner=FakeRunner())
    m = svc.model("m")
    out = svc.predict(m, [[1, 2], [3, 4]], OutputKind.PREDICT, 100)
    assert isinstance(out, Prediction)
    body = out.to_dict(1.0)
    assert body["decision"]["estimates"]["duration_s"] == pytest.approx(0.502)
    (sample,) = svc.recorder.samples("m")["inline"]
    assert sample.estimate_s == pytest.approx(0.502) and sample.records == 2 and sample.cold
    assert sample.measured_s == pytest.approx(out.model_ms / 1000)
    cal = svc.describe_model(m, detail=True)["calibration"]
    assert cal["routes"]["inline"]["samples"] == 1 and cal["learning"] == "off"


def test_learning_is_off_by_default_and_explained_in_the_reason_when_on() -> None:
    prof = {"load_s": 0.5, "per_record_ms": 1.0}
    for calibrate in (False, True):
        svc = RouterService(config(prof, calibrate=calibrate), runner=FakeRunner(warm=True))
        m = svc.model("m")
        for _ in range(8):
            svc.recorder.record("m", "inline", 0.2, 0.05, 200)
        d = svc.decide(m, Mode.SYNC, 200, 0)
        if calibrate:
            assert "[calibrated: inline: per-record 250 µs, from 8 recent requests]" in d.reason
            assert d.estimates is not None and d.estimates.duration_s == pytest.approx(0.05)
        else:
            assert "calibrated" not in d.reason
            assert d.estimates is not None and d.estimates.duration_s == pytest.approx(0.2)


def test_the_worker_state_is_known_only_when_it_shares_the_runner() -> None:
    cfg = config({"load_s": 0.5, "per_record_ms": 1.0})
    shared = RouterService(cfg, runner=FakeRunner(warm=True), worker_shares_runner=True)
    apart = RouterService(cfg, runner=FakeRunner(warm=True))
    m = cfg.models[0]
    assert shared.backend_state(m) == BackendState(warm=True, worker_warm=True)
    assert apart.backend_state(m) == BackendState(warm=True)


def test_a_sync_sample_covers_the_request_from_when_its_handling_began() -> None:
    # The estimate covers what the router spends on a request (parsing its body, routing,
    # predicting; docs/routing.md "Estimates"): the sample runs from the handler's start.
    svc = RouterService(config({"load_s": 0.5, "per_record_ms": 1.0}), runner=FakeRunner(warm=True))
    began = time.perf_counter() - 5.0  # a body that took 5 s to parse
    out = svc.predict(svc.model("m"), [[1, 2]], OutputKind.PREDICT, 100, started=began)
    assert isinstance(out, Prediction)
    (sample,) = svc.recorder.samples("m")["inline"]
    assert sample.measured_s >= 5.0 > out.model_ms / 1000  # the response's model time stays the model's


def test_typical_is_a_trimmed_mean_that_moves_smoothly_with_the_share_of_slow_calls() -> None:
    from router.cli.profiling import typical

    assert typical([1.0] * 18 + [0.001, 50.0]) == pytest.approx(1.0)  # the rare stall and the odd fast call are left out
    # Calls of 3 ms, some losing a 4 ms scheduler slice: a median jumps from 3 to 7 ms when the
    # slow ones pass half; the typical time moves by the share that changed.
    below, above = typical([3.0] * 51 + [7.0] * 49), typical([3.0] * 49 + [7.0] * 51)
    assert 4.5 < below < above < 5.5 and above - below == pytest.approx(8 / 80)
