"""Benchmark `coldstart`: a fresh interpreter importing the API handler module, and a fresh
interpreter going all the way to its first iris prediction (import, config, runtime, model load,
one event), against a fresh interpreter importing `json`. Also lists the heavy modules the API
handler's import graph pulls in (no boto3 until an AWS call, no pandas,
sagemaker SDK or torch) and its largest imports by cumulative time (`python -X importtime`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.harness import Context, compare, fmt_s, overhead, run_rounds

NAME = "coldstart"
TITLE = "fresh-interpreter import of router.lambdas.api (and first response) vs `import json`"

HEAVY = ("boto3", "botocore", "pandas", "sagemaker", "torch", "sklearn", "numpy", "scipy", "onnxruntime")
FORBIDDEN = ("boto3", "pandas", "sagemaker", "torch")  # never in the API handler's import graph

MODULES_PROBE = f"""
import json, sys
import router.lambdas.api
heavy = {HEAVY!r}
print(json.dumps({{m: sum(1 for k in sys.modules if k == m or k.startswith(m + ".")) for m in heavy}}))
"""

# A Lambda cold start up to the first answer: import, config, runtime, the first event (which
# fetches, verifies and unpickles the model). argv: config path, state dir, model[, extra model JSON].
# Prints the heavy modules it ended up importing.
FIRST_RESPONSE = """
import json, sys
from pathlib import Path
from router.handlers.api import make_handler
from router.bootstrap import build_local
from benchmarks.fixtures import bench_config, predict_event
from router.local.server import LocalContext
model, extra = sys.argv[3], [json.loads(sys.argv[4])] if len(sys.argv) > 4 else []
cfg = bench_config(Path(sys.argv[1]), Path(sys.argv[2]), extra_models=extra)
handler = make_handler(build_local(cfg, state_dir=Path(sys.argv[2]), with_jobs=True))
resp = handler(predict_event(model, [[5.1, 3.5, 1.4, 0.2]]), LocalContext("cold", 29.0))
assert resp["statusCode"] == 200, resp
heavy = HEAVY_PLACEHOLDER
print(json.dumps({m: sum(1 for k in sys.modules if k == m or k.startswith(m + ".")) for m in heavy}))
""".replace("HEAVY_PLACEHOLDER", repr(HEAVY))

# The floor a Lambda serving a scikit-learn model cannot go below: import numpy, joblib and
# scikit-learn, load the model, predict one event's rows. argv: model path, event JSON.
FLOOR = """
import json, sys
import numpy as np, joblib, sklearn
model = joblib.load(sys.argv[1])
body = json.loads(json.loads(sys.argv[2])["body"])
print(json.dumps({"predictions": model.predict(np.array(body["instances"], dtype=np.float64)).tolist()}))
"""

# The same floor with the cyclic collector off throughout, as the router's Lambda entry pauses it
# for its cold start: what is left over it is the router's own work, without that saving.
FLOOR_GC_PAUSED = "import gc; gc.disable()\n" + FLOOR

# The deployed entry point (router.lambdas.api.handler) from its environment, as Lambda starts it:
# ROUTER_CONFIG / ROUTER_RUNTIME, first event, 200. argv: event JSON.
LAMBDA_ENTRY = """
import json, sys
from router.lambdas.api import handler
class Context:  # the LambdaContext attributes the handlers read
    aws_request_id = "cold"
    def get_remaining_time_in_millis(self): return 29000
resp = handler(json.loads(sys.argv[1]), Context())
assert resp["statusCode"] == 200, resp
print(sorted(m for m in sys.modules if m.startswith(("aws_lambda_powertools.event_handler", "boto3"))))
"""


def _env(ctx: Context) -> dict[str, str]:
    """Every subject's environment. Bytecode is cached in a scratch folder that the warm-up runs
    fill, for the router's modules as for the libraries': a deployed package ships its .pyc files
    (`router package`), and PYTHONDONTWRITEBYTECODE in the caller's shell would otherwise make
    every run recompile the router's own source while the floor's libraries load precompiled."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["POWERTOOLS_METRICS_DISABLED"] = "true"
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(ctx.scratch / NAME / "pycache")
    return env


