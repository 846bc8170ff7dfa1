"""`router serve` and `router demo`: run the router on this machine, no cloud needed."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from router.cli.common import print_config_error
from router.config import load_config
from router.errors import ConfigError, StartupError


def register(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="serve a config on this machine (SQLite jobs, file storage, local SageMaker emulator)",
        description=(
            "Serve the HTTP API (docs/api.md) of one operator config on this machine: the same Lambda "
            "handlers behind a local HTTP server, an embedded SQLite job table, the file system for S3 "
            "and a local SageMaker emulator for models that declare an endpoint, a serverless endpoint or batch transform. "
            "Ctrl-C stops it cleanly."
        ),
    )
    p.add_argument("--config", "-c", required=True, metavar="FILE", help="operator config (YAML)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port to listen on (default: 8080; 0 picks a free one)")
    p.add_argument("--threads", type=_positive, default=64, metavar="N",
                   help="API requests handled at once (default: 64); a slow model endpoint holds only the requests waiting for it")
    p.add_argument("--serverless-idle-s", type=_seconds, default=None, metavar="S",
                   help=f"an emulated serverless endpoint stops its model server this long after its last call "
                        f"(scale to zero; the next call is a cold start; default: {DEFAULT_SERVERLESS_IDLE_S:g})")
    p.set_defaults(func=_serve)

    d = sub.add_parser(
        "demo",
        help="build example models on first run and serve them",
        description=(
            "Build example models from scikit-learn's bundled datasets (first run only), write their "
            "config with real digests, and serve it like `router serve`. Try the printed curl commands."
        ),
    )
    d.add_argument("--dir", default="examples/demo", type=Path, help="where the demo models and config live (default: examples/demo)")
    d.add_argument("--host", default="127.0.0.1")
    d.add_argument("--port", type=int, default=8080)
    d.add_argument("--rebuild", action="store_true", help="rebuild the models even if they exist")
    d.add_argument("--build-only", action="store_true", help="build the models and config, do not serve")
    d.set_defaults(func=_demo)


# As router.local.sagemaker_emulator.LocalEndpoints' default (not imported: --help stays light).
DEFAULT_SERVERLESS_IDLE_S = 120.0


class _Stop(Exception):
    """SIGTERM: stop like Ctrl-C."""


def _run(config_path: Path, host: str, port: int, banner: str = "", threads: int = 64, serverless_idle_s: float | None = None) -> int:
    import os

    # CloudWatch EMF metric lines are for Lambda's log pipeline; locally they would be noise.
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    try:
        from router.serve_app import create_app
    except ImportError as e:
        print(f"router serve needs the local extra ({e.name} is missing): pip install 'lambda-sagemaker-router[local]'", file=sys.stderr)
        return 1

    try:
        config = load_config(config_path)
    except ConfigError as e:
        print_config_error(e)
        return 2
    try:
        app = create_app(config, host, port, threads=threads, serverless_idle_s=serverless_idle_s)
    except StartupError as e:
        print(f"cannot start: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"cannot listen on {host}:{port}: {e.strerror or e}", file=sys.stderr)
        return 1

    def _term(signum: int, frame: Any) -> None:
        raise _Stop()

    signal.signal(signal.SIGTERM, _term)
    print(f"router serving {config_path} on {app.url}  ({len(config.models)} models; Ctrl-C to stop)", flush=True)
    if config.auth.enabled and not config.auth.api_keys:
        # The defaults (auth on, no keys) would answer every protected request 401, silently.
        print(
            "warning: auth is enabled but auth.api_keys is empty: every request except /v1/health and "
            "/v1/openapi.json will be 401 unauthorized; add keys under auth.api_keys or set `auth: {enabled: false}`",
            file=sys.stderr, flush=True,
        )
    if banner:
        print(banner.replace("{url}", app.url), flush=True)
    # The server runs off the main thread, which only waits: Ctrl-C and SIGTERM land here.
    serving = threading.Thread(target=app.serve_forever, name="router-http-server", daemon=True)
    serving.start()
    try:
        while serving.is_alive():
            serving.join(0.5)
    except (KeyboardInterrupt, _Stop):
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C would interrupt the clean-up
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("shutting down...", flush=True)
        app.shutdown()
    return 0


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, not {text!r}")
    return value


def _serve(args: argparse.Namespace) -> int:
    return _run(Path(args.config), args.host, args.port, threads=args.threads, serverless_idle_s=args.serverless_idle_s)


DEMO_BANNER = """
Try it (another terminal):
  curl -s {url}/v1/models -H 'Authorization: Bearer demo-key-alice-0001'
  curl -s {url}/v1/models/iris/predict -H 'Authorization: Bearer demo-key-alice-0001' \\
       -H 'Content-Type: application/json' -d '{"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}'
  curl -s {url}/v1/models/forest-xl/route -H 'Authorization: Bearer demo-key-alice-0001' \\
       -H 'Content-Type: application/json' -d '{"mode": "sync", "records": 10}'
"""


def _demo(args: argparse.Namespace) -> int:
    from router.cli.demo_build import build_demo

    config_path = build_demo(Path(args.dir), force=args.rebuild, progress=lambda msg: print(msg, flush=True))
    if args.build_only:
        print(f"demo config: {config_path}")
        return 0
    return _run(config_path, args.host, args.port, DEMO_BANNER)
