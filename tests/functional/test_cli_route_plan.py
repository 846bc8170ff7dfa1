"""Functional tests of `router route` and `router plan`: a real config file on disk (s3:// artifacts
with size_bytes, so no model files), the real argument parser, output and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from router.cli import main

CONFIG = """\
version: 1
runtime:
  sync_timeout_s: 29
  lambda_memory_mb: 2048
routing:
  prefer: latency
sagemaker:
  batch_transform:
    instance_type: ml.m5.xlarge
models:
  - name: iris
    framework: sklearn
    artifact: s3://router-models/iris.joblib
    sha256: 0f4c0f4c0f4c0f4c0f4c0f4c0f4c0f4c0f4c0f4c0f4c0f4c0f4c0f4c0f4c0f4c
    size_bytes: 5000
    features: [sepal_length, sepal_width, petal_length, petal_width]
    profile: {load_s: 0.2, per_record_ms: 0.2}
    endpoint: {name: iris-prod, instance_type: ml.m5.large}
  - name: embedder
    framework: pytorch
    artifact: s3://router-models/embedder.tar.gz
    sha256: 9a1b9a1b9a1b9a1b9a1b9a1b9a1b9a1b9a1b9a1b9a1b9a1b9a1b9a1b9a1b9a1b
    profile: {load_s: 8, per_record_ms: 15}
    batch_transform: {instance_type: ml.g4dn.xlarge}
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "router.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


def test_route_prints_route_reason_and_candidates(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["route", str(config_file), "iris", "--mode", "sync", "--records", "1000", "--warm"])
    out = capsys.readouterr().out
    assert code == 0
    assert "route:  inline" in out
    assert "reason: inline: est. 200 ms (warm: 1,000 x 200 µs) <= 0.8 x 29 s sync budget" in out
    assert "candidate" in out and "endpoint" in out
    assert "78.1 KiB payload (estimated: 20 B x 4 features per record" in out


def test_route_json_is_the_decision(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["route", str(config_file), "embedder", "--mode", "job", "--records", "2_000_000", "--json"])
    body = json.loads(capsys.readouterr().out)
    assert code == 0
    assert body["route"] == "batch-transform" and body["mode"] == "job"
    assert [c["route"] for c in body["candidates"]] == ["lambda-job", "batch-transform"]
    assert "pytorch does not run in-process" in body["candidates"][0]["reasons"][0]


def test_route_endpoint_down_changes_the_decision(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["route", str(config_file), "iris", "--mode", "sync", "--records", "10"]) == 0
    out = capsys.readouterr().out  # cold inline pays its load once, then beats the endpoint
    assert "route:  inline" in out and "faster than endpoint" in out
    assert main(["route", str(config_file), "iris", "--mode", "sync", "--records", "10", "--endpoint-down"]) == 0
    out = capsys.readouterr().out
    assert "route:  inline" in out and "iris-prod is not InService" in out


def test_route_without_a_feasible_route_exits_1_and_says_413(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["route", str(config_file), "iris", "--mode", "sync", "--records", "1", "--payload-bytes", "7MiB"])
    out = capsys.readouterr().out
    assert code == 1
    assert "route:  none (payload too large: the API answers 413)" in out
    assert "payload 7 MiB exceeds the 6 MiB" in out


def test_route_unknown_model_exits_2(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["route", str(config_file), "nope", "--mode", "sync", "--records", "1"])
    err = capsys.readouterr().err
    assert code == 2
    assert "unknown model 'nope'" in err and "iris, embedder" in err


def test_invalid_config_exits_2_with_its_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(CONFIG.replace("prefer: latency", "prefer: speed"), encoding="utf-8")
    assert main(["route", str(bad), "iris", "--mode", "sync", "--records", "1"]) == 2
    err = capsys.readouterr().err
    assert "invalid config" in err and "routing.prefer" in err
    assert main(["plan", str(bad)]) == 2
    assert "routing.prefer" in capsys.readouterr().err


def test_route_rejects_negative_records(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["route", str(config_file), "iris", "--mode", "sync", "--records", "-5"])
    assert exc.value.code == 2
    assert "must be >= 0" in capsys.readouterr().err


def test_plan_prints_a_grid_per_model_and_the_break_even(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(config_file)]) == 0
    out = capsys.readouterr().out
    iris = out[out.index("iris:"): out.index("embedder:")]
    for size in ("1 ", "1,000 ", "100,000 ", "10,000,000 "):
        assert size in iris
    assert "lambda-job" in iris and "none (413)" in iris
    # ml.m5.large $0.115 x 730 h / (2 GB x 1 ms x $0.0000166667 + $0.0000002) = ~360 M.
    assert "break-even: 360 M requests/month (above that a persistent ml.m5.large endpoint" in iris
    embedder = out[out.index("embedder:"):]
    assert "batch-transform" in embedder
    assert "break-even: n/a (no endpoint declared)" in embedder
    header = next(line for line in iris.splitlines() if "records" in line and "route" in line)
    row = next(line for line in iris.splitlines() if line.strip().startswith("1,000 "))
    assert row.index("sync") == header.index("mode")  # aligned columns


def test_plan_json_for_one_model(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(config_file), "--model", "embedder", "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    [model] = body["models"]
    assert model["model"] == "embedder"
    assert len(model["rows"]) == 8
    jobs = [r["decision"]["route"] for r in model["rows"] if r["mode"] == "job"]
    assert jobs == ["batch-transform"] * 4
    assert model["break_even"]["requests_per_month"] is None


def test_plan_unknown_model_exits_2(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(config_file), "--model", "nope"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err


def test_help_explains_the_assumptions(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["route", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "assumed InService" in text and "--endpoint-down" in text and "Exit status" in text
    with pytest.raises(SystemExit):
        main(["plan", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "730 h" in text and "break-even" in text
    assert "assumed InService" in text


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "operator.yaml"


def test_route_shows_the_serverless_candidate_with_its_cost(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["route", str(EXAMPLE), "embedder", "--mode", "sync", "--records", "10"]) == 0
    up = capsys.readouterr().out
    assert "route:  endpoint" in up
    [row] = [line.split() for line in up.splitlines() if line.strip().startswith("serverless ")]
    assert row[:2] == ["serverless", "yes"] and row[4].startswith("$")  # est. is "12.2 s": two cells
    assert main(["route", str(EXAMPLE), "embedder", "--mode", "sync", "--records", "10", "--endpoint-down", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["route"] == "serverless" and "not endpoint: endpoint router-embedder-prod is not InService" in d["reason"]
    [sl] = [c for c in d["candidates"] if c["route"] == "serverless"]
    assert sl["feasible"] and sl["estimates"]["cost_usd"] > 0
    assert main(["route", str(EXAMPLE), "embedder", "--mode", "sync", "--records", "10", "--endpoint-down", "--serverless-down"]) == 1
    assert "serverless endpoint router-embedder-serverless is not InService" in capsys.readouterr().out


def test_plan_names_the_serverless_endpoint_and_its_largest_request(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(EXAMPLE), "--model", "embedder"]) == 0
    out = capsys.readouterr().out
    assert "serverless router-embedder-serverless (6144 MB, max concurrency 5)" in out
    assert "serverless " in next(line for line in out.splitlines() if "largest request by time budget" in line)
