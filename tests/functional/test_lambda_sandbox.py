"""The deployment package as Lambda runs it: `router package` builds it (once per run, reused
while its inputs are unchanged), and the runtime's exact Python imports it in a Lambda-like
sandbox (tests/lambda_sandbox.py: only the package and boto3 on sys.path, everything read-only
but /tmp, memory capped at the function's MemorySize). The real handlers answer API Gateway REST
events for a scikit-learn pipeline and a forest and run a lambda-job, against moto on loopback;
every prediction must equal the dev environment's. docs/operations.md quotes this build."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import joblib
import numpy as np
import pytest
from cfnlint.decode import cfn_yaml
from moto.server import ThreadedMotoServer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from router.adapters.dynamodb_schema import create_table
from router.cli.package_cmd import DEFAULT_RUNTIME, UNZIPPED_LIMIT
from tests.lambda_sandbox import (
    ROOT,
    SANDBOX_DIR,
    Function,
    SandboxUnavailable,
    boto3_dir,
    build_package,
    check_isolation_tools,
    invoke,
    runtime_python,
)

pytestmark = pytest.mark.sandbox

ARN = "arn:aws:iam::123456789012:user/alice"
REGION = "us-east-1"
TEMPLATE = ROOT / "infra" / "template.yaml"


def _template_function(logical_id: str, name: str) -> Function:
    """Handler, memory and timeout as the template deploys them (parameter defaults)."""
    tpl = json.loads(json.dumps(cfn_yaml.load(str(TEMPLATE))))
    props = tpl["Resources"][logical_id]["Properties"]

    def value(v: Any) -> int:
        return int(tpl["Parameters"][v["Ref"]]["Default"]) if isinstance(v, dict) else int(v)

    memory = props.get("MemorySize", tpl["Globals"]["Function"]["MemorySize"])
    eph = props.get("EphemeralStorage", {}).get("Size", 512)
    return Function(name, props["Handler"], value(memory), value(props["Timeout"]), value(eph))


API = _template_function("ApiFunction", "router-api")
WORKER = _template_function("WorkerFunction", "router-worker")


@pytest.fixture(scope="session")
def sandbox() -> dict[str, Any]:
    try:
        python = runtime_python(DEFAULT_RUNTIME)
        check_isolation_tools()
    except SandboxUnavailable as e:
        if os.environ.get("CI"):
            pytest.fail(f"the Lambda sandbox cannot run in CI: {e}")
        pytest.skip(str(e))
    package = build_package(SANDBOX_DIR / "lambda")
    return {"python": python, "package": package, "task": Path(package["out"]), "boto3": boto3_dir(SANDBOX_DIR)}


@pytest.fixture(scope="session")
def onnx_package(sandbox: dict[str, Any]) -> dict[str, Any]:
    """`router package --with-onnx`: the container image's pinned set (infra/Dockerfile)."""
    return build_package(SANDBOX_DIR / "lambda-onnx", "--with-onnx")


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(300, 4))
    y = ((x[:, 0] - 0.5 * x[:, 2] + 0.3 * rng.normal(size=300)) > 0).astype(int)
    return x, y


