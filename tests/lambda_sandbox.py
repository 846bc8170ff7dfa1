"""A Lambda-like sandbox for the built deployment package (`router package`).

One function instance = one process of the runtime's exact Python (pyenv's 3.12.x for
python3.12), started with -I -S so only the package and the runtime's boto3 are on sys.path, in a
private mount namespace where every mount is read-only except a fresh tmpfs on /tmp of the
function's ephemeral size, with its address space capped at the function's MemorySize
(prlimit --as), and with Lambda's environment variables only (env -i).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SANDBOX_DIR = ROOT / "build" / "sandbox"
DRIVER = Path(__file__).resolve().parent / "lambda_driver.py"
BOTO3_REQUIREMENTS = ROOT / "router" / "cli" / "requirements" / "lambda-boto3.txt"
# Machine settings an older OpenBLAS needs on some processors: passed through, never changed.
PASSED_THROUGH = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")

_SCRIPT = r"""
set -e
eph="$1"; n="$2"; shift 2
# What the instance reads (task root, boto3, driver) must survive the fresh /tmp even when it lives
# under /tmp (a CI clone may): bound aside on a private tmpfs first, then back at the same paths.
stage=""
for d in /mnt /media /srv /opt; do if [ -d "$d" ]; then stage="$d"; break; fi; done
mount -t tmpfs -o size=1m tmpfs "$stage"
i=0
while [ "$i" -lt "$n" ]; do
  eval "p$i=\"\$1\""; mkdir "$stage/$i"; mount --bind "$1" "$stage/$i"; shift; i=$((i + 1))
done
for m in $(awk '{print $2}' /proc/self/mounts | sort -u); do
  case "$m" in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*) continue ;; esac
  mount -o remount,bind,ro "$m" 2>/dev/null || true
done
mount -t tmpfs -o "size=${eph}m,mode=1777" tmpfs /tmp
i=0
while [ "$i" -lt "$n" ]; do
  eval "p=\"\$p$i\""; mkdir -p "$p"; mount --bind "$stage/$i" "$p"; mount -o remount,bind,ro "$p"; i=$((i + 1))
done
exec "$@"
"""


class SandboxUnavailable(Exception):
    pass


def runtime_python(runtime: str) -> Path:
    """The runtime's Python: $ROUTER_SANDBOX_PYTHON, else pyenv's newest matching version."""
    wanted = runtime.removeprefix("python")
    explicit = os.environ.get("ROUTER_SANDBOX_PYTHON")
    if explicit:
        return Path(explicit)
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found = sorted(
        (p for p in root.glob(f"{wanted}.*") if (p / "bin" / "python").is_file() and p.name.count(".") == 2),
        key=lambda p: tuple(int(x) for x in p.name.split(".") if x.isdigit()),
    )
    if not found:
        raise SandboxUnavailable(f"no Python {wanted} for the {runtime} sandbox under {root} (set ROUTER_SANDBOX_PYTHON)")
    return found[-1] / "bin" / "python"


def check_isolation_tools() -> None:
    for tool in ("unshare", "prlimit", "mount"):
        if shutil.which(tool) is None:
            raise SandboxUnavailable(f"{tool} (util-linux) is not installed")
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        raise SandboxUnavailable(f"cannot create a mount namespace: {probe.stderr.strip()}")


def build_package(out: Path, *extra: str) -> dict[str, Any]:
    """`router package --json` into `out` (reused when its inputs are unchanged)."""
    run = subprocess.run(
        [sys.executable, "-m", "router.cli", "package", "--out", str(out), "--json", *extra],
        capture_output=True, text=True, check=False, cwd=ROOT, timeout=1800,
    )
    if run.returncode not in (0, 1) or not run.stdout.strip():
        raise AssertionError(f"router package failed ({run.returncode}):\n{run.stderr}")
    result: dict[str, Any] = json.loads(run.stdout)
    result["stderr"] = run.stderr
    return result


def boto3_dir(base: Path) -> Path:
    """boto3 and its dependencies in their own folder: what the Lambda runtime provides."""
    key = hashlib.sha256(BOTO3_REQUIREMENTS.read_bytes()).hexdigest()[:16]
    target = base / f"boto3-{key}"
    if not (target / ".complete").is_file():
        shutil.rmtree(target, ignore_errors=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
             "--no-compile", "--only-binary=:all:", "--target", str(target), "-r", str(BOTO3_REQUIREMENTS)],
            check=True, capture_output=True, timeout=600,
        )
        (target / ".complete").write_text(key)
    return target


@dataclass(frozen=True)
class Function:
    """What the template gives one function: its handler, memory, timeout and /tmp."""

    name: str
    handler: str
    memory_mb: int
    timeout_s: int
    ephemeral_mb: int = 512


def invoke(
    python: Path, task: Path, boto: Path, fn: Function, events: list[dict[str, Any]], env: dict[str, str], work: Path
) -> dict[str, Any]:
    """Cold-start one instance of `fn` in the sandbox and send it `events` in order."""
    work.mkdir(parents=True, exist_ok=True)
    steps = work / f"{fn.name}-{hashlib.sha256(json.dumps(events).encode()).hexdigest()[:12]}.json"
    steps.write_text(json.dumps({"handler": fn.handler, "timeout_s": fn.timeout_s, "events": events}))
    driver = work / "driver.py"
    shutil.copyfile(DRIVER, driver)
    lambda_env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "LAMBDA_TASK_ROOT": str(task),
        "AWS_LAMBDA_FUNCTION_NAME": fn.name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory_mb),
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
        **{k: os.environ[k] for k in PASSED_THROUGH if k in os.environ},
        **env,
    }
    cmd = [
        "unshare", "--mount", "--propagation", "private", "--", "sh", "-c", _SCRIPT, "sh", str(fn.ephemeral_mb),
        "3", str(task), str(boto), str(work),
        "prlimit", f"--as={fn.memory_mb * 1024 * 1024}", "--",
        "env", "-i", *(f"{k}={v}" for k, v in lambda_env.items()),
        str(python), "-I", "-S", str(driver), str(task), str(boto), str(steps),
    ]
    run = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=600, cwd=work)
    if run.returncode != 0:
        raise AssertionError(f"{fn.name} failed in the sandbox (exit {run.returncode}):\n{run.stderr[-6000:]}")
    out: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    out["stderr"] = run.stderr
    return out
