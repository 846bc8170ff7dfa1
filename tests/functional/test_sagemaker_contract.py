"""The model's inference contract (router/sagemaker_contract.py): the endpoint call and
every batch-transform request carry the same document; the router stages a job's input as those
documents and assembles the model's answers back into one prediction per record, checking each
answer's length."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from router import sagemaker_contract as contract
from router.config import RouterConfig
from router.domain import OutputKind
from router.errors import BackendError, InvalidInput
from router.jobs_service import JobsService
from router.service import RouterService
from sagemaker_jobs.serve import load_service, transform_file
from tests.fakes import FakeBatch, FakeClock, FakeEndpoints, FakeRunner, MemoryObjectStore

SHA = "ab" * 32


def spec(**extra: Any) -> Any:
    cfg = RouterConfig.model_validate({"models": [{"name": "m", "framework": "pytorch", "artifact": "s3://b/m.tar.gz", "sha256": SHA, **extra}]})
    return cfg.models[0]


def stage(data: bytes, *, fmt: str = "jsonl", max_line: int = 10**6, per: int = 1000, output: str = "predict", **model: Any) -> tuple[list[bytes], list[int]]:
    out = io.BytesIO()
    sizes = contract.write_requests(contract.raw_chunks(io.BytesIO(data), per), fmt, spec(**model), output, out, max_line)
    return out.getvalue().splitlines(), sizes


# ---------------------------------------------------------------- staging


def test_each_staged_line_is_exactly_the_endpoints_request_body() -> None:
    rows = [[float(i), 1.5, -2.0] for i in range(25)]
    lines, sizes = stage(b"".join(json.dumps(r).encode() + b"\n" for r in rows), per=10, output="proba")
    assert sizes == [10, 10, 5]
    for line, start in zip(lines, (0, 10, 20), strict=True):
        chunk = rows[start : start + 10]
        assert json.loads(line) == {"instances": chunk, "output": "proba"}
        assert json.loads(line) == json.loads(contract.request_body(spec(), chunk, "proba"))


def test_records_keyed_by_the_configs_feature_names_become_rows_as_on_the_endpoint() -> None:
    model = {"framework": "sklearn", "features": ["a", "b"]}
    records = [{"b": 2, "a": 1}, {"a": 3, "b": 4}]
    lines, _ = stage(b"".join(json.dumps(r).encode() + b"\n" for r in records), **model)
    assert json.loads(lines[0])["instances"] == [[1.0, 2.0], [3.0, 4.0]]
    assert lines[0] == contract.request_body(spec(**model), records, "predict")


def test_csv_rows_become_number_lists_and_empty_lines_are_skipped() -> None:
    lines, sizes = stage(b"1,2\n\n3.5,4\n", fmt="csv")
    assert sizes == [2] and json.loads(lines[0])["instances"] == [[1.0, 2.0], [3.5, 4.0]]


def test_a_request_over_the_payload_limit_is_split_until_it_fits() -> None:
    rows = [[i, i] for i in range(40)]
    lines, sizes = stage(b"".join(json.dumps(r).encode() + b"\n" for r in rows), max_line=120)
    assert sum(sizes) == 40 and len(sizes) > 1
    assert all(len(line) + 1 <= 120 for line in lines)
    assert [r for line in lines for r in json.loads(line)["instances"]] == rows  # in order, once each


def test_a_record_too_large_for_any_request_names_its_line() -> None:
    with pytest.raises(InvalidInput, match=r"input line 2 is \d+ bytes as a request, over the .*120-byte payload limit"):
        stage(b"[1]\n" + json.dumps([1.0] * 50).encode() + b"\n", max_line=120)


@pytest.mark.parametrize(("data", "line"), [(b"[1,2]\n[1,2\n", 2), (b"[1]\n\n[NaN]\n", 3), (b"[1]\n1, 2\n", 2), (b"{}\n\xff\n", 2)])
def test_a_malformed_line_is_invalid_input_naming_it(data: bytes, line: int) -> None:
    with pytest.raises(InvalidInput) as info:
        stage(data)
    assert info.value.details["line"] == line and f"input line {line}" in info.value.message


def test_the_endpoint_is_sent_the_same_document() -> None:
    cfg = RouterConfig.model_validate({"models": [{"name": "m", "framework": "pytorch", "artifact": "s3://b/m.tar.gz", "sha256": SHA,
                                                   "endpoint": {"name": "ep"}, "profile": {"load_s": 0, "per_record_ms": 0}}]})
    endpoints = FakeEndpoints()
    svc = RouterService(cfg, runner=FakeRunner(), endpoints=endpoints)
    rows = [[1.0, 2.0], [3.0, 4.0]]
    svc.predict(cfg.models[0], rows, OutputKind.PROBA, 100)
    assert endpoints.calls == [("ep", contract.request_body(cfg.models[0], rows, "proba"))]
    lines, _ = stage(b"[1.0,2.0]\n[3.0,4.0]\n", output="proba")
    assert lines == [endpoints.calls[0][1]]


# ---------------------------------------------------------------- assembly


class Trickle(io.BytesIO):
    """Reads at most 5 bytes at a time: every answer straddles read boundaries."""

    def read(self, n: int | None = -1) -> bytes:
        return super().read(5)


def assemble(out: bytes, batches: list[int], *, trickle: bool = False) -> list[Any]:
    store = MemoryObjectStore()
    store.put_bytes("mem://t/requests.jsonl.out", out)
    if trickle:
        store.open_read = lambda uri: Trickle(store.get_bytes(uri))  # type: ignore[method-assign]
    n = contract.assemble_predictions(store, "mem://t/requests.jsonl.out", batches, "mem://t/output.jsonl")
    got = [json.loads(x) for x in store.get_bytes("mem://t/output.jsonl").splitlines()]
    assert n == len(got)
    return got


@pytest.mark.parametrize("trickle", [False, True])
def test_answers_become_one_prediction_per_line_in_order(trickle: bool) -> None:
    out = b'{"predictions":[1,2]}\n[3]\n{\n  "predictions": [[0.5, 0.5], 12345678]\n}\n\n'  # pretty-printed and bare lists too
    assert assemble(out, [2, 1, 2], trickle=trickle) == [1, 2, 3, [0.5, 0.5], 12345678]


@pytest.mark.parametrize(
    ("out", "batches", "match"),
    [
        (b'{"predictions":[1]}\n', [2], r"request 1 of 1: the model returned 1 predictions for 2 instances"),
        (b'{"predictions":[1]}\n', [1, 1], "has 1 answers for 2 requests"),
        (b'[1]\n[2]\n', [1], "more answers than the 1 requests"),
        (b'{"label": 1}\n', [1], r"not \{\"predictions\""),
        (b'[1]\nnot json\n', [1, 1], "not the model's JSON answers"),
        (b'[NaN]\n', [1], "not the model's JSON answers"),
    ],
)
def test_a_wrong_answer_fails_loudly(out: bytes, batches: list[int], match: str) -> None:
    with pytest.raises(BackendError, match=match):
        assemble(out, batches)


def test_a_missing_output_fails_and_writes_no_result() -> None:
    store = MemoryObjectStore()
    with pytest.raises(BackendError, match="missing"):
        contract.assemble_predictions(store, "mem://t/requests.jsonl.out", [1], "mem://t/output.jsonl")
    assert not store.exists("mem://t/output.jsonl")


# ---------------------------------------------------------------- the job service stages once


def test_the_job_service_stages_once_and_a_bad_record_fails_the_job_before_sagemaker(tmp_path: Path) -> None:
    from router.adapters.sqlite_jobs import SqliteJobStore
    from router.domain import JobStatus
    from router.sagemaker_names import transform_job_name

    cfg = RouterConfig.model_validate({
        "storage": {"jobs": "s3://bucket/jobs", "artifacts": "s3://bucket/models", "job_table": "sqlite:///x.db"},
        "sagemaker": {"batch_transform": {"instance_type": "ml.m5.xlarge"}},
        "models": [{"name": "m", "framework": "pytorch", "artifact": "s3://b/m.tar.gz", "sha256": SHA, "size_bytes": 1000,
                    "profile": {"load_s": 0.1, "per_record_ms": 1.0}}],
    })
    clock, objects, batch = FakeClock(), MemoryObjectStore(), FakeBatch()
    svc = JobsService(cfg, service=RouterService(cfg, runner=FakeRunner()), store=SqliteJobStore(tmp_path / "j.db", clock=clock),
                      objects=objects, clock=clock, batch=batch, transform_name=transform_job_name)
    job, _ = svc.submit("alice", cfg.models[0], instances=[[1, 2]] * 2500, input_uri=None, input_format="jsonl",
                        output=OutputKind.PREDICT, idempotency_key=None)
    assert job.status is JobStatus.RUNNING
    requests = f"s3://bucket/jobs/{job.job_id}/transform-input/requests.jsonl"
    assert [len(json.loads(x)["instances"]) for x in objects.get_bytes(requests).splitlines()] == [1000, 1000, 500]
    assert json.loads(objects.get_bytes(f"s3://bucket/jobs/{job.job_id}/batches.json"))["batches"] == [1000, 1000, 500]
    objects.put_bytes(requests, b"changed")  # a re-submission (sweeper) adopts: nothing is staged again
    svc._dispatch(svc.store.get(job.job_id))  # type: ignore[arg-type]
    assert objects.get_bytes(requests) == b"changed"

    slot = svc.upload_slot("alice")
    objects.put_bytes(slot["input_uri"], b"[1,2]\n" * 3000 + b"[1,NaN]\n")
    bad, _ = svc.submit("alice", cfg.models[0], instances=None, input_uri=slot["input_uri"], input_format="jsonl",
                        output=OutputKind.PREDICT, idempotency_key=None)
    assert bad.status is JobStatus.FAILED and bad.error is not None
    assert bad.error["code"] == "invalid_input" and "input line 3001" in bad.error["message"]
    assert batch.creates == 1  # SageMaker never saw the bad job


# ---------------------------------------------------------------- the emulator runs the parameters


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    import joblib
    from sklearn.linear_model import LogisticRegression

    d = tmp_path / "model"
    d.mkdir()
    joblib.dump(LogisticRegression().fit([[0.0, 0.0], [1.0, 1.0], [0.1, 0.0], [0.9, 1.0]], [0, 1, 0, 1]), d / "model.joblib")
    return d


def test_single_record_sends_each_line_alone_and_line_assembly_adds_newlines(tmp_path: Path, model_dir: Path) -> None:
    src = tmp_path / "requests.jsonl"
    src.write_bytes(b'{"instances": [[0, 0], [1, 1]]}\n{"instances": [[1, 1]], "output": "proba"}\n')
    result = transform_file(load_service(model_dir), src, tmp_path / "out", content_type="application/json", accept="application/json",
                            batch_records=1000, max_payload_bytes=100, split_type="Line", batch_strategy="SingleRecord", assemble_with="Line")
    first, second = result.path.read_text().splitlines()
    assert json.loads(first) == {"predictions": [0, 1]} and len(json.loads(second)["predictions"][0]) == 2
    assert result.batches == 2 and result.path.read_text().endswith("\n")


def test_split_none_sends_the_whole_object_and_assemble_none_concatenates(tmp_path: Path, model_dir: Path) -> None:
    src = tmp_path / "doc.json"
    src.write_bytes(b'{"instances": [[0, 0],\n [1, 1]]}')  # one document over two lines
    result = transform_file(load_service(model_dir), src, tmp_path / "out", content_type="application/json", accept="application/json",
                            batch_records=1, max_payload_bytes=None, split_type="None", assemble_with="None")
    assert result.path.read_bytes() == b'{"predictions":[0,1]}' and result.batches == 1
    with pytest.raises(Exception, match="over the 10-byte payload limit"):
        transform_file(load_service(model_dir), src, tmp_path / "out2", content_type="application/json", accept="application/json",
                       batch_records=1, max_payload_bytes=10, split_type="None")
    with pytest.raises(ValueError, match="split_type must be one of"):
        transform_file(model_dir, src, tmp_path, content_type="application/json", accept="application/json",
                       batch_records=1, max_payload_bytes=None, split_type="RecordIO")
