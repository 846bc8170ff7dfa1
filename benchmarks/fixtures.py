"""What the benchmarks run against: the demo's models (built once with `build_demo`, or reused from
examples/demo), a config that points the job storage at a scratch folder, API Gateway proxy events
as `router serve` makes them, and the hand-written "tutorial" Lambda handler used as a baseline.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
EXAMPLES_DEMO = REPO / "examples" / "demo"
DEFAULT_DEMO_CACHE = Path(tempfile.gettempdir()) / "router-bench-demo"
API_KEY = "demo-key-alice-0001"  # the demo config's key for owner alice
IRIS_ROW = [5.1, 3.5, 1.4, 0.2]

LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]


def _progress(msg: str) -> None:
    print(f"  demo: {msg}", file=sys.stderr, flush=True)


def demo_config(demo_dir: Path | None) -> Path:
    """The demo operator config: `demo_dir` (built there if needed), else examples/demo when it
    loads cleanly (read only), else built once into a cache folder under the temp dir."""
    from router.cli.demo_build import build_demo
    from router.config import load_config
    from router.errors import ConfigError

    if demo_dir is not None:
        return build_demo(demo_dir, progress=_progress)
    existing = EXAMPLES_DEMO / "operator.yaml"
    if existing.is_file():
        try:
            cfg = load_config(existing)
            if cfg.model("iris") is not None:
                return existing
        except ConfigError:
            pass
    return build_demo(DEFAULT_DEMO_CACHE, progress=_progress)


def bench_config(demo_path: Path, state_dir: Path, *, models: Sequence[str] = ("iris",), extra_models: Sequence[dict[str, Any]] = ()) -> Any:
    """The demo config with only `models` (plus `extra_models`), and job storage in `state_dir`,
    so a benchmark never writes into the demo's own .router folder."""
    from router.config import RouterConfig, load_config

    data = load_config(demo_path).model_dump(mode="json")
    data["storage"] = {
        "artifacts": data["storage"]["artifacts"],
        "jobs": (state_dir / "jobs").as_uri(),
        "job_table": f"sqlite:///{state_dir / 'jobs.db'}",
    }
    data["models"] = [m for m in data["models"] if m["name"] in models] + list(extra_models)
    return RouterConfig.model_validate(data)


def predict_event(model: str, instances: list[Any], request_id: str = "bench-request") -> dict[str, Any]:
    """A REST API proxy event for POST /v1/models/{model}/predict, exactly as `router serve` builds it."""
    from router.local.server import to_event

    body = json.dumps({"instances": instances}).encode()
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json", "Content-Length": str(len(body))}
    return to_event("POST", f"/v1/models/{model}/predict", headers, body, request_id, "127.0.0.1")


def tutorial_handler(model: Any) -> LambdaHandler:
    """The Lambda handler a tutorial would write: parse, predict, dump. No auth, no validation,
    no routing, no error envelope: the floor a router handler is compared with."""

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        body = json.loads(event["body"])
        preds = model.predict(np.array(body["instances"], dtype=np.float64))
        return {
            "statusCode": 200,
            "headers": {"Content-Type": "application/json"},
            "body": json.dumps({"predictions": preds.tolist()}),
        }

    return handler


def iris_rows(n: int, seed: int = 0) -> list[list[float]]:
    """n iris-like records (the dataset's rows, jittered), rounded as a client would send them."""
    from sklearn.datasets import load_iris

    x = load_iris().data
    rng = np.random.default_rng(seed)
    picked = x[rng.integers(0, len(x), size=n)] + rng.normal(0.0, 0.05, size=(n, x.shape[1]))
    rows: list[list[float]] = np.round(picked, 2).tolist()
    return rows


def check_ok(resp: dict[str, Any], expected: list[Any]) -> None:
    """A benchmark of a failing handler measures nothing: insist on 200 and the right answer."""
    if resp.get("statusCode") != 200:
        raise RuntimeError(f"the handler answered {resp.get('statusCode')}: {resp.get('body')}")
    got = json.loads(resp["body"])["predictions"]
    if got != expected:
        raise RuntimeError(f"the handler's predictions differ from the bare model's: {got[:5]} vs {expected[:5]}")


