"""`router models <subcommand>`: operator commands on the models a config declares.

`package` builds a model's SageMaker model.tar.gz. To add a subcommand (e.g. `deploy`), write a
`register_<name>(sub)` function, here or in a `router/cli/models_<name>.py` module (no `_cmd`
suffix, so the top-level discovery skips it), and append it to SUBCOMMANDS.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from router.config import ModelSpec, RouterConfig, load_config, uri_to_path
from router.errors import ConfigError

EXIT_OK = 0
EXIT_INVALID = 2


def load_model_spec(config_path: Path, name: str) -> tuple[RouterConfig, ModelSpec] | None:
    """Load the config and find one model; on failure print why to stderr and return None."""
    try:
        cfg = load_config(config_path)
    except ConfigError as e:
        count = len(e.problems)
        print(f"{e.source}: invalid config, {count} problem{'s' if count != 1 else ''}:", file=sys.stderr)
        for problem in e.problems:
            print(f"  {problem}", file=sys.stderr)
        return None
    model = cfg.model(name)
    if model is None:
        known = ", ".join(m.name for m in cfg.models) or "none"
        print(f"{config_path}: no model named {name!r} (models: {known})", file=sys.stderr)
        return None
    return cfg, model


# ---------------------------------------------------------------- package


def cmd_package(args: argparse.Namespace) -> int:
    # Imported here: only this subcommand needs the packaging code.
    from sagemaker_jobs.package import UnsafeArchiveError, build_package

    found = load_model_spec(args.config, args.name)
    if found is None:
        return EXIT_INVALID
    _, model = found
    if model.framework == "container":
        print(f"model {model.name!r} is framework 'container': it brings its own image, there is nothing to package", file=sys.stderr)
        return EXIT_INVALID
    if not model.artifact.startswith("file://"):
        print(
            f"model {model.name!r}: artifact {model.artifact} is not a local file; "
            "`router models package` packages file:// artifacts (download it first)",
            file=sys.stderr,
        )
        return EXIT_INVALID
    artifact = uri_to_path(model.artifact)
    actual = _sha256(artifact)
    if actual != model.sha256:
        # The same rule as loading: a digest mismatch means this is not the model the config names.
        print(f"model {model.name!r}: {artifact} has sha256 {actual}, the config says {model.sha256}; refusing to package it", file=sys.stderr)
        return EXIT_INVALID
    out = args.out if args.out is not None else args.config.resolve().parent / ".router" / "packages" / f"{model.name}.tar.gz"
    try:
        info = build_package(artifact, out, framework=model.framework)
    except (ValueError, OSError) as e:
        kind = "unsafe archive" if isinstance(e, UnsafeArchiveError) else "cannot package"
        print(f"model {model.name!r}: {kind}: {e}", file=sys.stderr)
        return EXIT_INVALID
    print(f"packaged {model.name} ({model.framework})")
    print(f"  path:   {info.path}")
    print(f"  size:   {info.size_bytes} bytes")
    print(f"  sha256: {info.sha256}")
    return EXIT_OK


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def register_package(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "package",
        help="build a model's SageMaker model.tar.gz from its file:// artifact",
        description=(
            "Build model.tar.gz for model NAME of CONFIG: the artifact under its canonical name "
            "(model.joblib / model.onnx / model.pt), code/inference.py and code/requirements.txt, "
            "reproducibly (the same artifact gives the same sha256). Prints path, size and sha256."
        ),
    )
    p.add_argument("config", metavar="CONFIG", type=Path, help="the operator config (YAML)")
    p.add_argument("name", metavar="NAME", help="the model's name in the config")
    p.add_argument(
        "--out", type=Path, default=None, metavar="PATH", help="where to write the archive (default: CONFIG's folder/.router/packages/NAME.tar.gz)"
    )
    p.set_defaults(func=cmd_package)


# ---------------------------------------------------------------- the group

SUBCOMMANDS: list[Callable[[Any], None]] = [register_package]


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "models",
        help="package (and deploy) the models a config declares",
        description="Operator commands on the models of an operator config file.",
    )
    sub = parser.add_subparsers(dest="models_command", metavar="SUBCOMMAND")
    for add in SUBCOMMANDS:
        add(sub)

    def _no_subcommand(args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return EXIT_INVALID

    parser.set_defaults(func=_no_subcommand)
