"""End-to-end fixtures: the demo models (built once per session, as the README's main command
builds them) and `router serve` started as a real subprocess on a free port, spoken to over HTTP."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from router.client import RouterClient

# Typical figures of the demo models, fixed so that no routing decision in a test depends on how
# fast (or loaded) the machine building the demo is.
DEMO_PROFILES = {
    "iris": {"load_s": 1.2, "per_record_ms": 0.02, "memory_mb": 17.0},
    "forest-xl": {"load_s": 1.1, "per_record_ms": 0.05},
    "digits-mlp": {"load_s": 0.14, "per_record_ms": 0.004, "memory_mb": 6.8},
}

ALICE = "demo-key-alice-0001"
BOB = "demo-key-bob-00001"


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from router.cli.demo_build import build_demo

    out = tmp_path_factory.mktemp("demo")
    build_demo(out, progress=lambda msg: None, profiles=DEMO_PROFILES)
    return out


def write_variant(demo_dir: Path, name: str, **changes: Any) -> Path:
    """A copy of the demo config next to it (so relative artifact paths hold) with its own job
    storage and any section changes, e.g. jobs={"chunk_records": 1000}."""
    data = yaml.safe_load((demo_dir / "operator.yaml").read_text())
    data["storage"] = {
        "artifacts": "file://./models",
        "jobs": f"file://./.{name}/jobs",
        "job_table": f"sqlite:///./.{name}/jobs.db",
    }
    for section, values in changes.items():
        data.setdefault(section, {}).update(values)
    path = demo_dir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


AWS_CREDENTIAL_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SECURITY_TOKEN", "AWS_SESSION_TOKEN", "AWS_PROFILE")


class Server:
    def __init__(self, config: Path, *, without_aws_credentials: bool = False, args: tuple[str, ...] = ()) -> None:
        self.config = config
        self.args = args  # more `router serve` options
        self.without_aws_credentials = without_aws_credentials
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.log: list[str] = []

    def start(self, timeout_s: float = 60.0) -> Server:
        env = {**os.environ, "POWERTOOLS_METRICS_DISABLED": "true", "PYTHONUNBUFFERED": "1"}
        if self.without_aws_credentials:  # like a user's machine with no AWS set up
            for var in AWS_CREDENTIAL_VARS:
                env.pop(var, None)
            env.update({"AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_CONFIG_FILE": "/nonexistent"})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "router.cli", "serve", "--config", str(self.config), "--port", "0", *self.args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("router serve exited:\n" + "".join(self.log))
            self.log.append(line)
            m = re.search(r"on (http://127\.0\.0\.1:\d+)", line)
            if m:
                self.url = m.group(1)
                break
        else:
            raise RuntimeError("router serve did not start in time")
        import threading

        threading.Thread(target=self._drain, daemon=True).start()
        return self

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        try:
            for line in self.proc.stdout:
                self.log.append(line)
        except ValueError:  # closed by stop()
            pass

    def client(self, key: str | None = ALICE) -> RouterClient:
        return RouterClient(self.url, key, timeout_s=120)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return int(self.proc.returncode)


@pytest.fixture(scope="module")
def server(demo_dir: Path) -> Iterator[Server]:
    srv = Server(demo_dir / "operator.yaml").start()
    yield srv
    srv.stop()


def wait_for(predicate: Any, timeout_s: float = 60.0, interval_s: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval_s)
