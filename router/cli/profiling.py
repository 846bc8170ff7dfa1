"""Measuring a model's routing profile (cold load time, time per record, memory) the way a cold
Lambda pays them, and writing it back into the operator config without losing its comments.

Used by `router profile` and `router demo`. CLI-side only: the handlers never import it.
"""

from __future__ import annotations

import json
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from router.config import ModelSpec, RouterConfig, parse_config
from router.domain import OutputKind
from router.errors import ConfigError, InvalidRequest

# What a fresh interpreter runs to load an artifact, per framework (import + deserialize).
_LOAD = {
    "sklearn": "import joblib; m = joblib.load({path!r})",
    "onnx": "import onnxruntime as o; m = o.InferenceSession({path!r}, providers=['CPUExecutionProvider'])",
}
_IMPORT = {"sklearn": "import joblib, sklearn", "onnx": "import onnxruntime"}


# Sync sizes timed for inline: one row (its fixed cost) and a typical batch.
SYNC_ROWS = 1_000
# Timed (1 row, sync batch) pairs: the machine may be busy, the typical time of many calls is what
# requests see.
_PAIRS = 200
# The share of the fastest and of the slowest timings that `typical` leaves out.
TRIM = 0.1
_PAUSE_S = 0.002
_JOB_PAUSE_S = 0.05
LONG_CHUNKS = 8  # chunks in the longest profiling job
# Bytes of one record in a transform mini-batch (JSON Lines of floats with 4 decimals).
_BYTES_PER_VALUE = 8
_TRANSFORM_ROWS_MAX = 20_000


