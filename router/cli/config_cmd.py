"""`router config validate|schema`: check an operator config file before it reaches a Lambda.

`validate` prints what the file declares (models, the routes each can take in principle, storage)
or every problem as `path: message (line N)`; `schema` prints the JSON Schema for editors.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from router.config import INPROCESS_FRAMEWORKS, ModelSpec, RouterConfig, json_schema, load_config
from router.domain import Route
from router.errors import ConfigError

EXIT_OK = 0
EXIT_INVALID = 2
MIB = 1024 * 1024
# Profile.memory_mb's documented default: a loaded model takes about 3 x its artifact's size.
ARTIFACT_MEMORY_FACTOR = 3


@dataclass(frozen=True, slots=True)
class RouteOptions:
    """The routes a model can take in principle (static config only: no request size, no backend
    state) and, for each route it cannot take, why. `router plan` decides per request."""

    routes: tuple[Route, ...]
    excluded: dict[Route, str]


def possible_routes(cfg: RouterConfig, model: ModelSpec) -> RouteOptions:
    """Which routes the config allows this model at all, with a reason for every excluded one."""
    routes: list[Route] = []
    excluded: dict[Route, str] = {}
    in_lambda = _in_lambda_problem(cfg, model)
    for route in (Route.INLINE, Route.LAMBDA_JOB):
        if in_lambda is None:
            routes.append(route)
        else:
            excluded[route] = in_lambda
    if model.endpoint is not None:
        routes.append(Route.ENDPOINT)
    else:
        excluded[Route.ENDPOINT] = "no endpoint configured"
    if cfg.batch_settings(model) is not None:
        routes.append(Route.BATCH_TRANSFORM)
    elif model.batch_transform is not None and not model.batch_transform.enabled:
        excluded[Route.BATCH_TRANSFORM] = "batch_transform.enabled is false"
    else:
        excluded[Route.BATCH_TRANSFORM] = "no batch_transform settings (model or sagemaker.batch_transform)"
    order = [Route.INLINE, Route.ENDPOINT, Route.LAMBDA_JOB, Route.BATCH_TRANSFORM]
    return RouteOptions(routes=tuple(sorted(routes, key=order.index)), excluded=excluded)


def _in_lambda_problem(cfg: RouterConfig, model: ModelSpec) -> str | None:
    """Why the model cannot run inside the router/worker Lambda, or None when it can."""
    if model.framework not in INPROCESS_FRAMEWORKS:
        return f"{model.framework} models run only on SageMaker"
    if not model.inline:
        return "inline is false"
    rt = cfg.runtime
    memory_mb = model.profile.memory_mb if model.profile is not None else None
    if memory_mb is None and model.size_bytes is not None:
        memory_mb = ARTIFACT_MEMORY_FACTOR * model.size_bytes / MIB
    if memory_mb is not None and memory_mb > rt.safety_margin * rt.lambda_memory_mb:
        return f"needs ~{memory_mb:,.0f} MB loaded > {rt.safety_margin:g} x {rt.lambda_memory_mb:,} MB Lambda memory"
    # The artifact is cached in the Lambda's /tmp (ephemeral storage, 512-10,240 MB).
    if model.size_bytes is not None and model.size_bytes / MIB > rt.safety_margin * rt.lambda_ephemeral_mb:
        return (
            f"artifact of {model.size_bytes / MIB:,.0f} MB > {rt.safety_margin:g} x "
            f"{rt.lambda_ephemeral_mb:,} MB Lambda /tmp"
        )
    return None


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


def _print_summary(cfg: RouterConfig, source: str) -> None:
    print(f"{source}: valid config ({cfg.digest})")
    print(f"models ({len(cfg.models)}):")
    width = max((len(m.name) for m in cfg.models), default=0)
    for m in cfg.models:
        opts = possible_routes(cfg, m)
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
        if not possible_routes(cfg, m).routes:
            print(
                f"warning: model {m.name!r} can take no route; every request for it will fail",
                file=sys.stderr,
            )


def _route_label(model: ModelSpec, route: Route) -> str:
    if route is Route.ENDPOINT and model.endpoint is not None:
        return f"endpoint ({model.endpoint.name})"
    return route.value


def cmd_validate(args: argparse.Namespace) -> int:
    source = str(args.file)
    try:
        cfg = load_config(args.file, check_artifacts=not args.skip_artifact_check)
    except ConfigError as e:
        count = len(e.problems)
        print(f"{source}: invalid config, {count} problem{'s' if count != 1 else ''}:", file=sys.stderr)
        for problem in e.problems:
            print(f"  {problem}", file=sys.stderr)
        if args.json:
            print(json.dumps({"valid": False, "source": source, "problems": e.problems}, indent=2))
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
            "Validate FILE against the config schema, check that file:// artifacts exist, and print "
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
        help="do not require file:// artifacts to exist (s3:// artifacts are never checked offline)",
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
