"""Who owns a job on AWS: the IAM principal behind the SigV4 caller, from API Gateway REST proxy
events shaped as AWS sends them (requestContext.identity with userArn, caller, user, accountId).
A new session of the same role sees the role's jobs; other roles, users and IAM Identity Center
people do not."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LinearRegression

from router.auth import IamAuth, principal
from router.bootstrap import Runtime, build_local
from router.config import load_config
from router.handlers.api import make_handler
from router.local.server import LocalContext

ACCOUNT = "123456789012"


def role_identity(role: str, session: str, role_id: str = "AROAEXAMPLEROLEID01") -> dict[str, Any]:
    """requestContext.identity of a REST API call signed with an assumed role's temporary credentials."""
    return {
        "cognitoIdentityPoolId": None, "cognitoIdentityId": None, "cognitoAuthenticationType": None,
        "cognitoAuthenticationProvider": None, "principalOrgId": "o-exampleorgid", "accountId": ACCOUNT,
        "caller": f"{role_id}:{session}", "user": f"{role_id}:{session}", "accessKey": "ASIAEXAMPLEKEY000001",
        "sourceIp": "203.0.113.9", "userAgent": "Boto3/1.35.0", "apiKey": None, "apiKeyId": None,
        "userArn": f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{session}",
    }


def user_identity(name: str) -> dict[str, Any]:
    return {
        "cognitoIdentityPoolId": None, "cognitoIdentityId": None, "cognitoAuthenticationType": None,
        "cognitoAuthenticationProvider": None, "principalOrgId": None, "accountId": ACCOUNT,
        "caller": "AIDAEXAMPLEUSERID001", "user": "AIDAEXAMPLEUSERID001", "accessKey": "AKIAEXAMPLEKEY000001",
        "sourceIp": "203.0.113.9", "userAgent": "aws-cli/2.17", "apiKey": None, "apiKeyId": None,
        "userArn": f"arn:aws:iam::{ACCOUNT}:user/{name}",
    }


def event(method: str, path: str, identity: dict[str, Any], body: Any = None) -> dict[str, Any]:
    hdrs = {"Content-Type": "application/json", "Host": "abc.execute-api.us-east-1.amazonaws.com",
            "X-Amz-Date": "20261201T100000Z", "X-Amz-Security-Token": "IQoJb3JpZ2luX2VjEXAMPLE"}
    rid = "req-" + hashlib.md5(f"{method}{path}{identity['userArn']}".encode()).hexdigest()[:8]
    return {
        "resource": "/v1/{proxy+}", "path": path, "httpMethod": method, "headers": hdrs,
        "multiValueHeaders": {k: [v] for k, v in hdrs.items()}, "queryStringParameters": None,
        "multiValueQueryStringParameters": None, "pathParameters": {"proxy": path.removeprefix("/v1/")},
        "stageVariables": None,
        "requestContext": {
            "resourceId": "abc123", "resourcePath": "/v1/{proxy+}", "httpMethod": method, "extendedRequestId": "eXaMpLe=",
            "requestTime": "01/Dec/2026:10:00:00 +0000", "path": f"/prod{path}", "accountId": ACCOUNT, "protocol": "HTTP/1.1",
            "stage": "prod", "domainPrefix": "abc", "requestTimeEpoch": 1796119200000, "requestId": rid,
            "identity": identity, "domainName": "abc.execute-api.us-east-1.amazonaws.com", "apiId": "abc",
        },
        "body": None if body is None else json.dumps(body), "isBase64Encoded": False,
    }


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    d = tmp_path_factory.mktemp("identity")
    x = np.random.default_rng(0).normal(size=(40, 2))
    joblib.dump(LinearRegression().fit(x, x.sum(axis=1)), d / "reg.joblib")
    sha = hashlib.sha256((d / "reg.joblib").read_bytes()).hexdigest()
    (d / "op.yaml").write_text(f"models:\n  - {{name: reg, framework: sklearn, artifact: file://./reg.joblib, sha256: {sha}}}\n")
    rt: Runtime = build_local(load_config(d / "op.yaml"), public_base_url="http://127.0.0.1:9")
    rt.auth = IamAuth()  # as on AWS
    handler = make_handler(rt)

    def call(method: str, path: str, identity: dict[str, Any], body: Any = None) -> tuple[int, Any]:
        ev = event(method, path, identity, body)
        resp = handler(ev, LocalContext(ev["requestContext"]["requestId"], 29))
        return int(resp["statusCode"]), json.loads(resp["body"]) if resp.get("body") else None

    yield call
    rt.close()


