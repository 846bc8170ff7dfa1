"""The Lambda handlers never load `router serve`'s HTTP server (nor CLI-only libraries): the
artifact stays lean and the cold start small."""

from __future__ import annotations

import subprocess
import sys

HANDLERS = ("router.lambdas.api", "router.lambdas.worker", "router.lambdas.events", "router.lambdas.sweeper")
SERVER_ONLY = ("uvicorn", "httptools", "starlette", "anyio", "router.local.http", "sagemaker", "torch")


def test_lambda_handlers_import_no_http_server() -> None:
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in HANDLERS)
        + f"print(sorted(m for m in {SERVER_ONLY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stdout