@pytest.fixture(scope="module")
def deployed(moto_url: str) -> dict[str, Any]:
    """The stack's AWS side in moto: buckets, the job table, the worker function, models, config."""
    kw: dict[str, Any] = {"region_name": REGION, "endpoint_url": moto_url}
    s3 = boto3.client("s3", **kw)
    for bucket in ("router-art", "router-jobs"):
        s3.create_bucket(Bucket=bucket)
    create_table(boto3.client("dynamodb", **kw), "router-jobs")
    # The worker exists (the API invokes it asynchronously); moto records the invoke, runs nothing.
    urllib.request.urlopen(urllib.request.Request(f"{moto_url}/moto-api/config", data=b'{"lambda": {"use_docker": false}}', method="POST"))
    role = boto3.client("iam", **kw).create_role(RoleName="worker", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("index.py", "def handler(e, c): return e\n")
    boto3.client("lambda", **kw).create_function(
        FunctionName=WORKER.name, Runtime=DEFAULT_RUNTIME, Role=role, Handler="index.handler", Code={"ZipFile": zipped.getvalue()}
    )
    x, y = _data()
    models = {
        "pipeline": make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y),
        "forest": RandomForestClassifier(n_estimators=60, max_depth=6, random_state=0).fit(x, y),
    }
    from skl2onnx import to_onnx

    onnx_forest = to_onnx(models["forest"], x[:1].astype(np.float32), options={"zipmap": False}, target_opset=17)
    entries = []
    for name, model in [*models.items(), ("forest-onnx", onnx_forest)]:
        framework, suffix = ("onnx", "onnx") if name.endswith("onnx") else ("sklearn", "joblib")
        buf = io.BytesIO()
        if framework == "onnx":
            buf.write(model.SerializeToString())
        else:
            joblib.dump(model, buf)
        s3.put_object(Bucket="router-art", Key=f"models/{name}.{suffix}", Body=buf.getvalue())
        entries.append(
            f"  - name: {name}\n    framework: {framework}\n    artifact: s3://router-art/models/{name}.{suffix}\n"
            f"    sha256: {hashlib.sha256(buf.getvalue()).hexdigest()}\n    size_bytes: {len(buf.getvalue())}\n"
            "    profile: {load_s: 0.5, per_record_ms: 0.05, memory_mb: 300}\n"
        )
    config = (
        "version: 1\nstorage: {artifacts: s3://router-art/models, jobs: s3://router-jobs/jobs, job_table: dynamodb://router-jobs}\n"
        "models:\n" + "".join(entries)
    )
    s3.put_object(Bucket="router-art", Key="config/router.yaml", Body=config.encode())
    return {"models": models, "x": x, "onnx": onnx_forest}


def _env(moto_url: str) -> dict[str, str]:
    """The function environment the template sets, plus credentials and the moto endpoint."""
    return {
        "ROUTER_CONFIG": "s3://router-art/config/router.yaml",
        "ROUTER_RUNTIME": "aws",
        "ROUTER_WORKER_FUNCTION": WORKER.name,
        "POWERTOOLS_SERVICE_NAME": "router",
        "POWERTOOLS_METRICS_NAMESPACE": "InferenceRouter",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }


def rest_event(method: str, path: str, body: Any = None, request_id: str = "req-1") -> dict[str, Any]:
    """An API Gateway REST proxy event as the template's RouterApi sends it (IAM auth)."""
    return {
        "resource": "/v1/{proxy+}", "path": path, "httpMethod": method,
        "headers": {"Content-Type": "application/json"} if body is not None else {},
        "multiValueHeaders": {"Content-Type": ["application/json"]} if body is not None else {},
        "queryStringParameters": None, "multiValueQueryStringParameters": None,
        "pathParameters": {"proxy": path.removeprefix("/v1/")}, "stageVariables": None,
        "isBase64Encoded": False, "body": None if body is None else json.dumps(body),
        "requestContext": {
            "requestId": request_id, "stage": "prod", "httpMethod": method, "path": f"/prod{path}",
            "resourcePath": "/v1/{proxy+}", "identity": {"userArn": ARN, "sourceIp": "127.0.0.1"},
        },
    }


def header(resp: dict[str, Any], name: str) -> str | None:
    single = {k.lower(): v for k, v in (resp.get("headers") or {}).items()}
    multi = {k.lower(): v for k, v in (resp.get("multiValueHeaders") or {}).items()}
    return single.get(name.lower()) or (multi.get(name.lower()) or [None])[0]


def body_of(resp: dict[str, Any]) -> Any:
    return json.loads(resp["body"])


# ---------------------------------------------------------------- the package