class _Runner:
    """Times one fresh interpreter per call and keeps its last stdout (the module probe's JSON)."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.args, self.env, self.stdout = args, env, ""

    def __call__(self) -> float:
        start = time.perf_counter()
        out = subprocess.run([sys.executable, *self.args], env=self.env, check=True, capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        self.stdout = out.stdout
        return elapsed


def run(ctx: Context) -> None:
    env = _env(ctx)
    state = ctx.scratch / NAME
    baseline = "python -c 'import json'"
    api = "python -c 'import router.lambdas.api'"
    first = "python: import + config + runtime + first iris (sklearn) predict"
    first_onnx = "python: import + config + runtime + first iris-onnx predict"
    onnx_entry = _onnx_entry(ctx)
    commands = {
        baseline: ["-c", "import json"],
        api: ["-c", "import router.lambdas.api"],
        first: ["-c", FIRST_RESPONSE, str(ctx.demo_config), str(state / "sk"), "iris"],
    }
    if onnx_entry is not None:
        commands[first_onnx] = ["-c", FIRST_RESPONSE, str(ctx.demo_config), str(state / "onnx"), "iris-onnx", json.dumps(onnx_entry)]
    runners = {name: _Runner(args, env) for name, args in commands.items()}
    if not ctx.settings.quick:
        for warm_up in runners.values():  # the OS page cache and __pycache__ warm for every subject alike
            warm_up()
    rounds = 1 if ctx.settings.quick else max(3, ctx.settings.rounds // 2)
    times = run_rounds(runners, rounds)
    ctx.report.add(compare(NAME, times, api, baseline, unit="process", note=f"import cost {fmt_s(overhead(times, api, baseline))}"))
    ctx.report.add(
        compare(NAME, times, first, baseline, unit="process", note=f"cold start to first answer {fmt_s(overhead(times, first, baseline))}")
    )
    if onnx_entry is not None:
        ctx.report.add(compare(
            NAME, times, first_onnx, first, unit="process",
            note=f"the ONNX model's cold start saves {fmt_s(-overhead(times, first_onnx, first))}",
        ))
    _modules(ctx, env)
    for label, model in ((first, "iris"), (first_onnx, "iris-onnx")):
        if label in runners:
            counts = json.loads(runners[label].stdout.strip().splitlines()[-1])
            ctx.report.note(NAME, f"heavy modules after the first {model} answer: " + ", ".join(m for m, c in counts.items() if c))
    _import_profile(ctx, env)
    _lambda_entry(ctx, env)


def _lambda_entry(ctx: Context, env: dict[str, str]) -> None:
    """The Lambda entry point's cold start on the cheap model (20-feature LR) against the floor,
    wired for the local runtime and for the AWS one (DynamoDB job table, worker Lambda, IAM
    owners: boto3 clients are built, no AWS call is made, so no moto is needed)."""
    if ctx.settings.quick:  # six fresh interpreters importing scikit-learn: too slow for --quick
        ctx.report.note(NAME, "Lambda entry vs floor: skipped in --quick")
        return
    import yaml

    from benchmarks.fixtures import API_KEY, lr20, predict_event

    state = ctx.scratch / NAME / "entry"
    entry = lr20(state / "models")
    base = {"models": [{k: v for k, v in entry.items() if k != "latency_ms"}], "auth": {"api_keys": {API_KEY: "alice"}}}
    local_cfg, aws_cfg = state / "local.yaml", state / "aws.yaml"
    local_cfg.write_text(yaml.safe_dump({**base, "storage": {"jobs": (state / "jobs").as_uri(), "job_table": f"sqlite:///{state / 'jobs.db'}"}}))
    aws_cfg.write_text(yaml.safe_dump({**base, "storage": {"artifacts": "s3://router-bench-artifacts/models", "jobs": "s3://router-bench-jobs/jobs",
                                                          "job_table": "dynamodb://router-bench-jobs"}}))
    event = predict_event("lr20", [[0.1] * 20])
    aws_event = json.loads(json.dumps(event))
    aws_event["requestContext"]["identity"]["userArn"] = "arn:aws:iam::123456789012:user/alice"
    aws_env = {**env, "ROUTER_CONFIG": str(aws_cfg), "ROUTER_RUNTIME": "aws", "ROUTER_WORKER_FUNCTION": "router-bench-worker",
               "AWS_DEFAULT_REGION": env.get("AWS_DEFAULT_REGION", "us-east-1"), "AWS_EC2_METADATA_DISABLED": "true",
               "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    floor = "floor: python importing numpy, joblib, sklearn + joblib.load + predict (lr20)"
    floor_gc = "floor with the collector paused (gc.disable())"
    local = "Lambda entry, local runtime: first lr20 answer"
    aws = "Lambda entry, AWS runtime wiring: first lr20 answer"
    from router.config import uri_to_path

    runners = {
        floor: _Runner(["-c", FLOOR, str(uri_to_path(entry["artifact"])), json.dumps(event)], env),
        floor_gc: _Runner(["-c", FLOOR_GC_PAUSED, str(uri_to_path(entry["artifact"])), json.dumps(event)], env),
        local: _Runner(["-c", LAMBDA_ENTRY, json.dumps(event)], {**env, "ROUTER_CONFIG": str(local_cfg), "ROUTER_RUNTIME": "local"}),
        aws: _Runner(["-c", LAMBDA_ENTRY, json.dumps(aws_event)], aws_env),
    }
    for warm_up in runners.values():
        warm_up()
    rounds = max(5, ctx.settings.rounds)
    times = run_rounds(runners, rounds)
    for name, target in ((local, 1.15), (aws, 1.25)):
        ctx.report.add(compare(NAME, times, name, floor, unit="process",
                               note=f"cold start {fmt_s(overhead(times, name, floor))} over the floor (target <= {target}x)"))
    for name in (local, aws):  # the router's own cold-start work, the collector's pause set aside
        ctx.report.add(compare(NAME, times, name, floor_gc, unit="process",
                               note=f"{fmt_s(overhead(times, name, floor_gc))} over a floor that pauses the collector too"))
    ctx.report.note(NAME, f"imported by the first local answer: {runners[local].stdout.strip() or '[]'}; "
                          f"by the first AWS-wired answer: {runners[aws].stdout.strip() or '[]'}")


def _onnx_entry(ctx: Context) -> dict[str, object] | None:
    try:
        from benchmarks.fixtures import iris_onnx

        return iris_onnx(ctx.demo_config, ctx.scratch / NAME / "models")
    except ImportError:  # no [onnx] extra: the ONNX cold start is not measured
        return None


def _modules(ctx: Context, env: dict[str, str]) -> None:
    out = subprocess.run([sys.executable, "-c", MODULES_PROBE], env=env, check=True, capture_output=True, text=True)
    counts: dict[str, int] = json.loads(out.stdout.strip().splitlines()[-1])
    loaded = [f"{m} ({n} modules)" for m, n in counts.items() if n]
    absent = [m for m, n in counts.items() if not n]
    ctx.report.note(NAME, "heavy modules after `import router.lambdas.api`: " + (", ".join(loaded) or "none"))
    ctx.report.note(NAME, "not imported: " + ", ".join(absent))
    bad = [m for m in FORBIDDEN if counts.get(m)]
    ctx.report.note(
        NAME,
        "import-graph check (no boto3, pandas, sagemaker, torch): "
        + ("OK" if not bad else "VIOLATED by " + ", ".join(bad)),
    )


def _import_profile(ctx: Context, env: dict[str, str], top: int = 6) -> None:
    """The API module's direct imports that cost the most (cumulative, from -X importtime, whose
    lines come children first, each nesting level indented two more spaces)."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import router.lambdas.api"], env=env, check=True, capture_output=True, text=True
    )
    lines: list[tuple[int, int, str]] = []  # (depth, cumulative µs, module)
    for line in out.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue  # the header line
        name = parts[2]
        lines.append(((len(name) - len(name.lstrip(" "))) // 2, int(parts[1]), name.strip()))
    root = next((i for i, (d, _, n) in enumerate(lines) if d == 0 and n == "router.lambdas.api"), None)
    if root is None:
        return
    children: list[tuple[int, str]] = []
    for depth, cumulative, name in reversed(lines[:root]):
        if depth == 0:
            break  # the previous top-level import: before router.handlers.api
        if depth == 1:
            children.append((cumulative, name))
    children.sort(reverse=True)
    total = lines[root][1]
    ctx.report.note(
        NAME,
        f"import router.lambdas.api {fmt_s(total / 1e6)}; its largest direct imports: "
        + ", ".join(f"{n} {fmt_s(us / 1e6)}" for us, n in children[:top]),
    )
