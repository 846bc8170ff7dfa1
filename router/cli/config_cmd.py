"""`router config validate|schema`: check an operator config file before it reaches a Lambda.

`validate` prints what the file declares (models, the routes each can take in principle, storage)
or every problem as `path: message (line N)`; `schema` prints the JSON Schema for editors.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
from pathlib import Path
from typing import Any

from router import routing
from router.cli.common import print_config_error
from router.config import INPROCESS_FRAMEWORKS, ModelSpec, RouterConfig, json_schema, load_config, uri_to_path
from router.domain import Route
from router.errors import ConfigError
from router.model_versions import SavedWith, numpy_refusal, read_saved_with, sklearn_refusal
from router.routing import RouteOptions

EXIT_OK = 0
EXIT_INVALID = 2


def possible_routes(cfg: RouterConfig, model: ModelSpec) -> RouteOptions:
    """Which routes the config allows this model at all (the routing engine's own answer)."""
    return routing.possible_routes(model, cfg)


def lambda_versions(package: Path | None = None) -> dict[str, str]:
    """The library versions of the Lambda package: a built package's own (`router package`), else
    the pinned set it is built from."""
    if package is not None:
        manifest = package / ".router-package.json"
        try:
            versions = json.loads(manifest.read_text())["result"]["versions"]
        except (OSError, ValueError, KeyError, TypeError):
            raise ConfigError(str(manifest), ["not a package built by `router package` (run it first)"]) from None
        return {str(k): str(v) for k, v in versions.items()}
    pins: dict[str, str] = {}
    for name in ("lambda-base.txt", "lambda-onnx.txt"):
        for line in (Path(__file__).resolve().parent / "requirements" / name).read_text().splitlines():
            req, _, version = line.split("#", 1)[0].strip().partition("==")
            if version:
                pins[req.strip().lower()] = version.strip()
    return pins


def saved_with(model: ModelSpec, *, read_file: bool = True) -> SavedWith:
    """What the model was saved with: declared in the config, else read from a file:// artifact."""
    declared = model.saved_with
    found = SavedWith()
    if read_file and model.framework == "sklearn" and model.artifact.startswith("file://") and not model.artifact.endswith((".tar.gz", ".tgz")):
        with contextlib.suppress(OSError):  # a missing file is reported by the artifact check
            found = read_saved_with(uri_to_path(model.artifact))
    sk = (declared.sklearn if declared else None) or found.sklearn
    major = found.numpy_major
    if declared is not None and declared.numpy:
        major = int(declared.numpy.split(".")[0])
    return SavedWith(sklearn=sk, numpy_major=major)


def model_version_problems(cfg: RouterConfig, versions: dict[str, str], *, read_files: bool = True) -> list[tuple[str, bool]]:
    """(message, refused) for each in-process model the Lambda's libraries cannot load. Without
    `read_files` only what the config declares (`saved_with`) is checked."""
    out: list[tuple[str, bool]] = []
    for i, m in enumerate(cfg.models):
        if read_files and m.in_process and m.framework == "onnx":
            problem = onnx_refusal(m, versions.get("onnxruntime"))
            if problem:
                out.append((f"models[{i}]: {problem}", True))
        if not m.in_process or m.framework != "sklearn":
            continue
        if m.onnx is not None:  # compiled: the joblib file is never loaded in-process, its ONNX graph is
            if "onnxruntime" not in versions:
                out.append((f"models[{i}]: model {m.name!r} runs its ONNX conversion in-process, and the package has "
                            "no onnxruntime (`router package --with-onnx`, or the container image)", True))
            continue
        found = saved_with(m, read_file=read_files)
        for problem in (
            sklearn_refusal(m.name, found.sklearn, versions.get("scikit-learn", "0")),
            numpy_refusal(m.name, found.numpy_major, versions.get("numpy", "0")),
        ):
            if problem:
                out.append((f"models[{i}]: {problem}", True))
    return out


def onnx_refusal(model: ModelSpec, packaged: str | None) -> str | None:
    """An ONNX graph (its opset, its operators) loads in onnxruntime X iff onnxruntime X can build a
    session from it: with the package's onnxruntime installed here, try exactly that."""
    if packaged is None or not model.artifact.startswith("file://") or model.artifact.endswith((".tar.gz", ".tgz")):
        return None
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    if ort.__version__ != packaged:
        return None  # another onnxruntime here proves nothing about the package's
    path = uri_to_path(model.artifact)
    if not path.is_file():
        return None
    try:
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:
        text = " ".join(str(e).split())
        # onnxruntime prefixes the C++ function that failed: keep the sentence after it.
        cause = re.sub(r"^.*?\)\s(?=[A-Z])", "", text)[:300] or type(e).__name__
        opset = _onnx_opset(path)
        declared = f"declares opset {opset}; " if opset is not None else ""
        return (
            f"model {model.name!r}: {declared}onnxruntime {packaged} (the Lambda package's) cannot load it ({cause}); "
            "export it for an opset this onnxruntime supports (skl2onnx target_opset) or package a newer onnxruntime"
        )
    return None


def _onnx_opset(path: Path) -> int | None:
    """The default-domain opset an ONNX file declares (needs the `onnx` package)."""
    try:
        import onnx
    except ImportError:
        return None
    try:
        graph = onnx.load(str(path), load_external_data=False)
    except Exception:
        return None
    return next((int(o.version) for o in graph.opset_import if o.domain in ("", "ai.onnx")), None)


def summary(cfg: RouterConfig, source: str) -> dict[str, Any]:
    """The JSON summary `validate --json` prints for a valid file."""
    models = []
    for m in cfg.models:
        opts = possible_routes(cfg, m)
        models.append(
            {
                "name": m.name,
                "framework": m.framework,
                "version": m.version,
                "size_bytes": m.size_bytes,
                "saved_with": _saved_with_json(m),
                "routes": [r.value for r in opts.routes],
                "excluded": {r.value: why for r, why in opts.excluded.items()},
            }
        )
    return {
        "valid": True,
        "source": source,
        "digest": cfg.digest,
        "models": models,
        "storage": cfg.storage.model_dump(),
    }


def _saved_with_json(m: ModelSpec) -> dict[str, Any] | None:
    if m.framework != "sklearn":
        return None
    found = saved_with(m)
    return {"sklearn": found.sklearn, "numpy_major": found.numpy_major}


def _print_summary(cfg: RouterConfig, source: str) -> None:
    print(f"{source}: valid config ({cfg.digest})")
    print(f"models ({len(cfg.models)}):")
    width = max((len(m.name) for m in cfg.models), default=0)
    options = {m.name: possible_routes(cfg, m) for m in cfg.models}
    for m in cfg.models:
        opts = options[m.name]
        routes = ", ".join(_route_label(m, r) for r in opts.routes) or "NONE"
        print(f"  {m.name:<{width}}  {m.framework:<9}  routes: {routes}")
        for route, why in opts.excluded.items():
            if route in (Route.INLINE, Route.LAMBDA_JOB) and m.framework not in INPROCESS_FRAMEWORKS:
                continue  # obvious from the framework; keep the summary short
            if route is Route.LAMBDA_JOB and Route.INLINE in opts.excluded:
                continue  # same reason as inline
            if route is Route.ENDPOINT or (route is Route.BATCH_TRANSFORM and opts.routes):
                continue  # simply not configured
            label = "inline/lambda-job" if route is Route.INLINE else route.value
            print(f"  {'':<{width}}  {'':<9}  not {label}: {why}")
    print("storage:")
    for key, value in cfg.storage.model_dump().items():
        print(f"  {key:<9}  {value}")
    for m in cfg.models:
        if not options[m.name].routes:
            print(
                f"warning: model {m.name!r} can take no route; every request for it will fail",
                file=sys.stderr,
            )


def _route_label(model: ModelSpec, route: Route) -> str:
    if route is Route.ENDPOINT and model.endpoint is not None:
        return f"endpoint ({model.endpoint.name})"
    if route is Route.ASYNC_INFERENCE and model.async_inference is not None:
        return f"async-inference ({model.async_endpoint_name})"
    if route is Route.SERVERLESS and model.serverless is not None:
        return f"serverless ({model.serverless_endpoint_name}, {model.serverless.memory_mb} MB)"
    return route.value


def cmd_validate(args: argparse.Namespace) -> int:
    source = str(args.file)
    try:
        cfg = load_config(args.file, check_artifacts=not args.skip_artifact_check, check_digests=not args.skip_artifact_check)
    except ConfigError as e:
        print_config_error(e)
        if args.json:
            print(json.dumps({"valid": False, "source": source, "problems": e.problems}, indent=2))
        return EXIT_INVALID
    try:
        versions = lambda_versions(args.package)
    except ConfigError as e:
        print_config_error(e)
        return EXIT_INVALID
    refusals = [msg for msg, refused in model_version_problems(cfg, versions, read_files=not args.skip_artifact_check) if refused]
    if refusals:
        # Valid YAML, but a model the Lambda cannot load: it would fail at its first request.
        print(f"{source}: {len(refusals)} model{'s' if len(refusals) != 1 else ''} the Lambda package cannot load:", file=sys.stderr)
        for msg in refusals:
            print(f"  {msg}", file=sys.stderr)
        if args.json:
            print(json.dumps({"valid": False, "source": source, "problems": refusals}, indent=2))
        return EXIT_INVALID
    if args.json:
        print(json.dumps(summary(cfg, source), indent=2))
    else:
        _print_summary(cfg, source)
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    text = json.dumps(json_schema(), indent=2) + "\n"
    if args.output is None:
        sys.stdout.write(text)
        return EXIT_OK
    try:
        Path(args.output).write_text(text, encoding="utf-8")
    except OSError as e:
        print(f"cannot write {args.output}: {e.strerror or e}", file=sys.stderr)
        return EXIT_INVALID
    print(f"wrote {args.output}", file=sys.stderr)
    return EXIT_OK


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "config",
        help="validate an operator config file, or print its JSON Schema",
        description="Check the operator config file (docs/configuration.md) before deploying it.",
    )
    sub = parser.add_subparsers(dest="config_command", metavar="SUBCOMMAND")

    validate = sub.add_parser(
        "validate",
        help="check a config file; exit 0 with a summary, or 2 listing every problem",
        description=(
            "Validate FILE against the config schema, check that file:// artifacts exist and match their "
            "sha256, and print "
            "the models (framework, routes each can take in principle) and storage locations. "
            "On error print every problem as `path: message (line N)` to stderr and exit 2."
        ),
    )
    validate.add_argument("file", metavar="FILE", type=Path, help="the operator config (YAML)")
    validate.add_argument(
        "--json", action="store_true", help="print the summary or the problems as JSON on stdout"
    )
    validate.add_argument(
        "--skip-artifact-check",
        action="store_true",
        help="do not check that file:// artifacts exist and match their sha256 (s3:// artifacts are never checked offline)",
    )
    validate.add_argument(
        "--package",
        type=Path,
        metavar="DIR",
        help="check models against this built Lambda package's libraries (default: the pinned set `router package` installs)",
    )
    validate.set_defaults(func=cmd_validate)

    schema = sub.add_parser(
        "schema",
        help="print the config file's JSON Schema (for editor completion and CI checks)",
        description="Print the JSON Schema (draft 2020-12) of the operator config file.",
    )
    schema.add_argument("--output", "-o", metavar="FILE", help="write the schema to FILE instead of stdout")
    schema.set_defaults(func=cmd_schema)

    def _no_subcommand(args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return EXIT_INVALID

    parser.set_defaults(func=_no_subcommand)
