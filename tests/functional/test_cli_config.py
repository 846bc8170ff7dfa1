"""`router config validate|schema`: exit codes, the summary of a valid file, every problem of an
invalid one on stderr (never a traceback), and the JSON Schema."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from router.cli import main
from router.cli.config_cmd import possible_routes
from router.config import load_config
from router.domain import Route

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "operator.yaml"
SHA = "b" * 64


def write(tmp_path: Path, text: str, name: str = "router.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_valid_example_exits_0_with_models_routes_and_storage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "validate", str(EXAMPLE)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    lines = out.splitlines()
    assert lines[0].startswith(f"{EXAMPLE}: valid config (sha256:")
    assert any(
        line.split() == ["iris", "sklearn", "routes:", "inline,", "lambda-job,", "batch-transform"]
        for line in lines
    )
    assert any(line.split() == ["churn-forest", "sklearn", "routes:", "batch-transform"] for line in lines)
    assert any(
        line.split()[:3] == ["embedder", "pytorch", "routes:"]
        and "endpoint (router-embedder-prod), serverless (router-embedder-serverless, 6144 MB), async-inference (router-embedder-async)," in line
        for line in lines
    )
    assert "not inline/lambda-job: model needs ~3600 MB (measured), over 0.8 x 3008 MB Lambda memory" in out
    assert "  job_table  dynamodb://router-jobs" in lines


def test_valid_example_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "validate", "--json", str(EXAMPLE)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["valid"] is True
    routes = {m["name"]: m["routes"] for m in doc["models"]}
    assert routes == {
        "iris": ["inline", "lambda-job", "batch-transform"],
        "churn-forest": ["batch-transform"],
        "embedder": ["endpoint", "serverless", "async-inference", "batch-transform"],
    }
    assert doc["models"][2]["excluded"]["inline"] == "framework pytorch does not run in-process (only sklearn and onnx do)"
    assert doc["storage"]["artifacts"] == "s3://acme-router-artifacts/models"


def test_invalid_file_exits_2_listing_every_problem_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path,
        f"""\
        runtime:
          lambda_timeout_s: 1200
          bogus: 1
        models:
          - {{name: a, framework: sklearn, artifact: s3://bkt/a, sha256: {SHA}}}
          - name: b
            framework: pytorch
            artifact: s3://bkt/b.tar.gz
            sha256: {SHA}
            endpoint: {{instance_type: ml.g4dn.xlarge}}
        """,
    )
    assert main(["config", "validate", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        f"{path}: invalid config, 3 problems:",
        "  runtime.lambda_timeout_s: input should be less than or equal to 900, got 1200 (AWS's fixed maximum: it cannot be raised) (line 2)",
        "  runtime.bogus: unknown key (line 3)",
        "  models[1].endpoint.name: field required (line 10)",
    ]


def test_invalid_file_as_json_still_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "routing: {prefer: fast}\n")
    assert main(["config", "validate", "--json", str(path)]) == 2
    out, err = capsys.readouterr()
    problem = "routing.prefer: input should be 'latency' or 'cost', got 'fast' (line 1)"
    assert json.loads(out) == {"valid": False, "source": str(path), "problems": [problem]}
    assert f"  {problem}" in err.splitlines()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("runtime: [29\n", "not valid YAML: "),
        ("- just\n- a list\n", "the top level must be a mapping of keys, got list"),
        ("a: 1\n---\nb: 2\n", "not valid YAML: expected a single document"),
    ],
)
def test_unparseable_files_exit_2_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    assert main(["config", "validate", str(write(tmp_path, text))]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[1].startswith(f"  {expected}")
    assert "Traceback" not in err


def test_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.yaml"
    assert main(["config", "validate", str(missing)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{missing}: invalid config, 1 problem:",
        "  cannot read the file: No such file or directory",
    ]


def test_missing_local_artifact_fails_unless_the_check_is_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path, f"models:\n  - {{name: a, framework: onnx, artifact: file://m/a.onnx, sha256: {SHA}}}\n"
    )
    assert main(["config", "validate", str(path)]) == 2
    assert (
        f"  models[0].artifact: file not found: {tmp_path.resolve()}/m/a.onnx (line 2)"
        in capsys.readouterr().err
    )
    assert main(["config", "validate", "--skip-artifact-check", str(path)]) == 0


def test_digest_mismatch_exits_2_naming_both_digests(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.onnx").write_bytes(b"not what the config pinned")
    actual = hashlib.sha256(b"not what the config pinned").hexdigest()
    path = write(tmp_path, f"models:\n  - name: a\n    framework: onnx\n    artifact: file://a.onnx\n    sha256: {SHA}\n")
    assert main(["config", "validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"  models[0].sha256: does not match {tmp_path.resolve()}/a.onnx (its sha256 is {actual}); " in err
    assert "(line 5)" in err and "Traceback" not in err
    assert main(["config", "validate", "--json", str(path)]) == 2
    assert json.loads(capsys.readouterr().out)["valid"] is False
    assert main(["config", "validate", "--skip-artifact-check", str(path)]) == 0


def test_json_into_a_closed_pipe_is_quiet() -> None:
    # `router config validate --json | head -1`: the reader leaves early; no BrokenPipe traceback.
    code = (
        "import sys; from router.cli import main; sys.argv[0] = 'router'; "
        "sys.exit(main(['config', 'validate', '--json', 'examples/operator.yaml']))"
    )
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the command writes a byte
    try:
        done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, stdout=write_end, capture_output=False,
                              stderr=subprocess.PIPE, check=False, timeout=120)
    finally:
        os.close(write_end)
    err = done.stderr.decode()
    assert done.returncode != 0
    assert "Traceback" not in err and "BrokenPipe" not in err, err


def test_empty_file_is_valid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "validate", str(write(tmp_path, ""))]) == 0
    out = capsys.readouterr().out
    assert "models (0):" in out
    assert "file://" + str(tmp_path.resolve() / "models") in out  # the default, resolved


def test_a_model_with_no_route_is_valid_but_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path,
        f"models:\n  - {{name: t, framework: pytorch, artifact: s3://bkt/t.tar.gz, sha256: {SHA}}}\n",
    )
    assert main(["config", "validate", str(path)]) == 0
    out, err = capsys.readouterr()
    assert "routes: NONE" in out
    assert err == "warning: model 't' can take no route; every request for it will fail\n"


def test_routes_in_principle_follow_memory_tmp_inline_and_batch_settings(tmp_path: Path) -> None:
    data = b"x" * 1000
    digest = hashlib.sha256(data).hexdigest()
    (tmp_path / "small.joblib").write_bytes(data)
    path = write(
        tmp_path,
        f"""\
        runtime: {{lambda_memory_mb: 1000, lambda_ephemeral_mb: 1000, safety_margin: 0.5}}
        sagemaker:
          batch_transform: {{instance_type: ml.m5.xlarge}}
        models:
          - {{name: small, framework: sklearn, artifact: file://small.joblib, sha256: {digest}}}
          - {{name: fits, framework: onnx, artifact: s3://bkt/a, sha256: {SHA}, profile: {{load_s: 1, per_record_ms: 1, memory_mb: 500}}}}
          - {{name: heavy, framework: onnx, artifact: s3://bkt/a, sha256: {SHA}, profile: {{load_s: 1, per_record_ms: 1, memory_mb: 501}}}}
          - {{name: by-size, framework: sklearn, artifact: s3://bkt/a, sha256: {SHA}, size_bytes: 200000000}}
          - {{name: big-tmp, framework: sklearn, artifact: s3://bkt/a, sha256: {SHA}, size_bytes: 1100000000, profile: {{load_s: 1, per_record_ms: 1, memory_mb: 100}}}}
          - {{name: disabled, framework: sklearn, artifact: s3://bkt/a, sha256: {SHA}, inline: false, batch_transform: {{enabled: false}}}}
        """,
    )
    cfg = load_config(path)
    opts = {m.name: possible_routes(cfg, m) for m in cfg.models}
    both = (Route.INLINE, Route.LAMBDA_JOB, Route.BATCH_TRANSFORM)
    assert opts["small"].routes == both
    assert opts["fits"].routes == both  # exactly 0.5 x 1000 MB
    assert opts["heavy"].routes == (Route.BATCH_TRANSFORM,)
    assert opts["heavy"].excluded[Route.INLINE] == "model needs ~501 MB (measured), over 0.5 x 1000 MB Lambda memory"
    # 3 x 200 MB (190.7 MiB) = 572 MB loaded, from the artifact size alone.
    assert opts["by-size"].excluded[Route.LAMBDA_JOB] == "model needs ~572 MB (3 x artifact size), over 0.5 x 1000 MB Lambda memory"
    # The artifact is cached whole in /tmp: it must fit the ephemeral storage itself.
    assert opts["big-tmp"].excluded[Route.INLINE] == "artifact 1.02 GiB does not fit the 1000 MiB Lambda /tmp"
    assert opts["disabled"].routes == ()
    assert "inline: false" in opts["disabled"].excluded[Route.INLINE]
    assert opts["disabled"].excluded[Route.BATCH_TRANSFORM] == "batch transform disabled for this model"


def test_schema_goes_to_stdout_or_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert "models" in printed["properties"]
    target = tmp_path / "router.schema.json"
    assert main(["config", "schema", "--output", str(target)]) == 0
    assert json.loads(target.read_text()) == printed


def test_schema_accepts_the_example_and_rejects_an_unknown_key(capsys: pytest.CaptureFixture[str]) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    import yaml

    assert main(["config", "schema"]) == 0
    validator = jsonschema.Draft202012Validator(json.loads(capsys.readouterr().out))
    example = yaml.safe_load(EXAMPLE.read_text())
    assert list(validator.iter_errors(example)) == []
    assert [e.message for e in validator.iter_errors({**example, "runtme": {}})] == [
        "Additional properties are not allowed ('runtme' was unexpected)"
    ]


def test_schema_to_an_unwritable_place_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "schema", "--output", str(tmp_path / "no" / "such" / "dir.json")]) == 2
    assert capsys.readouterr().err.startswith("cannot write ")


def test_config_without_a_subcommand_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config"]) == 2
    assert "validate" in capsys.readouterr().err


def test_validate_help_explains_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["config", "validate", "--help"])
    assert exc.value.code == 0
    assert "exit 2" in " ".join(capsys.readouterr().out.split())


def test_python_m_router_cli_validates_the_example() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "router.cli", "config", "validate", "examples/operator.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("examples/operator.yaml: valid config")
    assert "churn-forest" in done.stdout