def test_a_new_session_of_the_same_role_owns_the_roles_jobs(api: Any) -> None:
    status, job = api("POST", "/v1/models/reg/jobs", role_identity("etl-runner", "botocore-session-1764583200"), {"instances": [[1, 2]]})
    assert status == 202, job
    later = role_identity("etl-runner", "botocore-session-1764590000")  # the credentials were refreshed
    status, seen = api("GET", f"/v1/jobs/{job['job_id']}", later)
    assert status == 200 and seen["job_id"] == job["job_id"]
    status, listed = api("GET", "/v1/jobs", later)
    assert job["job_id"] in [j["job_id"] for j in listed["jobs"]]
    status, _ = api("DELETE", f"/v1/jobs/{job['job_id']}", later)
    assert status in (202, 409)  # cancelled, or already finished: either way the job is this owner's (not 404)
    # Another role, a user, and a role of the same name in another account are other owners.
    for other in (role_identity("etl-other", "botocore-session-1764583200", "AROAEXAMPLEROLEID02"), user_identity("etl-runner"),
                  {**role_identity("etl-runner", "s"), "accountId": "210987654321",
                   "userArn": "arn:aws:sts::210987654321:assumed-role/etl-runner/s"}):
        status, body = api("GET", f"/v1/jobs/{job['job_id']}", other)
        assert status == 404 and body["error"]["code"] == "job_not_found"


def test_identity_center_people_sharing_a_permission_set_stay_apart(api: Any) -> None:
    role = "AWSReservedSSO_DataScientist_0123456789abcdef"
    status, job = api("POST", "/v1/models/reg/jobs", role_identity(role, "alice@example.com"), {"instances": [[1, 2]]})
    assert status == 202
    assert api("GET", f"/v1/jobs/{job['job_id']}", role_identity(role, "alice@example.com"))[0] == 200
    assert api("GET", f"/v1/jobs/{job['job_id']}", role_identity(role, "bob@example.com"))[0] == 404


def test_principal_mapping() -> None:
    assert principal(f"arn:aws:sts::{ACCOUNT}:assumed-role/r/s") == f"arn:aws:sts::{ACCOUNT}:assumed-role/r"
    assert principal(f"arn:aws-us-gov:sts::{ACCOUNT}:assumed-role/r/i-0abc/extra") == f"arn:aws-us-gov:sts::{ACCOUNT}:assumed-role/r"
    for unchanged in (f"arn:aws:iam::{ACCOUNT}:user/path/alice", f"arn:aws:iam::{ACCOUNT}:root",
                      f"arn:aws:sts::{ACCOUNT}:federated-user/bob", f"arn:aws:sts::{ACCOUNT}:assumed-role/AWSReservedSSO_X_1/al@example.com"):
        assert principal(unchanged) == unchanged
    # API keys (the local runtime) and authorizer principals are untouched.
    assert IamAuth().owner({"requestContext": {"authorizer": {"principalId": "arn:aws:sts::1:assumed-role/r/s"}}}) == "arn:aws:sts::1:assumed-role/r/s"


def test_the_documented_mapping_is_in_api_md() -> None:
    text = (Path(__file__).parents[2] / "docs" / "api.md").read_text()
    assert "assumed-role/ROLE/SESSION" in text and "AWSReservedSSO_" in text
