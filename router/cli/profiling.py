"""Measuring a model's routing profile (cold load time, time per record, memory) the way a cold
Lambda pays them, and writing it back into the operator config without losing its comments.

Used by `router profile` and `router demo`. CLI-side only: the handlers never import it.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from router.config import ModelSpec, parse_config
from router.errors import ConfigError, InvalidRequest

# What a fresh interpreter runs to load an artifact, per framework (import + deserialize).
_LOAD = {
    "sklearn": "import joblib; m = joblib.load({path!r})",
    "onnx": "import onnxruntime as o; m = o.InferenceSession({path!r}, providers=['CPUExecutionProvider'])",
}
_IMPORT = {"sklearn": "import joblib, sklearn, numpy", "onnx": "import onnxruntime, numpy"}


def measure(spec: ModelSpec, objects: Any, *, rows: int = 200, repeats: int = 3) -> dict[str, float]:
    """{load_s, per_record_ms, memory_mb} for an in-process model (sklearn/onnx).

    load_s: fetch + SHA-256 check + framework import + deserialize, in a fresh interpreter (a
    cold Lambda imports scikit-learn too: seconds, not the milliseconds of a warm process).
    per_record_ms: best of `repeats` batches of `rows` random rows through the InlineRunner.
    memory_mb: resident memory the loaded model adds, measured in a fresh interpreter after the
    framework is imported (so it is the model's own footprint, native arenas included).
    """
    import numpy as np

    from router.adapters.inline import InlineRunner
    from router.domain import OutputKind

    if spec.framework not in _LOAD:
        raise InvalidRequest(f"model {spec.name!r} is {spec.framework}: it runs on SageMaker; declare its profile by hand")
    with tempfile.TemporaryDirectory(prefix="router-profile-") as cache:
        runner = InlineRunner(objects, Path(cache))
        start = time.perf_counter()
        runner.load(spec)  # fetch + digest check + deserialize
        fetch_and_load = time.perf_counter() - start
        path = next(p for p in Path(cache).glob(f"{spec.name}-*") if not p.name.startswith("."))
        cold = _probe(spec.inline_source[0], path)  # a compiled sklearn model runs its ONNX graph
        width = runner.feature_count(spec)
        if width is None:
            raise InvalidRequest(f"model {spec.name!r}: cannot tell its input width; declare `features` in the config")
        x = np.random.default_rng(0).normal(size=(rows, width)).tolist()
        runner.predict(spec, x, OutputKind.PREDICT)  # warm-up
        best = min(_timed(lambda: runner.predict(spec, x, OutputKind.PREDICT)) for _ in range(repeats))
    # In-process: fetch + digest + deserialize. A cold Lambda also imports the framework first.
    load_s = fetch_and_load + cold.get("import_s", 0.0)
    out = {"load_s": _round(load_s), "per_record_ms": _round(best * 1000 / rows)}
    if "memory_mb" in cold:
        out["memory_mb"] = _round(max(cold["memory_mb"], 0.1))
    return out


def _probe(framework: str, path: Path) -> dict[str, float]:
    """In a fresh interpreter: the framework's import time, and the resident memory the loaded
    model adds (after the import, so it is the model's own footprint). {} when it cannot run."""
    code = (
        "import gc, os, time\n"
        # Current resident set (not the peak: the import's peak would hide a small model).
        "rss = lambda: int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 1e6\n"
        "t0 = time.perf_counter()\n"
        f"{_IMPORT[framework]}\n"
        "t1 = time.perf_counter()\n"
        "gc.collect(); r0 = rss()\n"
        f"{_LOAD[framework].format(path=str(path))}\n"
        "gc.collect(); r1 = rss()\n"
        "print(t1 - t0, r1 - r0)\n"
    )
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
        import_s, mem_mb = (float(v) for v in done.stdout.split()[-2:])
        return {"import_s": import_s, "memory_mb": mem_mb}
    except (subprocess.SubprocessError, ValueError, OSError):
        return {}


def _timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _round(v: float) -> float:
    """Two significant digits: profiles are estimates, more digits would be noise."""
    return float(f"{v:.2g}")


# ---------------------------------------------------------------- writing it back


def flow(profile: dict[str, float]) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in profile.items()) + "}"


def with_profile(text: str, model_name: str, profile: dict[str, float]) -> str:
    """The config text with `profile:` of one model replaced or added, everything else (comments,
    order, formatting) untouched. Raises ConfigError when the model's entry is written in flow
    style (`- {name: ...}`), which cannot be edited safely: paste the profile by hand then."""
    return with_model_value(text, model_name, "profile", flow(profile))


def with_model_value(text: str, model_name: str, key: str, value: str) -> str:
    """The config text with `key:` of one model set to `value` (YAML flow text), replaced in
    place or added after the model's `name:`; comments, order and formatting kept."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    models = _value(root, "models")
    if not isinstance(models, yaml.SequenceNode):
        raise ConfigError("config", ["models: not found"])
    for item in models.value:
        if isinstance(item, yaml.MappingNode) and _scalar(_value(item, "name")) == model_name:
            if item.flow_style:
                raise ConfigError("config", [f"models: {model_name} is written inline ({{...}}); add `{key}: {value}` by hand"])
            existing = _value(item, key)
            if existing is not None:
                start: int = existing.start_mark.index
                stop: int = existing.end_mark.index
                return text[:start] + value + text[stop:]
            name_key = next(k for k, _ in item.value if _scalar(k) == "name")
            name_val = _value(item, "name")
            assert name_val is not None
            end: int = name_val.end_mark.index
            column: int = name_key.start_mark.column
            eol = text.find("\n", end)
            eol = len(text) if eol == -1 else eol
            return text[:eol] + "\n" + " " * column + f"{key}: {value}" + text[eol:]
    raise ConfigError("config", [f"models: no model named {model_name!r}"])


def write_profile(path: Path, model_name: str, profile: dict[str, float]) -> None:
    """Update the file in place, atomically, after checking the result is still a valid config."""
    write_config_text(path, with_profile(path.read_text(encoding="utf-8"), model_name, profile))


def write_config_text(path: Path, new: str, *, check_artifacts: bool = False) -> None:
    """Replace the config file atomically with `new`, after checking it is still a valid config
    (ConfigError otherwise, the file untouched)."""
    parse_config(new, source=str(path), base_dir=path.resolve().parent, check_artifacts=check_artifacts)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    tmp.write_text(new, encoding="utf-8")
    tmp.replace(path)


def _value(node: yaml.Node | None, key: str) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if _scalar(k) == key:
                found: yaml.Node = v
                return found
    return None


def _scalar(node: yaml.Node | None) -> str | None:
    return str(node.value) if isinstance(node, yaml.ScalarNode) else None