def iris_onnx(demo_path: Path, out_dir: Path) -> dict[str, Any]:
    """The demo's iris forest converted with skl2onnx (probabilities as a tensor, no ZipMap), as a
    config model entry named `iris-onnx`, the ONNX fast path."""
    import hashlib

    import joblib
    from skl2onnx import to_onnx

    from router.config import load_config, uri_to_path

    iris = load_config(demo_path).model("iris")
    assert iris is not None
    model = joblib.load(uri_to_path(iris.artifact))
    x = np.array([IRIS_ROW], dtype=np.float32)
    onx = to_onnx(model, x, options={id(model): {"zipmap": False}}, target_opset={"": 17, "ai.onnx.ml": 3})
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "iris.onnx"
    path.write_bytes(onx.SerializeToString())
    return {
        "name": "iris-onnx",
        "framework": "onnx",
        "artifact": path.as_uri(),
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "features": list(iris.features or []),
        "latency_ms": iris.latency_ms,
        "profile": iris.profile.model_dump() if iris.profile else None,
    }


FOREST_FEATURES = 20


FOREST_CACHE = Path(tempfile.gettempdir()) / "router-bench-forest100"
FOREST_RECIPE = "rf100-depth12-make_classification-2000x20-seed0, router.cli.onnx_compile.convert v1"


def forest100(out_dir: Path = FOREST_CACHE) -> tuple[dict[str, Any], dict[str, Any]]:
    """A 100-tree random forest on 20 features (scikit-learn's make_classification, 2,000 rows),
    as config entries `forest100` (the joblib model) and `forest100-onnx` (the same model compiled
    as `router models compile` does it: its `onnx:` entry runs inline). Built once into `out_dir`
    (a few seconds), reused while the recipe is unchanged."""
    import hashlib

    from router.cli.onnx_compile import convert

    sk_path, onnx_path, recipe = out_dir / "forest100.joblib", out_dir / "forest100.onnx", out_dir / "recipe.txt"
    if not (sk_path.is_file() and onnx_path.is_file() and recipe.is_file() and recipe.read_text() == FOREST_RECIPE):
        import joblib
        from sklearn.datasets import make_classification
        from sklearn.ensemble import RandomForestClassifier

        out_dir.mkdir(parents=True, exist_ok=True)
        x, y = make_classification(n_samples=2_000, n_features=FOREST_FEATURES, n_informative=10, random_state=0)
        model = RandomForestClassifier(n_estimators=100, max_depth=12, random_state=0).fit(x, y)
        joblib.dump(model, sk_path)
        onnx_path.write_bytes(convert(model, FOREST_FEATURES))
        recipe.write_text(FOREST_RECIPE)

    def sha(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    plain = {"name": "forest100", "framework": "sklearn", "artifact": sk_path.as_uri(), "sha256": sha(sk_path), "latency_ms": 1000}
    compiled = {**plain, "name": "forest100-onnx", "onnx": {"artifact": onnx_path.as_uri(), "sha256": sha(onnx_path), "rows": 1,
                                                             "data": "benchmark fixture", "tolerance": 0.0}}
    return plain, compiled


def forest_rows(n: int, seed: int = 0) -> list[list[float]]:
    """n records for forest100: standard normal features, rounded as a client would send them."""
    rows: list[list[float]] = np.round(np.random.default_rng(seed).normal(size=(n, FOREST_FEATURES)), 3).tolist()
    return rows


def lr20(out_dir: Path) -> dict[str, Any]:
    """The cheap-model case: a LogisticRegression on 20 features (make_classification, 2,000 rows),
    as the config entry `lr20`."""
    import hashlib

    import joblib
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    out_dir.mkdir(parents=True, exist_ok=True)
    x, y = make_classification(n_samples=2_000, n_features=FOREST_FEATURES, n_informative=10, random_state=0)
    path = out_dir / "lr20.joblib"
    joblib.dump(LogisticRegression(max_iter=1000).fit(x, y), path)
    return {"name": "lr20", "framework": "sklearn", "artifact": path.as_uri(),
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "latency_ms": 1000}
