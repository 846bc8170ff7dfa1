"""An operator's and a data scientist's first day: their own models (many sklearn kinds, ONNX with
and without ZipMap, a model.tar.gz from `router models package`), their own configs (docs/configuration.md's
shape, omitted sections, auth off, zero models, a wrong digest, an s3:// artifact with no AWS, a
pytorch model without torch), `router serve` as a subprocess, and plain urllib calls whose
predictions must equal the model's own predict() / predict_proba()."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import yaml

from tests.e2e.conftest import Server, wait_for

pytest.importorskip("sklearn")

KEY = "key-alice-0123456789"
BOB_KEY = "key-bob-0123456789"
ROWS = [0, 1, 50, 99, 120, 149]  # iris rows, all three classes


# ---------------------------------------------------------------- the operator's own models


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def op_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sklearn.datasets import load_iris, make_regression
    from sklearn.ensemble import GradientBoostingClassifier, IsolationForest, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.multioutput import MultiOutputClassifier, MultiOutputRegressor
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    root = tmp_path_factory.mktemp("operator")
    models = root / "models"
    models.mkdir()
    x, y = load_iris(return_X_y=True)
    labels = np.array(["setosa", "versicolor", "virginica"])[y]
    xr, yr = make_regression(n_samples=60, n_features=5, random_state=0)
    xm, ym = make_regression(n_samples=60, n_features=4, n_targets=3, random_state=0)
    y2 = np.c_[y, (x[:, 0] > 5.8).astype(int)]
    pipe = Pipeline([("scale", StandardScaler()), ("lr", LogisticRegression(max_iter=500))]).fit(x, y)
    fitted = {
        "pipe": pipe,
        "ridge": Ridge().fit(xr, yr),
        "strlab": DecisionTreeClassifier(random_state=0).fit(x, labels),
        "knn": KNeighborsClassifier().fit(x, y),
        "gb": GradientBoostingClassifier(n_estimators=10, random_state=0).fit(x, y),
        "iso": IsolationForest(n_estimators=10, random_state=0).fit(x),
        "multireg": MultiOutputRegressor(Ridge()).fit(xm, ym),
        "multiclf": MultiOutputClassifier(LogisticRegression(max_iter=500)).fit(x, y2),
        "forest2d": RandomForestClassifier(n_estimators=5, random_state=0).fit(x, y2),
    }
    for name, est in fitted.items():
        joblib.dump(est, models / f"{name}.joblib")
    np.save(root / "xr.npy", xr)
    np.save(root / "xm.npy", xm)

    if _has("skl2onnx") and _has("onnxruntime"):
        from skl2onnx import to_onnx

        sample = x[:1].astype(np.float32)
        (models / "zip.onnx").write_bytes(to_onnx(pipe, sample, target_opset=17).SerializeToString())
        nozip = to_onnx(pipe, sample, target_opset=17, options={id(pipe): {"zipmap": False}})
        (models / "nozip.onnx").write_bytes(nozip.SerializeToString())
    (models / "fake.pt").write_bytes(b"not a TorchScript file")

    # Bootstrap config (relative paths, as an operator writes them) to package the tar with the CLI.
    (root / "pkg.yaml").write_text(yaml.safe_dump({"models": [
        {"name": "pipe", "framework": "sklearn", "artifact": "file://./models/pipe.joblib", "sha256": _sha(models / "pipe.joblib")},
    ]}))
    out = _cli("models", "package", str(root / "pkg.yaml"), "pipe", "--out", str(models / "pipe.tar.gz"))
    assert out.returncode == 0, out.stderr
    _write_configs(root)
    return root


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def _model(name: str, framework: str, artifact: str, root: Path, **extra: Any) -> dict[str, Any]:
    return {"name": name, "framework": framework, "artifact": f"file://./models/{artifact}",
            "sha256": _sha(root / "models" / artifact), **extra}


def _write_configs(root: Path) -> None:
    models = [_model(n, "sklearn", f"{n}.joblib", root) for n in
              ("pipe", "ridge", "strlab", "knn", "gb", "iso", "multireg", "multiclf", "forest2d")]
    models.append(_model("iris-named", "sklearn", "pipe.joblib", root,
                         features=["sepal_length", "sepal_width", "petal_length", "petal_width"]))
    if (root / "models" / "zip.onnx").exists():
        models += [_model("zip", "onnx", "zip.onnx", root), _model("nozip", "onnx", "nozip.onnx", root)]
    models += [
        # the same sklearn model, served by the local SageMaker emulator only
        _model("pipe-ep", "sklearn", "pipe.joblib", root, inline=False, endpoint={"name": "pipe-ep"}),
        # `router models package` output as the artifact: on its endpoint, and inline when allowed
        _model("tar-ep", "sklearn", "pipe.tar.gz", root, inline=False, endpoint={"name": "tar-ep"}),
        _model("multiclf-ep", "sklearn", "multiclf.joblib", root, inline=False, endpoint={"name": "multiclf-ep"}),
        _model("tar-both", "sklearn", "pipe.tar.gz", root, endpoint={"name": "tar-both"}),
        {**_model("badsha", "sklearn", "pipe.joblib", root), "sha256": "0" * 64},
        {"name": "s3model", "framework": "sklearn", "artifact": "s3://operator-bucket/models/pipe.joblib",
         "sha256": _sha(root / "models" / "pipe.joblib"), "size_bytes": 4000},
        _model("torchy", "pytorch", "fake.pt", root, endpoint={"name": "torchy"}),
    ]
    # docs/configuration.md's example shape, with real files and digests.
    full = {
        "version": 1,
        "runtime": {"sync_timeout_s": 29, "lambda_timeout_s": 900, "lambda_memory_mb": 3008,
                    "lambda_ephemeral_mb": 2048, "safety_margin": 0.8},
        "routing": {"prefer": "latency"},
        "storage": {"artifacts": "file://./models", "jobs": "file://./.router/jobs",
                    "job_table": "sqlite:///./.router/jobs.db"},
        "auth": {"api_keys": {KEY: "alice", BOB_KEY: "bob"}},
        "sagemaker": {"execution_role_arn": "arn:aws:iam::123456789012:role/RouterSageMaker",
                      "batch_transform": {"instance_type": "ml.m5.xlarge", "instance_count": 1, "max_payload_mb": 6,
                                          "max_concurrent_transforms": 1, "invocation_timeout_s": 600, "max_retries": 3}},
        "models": models,
    }
    (root / "operator.yaml").write_text(yaml.safe_dump(full, sort_keys=False))
    # Every optional section omitted, auth off, no models at all.
    (root / "empty").mkdir()
    (root / "empty" / "zero.yaml").write_text("auth: {enabled: false}\nmodels: []\n")


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "POWERTOOLS_METRICS_DISABLED": "true"}
    return subprocess.run([sys.executable, "-m", "router.cli", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd, env=env)


# ---------------------------------------------------------------- servers and HTTP


@pytest.fixture(scope="module")
def srv(op_dir: Path) -> Iterator[Server]:
    server = Server(op_dir / "operator.yaml", without_aws_credentials=True).start()
    try:
        # Endpoints boot in the background: wait until the emulator says InService (or failed).
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if all(call(server, "POST", f"/v1/models/{m}/predict", {"instances": [[5.1, 3.5, 1.4, 0.2]]})[0] == 200
                   for m in ("pipe-ep", "tar-ep", "multiclf-ep")):
                break
            time.sleep(0.2)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def empty_srv(op_dir: Path) -> Iterator[Server]:
    server = Server(op_dir / "empty" / "zero.yaml").start()
    yield server
    server.stop()


def call(server: Server, method: str, path: str, body: Any = None, key: str | None = KEY,
         headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    h = {"Content-Type": "application/json"} if data is not None else {}
    if key:
        h["Authorization"] = f"Bearer {key}"
    h.update(headers or {})
    req = urllib.request.Request(server.url + path, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def iris() -> np.ndarray:
    from sklearn.datasets import load_iris

    return np.asarray(load_iris(return_X_y=True)[0])


def expected(op_dir: Path, model_file: str, x: np.ndarray, output: str) -> list[Any]:
    est = joblib.load(op_dir / "models" / f"{model_file}.joblib")
    if output == "predict":
        return list(np.asarray(est.predict(x)).tolist())
    proba = est.predict_proba(x)
    if isinstance(proba, list):  # multi-output: one entry per record, one list per output
        return [list(r) for r in zip(*(a.tolist() for a in proba), strict=True)]
    return list(proba.tolist())


def run_job(server: Server, model: str, body: dict[str, Any], timeout_s: float = 60) -> tuple[dict[str, Any], list[Any]]:
    status, job = call(server, "POST", f"/v1/models/{model}/jobs", body)
    assert status == 202, job
    deadline = time.monotonic() + timeout_s
    while job["status"] not in ("succeeded", "failed", "cancelled"):
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
        job = call(server, "GET", f"/v1/jobs/{job['job_id']}")[1]
    rows: list[Any] = []
    if job["status"] == "succeeded":
        with urllib.request.urlopen(job["output"]["download_url"], timeout=30) as r:
            rows = [json.loads(line) for line in r.read().decode().splitlines()]
    return job, rows


# ---------------------------------------------------------------- sync predictions


SKLEARN_CASES = [
    ("pipe", "predict"), ("pipe", "proba"), ("strlab", "predict"), ("strlab", "proba"), ("knn", "predict"),
    ("knn", "proba"), ("gb", "predict"), ("gb", "proba"), ("iso", "predict"), ("multiclf", "predict"),
    ("multiclf", "proba"), ("forest2d", "proba"),
]


@pytest.mark.parametrize(("model", "output"), SKLEARN_CASES)
def test_inline_sklearn_predictions_equal_the_models_own(srv: Server, op_dir: Path, model: str, output: str) -> None:
    x = iris()[ROWS]
    status, body = call(srv, "POST", f"/v1/models/{model}/predict", {"instances": x.tolist(), "output": output})
    assert status == 200, body
    assert body["route"] == "inline"
    assert body["predictions"] == expected(op_dir, model, x, output)
    assert len(body["predictions"]) == len(ROWS)  # one prediction per record, multi-output too


@pytest.mark.parametrize(("model", "data"), [("ridge", "xr.npy"), ("multireg", "xm.npy")])
def test_inline_regressors_answer_floats(srv: Server, op_dir: Path, model: str, data: str) -> None:
    x = np.load(op_dir / data)[:7]
    status, body = call(srv, "POST", f"/v1/models/{model}/predict", {"instances": x.tolist()})
    assert status == 200, body
    assert body["predictions"] == expected(op_dir, model, x, "predict")
    status, body = call(srv, "POST", f"/v1/models/{model}/predict", {"instances": x.tolist(), "output": "proba"})
    assert (status, body["error"]["code"]) == (422, "output_not_supported")


def test_a_model_without_predict_proba_says_so(srv: Server) -> None:
    status, body = call(srv, "POST", "/v1/models/iso/predict", {"instances": iris()[:2].tolist(), "output": "proba"})
    assert (status, body["error"]["code"]) == (422, "output_not_supported")


def test_named_features_from_the_config(srv: Server, op_dir: Path) -> None:
    x = iris()[ROWS]
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    status, body = call(srv, "POST", "/v1/models/iris-named/predict",
                        {"instances": [dict(zip(names, r, strict=True)) for r in x.tolist()]})
    assert status == 200, body
    assert body["predictions"] == expected(op_dir, "pipe", x, "predict")


@pytest.mark.parametrize("model", ["zip", "nozip"])
def test_inline_onnx_with_and_without_zipmap(srv: Server, op_dir: Path, model: str) -> None:
    if not (op_dir / "models" / "zip.onnx").exists():
        pytest.skip("skl2onnx/onnxruntime not installed")
    x = iris()[ROWS]
    status, body = call(srv, "POST", f"/v1/models/{model}/predict", {"instances": x.tolist()})
    assert status == 200, body
    assert body["route"] == "inline"
    assert body["predictions"] == expected(op_dir, "pipe", x, "predict")
    status, body = call(srv, "POST", f"/v1/models/{model}/predict", {"instances": x.tolist(), "output": "proba"})
    assert status == 200, body
    np.testing.assert_allclose(body["predictions"], expected(op_dir, "pipe", x, "proba"), atol=1e-5)


@pytest.mark.parametrize("model", ["pipe-ep", "tar-ep"])
def test_endpoint_models_equal_the_models_own(srv: Server, op_dir: Path, model: str) -> None:
    x = iris()[ROWS]
    for output in ("predict", "proba"):
        status, body = call(srv, "POST", f"/v1/models/{model}/predict", {"instances": x.tolist(), "output": output})
        assert status == 200, body
        assert body["route"] == "endpoint"
        assert body["predictions"] == expected(op_dir, "pipe", x, output)


def test_a_multi_output_classifier_on_its_endpoint_answers_one_proba_per_record(srv: Server, op_dir: Path) -> None:
    x = iris()[ROWS]
    status, body = call(srv, "POST", "/v1/models/multiclf-ep/predict", {"instances": x.tolist(), "output": "proba"})
    assert status == 200, body
    assert body["route"] == "endpoint"
    assert body["predictions"] == expected(op_dir, "multiclf", x, "proba")


def test_a_packaged_model_tar_gz_also_runs_inline(srv: Server, op_dir: Path) -> None:
    # inline is allowed (the default) and the artifact is a model.tar.gz: the router runs its model file.
    x = iris()[ROWS]
    for output in ("predict", "proba"):
        status, body = call(srv, "POST", "/v1/models/tar-both/predict", {"instances": x.tolist(), "output": output})
        assert status == 200, body
        assert body["predictions"] == expected(op_dir, "pipe", x, output)


def test_a_wrong_digest_is_a_500_and_the_others_keep_serving(srv: Server) -> None:
    status, body = call(srv, "POST", "/v1/models/badsha/predict", {"instances": iris()[:1].tolist()})
    assert (status, body["error"]["code"]) == (500, "model_integrity_error")
    assert "Traceback" not in json.dumps(body)
    status, body = call(srv, "POST", "/v1/models/pipe/predict", {"instances": iris()[:1].tolist()})
    assert status == 200, body


def test_an_s3_artifact_without_aws_is_a_clear_error_not_a_hang(srv: Server) -> None:
    t0 = time.monotonic()
    status, body = call(srv, "POST", "/v1/models/s3model/predict", {"instances": iris()[:1].tolist()})
    assert time.monotonic() - t0 < 30
    assert status == 503, body
    assert body["error"]["code"] == "backend_unavailable"
    assert "S3" in body["error"]["message"] and "Traceback" not in json.dumps(body)


def test_an_s3_artifact_without_credentials_says_credentials(srv: Server) -> None:
    status, body = call(srv, "POST", "/v1/models/s3model/predict", {"instances": iris()[:1].tolist()})
    assert status == 503
    assert "credentials" in body["error"]["message"].lower()


def test_a_pytorch_model_that_cannot_load_says_why_and_the_router_keeps_serving(srv: Server) -> None:
    # The operator finds the cause in the router's log, not a bare "did not start: no output":
    # torch's own reason (fake.pt is no TorchScript archive), or the missing torch itself.
    failed = wait_for(lambda: [line for line in srv.log if "endpoint torchy failed" in line], timeout_s=120)
    assert "PytorchStreamReader" in failed[0] or "No module named 'torch'" in failed[0], failed[0]
    status, body = call(srv, "POST", "/v1/models/torchy/predict", {"instances": [[1.0, 2.0]]})
    assert status in (422, 503) and "not InService" in body["error"]["message"], body
    assert call(srv, "POST", "/v1/models/knn/predict", {"instances": iris()[:1].tolist()})[0] == 200


def test_models_listing_and_auth(srv: Server) -> None:
    status, body = call(srv, "GET", "/v1/models")
    assert status == 200
    listed = {m["name"]: m for m in body["models"]}
    assert listed["pipe"]["version"].startswith("sha256:")
    assert call(srv, "GET", "/v1/models", key=None)[0] == 401
    assert call(srv, "GET", "/v1/models", key="wrong-key-0123456789")[0] == 401


# ---------------------------------------------------------------- jobs


@pytest.mark.parametrize(("model", "output", "route"), [
    ("pipe", "predict", "lambda-job"),
    ("strlab", "proba", "lambda-job"),
    ("multiclf", "proba", "lambda-job"),
    ("pipe-ep", "proba", "batch-transform"),  # inline: false -> the emulator's batch transform
])
def test_jobs_output_equals_the_models_own_row_by_row(srv: Server, op_dir: Path, model: str, output: str, route: str) -> None:
    x = iris()
    job, rows = run_job(srv, model, {"instances": x.tolist(), "output": output})
    assert job["status"] == "succeeded", job
    assert job["route"] == route
    exp = expected(op_dir, {"pipe-ep": "pipe"}.get(model, model), x, output)
    assert len(rows) == len(exp) == len(x)
    for i, (got, want) in enumerate(zip(rows, exp, strict=True)):
        assert got == want, f"row {i}"


def test_a_job_that_cannot_succeed_fails_at_once(srv: Server) -> None:
    job, _ = run_job(srv, "iso", {"instances": iris()[:5].tolist(), "output": "proba"})
    assert job["status"] == "failed"
    assert job["error"]["code"] == "output_not_supported"
    assert "attempts" not in job["error"]["message"]


def test_jobs_of_bob_are_not_alices(srv: Server) -> None:
    status, job = call(srv, "POST", "/v1/models/pipe/jobs", {"instances": iris()[:3].tolist()}, key=BOB_KEY)
    assert status == 202
    status, body = call(srv, "GET", f"/v1/jobs/{job['job_id']}")
    assert (status, body["error"]["code"]) == (404, "job_not_found")


def test_cli_jobs_submit_wait_with_a_csv_file(srv: Server, op_dir: Path, tmp_path: Path) -> None:
    x = iris()[:40]
    src = tmp_path / "rows.csv"
    src.write_text("".join(",".join(repr(v) for v in r) + "\n" for r in x.tolist()))
    out = tmp_path / "out.jsonl"
    res = _cli("jobs", "--url", srv.url, "--api-key", KEY, "submit", "gb", str(src), "--output", "proba",
               "--wait", "--out", str(out))
    assert res.returncode == 0, res.stdout + res.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows == expected(op_dir, "gb", x, "proba")


# ---------------------------------------------------------------- the operator's CLI on these configs


def test_validate_route_and_plan_from_another_directory(op_dir: Path, tmp_path: Path) -> None:
    cfg = str(op_dir / "operator.yaml")
    res = _cli("config", "validate", cfg, "--json", cwd=tmp_path)
    # the wrong digest is refused before the first request finds it
    assert res.returncode == 2, res.stderr
    bad = next(i for i, m in enumerate(yaml.safe_load((op_dir / "operator.yaml").read_text())["models"]) if m["name"] == "badsha")
    problems = json.loads(res.stdout)["problems"]
    assert len(problems) == 1 and problems[0].startswith(f"models[{bad}].sha256: does not match"), problems
    res = _cli("config", "validate", cfg, "--json", "--skip-artifact-check", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    by_name = {m["name"]: m for m in summary["models"]}
    assert by_name["pipe"]["size_bytes"] == (op_dir / "models" / "pipe.joblib").stat().st_size
    assert summary["storage"]["artifacts"] == f"file://{op_dir / 'models'}"
    res = _cli("route", cfg, "pipe", "--mode", "sync", "--records", "10", "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["route"] == "inline"
    res = _cli("route", cfg, "pipe-ep", "--mode", "job", "--records", "1M", cwd=tmp_path)
    assert res.returncode == 0 and "batch-transform" in res.stdout, res.stdout + res.stderr
    res = _cli("plan", cfg, "--model", "tar-both", cwd=tmp_path)
    assert res.returncode == 0, res.stderr


def test_a_config_with_zero_models(empty_srv: Server, op_dir: Path) -> None:
    zero = str(op_dir / "empty" / "zero.yaml")
    assert _cli("config", "validate", zero).returncode == 0
    res = _cli("plan", zero)
    assert res.returncode == 0, res.stderr  # nothing to plan is not a bad config
    assert "no models" in res.stdout
    assert json.loads(_cli("plan", zero, "--json").stdout)["models"] == []
    # auth off: no key needed, everyone is `local`
    assert call(empty_srv, "GET", "/v1/models", key=None) == (200, {"models": []})
    status, body = call(empty_srv, "POST", "/v1/models/nope/predict", {"instances": [[1.0]]}, key=None)
    assert (status, body["error"]["code"]) == (404, "model_not_found")
    assert call(empty_srv, "GET", "/v1/jobs", key=None)[0] == 200
    # omitted storage resolves next to the file, not the current directory
    assert (op_dir / "empty" / ".router" / "jobs.db").exists()


def test_a_package_with_custom_inference_code_is_not_run_inline(op_dir: Path, tmp_path: Path) -> None:
    from router.adapters.file_store import FileObjectStore
    from router.adapters.inline import InlineRunner
    from router.config import ModelSpec
    from router.domain import OutputKind
    from router.errors import InternalError
    from sagemaker_jobs.package import build_package

    code = tmp_path / "code"
    code.mkdir()
    (code / "inference.py").write_text("def predict_fn(data, model):\n    return [42 for _ in data.records]\n")
    info = build_package(op_dir / "models" / "pipe.joblib", tmp_path / "custom.tar.gz", framework="sklearn", code_dir=code)
    spec = ModelSpec(name="custom", framework="sklearn", artifact=f"file://{info.path}", sha256=info.sha256)
    runner = InlineRunner(FileObjectStore(b"k" * 32, None), tmp_path / "cache")
    with pytest.raises(InternalError, match="inline: false"):
        runner.predict(spec, iris()[:1].tolist(), OutputKind.PREDICT)
