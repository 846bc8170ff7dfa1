"""`router profile` times each route the way it runs, and `router plan --calibration` shows, from a
running `router serve` over real HTTP, how the estimates compared with what the work took."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.tree import DecisionTreeClassifier

from router.cli import main
from router.cli.profiling import read_sample, with_profile
from router.client import RouterClient
from router.config import load_config
from router.errors import InvalidRequest
from router.serve_app import LocalApp, create_app

KEY = "calibration-key-0001"


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("calibration")
    x = np.random.default_rng(0).normal(size=(200, 3))
    joblib.dump(DecisionTreeClassifier(max_depth=4, random_state=0).fit(x, (x[:, 0] > 0).astype(int)), d / "tree.joblib")
    sha = hashlib.sha256((d / "tree.joblib").read_bytes()).hexdigest()
    (d / "op.yaml").write_text(
        "jobs: {chunk_records: 50}\n"
        f"auth: {{api_keys: {{{KEY}: alice}}}}\n"
        "sagemaker: {batch_transform: {instance_type: ml.m5.xlarge}}\n"
        "models:\n"
        "  - name: tree\n"
        "    framework: sklearn\n"
        "    artifact: file://./tree.joblib\n"
        f"    sha256: {sha}\n"
        "    features: [a, b, c]\n"
    )
    return d / "op.yaml"


@pytest.fixture(scope="module")
def served(config: Path) -> Iterator[LocalApp]:
    assert main(["profile", str(config), "--write"]) == 0
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("POWERTOOLS_METRICS_DISABLED", "true")  # as `router serve` runs: no EMF lines on stdout
        app = create_app(load_config(config), port=0)
        thread = threading.Thread(target=app.serve_forever, daemon=True)
        thread.start()
        yield app
        app.shutdown()
        thread.join(timeout=10)


def test_profile_times_every_route_it_can_run(served: LocalApp, config: Path) -> None:
    prof = load_config(config).model("tree").profile  # type: ignore[union-attr]
    assert prof is not None and prof.routes is not None
    assert set(prof.routes) == {"inline", "lambda-job", "batch-transform"}
    assert prof.import_s is not None and 0 < prof.import_s <= prof.load_s
    assert all(t.per_record_ms > 0 for t in prof.routes.values())
    assert prof.routes["lambda-job"].fixed_ms > 0  # a job writes its output and its job row


def test_plan_calibration_shows_estimate_over_measured_per_route(served: LocalApp, config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    client = RouterClient(served.url, KEY)
    for n in (1, 20, 20):
        client.predict("tree", [[0.1, 0.2, 0.3]] * n)
    job = client.wait(client.submit_job("tree", instances=[[0.5, 0.1, 0.2]] * 120)["job_id"], poll_s=0.05, max_poll_s=0.2)
    assert job["status"] == "succeeded" and job["route"] == "lambda-job"
    assert job["estimate"]["duration_s"] > 0 and job["duration_s"] > 0

    assert main(["plan", str(config), "--calibration", "--url", served.url, "--api-key", KEY, "--json"]) == 0
    cal = json.loads(capsys.readouterr().out)["models"]["tree"]
    assert cal["routes"]["inline"]["samples"] == 3 and cal["routes"]["inline"]["records"] == {"min": 1, "max": 20}
    assert cal["routes"]["lambda-job"]["samples"] == 1
    ratio = cal["routes"]["lambda-job"]["ratio"]["median"]
    assert ratio == pytest.approx(job["estimate"]["duration_s"] / job["duration_s"], rel=1e-2, abs=1e-3)

    assert main(["plan", str(config), "--calibration", "--url", served.url, "--api-key", KEY]) == 0
    text = capsys.readouterr().out
    assert "estimate / measured" in text and "lambda-job" in text and "inline" in text and "learning: off" in text


def test_plan_calibration_says_when_no_router_answers(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(config), "--calibration", "--url", "http://127.0.0.1:9", "--api-key", KEY]) == 1
    err = capsys.readouterr().err
    assert "cannot reach http://127.0.0.1:9" in err and "router serve" in err


def test_a_block_profile_is_replaced_by_one_line() -> None:
    text = "models:\n- name: a\n  profile:\n    load_s: 1\n    per_record_ms: 2\n  framework: sklearn\n"
    out = with_profile(text, "a", {"load_s": 3, "per_record_ms": 1, "routes": {"inline": {"fixed_ms": 1, "per_record_ms": 1}}})
    assert out == "models:\n- name: a\n  profile: {load_s: 3, per_record_ms: 1, routes: {inline: {fixed_ms: 1, per_record_ms: 1}}}\n  framework: sklearn\n"


def test_sample_rows_are_read_from_json_lines_or_csv(tmp_path: Path, config: Path) -> None:
    spec = load_config(config).model("tree")
    assert spec is not None
    (tmp_path / "s.jsonl").write_text('[1, 2, 3]\n{"a": 4, "b": 5, "c": 6}\n\n')
    assert read_sample(tmp_path / "s.jsonl", spec) == [[1, 2, 3], [4, 5, 6]]
    (tmp_path / "s.csv").write_text("1,2,3\n4.5,5,6\n")
    assert read_sample(tmp_path / "s.csv", spec) == [[1, 2, 3], [4.5, 5, 6]]
    (tmp_path / "bad.jsonl").write_text('[1, 2, 3]\n["x"]\n')
    with pytest.raises(InvalidRequest, match="line 2"):
        read_sample(tmp_path / "bad.jsonl", spec)
