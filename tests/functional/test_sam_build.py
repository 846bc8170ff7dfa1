"""`sam build` of infra/template.yaml with the real AWS SAM CLI (installed into its own virtualenv
under build/, once): each function's Metadata BuildMethod makefile runs the Makefile's
build-<LogicalId>, i.e. `router package`, so every function's artifact is exactly the package the
sandbox test imports, compiled extensions (*.so) included."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.lambda_sandbox import ROOT, SANDBOX_DIR, build_package

pytestmark = pytest.mark.sandbox

SAM_CLI = "aws-sam-cli==1.170.0"
FUNCTIONS = ("ApiFunction", "WorkerFunction", "EventsFunction", "SweeperFunction")


def sam_cli() -> Path:
    home = ROOT / "build" / f"sam-cli-{SAM_CLI.split('==')[1]}"
    sam = home / "bin" / "sam"
    if not (home / ".complete").is_file():
        venv.create(home, with_pip=True, clear=True)
        run = subprocess.run(
            [str(home / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", SAM_CLI],
            capture_output=True, text=True, check=False, timeout=1200,
        )
        if run.returncode != 0:
            if os.environ.get("CI"):
                pytest.fail(f"cannot install {SAM_CLI}:\n{run.stderr[-3000:]}")
            pytest.skip(f"cannot install {SAM_CLI}")
        (home / ".complete").write_text(SAM_CLI)
    return sam


def listing(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


def test_sam_build_makes_every_function_the_router_package(tmp_path: Path) -> None:
    package = Path(build_package(SANDBOX_DIR / "lambda")["out"])
    env = {
        **os.environ, "SAM_CLI_TELEMETRY": "0", "LAMBDA_DIR": str(package),
        # The Makefile's venv is this one (`make` made it): SAM runs make in the repository.
        "VENV": str(Path(sys.executable).parent.parent),
    }
    run = subprocess.run(
        [str(sam_cli()), "build", "-t", "infra/template.yaml", "--build-in-source", "--build-dir", str(tmp_path / "sam")],
        capture_output=True, text=True, check=False, timeout=1800, cwd=ROOT, env=env,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "Build Succeeded" in run.stdout
    want = listing(package)
    assert any(name.endswith(".so") for name in want)
    for fn in FUNCTIONS:
        assert listing(tmp_path / "sam" / fn) == want, fn
    built = (tmp_path / "sam" / "template.yaml").read_text()
    assert dict(_codeuris(built)) == {fn: fn for fn in FUNCTIONS}


def _codeuris(text: str) -> list[tuple[str, str]]:
    """(function, CodeUri) pairs of the built template's resources, read line by line."""
    out: list[tuple[str, str]] = []
    current = None
    for line in text.splitlines():
        if line.startswith("  ") and not line.startswith("   ") and line.strip().endswith(":"):
            current = line.strip()[:-1]
        elif line.strip().startswith("CodeUri:") and current in FUNCTIONS:
            out.append((current, line.split(":", 1)[1].strip()))
    return out