def measure(
    spec: ModelSpec,
    objects: Any,
    config: RouterConfig | None = None,
    *,
    rows: int = SYNC_ROWS,
    repeats: int = 5,
    sample: Sequence[Sequence[float]] | None = None,
    routes: Sequence[str] = ("inline", "lambda-job", "batch-transform"),
) -> dict[str, Any]:
    """The routing profile of an in-process model (sklearn/onnx), measured as each route runs it.

    load_s: fetch + SHA-256 check + framework import + deserialize, as a cold process pays it;
    import_s: the framework import alone, in a fresh interpreter (seconds for scikit-learn).
    routes.inline: fixed + per-record fit through the typical time (`typical`) of what a sync
    request costs the router on 1 row and on `rows` rows (the sync sizes): parsing its JSON body
    as the API does, then `runner.predict`. routes.lambda-job: the real worker (JobsService.run_lambda_job
    on a SQLite job table and file storage) on 1 record, 1 chunk and 8 chunks of
    `jobs.chunk_records`: fixed = the 1-record job, per-record = the slope between the chunks, so
    the estimate errs high by at most one chunk's overhead. routes.batch-transform: per record at
    one transform mini-batch (`max_payload_mb` worth of rows, at most 20,000).
    per_record_ms: the inline slope (routes without an entry, such as endpoint, use it).
    `repeats` scales every timing loop (1: a quick profile, as `router demo` takes); `routes`
    limits which route timings are measured (inline always is: it is the fallback).
    Timed rows are drawn from `sample` (real rows: a tree's time per record depends on the path
    each row takes), else random normal values, rounded to 4 decimals as clients send them.
    memory_mb: resident memory the loaded model adds, in a fresh interpreter after the import.
    """
    import numpy as np

    from router.cli.wiring import inline_runner
    from router.handlers.api_common import loads_json

    if spec.framework not in _LOAD:
        raise InvalidRequest(f"model {spec.name!r} is {spec.framework}: it runs on SageMaker; declare its profile by hand")
    cfg = config or RouterConfig()
    with tempfile.TemporaryDirectory(prefix="router-profile-", dir=None if config is None else _scratch_parent(cfg)) as scratch:
        cache = Path(scratch) / "models"
        runner = inline_runner(objects, cache)
        start = time.perf_counter()
        _fetch_and_check(spec, objects, Path(scratch) / "fetched")
        fetch_s = time.perf_counter() - start
        runner.load(spec)
        path = next(p for p in cache.glob(f"{spec.name}-*") if not p.name.startswith("."))
        cold = _probe(spec.inline_source[0], path)  # a compiled sklearn model runs its ONNX graph
        width = runner.feature_count(spec)
        if width is None:
            raise InvalidRequest(f"model {spec.name!r}: cannot tell its input width; declare `features` in the config")
        rng = np.random.default_rng(0)
        pool = None if sample is None else np.asarray(sample, dtype=np.float64)
        if pool is not None and (pool.ndim != 2 or pool.shape[1] != width or len(pool) == 0):
            raise InvalidRequest(f"model {spec.name!r}: the sample rows must have {width} values each")

        def rows_of(n: int) -> list[list[float]]:
            picked = rng.normal(size=(n, width)) if pool is None else pool[rng.integers(0, len(pool), size=n)]
            return np.round(picked, 4).tolist()  # type: ignore[no-any-return]

        def request(text: str) -> None:  # what the API does with a predict body (the estimate's scope)
            runner.predict(spec, loads_json(text)["instances"], OutputKind.PREDICT)

        singles = [json.dumps({"instances": rows_of(1)}) for _ in range(max(10, _PAIRS * repeats // 5))]
        big = json.dumps({"instances": rows_of(max(rows, 2))})
        request(big)  # warm-up
        # Interleaved, so that both sizes see the same load on a busy machine, and each call after
        # a pause, as requests reach a server: back-to-back calls on a shared or CPU-quota'd
        # machine time its throttling (several times the cost of one request).
        one: list[float] = []
        many: list[float] = []
        for single in singles:
            time.sleep(_PAUSE_S)
            one.append(_timed(lambda x=single: request(x)))
            time.sleep(_PAUSE_S)
            many.append(_timed(lambda: request(big)))
        inline = _fit(1, typical(one) * 1000, max(rows, 2), typical(many) * 1000)
        timings: dict[str, dict[str, float]] = {"inline": inline}
        if spec.in_process and "lambda-job" in routes:
            timings["lambda-job"] = _worker_timing(spec, cfg, runner, Path(scratch), rows_of, repeats)
        bt = cfg.batch_settings(spec)
        if bt is not None and "batch-transform" in routes:
            n = max(1, min(_TRANSFORM_ROWS_MAX, int(max(bt.max_payload_mb, 1) * 1_048_576 / (_BYTES_PER_VALUE * width))))
            batch = rows_of(n)
            per = _median_ms(lambda: runner.predict(spec, batch, OutputKind.PREDICT), repeats) / n
            timings["batch-transform"] = {"fixed_ms": 0.0, "per_record_ms": _round(per)}
    # A cold process: fetch + digest, then the framework import and the first deserialize (which
    # imports the model's own modules too); import_s is what a process that has them already skips.
    # Rounded so that load_s - import_s (the load of a process that has the framework) keeps its digits.
    import_s = _round(cold.get("import_s", 0.0))
    load_s = _round_sum(import_s, _round(fetch_s + cold.get("deserialize_s", 0.0)))
    out: dict[str, Any] = {"load_s": load_s, "import_s": import_s, "per_record_ms": inline["per_record_ms"]}
    if "memory_mb" in cold:
        out["memory_mb"] = _round(max(cold["memory_mb"], 0.1))
    out["routes"] = timings
    return out


def _scratch_parent(cfg: RouterConfig) -> str | None:
    """Next to the configured SQLite job table (same disk, same fsync cost), else the temp dir."""
    table = cfg.storage.job_table
    if table.startswith("sqlite:///"):
        parent = Path(table[len("sqlite:///"):]).parent
        if not parent.is_absolute():  # a config not loaded from a file: its folder is unknown
            return None
        try:
            parent.mkdir(parents=True, exist_ok=True)
            return str(parent)
        except OSError:
            return None
    return None


def typical(seconds: Sequence[float]) -> float:
    """The mean of the timings without the fastest and the slowest TRIM of them. On a busy machine
    a call's time is its work plus whole scheduler slices (a few ms each) lost to other processes,
    so timings cluster at a few distant values and their median jumps between them from one run
    to the next; this mean moves smoothly with the load and ignores the rare stall."""
    ordered = sorted(seconds)
    cut = int(len(ordered) * TRIM)
    kept = ordered[cut : len(ordered) - cut] or ordered
    return statistics.fmean(kept)


def _fit(n1: int, t1_ms: float, n2: int, t2_ms: float) -> dict[str, float]:
    """fixed + per-record through two measured points (never negative)."""
    per = max(0.0, (t2_ms - t1_ms) / (n2 - n1))
    return {"fixed_ms": _round(max(0.0, t1_ms - n1 * per)), "per_record_ms": _round(per)}


def _median_ms(fn: Any, repeats: int) -> float:
    """Median time of `repeats` calls, in ms."""
    return statistics.median(_timed(fn) for _ in range(repeats)) * 1000


def _worker_timing(spec: ModelSpec, cfg: RouterConfig, runner: Any, scratch: Path, sample: Any, repeats: int) -> dict[str, float]:
    """Run the lambda-job worker itself on jobs of 1 record, 1 chunk and 8 chunks, the model warm;
    each job's duration is started_at -> finished_at, as calibration measures real jobs."""
    from router.cli.wiring import file_store, offline_jobs
    from router.domain import Job, JobStatus, Route
    from router.jobs import UtcClock, new_job_id
    from router.jobs_io import encode_jsonl as _jsonl

    scratch = scratch.resolve()
    jobs_root = (scratch / "jobs").as_uri()
    data = cfg.model_dump()
    data["storage"] = {"artifacts": cfg.storage.artifacts, "jobs": jobs_root, "job_table": f"sqlite:///{scratch / 'jobs.db'}"}
    data["models"] = [spec.model_dump()]
    local = RouterConfig.model_validate(data)
    files = file_store()
    jobs, store = offline_jobs(local, runner, files, scratch / "jobs.db")
    chunk = cfg.jobs.chunk_records
    try:
        def run(n: int, data: bytes) -> float:
            now = UtcClock().now()
            job_id = new_job_id(now)
            input_uri = f"{jobs_root}/{job_id}/input.jsonl"
            files.put_bytes(input_uri, data, "application/jsonlines")
            store.create(Job(job_id=job_id, owner="profile", model=spec.name, status=JobStatus.QUEUED, route=Route.LAMBDA_JOB,
                             reason="router profile", created_at=now, updated_at=now, input_uri=input_uri,
                             output_uri=f"{jobs_root}/{job_id}/output.jsonl", records_total=n, records_done=0))
            while jobs.run_lambda_job(job_id, lambda: 1e9):
                pass
            done = store.get(job_id)
            if done is None or done.status is not JobStatus.SUCCEEDED or done.started_at is None or done.finished_at is None:
                raise InvalidRequest(f"model {spec.name!r}: the profiling job ended {done and done.status.value}: {done and done.error}")
            return (done.finished_at - done.started_at).total_seconds() * 1000

        # The long job sets the slope: a busy machine gives a long-running job less CPU than a short
        # burst, and a big job's estimate must not come out optimistic.
        sizes = (1, chunk, LONG_CHUNKS * chunk)
        inputs = {n: _jsonl(sample(n)) for n in sizes}
        run(1, inputs[1])  # warm-up: first writes, first parse
        times: dict[int, list[float]] = {n: [] for n in sizes}
        for _ in range(repeats):  # interleaved, as above
            for n in sizes:
                time.sleep(_JOB_PAUSE_S)  # jobs arrive one by one, not in a tight loop (see _PAUSE_S)
                times[n].append(run(n, inputs[n]))
        t = {n: statistics.median(v) for n, v in times.items()}
    finally:
        store.close()
    per = max(0.0, (t[LONG_CHUNKS * chunk] - t[chunk]) / ((LONG_CHUNKS - 1) * chunk))
    return {"fixed_ms": _round(max(0.0, t[1] - per)), "per_record_ms": _round(per)}


def read_sample(path: Path, spec: ModelSpec, limit: int = 10_000) -> list[list[float]]:
    """Rows for timing from a JSON Lines (arrays, or objects keyed by the model's `features`) or
    CSV file of numbers. Raises InvalidRequest naming the bad line."""
    import json

    out: list[list[float]] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidRequest(f"--sample {path}: cannot read it ({e})") from None
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            if line.lstrip().startswith(("[", "{")):
                row = json.loads(line)
                if isinstance(row, dict):
                    if not spec.features:
                        raise ValueError("objects need the model's `features` in the config")
                    row = [row[f] for f in spec.features]
            else:
                row = [float(v) for v in line.split(",")]
            out.append([float(v) for v in row])
        except (ValueError, KeyError, TypeError) as e:
            raise InvalidRequest(f"--sample {path}: line {i} is not a row of numbers ({e})") from None
        if len(out) >= limit:
            break
    if not out:
        raise InvalidRequest(f"--sample {path}: no rows")
    return out


def _fetch_and_check(spec: ModelSpec, objects: Any, dest: Path) -> None:
    """What a cold process does before deserializing: fetch the artifact and check its digest."""
    import hashlib

    _, artifact, sha256 = spec.inline_source  # a compiled sklearn model fetches its ONNX graph
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / "artifact"
    objects.fetch_to(artifact, str(target))
    digest = hashlib.sha256()
    with target.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    if digest.hexdigest() != sha256:
        raise InvalidRequest(f"model {spec.name!r}: artifact digest does not match the config")


def _probe(framework: str, path: Path) -> dict[str, float]:
    """In a fresh interpreter (numpy imported, as the router has it): the framework's import time,
    the first deserialize (with the model's own modules) and the import share of it (first minus
    a second deserialize), and the resident memory the model adds. {} when it cannot run."""
    load = _LOAD[framework].format(path=str(path))
    code = (
        "import gc, os, time\n"
        "import numpy\n"  # the router imports it at start-up: not part of the model's cold load
        # Current resident set (not the peak: the import's peak would hide a small model).
        "rss = lambda: int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 1e6\n"
        "t0 = time.perf_counter()\n"
        f"{_IMPORT[framework]}\n"
        "t1 = time.perf_counter()\n"
        "gc.collect(); r0 = rss()\n"
        "t2 = time.perf_counter()\n"
        f"{load}\n"
        "t3 = time.perf_counter()\n"
        "gc.collect(); r1 = rss()\n"
        "t4 = time.perf_counter()\n"
        f"{load.replace('m = ', 'm2 = ')}\n"
        "t5 = time.perf_counter()\n"
        "print(t1 - t0, t3 - t2, t5 - t4, r1 - r0)\n"
    )
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
        import_s, first_s, second_s, mem_mb = (float(v) for v in done.stdout.split()[-4:])
        modules_s = max(0.0, first_s - second_s)
        return {"import_s": import_s + modules_s, "deserialize_s": first_s - modules_s, "memory_mb": mem_mb}
    except (subprocess.SubprocessError, ValueError, OSError):
        return {}


def _timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _round_sum(a: float, b: float) -> float:
    """a + b without float noise (0.1 + 0.2 -> 0.3): both are already rounded to few digits."""
    return float(f"{a + b:.6g}")


def _round(v: float) -> float:
    """Two significant digits: profiles are estimates, more digits would be noise."""
    return float(f"{v:.2g}")


# ---------------------------------------------------------------- writing it back


# Keys in the order a reader expects them (the same profile always prints the same line).
_ORDER = ("load_s", "import_s", "fixed_ms", "per_record_ms", "memory_mb", "routes", "inline", "endpoint", "lambda-job", "batch-transform")


def flow(profile: dict[str, Any]) -> str:
    """A profile as one YAML flow mapping: {load_s: 2.4, ..., routes: {inline: {fixed_ms: 0.9, ...}}}."""
    keys = sorted(profile, key=lambda k: (_ORDER.index(k) if k in _ORDER else len(_ORDER), k))
    return "{" + ", ".join(f"{k}: {flow(profile[k]) if isinstance(profile[k], dict) else format(profile[k], 'g')}" for k in keys) + "}"


def with_profile(text: str, model_name: str, profile: dict[str, Any]) -> str:
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
                if isinstance(existing, (yaml.MappingNode, yaml.SequenceNode)) and not existing.flow_style:
                    # A block collection: its lines make way for one flow line after the key.
                    key_node = next(k for k, v in item.value if v is existing)
                    stop = text.rfind("\n", 0, existing.end_mark.index) + 1
                    return text[: key_node.end_mark.index] + f": {value}\n" + text[stop:]
                start: int = existing.start_mark.index
                stop_: int = existing.end_mark.index
                return text[:start] + value + text[stop_:]
            name_key = next(k for k, _ in item.value if _scalar(k) == "name")
            name_val = _value(item, "name")
            assert name_val is not None
            end: int = name_val.end_mark.index
            column: int = name_key.start_mark.column
            eol = text.find("\n", end)
            eol = len(text) if eol == -1 else eol
            return text[:eol] + "\n" + " " * column + f"{key}: {value}" + text[eol:]
    raise ConfigError("config", [f"models: no model named {model_name!r}"])


def write_profile(path: Path, model_name: str, profile: dict[str, Any]) -> None:
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