def test_the_package_fits_lambda_and_holds_the_pinned_versions(sandbox: dict[str, Any]) -> None:
    pkg = sandbox["package"]
    assert pkg["runtime"] == DEFAULT_RUNTIME
    assert pkg["unzipped_bytes"] <= UNZIPPED_LIMIT and pkg["within_limits"]
    assert set(pkg["versions"]) >= {"numpy", "scikit-learn", "scipy"}
    assert "boto3" not in pkg["versions"]  # the runtime provides it
    task = sandbox["task"]
    assert (task / "router" / "handlers" / "api.py").is_file()
    # Bytecode for the runtime's Python: /var/task is read-only, a package without it compiles on every cold start.
    version = pkg["runtime"].removeprefix("python")
    assert pkg["bytecode"] == version
    tag = "cpython-" + version.replace(".", "")
    for folder, module in (("router/handlers", "api"), ("router", "kernels"), ("sklearn/ensemble", "_forest"), ("numpy", "__init__")):
        assert (task / folder / "__pycache__" / f"{module}.{tag}.pyc").is_file(), (folder, module)
    assert not list(task.glob("boto3")) and not list(task.glob("botocore"))


def test_the_operations_doc_quotes_this_build(sandbox: dict[str, Any]) -> None:
    doc = (ROOT / "docs" / "operations.md").read_text()
    versions = sandbox["package"]["versions"]
    line = "versions: " + ", ".join(f"{k} {v}" for k, v in versions.items())
    assert line in doc, f"docs/operations.md should quote `router package`'s output: {line}"
    mb = sandbox["package"]["unzipped_bytes"] / (1024 * 1024)
    quoted = re.search(r"unzipped\s+([\d.]+) MB\s+of\s+250\.0 MB", doc)
    assert quoted is not None and abs(float(quoted.group(1)) - mb) < 5, (quoted, mb)


# ---------------------------------------------------------------- the handlers in the sandbox


def test_the_api_and_worker_handlers_serve_and_run_a_job_in_the_sandbox(
    sandbox: dict[str, Any], deployed: dict[str, Any], moto_url: str
) -> None:
    x = deployed["x"]
    models = deployed["models"]
    rows = x[:25].tolist()
    job_rows = x[25:225].tolist()
    env = _env(moto_url)
    work = SANDBOX_DIR / "run"
    api = invoke(sandbox["python"], sandbox["task"], sandbox["boto3"], API, [
        rest_event("GET", "/v1/health"),
        rest_event("POST", "/v1/models/pipeline/predict", {"instances": rows}),
        rest_event("POST", "/v1/models/pipeline/predict", {"instances": rows, "output": "proba"}),
        rest_event("POST", "/v1/models/forest/predict", {"instances": rows}),
        rest_event("POST", "/v1/models/forest/jobs", {"instances": job_rows}),
    ], env, work)

    # The sandbox held: read-only task root, writable /tmp, nothing imported from outside it.
    assert api["task_root_read_only"] and api["tmp_writable"]
    allowed = (str(sandbox["task"]), str(sandbox["boto3"]), api["stdlib"])
    outside = {m: p for m, p in api["origins"].items() if not p.startswith(allowed) and m not in ("__main__", "__mp_main__")}
    assert outside == {}
    assert api["origins"]["sklearn"].startswith(str(sandbox["task"]))
    assert api["origins"]["boto3"].startswith(str(sandbox["boto3"]))

    health, pipe, proba, forest, job = api["responses"]
    assert health["statusCode"] == 200, health["body"]
    for resp in (pipe, proba, forest):
        assert resp["statusCode"] == 200, resp["body"]
        assert header(resp, "X-Router-Route") == "inline"
    assert body_of(pipe)["predictions"] == models["pipeline"].predict(np.array(rows)).tolist()
    np.testing.assert_allclose(body_of(proba)["predictions"], models["pipeline"].predict_proba(np.array(rows)), rtol=1e-9, atol=1e-12)
    assert body_of(forest)["predictions"] == models["forest"].predict(np.array(rows)).tolist()
    assert job["statusCode"] == 202, job["body"]
    job_id = body_of(job)["job_id"]
    assert body_of(job)["route"] == "lambda-job"

    # The worker function runs the job it was invoked for (a separate instance, its own limits).
    worker = invoke(sandbox["python"], sandbox["task"], sandbox["boto3"], WORKER, [{"job_id": job_id}], env, work)
    assert worker["responses"] == [{"job_id": job_id, "continued": False}]

    done = invoke(sandbox["python"], sandbox["task"], sandbox["boto3"], API, [rest_event("GET", f"/v1/jobs/{job_id}")], env, work)
    status = body_of(done["responses"][0])
    assert status["status"] == "succeeded", status
    with urllib.request.urlopen(status["output"]["download_url"]) as r:
        lines = [json.loads(line) for line in r.read().decode().splitlines() if line.strip()]
    assert lines == models["forest"].predict(np.array(job_rows)).tolist()


