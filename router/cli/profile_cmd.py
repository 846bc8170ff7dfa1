"""`router profile`: measure models' routing profiles (load, per record, memory) and optionally
write them into the config, so routing estimates come from this model on this hardware."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from router.cli.common import print_config_error, wrap
from router.config import load_config
from router.errors import ConfigError, RouterError


def register(sub: Any) -> None:
    p = sub.add_parser(
        "profile",
        help="measure models' load time, time per record and memory; --write puts them in the config",
        description=wrap(
            "Measure each in-process model (sklearn, onnx) of CONFIG as each route runs it: load_s = fetch + "
            "SHA-256 check + framework import + deserialize, as a cold process pays it (import_s: the import "
            "alone); routes.inline = fixed + per-record time of a sync request's work (its JSON body parsed as "
            "the API does, then the in-process predict) on 1 row and on --rows rows, the mean of the middle 80% "
            "of 200 timings each; routes.lambda-job = the lambda-job worker itself on jobs of 1 record, 1 and 8 chunks "
            "(jobs.chunk_records), on a scratch SQLite table and file storage next to the configured job "
            "table; routes.batch-transform = per record at one transform mini-batch; memory_mb = resident "
            "memory the loaded model adds. Medians of repeated runs elsewhere. Run it on hardware like the Lambda's "
            "(the same memory size gives the same CPU share). With --write, each model's `profile:` in CONFIG "
            "is replaced or added, comments and layout kept. docs/routing.md says how estimates use it."
        ),
    )
    p.add_argument("config", metavar="CONFIG", type=Path, help="the operator config (YAML)")
    p.add_argument("models", metavar="NAME", nargs="*", help="models to profile (default: every in-process model)")
    p.add_argument("--rows", type=int, default=1000, help="the sync batch size to time besides 1 row (default 1000, at least 2)")
    p.add_argument(
        "--sample", type=Path, metavar="FILE",
        help="real input rows to time with (JSON Lines of arrays or feature-keyed objects, or CSV numbers); "
        "per-record times depend on the data (a tree's depth on each row's path). Default: random normal rows",
    )
    p.add_argument("--write", action="store_true", help="write the measured profiles into CONFIG")
    p.set_defaults(func=_profile)


def _profile(args: argparse.Namespace) -> int:
    from router.cli.profiling import (
        flow,
        measure,
        read_sample,
        with_model_value,
        write_config_text,
        write_profile,
    )
    from router.cli.wiring import object_store

    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        print_config_error(e)
        return 2
    names = args.models or [m.name for m in cfg.models if m.in_process]
    unknown = [n for n in names if cfg.model(n) is None]
    if unknown:
        print(f"{args.config}: no model named {', '.join(map(repr, unknown))} (models: {', '.join(m.name for m in cfg.models)})", file=sys.stderr)
        return 2
    if args.rows < 2:
        print("--rows must be at least 2 (1 row is always timed too)", file=sys.stderr)
        return 2
    if args.sample is None:
        print("note: timing random rows; pass --sample FILE with real rows for per-record times that match your data", file=sys.stderr)
    if not names:
        print("no in-process (sklearn/onnx) models to profile; SageMaker-only models need a declared profile", file=sys.stderr)
        return 2
    objects = object_store()
    status = 0
    for name in names:
        spec = cfg.model(name)
        assert spec is not None
        print(f"{name}: measuring ...", file=sys.stderr, flush=True)
        try:
            sample = None if args.sample is None else read_sample(args.sample, spec)
            profile = measure(spec, objects, cfg, rows=args.rows, sample=sample)
        except RouterError as e:
            print(f"{name}: {e.message}", file=sys.stderr)
            status = 1
            continue
        print(f"{name}: profile: {flow(profile)}")
        saved = _saved_with(spec, objects)
        if saved is not None:
            print(f"{name}: saved_with: {saved}")
        if args.write:
            try:
                write_profile(args.config, name, profile)
                if saved is not None:
                    text = args.config.read_text(encoding="utf-8")
                    write_config_text(args.config, with_model_value(text, name, "saved_with", saved))
            except ConfigError as e:
                print_config_error(e)
                status = 1
    if args.write and status == 0:
        print(f"updated {args.config}", file=sys.stderr)
    return status


def _saved_with(spec: Any, objects: Any) -> str | None:
    """The versions a scikit-learn joblib/pickle artifact was saved with, as YAML flow text
    (`saved_with:`, checked by `router config validate` and `router package --config`)."""
    import tempfile

    from router.adapters.inline import is_package
    from router.model_versions import read_saved_with

    if spec.framework != "sklearn" or is_package(spec.artifact):
        return None
    with tempfile.TemporaryDirectory(prefix="router-saved-with-") as tmp:
        path = Path(tmp) / "model"
        objects.fetch_to(spec.artifact, str(path))
        found = read_saved_with(path)
    fields = []
    if found.sklearn:
        fields.append(f'sklearn: "{found.sklearn}"')
    if found.numpy_major:
        fields.append(f'numpy: "{found.numpy_major}"')
    return "{" + ", ".join(fields) + "}" if fields else None
