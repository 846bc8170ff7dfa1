"""Builds the demo: three example models from scikit-learn's bundled datasets and an operator
config that routes them four different ways (inline, too big for inline, deep -> SageMaker, and the
small one again on a serverless endpoint that scales to zero).

CLI-only (`router demo`); idempotent: models whose files still match their recorded digests
are not rebuilt, and an unchanged config file is not rewritten.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from router.config import ModelSpec

# Bump a recipe's version to force that model to be rebuilt by existing demo folders.
RECIPES = {"iris": "iris-rf50-v1", "forest-xl": "forest-xl-et60-v2", "digits-mlp": "digits-mlp64-onnx-v2"}
MANIFEST = "demo-manifest.json"
IRIS_FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
# The demo's router Lambda: AWS's minimum memory (128 MB). The router's default footprint
# estimate for a model is 3 x its artifact size, and at most safety_margin (0.8) of memory may be
# used, so any artifact above 0.8 x 128 / 3 ~= 34 MB cannot run inline.
DEMO_LAMBDA_MEMORY_MB = 128
SAFETY_MARGIN = 0.8

Progress = Callable[[str], object]


@dataclass
class Built:
    name: str
    file: str
    sha256: str
    size_bytes: int
    profile: dict[str, Any]


def build_demo(
    out_dir: Path,
    *,
    force: bool = False,
    progress: Progress = print,
    profiles: Mapping[str, Mapping[str, float]] | None = None,
) -> Path:
    """Build (or reuse) the demo models under out_dir/models and write out_dir/operator.yaml.

    Returns the config's path. `force` rebuilds every model. `profiles` replaces the measured
    profiles of the models it names (tests: routing that does not depend on this machine's speed)."""
    out_dir = Path(out_dir).resolve()
    models_dir = out_dir / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = models_dir / MANIFEST
    manifest: dict[str, Any] = {}
    if manifest_path.is_file() and not force:
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except ValueError:
            manifest = {}

    builders: dict[str, Callable[[Path], None]] = {
        "iris": _build_iris,
        "forest-xl": _build_forest_xl,
        "digits-mlp": _build_digits_mlp,
    }
    files = {"iris": "iris.joblib", "forest-xl": "forest-xl.joblib", "digits-mlp": "digits-mlp.onnx"}
    frameworks = {"iris": "sklearn", "forest-xl": "sklearn", "digits-mlp": "onnx"}
    built: dict[str, Built] = {}
    for name, build in builders.items():
        path = models_dir / files[name]
        reused = _reuse(manifest.get(name), path, RECIPES[name])
        if reused is not None:
            progress(f"{name}: up to date ({path.name}, sha256 {reused.sha256[:12]})")
            built[name] = reused
            continue
        progress(f"{name}: building {path.name} ...")
        start = time.perf_counter()
        tmp = path.with_name(f".{path.name}.building")
        build(tmp)
        tmp.replace(path)
        digest = _sha256(path)
        progress(f"{name}: built in {time.perf_counter() - start:.1f} s ({path.stat().st_size / 1e6:.1f} MB); profiling ...")
        profile = _profile(name, frameworks[name], path, digest, features=IRIS_FEATURES if name == "iris" else None)
        built[name] = Built(name, path.name, digest, path.stat().st_size, profile)
        manifest[name] = {"recipe": RECIPES[name], "file": path.name, "sha256": digest, "profile": profile}
        _write_if_changed(manifest_path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")

    for name, fixed in (profiles or {}).items():
        built[name] = dataclasses.replace(built[name], profile=dict(fixed))
    config_path = out_dir / "operator.yaml"
    if _write_if_changed(config_path, _render_config(built)):
        progress(f"wrote {config_path}")
    else:
        progress(f"{config_path} is up to date")
    return config_path


# ---------------------------------------------------------------- idempotency


def _reuse(entry: Any, path: Path, recipe: str) -> Built | None:
    if not isinstance(entry, dict) or entry.get("recipe") != recipe or not path.is_file():
        return None
    digest = _sha256(path)
    if digest != entry.get("sha256") or not isinstance(entry.get("profile"), dict):
        return None
    return Built(path.stem, path.name, digest, path.stat().st_size, dict(entry["profile"]))


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _write_if_changed(path: Path, text: str) -> bool:
    """Atomic write, skipped when the content is already there (a second run touches nothing)."""
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return True


# ---------------------------------------------------------------- the models


def _build_iris(path: Path) -> None:
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    x, y = load_iris(return_X_y=True)
    model = RandomForestClassifier(n_estimators=50, max_depth=6, random_state=0).fit(x, y)
    joblib.dump(model, path)


def _build_forest_xl(path: Path) -> None:
    """~55 MB on disk in a few seconds: extremely randomized trees grown to full depth on noisy
    labels (30% flipped) have about one leaf per training record, so the size is predictable."""
    import joblib
    from sklearn.datasets import make_classification
    from sklearn.ensemble import ExtraTreesClassifier

    x, y = make_classification(
        n_samples=12_000, n_features=20, n_informative=10, flip_y=0.3, random_state=0
    )
    model = ExtraTreesClassifier(n_estimators=60, random_state=0, n_jobs=2).fit(x, y)
    model.n_jobs = None  # predict in the caller's thread: no joblib thread pool inside the router
    joblib.dump(model, path)


def _build_digits_mlp(path: Path) -> None:
    from skl2onnx import to_onnx
    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    x, y = load_digits(return_X_y=True)
    with warnings.catch_warnings():
        # A demo network trained for a bounded time; not converging fully is expected.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = MLPClassifier(hidden_layer_sizes=(64,), max_iter=150, random_state=0).fit(x, y)
    onx = to_onnx(model, x[:1].astype(np.float32), options={id(model): {"zipmap": False}}, target_opset=17)
    path.write_bytes(onx.SerializeToString())


# ---------------------------------------------------------------- profiling


def _profile(name: str, framework: str, path: Path, digest: str, features: list[str] | None) -> dict[str, Any]:
    """The model's routing profile, measured as `router profile` does (router/cli/profiling.py)."""
    from router.cli.profiling import measure
    from router.cli.wiring import file_store

    spec = ModelSpec.model_validate(
        {"name": name, "framework": framework, "artifact": f"file://{path}", "sha256": digest, "features": features}
    )
    # A quick profile (one timing round): the demo builds in seconds; `router profile` measures properly.
    # Only iris can take lambda-job in the demo (forest-xl is too big for its 128 MB Lambda,
    # digits-mlp is inline: false): the others' worker timing would never be used.
    routes = ("inline", "lambda-job") if name == "iris" else ("inline",)
    profile = measure(spec, file_store(), sample=_training_rows(name), repeats=1, routes=routes)
    if name == "forest-xl":
        # Keep the router's default estimate (3 x artifact) for the demo's "too big for a 128 MB
        # Lambda" model: a measured figure near the 102 MB budget would make the demo flaky.
        profile.pop("memory_mb", None)
    return profile


def _training_rows(name: str) -> list[list[float]]:
    """Real rows of the model's own data set: a tree's time per record depends on the data."""
    from sklearn.datasets import load_digits, load_iris, make_classification

    if name == "iris":
        rows: list[list[float]] = load_iris().data.tolist()
    elif name == "forest-xl":
        rows = make_classification(n_samples=2_000, n_features=20, n_informative=10, flip_y=0.3, random_state=0)[0].tolist()
    else:
        rows = load_digits().data.tolist()
    return rows


# ---------------------------------------------------------------- the config file


def _profile_yaml(p: dict[str, Any]) -> str:
    from router.cli.profiling import flow

    return flow(p)


def _render_config(b: dict[str, Built]) -> str:
    iris, xl, mlp = b["iris"], b["forest-xl"], b["digits-mlp"]
    xl_mb = xl.size_bytes / 1e6
    budget = SAFETY_MARGIN * DEMO_LAMBDA_MEMORY_MB
    return f"""\
# The demo operator config, written by `router demo` (router/cli/demo_build.py).
# Regenerated when the models are rebuilt; edit a copy to experiment.
# Paths are relative to this file. Validate with: router config validate --config operator.yaml
version: 1

runtime:
  sync_timeout_s: 29           # API Gateway REST integration timeout
  lambda_timeout_s: 900        # Lambda maximum (15 min)
  # A deliberately small router Lambda: 128 MB is AWS's minimum. A model may use at most
  # safety_margin x memory = {budget:.1f} MB; without a measured memory_mb the router assumes
  # 3 x the artifact size. That keeps forest-xl ({xl_mb:.0f} MB -> ~{3 * xl_mb:.0f} MB) off the inline route.
  lambda_memory_mb: {DEMO_LAMBDA_MEMORY_MB}
  lambda_ephemeral_mb: 512     # /tmp, where inline artifacts are cached (AWS default)
  safety_margin: {SAFETY_MARGIN}

routing:
  prefer: latency              # latency | cost, when several routes are feasible

storage:
  artifacts: file://./models
  jobs: file://./.router/jobs
  job_table: sqlite:///./.router/jobs.db

auth:
  api_keys:                    # Authorization: Bearer <key>
    demo-key-alice-0001: alice
    demo-key-bob-00001: bob

sagemaker:
  # Used when the same models are deployed to AWS; locally the SageMaker emulator runs them.
  execution_role_arn: arn:aws:iam::123456789012:role/RouterSageMaker
  batch_transform:             # defaults for every model's batch-transform jobs
    instance_type: ml.m5.xlarge
    instance_count: 1
    max_payload_mb: 6
    max_concurrent_transforms: 1
    invocation_timeout_s: 600  # SageMaker allows up to 3600
    max_retries: 3             # SageMaker allows up to 3

# Profiles were measured on the machine that built the demo, as `router profile` measures them
# (load: fetch + SHA-256 + framework import + deserialize; per route: fixed + per-record time at the
# batch sizes the route uses). Re-measure on your machine with `router profile --write operator.yaml`.
models:
  # Small and fast: answered inside the router Lambda.
  - name: iris
    description: RandomForestClassifier, 50 trees, on the iris dataset (classes 0 setosa, 1 versicolor, 2 virginica)
    framework: sklearn
    artifact: file://./models/{iris.file}
    sha256: {iris.sha256}
    features: [{", ".join(IRIS_FEATURES)}]
    latency_ms: 100
    profile: {_profile_yaml(iris.profile)}

  # Too big for a 128 MB router Lambda: synchronous requests are refused with the reason
  # (no endpoint), jobs go to SageMaker batch transform.
  - name: forest-xl
    description: ExtraTreesClassifier, 60 full-depth trees, 20 features ({xl_mb:.0f} MB artifact)
    framework: sklearn
    artifact: file://./models/{xl.file}
    sha256: {xl.sha256}
    # memory_mb is left out on purpose: the default estimate (3 x artifact) covers the unpickled
    # trees, the peak while loading them and the Python runtime around them.
    profile: {_profile_yaml(xl.profile)}
    batch_transform: {{instance_type: ml.m5.xlarge}}

  # A "deep" model: kept on SageMaker (inline: false) behind a real-time endpoint and batch transform.
  - name: digits-mlp
    description: MLPClassifier (64-64-10) on the 8x8 digits dataset, converted to ONNX (probabilities as a tensor)
    framework: onnx
    artifact: file://./models/{mlp.file}
    sha256: {mlp.sha256}
    inline: false
    endpoint: {{name: digits-mlp-local, instance_type: ml.m5.large}}
    batch_transform: {{}}
    profile: {_profile_yaml(mlp.profile)}

  # The iris forest again, on a SageMaker serverless endpoint only (inline: false): no idle cost.
  # Under `router serve` its model server starts on the first request (a cold start, which the
  # reason shows) and stops after `--serverless-idle-s` without requests (scale to zero).
  - name: iris-serverless
    description: The iris forest behind a serverless endpoint (1 GB, at most 2 calls at once)
    framework: sklearn
    artifact: file://./models/{iris.file}
    sha256: {iris.sha256}
    features: [{", ".join(IRIS_FEATURES)}]
    inline: false
    serverless: {{name: iris-serverless-local, memory_mb: 1024, max_concurrency: 2}}
    profile: {_profile_yaml(iris.profile)}
"""
