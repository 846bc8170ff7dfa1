"""`router advise`: traffic from a file, from CloudWatch (moto: botocore validates the
GetMetricStatistics call) and from `router serve`'s job table; the table, --json and the errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from router.adapters.sqlite_jobs import SqliteJobStore
from router.cli import main
from router.cli.advise_cmd import SourceUnavailable, traffic_from_cloudwatch
from router.config import load_config
from router.domain import Job, JobStatus, Route
from router.jobs import new_job_id

SHA = "9a1b" * 16
CONFIG = f"""\
version: 1
storage:
  jobs: file://./.router/jobs
  job_table: sqlite:///./.router/jobs.db
models:
  - name: embedder
    framework: pytorch
    artifact: s3://router-models/embedder.tar.gz
    sha256: {SHA}
    profile: {{load_s: 8, per_record_ms: 15}}
    endpoint: {{name: router-embedder-prod, instance_type: ml.m5.large}}
  - name: ranker
    framework: pytorch
    artifact: s3://router-models/ranker.tar.gz
    sha256: {SHA}
    profile: {{load_s: 8, per_record_ms: 15}}
    endpoint: {{name: router-ranker-prod, instance_type: ml.m5.large}}
  - name: tiny
    framework: sklearn
    artifact: s3://router-models/tiny.joblib
    sha256: {SHA}
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    p = tmp_path / "router.yaml"
    p.write_text(CONFIG)
    return p


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["advise", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_traffic_file_gives_a_recommendation_per_endpoint(config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    traffic = tmp_path / "traffic.yaml"
    traffic.write_text("embedder: 2\nranker: {invocations_per_hour: 1000000, records_per_invocation: 1}\n")
    code, out, err = run(capsys, str(config_file), "--traffic", str(traffic))
    assert code == 0, err
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("router-") and ":" not in line}
    assert rows["router-embedder-prod"][-1] == "serverless" and rows["router-ranker-prod"][-1] == "keep"
    assert rows["router-embedder-prod"][3] == "$83.95"  # keep: 1 x ml.m5.large x 730 h (+ the router's wait)
    assert "router-embedder-prod (embedder): switch to serverless:" in out and "keeping it pays from" in out
    assert "cheaper below" in out and f"traffic: {traffic}" in out

    code, out, _ = run(capsys, str(config_file), "--traffic", str(traffic), "--json")
    doc = json.loads(out)
    [emb, rank] = doc["endpoints"]
    assert (emb["endpoint"], emb["recommendation"], rank["recommendation"]) == ("router-embedder-prod", "serverless", "keep")
    assert [o["option"] for o in emb["options"]] == ["keep", "serverless", "async", "delete"]
    assert emb["traffic"]["invocations_per_hour"] == 2 and doc["skipped"] == []


def test_a_model_missing_from_the_traffic_file_is_skipped_with_a_note(config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    traffic = tmp_path / "t.json"
    traffic.write_text(json.dumps({"embedder": 0, "tiny": 5}))
    code, out, _ = run(capsys, str(config_file), "--traffic", str(traffic))
    assert code == 0
    assert "note: no traffic for ranker" in out and "note: tiny has no persistent endpoint" in out
    assert any(line.startswith("router-embedder-prod") and ":" not in line and line.split()[-1] == "delete" for line in out.splitlines())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nosuch: 3\n", "nosuch: no such model in the config (models: embedder, ranker, tiny)"),
        ("embedder: -1\n", "embedder: invocations_per_hour must be a finite number >= 0, got -1.0"),
        ("embedder: {calls: 3}\n", "embedder: unknown key(s) calls"),
        ("embedder: {records_per_invocation: 3}\n", "invocations_per_hour is required"),
        ("embedder: lots\n", "embedder: expected invocations per hour or a mapping, got 'lots'"),
        ("- embedder\n", "must map model names to invocations per hour"),
        ("embedder: [\n", "not valid YAML/JSON"),
    ],
)
def test_a_bad_traffic_file_is_exit_2_with_the_reason(
    config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    traffic = tmp_path / "traffic.yaml"
    traffic.write_text(text)
    code, out, err = run(capsys, str(config_file), "--traffic", str(traffic))
    assert code == 2 and out == "" and message in err and "Traceback" not in err


def test_usage_errors(config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, str(config_file), "--traffic", str(tmp_path / "missing.yaml"))
    assert code == 2 and "cannot read the traffic file" in err
    code, _, err = run(capsys, str(config_file), "--model", "tiny", "--traffic", str(tmp_path / "x"))
    assert code == 2 and "no model 'tiny' with a persistent endpoint" in err
    with pytest.raises(SystemExit) as e:
        main(["advise", str(config_file), "--traffic", "f", "--cloudwatch"])
    assert e.value.code == 2
    with pytest.raises(SystemExit):
        main(["advise", str(config_file), "--days", "0"])
    assert "from 1 to 60" in capsys.readouterr().err


def test_help_documents_the_traffic_file_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["advise", "--help"])
    out = capsys.readouterr().out
    assert "records_per_invocation" in out and "--cloudwatch" in out and "Exit status" in out


