"""`router models <subcommand>`: operator commands on the models a config declares.

`package` builds a model's SageMaker model.tar.gz; `deploy` creates or updates its SageMaker Model,
EndpointConfig and Endpoint; `compile` converts a scikit-learn model to ONNX (models_compile.py). To add a subcommand, write a `register_<name>(sub)` function, here or
in a `router/cli/models_<name>.py` module (no `_cmd` suffix, so the top-level discovery skips it),
and append it to SUBCOMMANDS.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from router.cli.common import EXIT_INVALID, EXIT_OK, load_model_spec
from router.cli.models_compile import register_compile
from router.config import uri_to_path
from router.errors import ConfigError

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


# ---------------------------------------------------------------- deploy


def cmd_deploy(args: argparse.Namespace) -> int:
    # Imported here: boto3 and the deploy planner are operator-side only.
    from sagemaker_jobs.deploy import DeployError, deploy

    found = load_model_spec(args.config, args.name)
    if found is None:
        return EXIT_INVALID
    cfg, model = found
    data_url = args.model_data_url
    if data_url is None and model.artifact.startswith("s3://") and model.artifact.endswith((".tar.gz", ".tgz")):
        data_url = model.artifact
    if data_url is None:
        print(
            f"model {model.name!r}: SageMaker needs model.tar.gz on S3. Build it with "
            f"`router models package {args.config} {model.name}`, upload it, and pass --model-data-url s3://...",
            file=sys.stderr,
        )
        return EXIT_INVALID
    if not data_url.startswith("s3://"):
        print(f"--model-data-url must be an s3:// URL, got {data_url!r}", file=sys.stderr)
        return EXIT_INVALID
    try:
        if args.dry_run:  # offline: no client, no credentials, no SDK needed
            text = deploy(cfg, model, None, image_uri=args.image_uri, model_data_url=data_url, dry_run=True)
        else:
            import boto3

            client = boto3.client("sagemaker", region_name=cfg.sagemaker.region)
            scaling = boto3.client("application-autoscaling", region_name=cfg.sagemaker.region) if model.async_inference else None
            text = deploy(cfg, model, client, image_uri=args.image_uri, model_data_url=data_url, autoscaling_client=scaling)
    except (DeployError, ConfigError) as e:
        print(f"deploy failed: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # botocore: no credentials, no network, access denied...
        print(f"deploy failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(text)
    return EXIT_OK


def register_deploy(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "deploy",
        help="create or update a model's SageMaker Model, EndpointConfig and Endpoint (real-time and async inference)",
        description=(
            "Deploy model NAME of CONFIG to SageMaker with boto3: CreateModel, CreateEndpointConfig and "
            "CreateEndpoint the first time, UpdateEndpoint to a new config afterwards; a model with serverless also gets its "
            "serverless endpoint (a variant with ServerlessConfig, no instance type or count); a model with async_inference also gets "
            "its asynchronous inference endpoint (AsyncInferenceConfig: S3 output and failure paths, SNS topics), and once that "
            "is InService, a later deploy registers its autoscaling (min_instances 0: scale to zero). The container image "
            "comes from the model's image_uri, --image-uri, or the official image for its framework "
            "(needs the optional `deploy` extra: pip install 'lambda-sagemaker-router[deploy]'). "
            "--dry-run prints the exact API calls of a first deployment offline (no AWS call, no credentials; "
            "an image it cannot resolve without the SDK is shown as a marked placeholder) and changes nothing."
        ),
    )
    p.add_argument("config", metavar="CONFIG", type=Path, help="the operator config (YAML)")
    p.add_argument("name", metavar="NAME", help="the model's name in the config")
    p.add_argument("--model-data-url", metavar="S3_URL", help="s3:// URL of the uploaded model.tar.gz (default: the artifact, when it is one)")
    p.add_argument("--image-uri", metavar="URI", help="container image (default: the model's image_uri, else the official one)")
    p.add_argument("--dry-run", action="store_true", help="print the API calls offline (no AWS call), change nothing")
    p.set_defaults(func=cmd_deploy)


# ---------------------------------------------------------------- the group

SUBCOMMANDS: list[Callable[[Any], None]] = [register_package, register_deploy, register_compile]


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "models",
        help="package, deploy (SageMaker) and compile (ONNX) the models a config declares",
        description="Operator commands on the models of an operator config file.",
    )
    sub = parser.add_subparsers(dest="models_command", metavar="SUBCOMMAND")
    for add in SUBCOMMANDS:
        add(sub)

    def _no_subcommand(args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return EXIT_INVALID

    parser.set_defaults(func=_no_subcommand)
