"""`router models compile CONFIG NAME`: convert a scikit-learn model to ONNX, check that the
conversion answers like the model, and record it in the config (`models[].onnx`), so the inline
route and lambda-job run the ONNX graph. Refuses (exit 1, nothing written) when skl2onnx cannot
convert the model or the check misses the tolerance.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from router.cli.common import EXIT_INVALID, EXIT_OK, load_model_spec, wrap
from router.config import parse_config, uri_to_path
from router.errors import ConfigError

EXIT_REFUSED = 1
DEFAULT_ROWS = 2000
DEFAULT_AGREEMENT = 0.99  # classifiers: the least share of records whose labels agree
DEFAULT_MAX_ERROR = 1e-3  # regressors: the largest absolute difference of one prediction


def register_compile(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "compile",
        help="convert a scikit-learn model to ONNX (skl2onnx), check it agrees, record it in the config",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=wrap(
            "Convert scikit-learn model NAME of CONFIG to ONNX with skl2onnx (float32 input, probabilities "
            "as a tensor), then run both through the router's inline runner on the same records and compare: "
            "classifiers by the share of records whose labels agree, regressors by the largest absolute "
            "error. The records come from --data, or are generated from what the model says about its "
            "inputs (a StandardScaler's mean and scale, a MinMaxScaler's range, trees' split thresholds; "
            "else standard normal); the output says which. When the check passes, NAME.onnx is written "
            "next to the model's artifact and the model's `onnx:` entry in CONFIG gets its location, "
            "SHA-256 and the measured agreement (comments and layout kept); from then on the inline "
            "route and lambda-job run the ONNX graph, while SageMaker routes keep the joblib artifact."
        )
        + "\n\n"
        + wrap(
            "Refused, with CONFIG and the model folder untouched and exit status 1, when skl2onnx cannot "
            "convert the model (a custom estimator, an unsupported step) or the check misses the "
            "tolerance. Exit 2: CONFIG invalid, no such model, not a file:// scikit-learn joblib artifact."
        )
        + "\n\nexamples:\n  router models compile operator.yaml iris\n"
        "  router models compile operator.yaml iris --data rows.jsonl --tolerance 0.999 --json\n"
        "  router models compile operator.yaml price --tolerance 0.01 --dry-run",
    )
    p.add_argument("config", metavar="CONFIG", type=Path, help="the operator config (YAML)")
    p.add_argument("name", metavar="NAME", help="the scikit-learn model's name in the config")
    p.add_argument(
        "--tolerance", type=float, default=None, metavar="X",
        help=f"classifiers: the least share (0-1) of records whose labels must agree (default {DEFAULT_AGREEMENT}); "
        f"regressors: the largest absolute error allowed (default {DEFAULT_MAX_ERROR:g})",
    )
    p.add_argument("--data", type=Path, default=None, metavar="FILE",
                   help="records to check on: JSON Lines (lists, or objects by feature name) or .csv numbers")
    p.add_argument("--rows", type=int, default=None, metavar="N",
                   help=f"records to generate (default {DEFAULT_ROWS:,}), or at most N records of --data (default: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated records (default 0)")
    p.add_argument("--dry-run", action="store_true", help="convert and check, write nothing")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.set_defaults(func=cmd_compile)


def cmd_compile(args: argparse.Namespace) -> int:
    report: dict[str, Any] = {"model": args.name, "config": str(args.config), "compiled": False, "written": False}

    def fail(code: int, message: str) -> int:
        report["error"] = message
        if args.json:
            print(json.dumps(report, indent=2))
        print(f"router models compile: {message}", file=sys.stderr)
        return code

    if args.rows is not None and args.rows < 1:
        return fail(EXIT_INVALID, f"--rows must be at least 1, got {args.rows}")
    if args.tolerance is not None and not args.tolerance >= 0:
        return fail(EXIT_INVALID, f"--tolerance must be a number >= 0, got {args.tolerance}")
    found = load_model_spec(args.config, args.name)
    if found is None:
        return fail(EXIT_INVALID, f"cannot compile {args.name!r} (see above)")
    _, spec = found
    if spec.framework != "sklearn":
        return fail(EXIT_INVALID, f"model {spec.name!r} is {spec.framework}: only scikit-learn models are compiled to ONNX")
    if not spec.artifact.startswith("file://") or spec.artifact.endswith((".tar.gz", ".tgz")):
        return fail(EXIT_INVALID, f"model {spec.name!r}: {spec.artifact} is not a local joblib file; compile works on file:// joblib artifacts")
    artifact = uri_to_path(spec.artifact)
    if not artifact.is_file():
        return fail(EXIT_INVALID, f"model {spec.name!r}: {artifact} does not exist")
    from router.cli import onnx_compile as oc
    from router.cli.profiling import with_model_value, write_config_text

    actual = _sha256(artifact)
    if actual != spec.sha256:
        return fail(EXIT_INVALID, f"model {spec.name!r}: {artifact} has sha256 {actual}, the config says {spec.sha256}; refusing to compile it")
    import joblib

    try:
        estimator = joblib.load(artifact)
    except Exception as e:  # the operator's own pickle: a missing module, a wrong file
        return fail(EXIT_REFUSED, f"model {spec.name!r} cannot be loaded ({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})")
    target = artifact.with_name(f"{spec.name}.onnx")  # named after the model: artifacts may be shared
    tmp = target.with_name(f".{target.name}.{os.getpid()}.compiling")
    try:
        try:
            width = oc.n_features(estimator, spec)
            if oc.is_classifier(estimator) and args.tolerance is not None and args.tolerance > 1:
                raise oc.CompileError(f"--tolerance for a classifier is a share of records (0-1), got {args.tolerance}")
            tmp.write_bytes(oc.convert(estimator, width))
            data = oc.load_data(args.data, spec, args.rows) if args.data is not None else oc.sample(estimator, width, args.rows or DEFAULT_ROWS, args.seed)
            tolerance = args.tolerance
            if tolerance is None:
                tolerance = DEFAULT_AGREEMENT if oc.is_classifier(estimator) else DEFAULT_MAX_ERROR
            result = oc.check(spec, tmp, estimator, data, tolerance)
        except oc.CompileError as e:
            return fail(EXIT_REFUSED, f"model {spec.name!r}: {e}; nothing written")
        report.update(kind=result.kind, rows=result.rows, data=result.data, tolerance=result.tolerance,
                      agreement=result.agreement, max_abs_error=result.max_abs_error, max_rel_error=result.max_rel_error,
                      differing=result.differing, ties=result.ties, passed=result.passed, compiled=True)
        if not result.passed:
            report["disagreeing_records"] = result.disagreeing
            return fail(
                EXIT_REFUSED,
                f"model {spec.name!r}: the ONNX conversion does not pass: {result.summary()}; first records that differ: "
                f"{result.disagreeing}; nothing written (a looser --tolerance accepts it)",
            )
        digest = _sha256(tmp)
        entry = result.config_entry(_config_uri(target, args.config), digest)
        report.update(artifact=target.as_uri(), sha256=digest, size_bytes=tmp.stat().st_size)
        if not args.dry_run:
            text = args.config.read_text(encoding="utf-8")
            value = yaml.safe_dump(entry, default_flow_style=True, sort_keys=False, width=1 << 16).strip()
            try:
                new = with_model_value(text, spec.name, "onnx", value)
                parse_config(new, source=str(args.config), base_dir=args.config.resolve().parent, check_artifacts=False)
            except ConfigError as e:  # e.g. the model is written inline ({...}): checked before anything moves
                return fail(EXIT_REFUSED, f"cannot update {args.config}: {'; '.join(e.problems)}; nothing written")
            tmp.replace(target)
            write_config_text(args.config, new)
            report["written"] = True
    finally:
        tmp.unlink(missing_ok=True)
    if args.json:
        print(json.dumps(report, indent=2))
        return EXIT_OK
    verb = "would write" if args.dry_run else "wrote"
    print(f"compiled {spec.name} ({type(estimator).__name__}) to ONNX: {result.summary()}")
    print(f"  records: {result.data}")
    print(f"  {verb}:  {target} ({report['size_bytes']:,} bytes, sha256 {digest})")
    if args.dry_run:
        print(f"  config:  unchanged (--dry-run); without it, models[{spec.name}].onnx is set in {args.config}")
    else:
        print(f"  config:  models[{spec.name}].onnx set in {args.config}; the inline route and lambda-job now run the ONNX graph")
        print(f"  next:    `router profile {args.config} {spec.name} --write` measures its timings (the profile is the joblib model's)")
    return EXIT_OK


def _config_uri(path: Path, config: Path) -> str:
    """file://./relative when the file is under the config's folder (as configs are written), else absolute."""
    base = config.resolve().parent
    try:
        return f"file://./{path.resolve().relative_to(base).as_posix()}"
    except ValueError:
        return path.resolve().as_uri()


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