# ---------------------------------------------------------------- CloudWatch


def test_cloudwatch_invocations_per_endpoint(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    now = datetime.now(UTC)
    with mock_aws():
        cw = boto3.client("cloudwatch", region_name="us-east-1")
        for hours_ago, calls in ((1, 30.0), (5, 12.0), (30, 6.0)):
            cw.put_metric_data(Namespace="AWS/SageMaker", MetricData=[{
                "MetricName": "Invocations", "Value": calls, "Unit": "None", "Timestamp": now - timedelta(hours=hours_ago),
                "Dimensions": [{"Name": "EndpointName", "Value": "router-embedder-prod"}, {"Name": "VariantName", "Value": "AllTraffic"}],
            }])
        # Another endpoint's and another variant's calls are not this endpoint's traffic.
        cw.put_metric_data(Namespace="AWS/SageMaker", MetricData=[{
            "MetricName": "Invocations", "Value": 1000.0, "Timestamp": now - timedelta(hours=2),
            "Dimensions": [{"Name": "EndpointName", "Value": "other"}, {"Name": "VariantName", "Value": "AllTraffic"}],
        }])
        models = [m for m in load_config(config_file, check_artifacts=False).models if m.endpoint is not None]
        traffic = traffic_from_cloudwatch(cw, models, now=now, days=2)
        assert traffic["embedder"].invocations_per_hour == pytest.approx(48 / 48)
        assert traffic["ranker"].invocations_per_hour == 0
        code, out, err = run(capsys, str(config_file), "--cloudwatch", "--days", "2", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["endpoints"][0]["traffic"]["source"] == "CloudWatch AWS/SageMaker Invocations, last 2 d"
    assert doc["endpoints"][0]["traffic"]["invocations_per_hour"] == pytest.approx(1.0)
    assert doc["endpoints"][1]["recommendation"] == "delete"  # no calls at all


def test_a_cloudwatch_failure_is_exit_1_without_a_traceback(config_file: Path) -> None:
    cw = boto3.client("cloudwatch", region_name="us-east-1")
    models = [m for m in load_config(config_file, check_artifacts=False).models if m.endpoint is not None]
    with Stubber(cw) as stub:
        stub.add_client_error("get_metric_statistics", "AccessDenied", "not allowed to read metrics")
        with pytest.raises(SourceUnavailable) as e:
            traffic_from_cloudwatch(cw, models, now=datetime.now(UTC), days=1)
    assert "router-embedder-prod failed" in e.value.lines[0] and "AccessDenied" in e.value.lines[0]


# ---------------------------------------------------------------- router serve's job table


def _job(model: str, created: datetime, records: int | None) -> Job:
    return Job(job_id=new_job_id(created), owner="alice", model=model, status=JobStatus.SUCCEEDED, route=Route.LAMBDA_JOB,
               reason="r", created_at=created, updated_at=created, input_uri="file:///in.jsonl", records_total=records)


def test_local_traffic_from_the_job_table(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, str(config_file))
    assert code == 1 and "the job table" in err and "does not exist yet" in err
    db = config_file.parent / ".router" / "jobs.db"
    db.parent.mkdir(parents=True)
    store = SqliteJobStore(db)
    now = datetime.now(UTC)
    for hours_ago, records in ((1, 100), (2, 300), (24 * 20, 5)):  # the last is outside a 14-day window
        store.create(_job("embedder", now - timedelta(hours=hours_ago), records))
    store.close()
    code, out, err = run(capsys, str(config_file), "--json")
    assert code == 0, err
    emb = json.loads(out)["endpoints"][0]
    assert emb["traffic"]["invocations_per_hour"] == pytest.approx(2 / (14 * 24))
    assert emb["traffic"]["records_per_invocation"] == 200
    assert emb["traffic"]["source"].startswith("job table ")