def test_the_container_images_set_runs_onnx_models_in_the_sandbox(
    sandbox: dict[str, Any], onnx_package: dict[str, Any], deployed: dict[str, Any], moto_url: str
) -> None:
    # The set infra/Dockerfile installs is over the zip limit (onnxruntime next to scipy and
    # scikit-learn): that is what the image is for. Its imports and predictions are checked here.
    import onnxruntime as ort

    assert onnx_package["versions"]["onnxruntime"] == ort.__version__
    rows = deployed["x"][:30].tolist()
    out = invoke(sandbox["python"], Path(onnx_package["out"]), sandbox["boto3"], API, [
        rest_event("POST", "/v1/models/forest-onnx/predict", {"instances": rows}),
        rest_event("POST", "/v1/models/forest-onnx/predict", {"instances": rows, "output": "proba"}),
        rest_event("POST", "/v1/models/pipeline/predict", {"instances": rows}),
    ], _env(moto_url), SANDBOX_DIR / "run")
    assert out["origins"]["onnxruntime"].startswith(onnx_package["out"])
    label, proba, pipe = (body_of(r) for r in out["responses"])
    session = ort.InferenceSession(deployed["onnx"].SerializeToString(), providers=["CPUExecutionProvider"])
    want_label, want_proba = session.run(None, {session.get_inputs()[0].name: np.array(rows, dtype=np.float32)})
    assert label["predictions"] == want_label.tolist()
    np.testing.assert_allclose(proba["predictions"], want_proba, rtol=1e-6)
    assert pipe["predictions"] == deployed["models"]["pipeline"].predict(np.array(rows)).tolist()


def test_router_package_refuses_a_model_the_package_cannot_load(sandbox: dict[str, Any], tmp_path: Path) -> None:
    from tests.functional.test_model_versions import MODELS, NEWER, saved_by

    path = saved_by(tmp_path / "churn.joblib", MODELS["forest"], NEWER)
    cfg = tmp_path / "router.yaml"
    cfg.write_text(
        f"version: 1\nmodels:\n  - name: churn\n    framework: sklearn\n    artifact: file://{path}\n"
        f"    sha256: {hashlib.sha256(path.read_bytes()).hexdigest()}\n"
    )
    run = subprocess.run(
        [sys.executable, "-m", "router.cli", "package", "--out", str(sandbox["task"]), "--config", str(cfg)],
        capture_output=True, text=True, check=False, cwd=ROOT, timeout=1800,
    )
    packaged = sandbox["package"]["versions"]["scikit-learn"]
    assert run.returncode == 2, run.stderr
    assert "(up to date, reused)" in run.stdout
    assert f"model 'churn' was saved with scikit-learn {NEWER}, but the Lambda package has scikit-learn {packaged}" in run.stderr
