"""SageMaker batch-transform adapter: call shapes against moto (botocore validates every parameter),
adoption of an existing job, error mapping and StopTransformJob with botocore's Stubber (moto has
no StopTransformJob), deterministic names (property-tested), output assembly and event parsing."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, BinaryIO

import boto3
import pytest
from botocore.stub import Stubber
from hypothesis import given, settings
from hypothesis import strategies as st
from moto import mock_aws

from router.adapters.sagemaker_batch import SageMakerBatchClient
from router.config import MODEL_NAME_RE, BatchTransformDefaults, ModelSpec
from router.domain import Job, JobStatus, OutputKind, Route
from router.errors import BackendError, BackendUnavailable, InvalidRequest, Throttled
from router.sagemaker_contract import assemble_output
from router.sagemaker_names import job_id_from_transform_job_name, sagemaker_model_name, transform_job_name
from router.transform_events import parse_state_change_event

# One session for the module: it caches the (large) SageMaker service models, so each client
# is cheap. Created after `import moto`, so moto's handler is part of it.
SESSION = boto3.session.Session(region_name="us-east-1")
NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
SHA = "3f1c" + "a" * 60
JOB_ID = "job_01JD2W3X4Y5Z6A7B8C9D0E1F2G"
ULID_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def make_job(job_id: str = JOB_ID, output: OutputKind = OutputKind.PROBA) -> Job:
    now = datetime(2026, 11, 22, 1, 2, 3, tzinfo=UTC)
    return Job(
        job_id=job_id,
        owner="alice",
        model="iris",
        status=JobStatus.QUEUED,
        route=Route.BATCH_TRANSFORM,
        reason="test",
        created_at=now,
        updated_at=now,
        input_uri="s3://jobs-bucket/jobs/in/input.jsonl",
        output_kind=output,
    )


MODEL = ModelSpec(name="iris", framework="sklearn", artifact="s3://models/iris.joblib", sha256=SHA)
SETTINGS = BatchTransformDefaults(instance_type="ml.m5.xlarge", instance_count=1, max_payload_mb=6, max_concurrent_transforms=2)
IN_URI = "s3://jobs-bucket/jobs/in/input.jsonl"
OUT_URI = "s3://jobs-bucket/jobs/out/transform/"


@pytest.fixture
def sm() -> Iterator[Any]:
    with mock_aws():
        yield SESSION.client("sagemaker")


def stubbed() -> tuple[Any, Stubber]:
    client = SESSION.client("sagemaker")
    return client, Stubber(client)


def described(status: str, name: str = "router-job-x") -> dict[str, Any]:
    """A DescribeTransformJob response (the Stubber validates it against the service model)."""
    return {
        "TransformJobName": name,
        "TransformJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:transform-job/{name}",
        "TransformJobStatus": status,
        "ModelName": "m",
        "TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": IN_URI}}},
        "TransformOutput": {"S3OutputPath": OUT_URI},
        "TransformResources": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1},
        "CreationTime": datetime(2026, 1, 1, tzinfo=UTC),
    }


NOT_FOUND = ("ValidationException", "Could not find requested job with name router-job-x")


# ---------------------------------------------------------------- names


@given(st.text(min_size=1, max_size=300))
def test_transform_job_name_is_always_valid_and_deterministic(job_id: str) -> None:
    name = transform_job_name(job_id)
    assert NAME_RE.match(name), name
    assert len(name) <= 63
    assert transform_job_name(job_id) == name


@given(st.text(min_size=1, max_size=80), st.text(min_size=1, max_size=80))
def test_distinct_job_ids_get_distinct_transform_job_names(a: str, b: str) -> None:
    if a != b:
        assert transform_job_name(a) != transform_job_name(b)


@given(st.text(alphabet=ULID_ALPHABET, min_size=26, max_size=26))
def test_real_job_ids_map_readably_and_reversibly(ulid: str) -> None:
    job_id = f"job_{ulid}"
    name = transform_job_name(job_id)
    assert name == f"router-job-{ulid}"
    assert NAME_RE.match(name)
    assert job_id_from_transform_job_name(name) == job_id


def test_hashed_names_are_not_reversed_to_a_wrong_job_id() -> None:
    assert job_id_from_transform_job_name(transform_job_name("job-with-hyphens and spaces")) is None
    assert job_id_from_transform_job_name("someone-elses-job") is None


@given(st.from_regex(MODEL_NAME_RE, fullmatch=True), st.text(alphabet="0123456789abcdef", min_size=64, max_size=64))
def test_sagemaker_model_name_is_valid_and_keyed_by_name_and_digest(name: str, sha: str) -> None:
    spec = ModelSpec(name=name, framework="sklearn", artifact="s3://b/m.joblib", sha256=sha)
    result = sagemaker_model_name(spec)
    assert NAME_RE.match(result), result
    assert sha[:12] in result
    assert sagemaker_model_name(spec) == result
    other_sha = ("0" if sha[0] != "0" else "1") + sha[1:]
    assert sagemaker_model_name(spec.model_copy(update={"sha256": other_sha})) != result


@settings(max_examples=50)
@given(st.from_regex(MODEL_NAME_RE, fullmatch=True), st.from_regex(MODEL_NAME_RE, fullmatch=True))
def test_distinct_model_names_with_one_artifact_get_distinct_sagemaker_models(a: str, b: str) -> None:
    if a != b:
        sa = ModelSpec(name=a, framework="sklearn", artifact="s3://b/m.joblib", sha256=SHA)
        sb = ModelSpec(name=b, framework="sklearn", artifact="s3://b/m.joblib", sha256=SHA)
        assert sagemaker_model_name(sa) != sagemaker_model_name(sb)


# ---------------------------------------------------------------- submit against moto


def test_submit_sends_a_transform_job_botocore_and_moto_accept(sm: Any) -> None:
    name = SageMakerBatchClient(sm).submit(make_job(), MODEL, SETTINGS, IN_URI, OUT_URI)

    assert name == transform_job_name(JOB_ID)
    job = sm.describe_transform_job(TransformJobName=name)
    assert job["ModelName"] == sagemaker_model_name(MODEL)
    # Each line of the staged input is one {"instances": [...]} request, the endpoint's very body.
    assert job["BatchStrategy"] == "SingleRecord"
    assert job["MaxPayloadInMB"] == 6
    assert job["MaxConcurrentTransforms"] == 2
    assert job["ModelClientConfig"] == {"InvocationsTimeoutInSeconds": 600, "InvocationsMaxRetries": 3}
    assert not job.get("Environment")  # the output kind travels in each request's "output"
    assert job["TransformInput"] == {
        "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": IN_URI}},
        "ContentType": "application/json",
        "SplitType": "Line",
    }
    assert job["TransformOutput"] == {"S3OutputPath": OUT_URI, "Accept": "application/json", "AssembleWith": "Line"}
    assert job["TransformResources"] == {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1}


def test_create_request_tags_the_job_with_its_router_id() -> None:
    params = SageMakerBatchClient(None).create_request(make_job(), MODEL, SETTINGS, IN_URI, OUT_URI)
    assert {"Key": "router:job-id", "Value": JOB_ID} in params["Tags"]


def test_model_name_for_is_injectable(sm: Any) -> None:
    name = SageMakerBatchClient(sm, model_name_for=lambda m: f"custom-{m.name}").submit(make_job(), MODEL, SETTINGS, IN_URI, OUT_URI)
    assert sm.describe_transform_job(TransformJobName=name)["ModelName"] == "custom-iris"


def test_repeat_submit_adopts_the_existing_job_instead_of_creating_another(sm: Any) -> None:
    client = SageMakerBatchClient(sm)
    first = client.submit(make_job(), MODEL, SETTINGS, IN_URI, OUT_URI)
    # A second attempt with different settings: a new CreateTransformJob would show them.
    bigger = SETTINGS.model_copy(update={"instance_count": 3})
    second = client.submit(make_job(), MODEL, bigger, IN_URI, OUT_URI)

    assert second == first
    assert [j["TransformJobName"] for j in sm.list_transform_jobs()["TransformJobSummaries"]] == [first]
    assert sm.describe_transform_job(TransformJobName=first)["TransformResources"]["InstanceCount"] == 1


def test_submit_refuses_non_s3_locations(sm: Any) -> None:
    with pytest.raises(InvalidRequest):
        SageMakerBatchClient(sm).submit(make_job(), MODEL, SETTINGS, "file:///tmp/in.jsonl", OUT_URI)


def test_describe_reports_state_and_none_when_missing(sm: Any) -> None:
    client = SageMakerBatchClient(sm)
    name = client.submit(make_job(), MODEL, SETTINGS, IN_URI, OUT_URI)
    state = client.describe(name)
    assert state is not None
    assert (state.name, state.status, state.failure_reason) == (name, "Completed", None)  # moto completes at once
    assert client.describe("router-job-missing") is None


# ---------------------------------------------------------------- submit races and errors (Stubber)


def test_submit_adopts_when_create_races_another_submitter() -> None:
    client, stub = stubbed()
    name = transform_job_name(JOB_ID)
    stub.add_client_error("describe_transform_job", *NOT_FOUND)
    stub.add_client_error(
        "create_transform_job",
        "ResourceInUse",
        f"Transform job names must be unique within an AWS account and region, and a transform job with this name already exists ({name})",
    )
    stub.add_response("describe_transform_job", described("InProgress", name), {"TransformJobName": name})
    with stub:
        assert SageMakerBatchClient(client).submit(make_job(), MODEL, SETTINGS, IN_URI, OUT_URI) == name
        stub.assert_no_pending_responses()


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("ThrottlingException", 400, Throttled),
        ("ResourceLimitExceeded", 400, Throttled),
        ("InternalFailure", 500, BackendUnavailable),
        ("ServiceUnavailable", 503, BackendUnavailable),
        ("ValidationException", 400, BackendError),  # e.g. the SageMaker Model does not exist
        ("AccessDeniedException", 400, BackendError),
    ],
)
def test_create_errors_map_to_router_errors(code: str, status: int, expected: type[Exception]) -> None:
    client, stub = stubbed()
    stub.add_client_error("describe_transform_job", *NOT_FOUND)
    stub.add_client_error("create_transform_job", code, "nope", http_status_code=status)
    with stub, pytest.raises(expected) as info:
        SageMakerBatchClient(client).submit(make_job(), MODEL, SETTINGS, IN_URI, OUT_URI)
    assert info.value.details["aws_error"] == code  # type: ignore[attr-defined]


def test_describe_throttled_is_not_mistaken_for_missing() -> None:
    client, stub = stubbed()
    stub.add_client_error("describe_transform_job", "ThrottlingException", "Rate exceeded")
    with stub, pytest.raises(Throttled):
        SageMakerBatchClient(client).describe("router-job-x")


# ---------------------------------------------------------------- stop (moto has no StopTransformJob)


def test_stop_sends_stop_transform_job() -> None:
    client, stub = stubbed()
    stub.add_response("stop_transform_job", {}, {"TransformJobName": "router-job-x"})
    with stub:
        SageMakerBatchClient(client).stop("router-job-x")
        stub.assert_no_pending_responses()


def test_stop_is_idempotent_for_missing_and_finished_jobs() -> None:
    client, stub = stubbed()
    stub.add_client_error("stop_transform_job", "ResourceNotFound", "no such job")
    stub.add_client_error("stop_transform_job", "ValidationException", "Could not find job router-job-x")
    stub.add_client_error("stop_transform_job", "ValidationException", "Job router-job-x cannot be stopped: it is Completed")
    stub.add_response("describe_transform_job", described("Completed"))
    stub.add_client_error("stop_transform_job", "ValidationException", "Job router-job-x is already Stopping")
    stub.add_response("describe_transform_job", described("Stopping"))
    batch = SageMakerBatchClient(client)
    with stub:
        for _ in range(4):
            batch.stop("router-job-x")
        stub.assert_no_pending_responses()


def test_stop_refused_for_a_running_job_is_an_error() -> None:
    client, stub = stubbed()
    stub.add_client_error("stop_transform_job", "ValidationException", "something else is wrong")
    stub.add_response("describe_transform_job", described("InProgress"))
    with stub, pytest.raises(BackendError):
        SageMakerBatchClient(client).stop("router-job-x")


# ---------------------------------------------------------------- output assembly


class MemoryStore:
    """An in-memory ObjectStore (the parts assemble_output uses)."""

    def __init__(self, objects: dict[str, bytes] | None = None) -> None:
        self.objects = dict(objects or {})
        self.content_types: dict[str, str] = {}

    def get_bytes(self, uri: str) -> bytes:
        return self.objects[uri]

    def put_bytes(self, uri: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self.objects[uri] = data
        self.content_types[uri] = content_type

    def open_read(self, uri: str) -> BinaryIO:
        return io.BytesIO(self.objects[uri])

    def exists(self, uri: str) -> bool:
        return uri in self.objects

    def list_uris(self, prefix_uri: str) -> Iterator[str]:
        return iter(sorted(u for u in self.objects if u.startswith(prefix_uri)))

    def fetch_to(self, uri: str, path: str) -> None:
        raise NotImplementedError

    def presign_get(self, uri: str, expires_s: int) -> str:
        raise NotImplementedError

    def presign_put(self, uri: str, expires_s: int, content_type: str) -> str:
        raise NotImplementedError


class StreamingStore(MemoryStore):
    """Adds open_write, published only when the block exits cleanly."""

    def __init__(self, objects: dict[str, bytes] | None = None) -> None:
        super().__init__(objects)
        self.streamed: list[str] = []

    @contextmanager
    def open_write(self, uri: str, content_type: str = "application/octet-stream") -> Iterator[BinaryIO]:
        buf = io.BytesIO()
        yield buf
        self.objects[uri] = buf.getvalue()
        self.content_types[uri] = content_type
        self.streamed.append(uri)


PARTS = {
    "s3://b/out/b.jsonl.out": b'{"p": 3}\n{"p": 4}',  # AssembleWith=Line may omit the last newline
    "s3://b/out/a.jsonl.out": b'{"p": 1}\n{"p": 2}\n',
    "s3://b/out/sub/c.jsonl.out": b'{"p": 5}\n',
}


@pytest.mark.parametrize("store_type", [MemoryStore, StreamingStore])
def test_assemble_output_concatenates_parts_in_input_order(store_type: type[MemoryStore]) -> None:
    store = store_type(PARTS)
    lines = assemble_output(store, "s3://b/out/", ["a.jsonl", "b.jsonl", "sub/c.jsonl"], "s3://b/result.jsonl")
    assert lines == 5
    assert store.objects["s3://b/result.jsonl"] == b'{"p": 1}\n{"p": 2}\n{"p": 3}\n{"p": 4}\n{"p": 5}\n'
    assert store.content_types["s3://b/result.jsonl"] == "application/jsonlines"


def test_assemble_output_streams_through_open_write_when_the_store_has_it() -> None:
    store = StreamingStore(PARTS)
    assemble_output(store, "s3://b/out", ["b.jsonl", "a.jsonl"], "s3://b/result.jsonl")
    assert store.streamed == ["s3://b/result.jsonl"]
    assert store.objects["s3://b/result.jsonl"].startswith(b'{"p": 3}\n{"p": 4}\n{"p": 1}')


def test_assemble_output_fails_loudly_when_a_part_is_missing() -> None:
    store = MemoryStore(PARTS)
    with pytest.raises(BackendError) as info:
        assemble_output(store, "s3://b/out/", ["a.jsonl", "gone.jsonl"], "s3://b/result.jsonl")
    assert info.value.details["missing"] == ["s3://b/out/gone.jsonl.out"]
    assert "s3://b/result.jsonl" not in store.objects


# ---------------------------------------------------------------- EventBridge events


def aws_event(**detail: Any) -> dict[str, Any]:
    """The documented shape (EventBridge "SageMaker Transform Job State Change")."""
    return {
        "version": "0",
        "id": "844e2571-85d4-695f-b930-0153b71dcb42",
        "detail-type": "SageMaker Transform Job State Change",
        "source": "aws.sagemaker",
        "account": "123456789012",
        "time": "2026-10-06T12:26:13Z",
        "region": "us-east-1",
        "resources": ["arn:aws:sagemaker:us-east-1:123456789012:transform-job/router-job-x"],
        "detail": {
            "TransformJobName": "router-job-x",
            "TransformJobArn": "arn:aws:sagemaker:us-east-1:123456789012:transform-job/router-job-x",
            "ModelName": "router-iris-3f1caaaaaaaa",
            "CreationTime": 1538828791000,
            "Tags": {},
            **detail,
        },
    }


def test_parse_completed_event() -> None:
    state = parse_state_change_event(aws_event(TransformJobStatus="Completed"))
    assert (state.name, state.status, state.failure_reason) == ("router-job-x", "Completed", None)


def test_parse_failed_event_keeps_the_reason() -> None:
    state = parse_state_change_event(aws_event(TransformJobStatus="Failed", FailureReason="ClientError: bad input"))
    assert (state.status, state.failure_reason) == ("Failed", "ClientError: bad input")


@pytest.mark.parametrize(
    "mutate",
    [
        lambda e: e.update(source="aws.s3"),
        lambda e: e.update({"detail-type": "SageMaker Training Job State Change"}),
        lambda e: e.pop("detail"),
        lambda e: e.update(detail="not an object"),
        lambda e: e["detail"].pop("TransformJobName"),
        lambda e: e["detail"].update(TransformJobName="bad name!"),
        lambda e: e["detail"].update(TransformJobStatus="Exploded"),
        lambda e: e["detail"].pop("TransformJobStatus"),
        lambda e: e["detail"].update(FailureReason=42),
    ],
)
def test_malformed_events_are_invalid_requests(mutate: Any) -> None:
    event = aws_event(TransformJobStatus="Completed")
    mutate(event)
    with pytest.raises(InvalidRequest):
        parse_state_change_event(event)
