"""A job's `input.uri` is confined to what its owner may read: the caller's own uploads, or an
s3:// object outside the router's own buckets. Through the real API handler on the local runtime
(file store, SQLite): `..` paths, symlinks out of the upload folder and other owners' uploads are
refused with one 422 that says nothing about what the URI names; on S3, the artifacts bucket, the
config's bucket and the job store are refused the same way."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from botocore.stub import Stubber
from sklearn.linear_model import LinearRegression

from router.adapters.s3_store import S3ObjectStore
from router.adapters.sqlite_jobs import SqliteJobStore
from router.bootstrap import Runtime, build_local
from router.config import RouterConfig, load_config
from router.domain import OutputKind
from router.errors import InvalidInput
from router.handlers.api import make_handler
from router.jobs_service import JobsService
from router.local.server import LocalContext
from router.service import RouterService
from tests.fakes import FakeClock, FakeQueue, FakeRunner, MemoryObjectStore

ALICE, BOB = "alice-key-0123456789", "bob-key-0123456789ab"
REFUSED = "input.uri must be one of your own uploads (POST /v1/uploads) or an s3:// object outside the router's own buckets"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Runtime, Any, Path]]:
    d = tmp_path_factory.mktemp("confine")
    x = np.random.default_rng(0).normal(size=(40, 2))
    joblib.dump(LinearRegression().fit(x, x.sum(axis=1)), d / "reg.joblib")
    sha = hashlib.sha256((d / "reg.joblib").read_bytes()).hexdigest()
    (d / "op.yaml").write_text(
        f"auth: {{api_keys: {{{ALICE}: alice, {BOB}: bob}}}}\n"
        f"models:\n  - {{name: reg, framework: sklearn, artifact: file://./reg.joblib, sha256: {sha}}}\n"
    )
    (d / "secret.json").write_text('{"root_password": "hunter2"}\n')
    rt = build_local(load_config(d / "op.yaml"), public_base_url="http://127.0.0.1:9")
    yield rt, make_handler(rt), d
    rt.close()


def request(handler: Any, method: str, path: str, body: Any = None, key: str = ALICE) -> tuple[int, Any, dict[str, Any]]:
    rid = "req-" + hashlib.md5(f"{method}{path}{body}".encode()).hexdigest()[:8]
    raw = None if body is None else json.dumps(body)
    hdrs = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    ev = {
        "resource": "/v1/{proxy+}", "path": path, "httpMethod": method, "headers": hdrs,
        "multiValueHeaders": {k: [v] for k, v in hdrs.items()}, "queryStringParameters": None,
        "multiValueQueryStringParameters": None, "pathParameters": {"proxy": path.removeprefix("/v1/")},
        "stageVariables": None, "requestContext": {"requestId": rid, "path": path, "httpMethod": method, "identity": {}},
        "body": raw, "isBase64Encoded": False,
    }
    resp = handler(ev, LocalContext(rid, 29))
    text = resp.get("body") or ""
    data = base64.b64decode(text) if resp.get("isBase64Encoded") else text
    headers = {k: v[-1] for k, v in (resp.get("multiValueHeaders") or {}).items()} | (resp.get("headers") or {})
    return int(resp["statusCode"]), json.loads(data) if data else None, headers


def submit(handler: Any, uri: str, key: str = ALICE) -> tuple[int, Any]:
    status, body, _ = request(handler, "POST", "/v1/models/reg/jobs", {"input": {"uri": uri}}, key)
    return status, body


def upload(rt: Runtime, key_owner: str, data: bytes) -> str:
    assert rt.jobs is not None
    slot = rt.jobs.upload_slot(key_owner)
    rt.objects.put_bytes(slot["input_uri"], data)
    return str(slot["input_uri"])


def assert_refused(status: int, body: Any) -> None:
    assert status == 422, body
    err = body["error"]
    assert err["code"] == "invalid_input" and err["message"] == REFUSED and err["details"] == {}, err


def test_the_reported_traversal_is_refused_and_reveals_nothing(site: tuple[Runtime, Any, Path]) -> None:
    rt, handler, d = site
    root = rt.config.storage.jobs.rstrip("/")
    before = len(request(handler, "GET", "/v1/jobs")[1]["jobs"])
    replies = []
    # Readable files (system, the config with the API keys, the signing key, the job table, a JSON
    # file whose keys used to show in the error) and a missing one must all get the same answer.
    for target in ("etc/passwd", f"{d}/op.yaml".lstrip("/"), f"{d}/.router/signing.key".lstrip("/"),
                   f"{d}/.router/jobs.db".lstrip("/"), f"{d}/secret.json".lstrip("/"), "etc/no-such-file-here"):
        status, body = submit(handler, f"{root}/uploads/alice/../../../../../../../../../../{target}")
        assert_refused(status, body)
        replies.append({k: v for k, v in body["error"].items() if k != "request_id"})
    assert all(r == replies[0] for r in replies)
    # From inside alice's real upload folder too, and with "./" and "//" spellings.
    own = upload(rt, "alice", b"[1, 2]\n")
    folder = own.rsplit("/", 2)[0]
    for uri in (f"{folder}/../../../../../../../../../../etc/passwd", f"{folder}/./x/../../bob/input.jsonl",
                own.replace("/uploads/", "/uploads/./"), f"file:///{d}/op.yaml"):
        assert_refused(*submit(handler, uri))
    assert len(request(handler, "GET", "/v1/jobs")[1]["jobs"]) == before  # nothing was created


def test_a_symlink_out_of_the_upload_folder_is_refused(site: tuple[Runtime, Any, Path]) -> None:
    rt, handler, d = site
    assert rt.jobs is not None
    slot = rt.jobs.upload_slot("alice")
    path = Path(slot["input_uri"][len("file://"):])
    path.parent.mkdir(parents=True)
    path.symlink_to(d / "secret.json")
    assert_refused(*submit(handler, slot["input_uri"]))
    # A linked folder (the upload's own folder pointing elsewhere) is refused as well.
    outside = d / "outside"
    outside.mkdir()
    (outside / "input.jsonl").write_text("[1, 2]\n")
    slot = rt.jobs.upload_slot("alice")
    folder = Path(slot["input_uri"][len("file://"):]).parent
    folder.symlink_to(outside, target_is_directory=True)
    assert_refused(*submit(handler, slot["input_uri"]))
    # A link that stays inside the owner's uploads is fine (it names one of their own files).
    mine = upload(rt, "alice", b"[1, 2]\n[3, 4]\n")
    slot = rt.jobs.upload_slot("alice")
    link = Path(slot["input_uri"][len("file://"):])
    link.parent.mkdir(parents=True)
    link.symlink_to(mine[len("file://"):])
    status, body = submit(handler, slot["input_uri"])
    assert status == 202 and body["records"]["total"] == 2, body


def test_another_owners_upload_is_refused(site: tuple[Runtime, Any, Path]) -> None:
    rt, handler, _ = site
    alices = upload(rt, "alice", b"[1, 2]\n")
    assert_refused(*submit(handler, alices, key=BOB))
    assert rt.jobs is not None
    bobs_folder = rt.jobs.upload_slot("bob")["input_uri"].rsplit("/", 2)[0]
    alices_rel = alices.split("/uploads/", 1)[1]
    assert_refused(*submit(handler, f"{bobs_folder}/../{alices_rel}", key=BOB))
    status, body = submit(handler, alices)  # still alice's to use
    assert status == 202, body


def test_owners_whose_names_sanitise_alike_get_different_upload_folders(site: tuple[Runtime, Any, Path]) -> None:
    rt, _, _ = site
    assert rt.jobs is not None
    # IAM user "alice" under path /x/ and user "x_alice" are two principals; both used to map to one folder.
    a = rt.jobs.upload_slot("arn:aws:iam::123456789012:user/x/alice")["input_uri"].rsplit("/", 2)[0]
    b = rt.jobs.upload_slot("arn:aws:iam::123456789012:user/x_alice")["input_uri"].rsplit("/", 2)[0]
    assert a != b and not a.startswith(b) and not b.startswith(a)


# ---------------------------------------------------------------- S3 (the AWS runtime's storage)


def s3_service(tmp_path: Path, objects: Any) -> JobsService:
    cfg = RouterConfig.model_validate({
        "storage": {"jobs": "s3://jobs-bucket/jobs", "artifacts": "s3://artifacts-bucket/models", "job_table": "sqlite:///x.db"},
        "models": [{"name": "m", "framework": "sklearn", "artifact": "s3://artifacts-bucket/models/m.joblib", "sha256": "ab" * 32,
                    "size_bytes": 1000, "profile": {"load_s": 0.1, "per_record_ms": 1.0}}],
    })
    clock = FakeClock()
    return JobsService(cfg, service=RouterService(cfg, runner=FakeRunner()), store=SqliteJobStore(tmp_path / "j.db", clock=clock),
                       objects=objects, clock=clock, queue=FakeQueue(), private_uris=["s3://config-bucket/router/config.yaml"])


def s3_submit(svc: JobsService, uri: str, owner: str = "alice") -> Any:
    return svc.submit(owner, svc.service.model("m"), instances=None, input_uri=uri, input_format="jsonl",
                      output=OutputKind.PREDICT, idempotency_key=None)


def test_s3_inputs_may_not_name_the_routers_own_buckets(tmp_path: Path) -> None:
    objects = MemoryObjectStore()
    svc = s3_service(tmp_path, objects)
    bobs = svc.upload_slot("bob")["input_uri"]
    private = [
        "s3://artifacts-bucket/config/router.yaml",         # the template's config key
        "s3://artifacts-bucket/models/m.joblib",            # a model artifact
        "s3://config-bucket/router/config.yaml",            # wherever ROUTER_CONFIG points
        "s3://jobs-bucket/jobs/job_01ABC/output.jsonl",     # another job's output
        "s3://jobs-bucket/elsewhere.jsonl",                 # the job bucket outside the job store
        bobs,                                               # another owner's upload
        bobs.replace("/uploads/", "/uploads/alice/../"),    # '..' in a key (S3 takes it literally, others fold it)
    ]
    for uri in private:
        objects.put_bytes(uri, b'{"a": 1}\n')
        with pytest.raises(InvalidInput) as e:
            s3_submit(svc, uri)
        assert e.value.message == REFUSED and not e.value.details, uri
    mine = svc.upload_slot("alice")["input_uri"]
    objects.put_bytes(mine, b"[1, 2]\n")
    objects.put_bytes("s3://customer-data/rows.jsonl", b"[1, 2]\n[3, 4]\n")
    assert s3_submit(svc, mine)[0].records_total == 1
    assert s3_submit(svc, "s3://customer-data/rows.jsonl")[0].records_total == 2


def test_an_s3_input_the_router_may_not_read_is_422_not_503(tmp_path: Path) -> None:
    import boto3

    client = boto3.client("s3", region_name="us-east-1")
    svc = s3_service(tmp_path, S3ObjectStore(client))
    with Stubber(client) as stub:
        stub.add_client_error("head_object", service_error_code="403", http_status_code=403,
                              expected_params={"Bucket": "someone-elses", "Key": "rows.jsonl"})
        with pytest.raises(InvalidInput) as e:
            s3_submit(svc, "s3://someone-elses/rows.jsonl")
        stub.assert_no_pending_responses()
    assert "not readable" in e.value.message


def test_an_s3_input_without_any_aws_credentials_is_422_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    client = boto3.session.Session().client("s3", region_name="us-east-1")
    svc = s3_service(tmp_path, S3ObjectStore(client))
    with pytest.raises(InvalidInput) as e:
        s3_submit(svc, "s3://customer-data/rows.jsonl")
    assert "no AWS credentials" in e.value.message


def test_transform_jobs_may_not_read_the_router_config() -> None:
    from cfnlint.decode import cfn_yaml

    template = cfn_yaml.load(str(Path(__file__).parents[2] / "infra" / "template.yaml"))
    role = template["Resources"]["SageMakerExecutionRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    denied = [st for st in role if st["Effect"] == "Deny" and "s3:GetObject" in st["Action"]]
    assert [str(st["Resource"]) for st in denied] == [str({"Fn::Sub": "${ArtifactsBucket.Arn}/${ConfigKey}"})]
