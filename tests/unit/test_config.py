"""The operator config: every mistake is one precise `path: message (line N)` problem, never a
traceback; omitted limits are AWS's; relative locations resolve against the file's folder."""

from __future__ import annotations

import hashlib
import re
import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from router.config import RouterConfig, load_config, parse_config
from router.errors import ConfigError

SHA = "a" * 64


def problems_of(text: str, *, check_artifacts: bool = False, base_dir: Path | None = None) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        parse_config(
            textwrap.dedent(text), source="t.yaml", base_dir=base_dir, check_artifacts=check_artifacts
        )
    return exc.value.problems


def one_problem(text: str, **kw: object) -> str:
    problems = problems_of(text, **kw)  # type: ignore[arg-type]
    assert len(problems) == 1, problems
    return problems[0]


def model(name: str = "iris", **extra: str) -> str:
    fields = {
        "name": name,
        "framework": "sklearn",
        "artifact": "s3://bkt/iris.joblib",
        "sha256": SHA,
        **extra,
    }
    return "  - {" + ", ".join(f"{k}: {v}" for k, v in fields.items()) + "}\n"


# ---------------------------------------------------------------- defaults


def test_empty_file_is_valid_and_takes_every_default() -> None:
    for text in ("", "# only a comment\n", "\n\n"):
        cfg = parse_config(text, check_artifacts=False)
        assert cfg.models == []
        assert cfg.runtime.sync_timeout_s == 29
        assert cfg.version == 1


def test_omitted_limits_default_to_the_current_aws_values() -> None:
    rt = parse_config("runtime: {lambda_memory_mb: 1024}\n").runtime
    assert rt.lambda_memory_mb == 1024  # the one given
    assert rt.sync_timeout_s == 29  # API Gateway REST integration timeout
    assert rt.lambda_timeout_s == 900  # Lambda maximum
    assert rt.safety_margin == 0.8
    assert rt.sync_payload_mb == 6  # Lambda sync invoke payload
    assert rt.endpoint_timeout_s == 60  # SageMaker real-time endpoint
    assert rt.endpoint_payload_mb == 6
    assert rt.api_payload_mb == 10


# ---------------------------------------------------------------- precise errors


def test_unknown_top_level_key_names_the_key_and_its_line() -> None:
    assert one_problem("version: 1\nruntme: {}\n") == "runtme: unknown key (line 2)"


def test_unknown_nested_key_gives_its_full_path_and_line() -> None:
    block_model = (
        "  - name: b\n"
        "    framework: onnx\n"
        "    artifact: s3://bkt/b.onnx\n"
        f"    sha256: {SHA}\n"
        "    endpoint: {name: b-prod, instanse_type: ml.m5.large}\n"
    )
    text = "runtime:\n  sync_timeout_s: 29\n  lambda_timout_s: 100\nmodels:\n" + model() + block_model
    assert problems_of(text) == [
        "runtime.lambda_timout_s: unknown key (line 3)",
        "models[1].endpoint.instanse_type: unknown key (line 10)",
    ]


def test_wrong_type_says_what_was_expected_and_what_was_given() -> None:
    problem = one_problem("jobs:\n  ttl_days: soon\n")
    assert problem.startswith("jobs.ttl_days: input should be a valid integer")
    assert problem.endswith("got 'soon' (line 2)")


def test_negative_limit_is_refused_with_its_bound() -> None:
    assert one_problem("runtime:\n  sync_timeout_s: -5\n") == (
        "runtime.sync_timeout_s: input should be greater than 0, got -5 (line 2)"
    )


def test_limit_above_the_aws_maximum_is_refused() -> None:
    assert one_problem("runtime: {lambda_timeout_s: 1200}\n") == (
        "runtime.lambda_timeout_s: input should be less than or equal to 900, got 1200"
        " (AWS's fixed maximum: it cannot be raised) (line 1)"
    )


@pytest.mark.parametrize(
    ("key", "value", "limit"),
    [("sync_payload_mb", 20, 6), ("api_payload_mb", 11, 10), ("endpoint_payload_mb", 7, 6), ("endpoint_timeout_s", 61, 60)],
)
def test_limits_above_aws_fixed_quotas_are_refused(key: str, value: int, limit: int) -> None:
    # A 20 MB sync payload limit would route 15 MiB inline, which Lambda refuses.
    assert one_problem(f"runtime: {{{key}: {value}}}\n") == (
        f"runtime.{key}: input should be less than or equal to {limit}, got {value}"
        " (AWS's fixed maximum: it cannot be raised) (line 1)"
    )
    assert parse_config(f"runtime: {{{key}: {limit}}}\n").runtime.model_dump()[key] == limit


def test_unknown_choice_lists_the_allowed_ones() -> None:
    assert one_problem("routing:\n  prefer: fast\n") == (
        "routing.prefer: input should be 'latency' or 'cost', got 'fast' (line 2)"
    )


def test_duplicate_model_names_point_at_the_second_declaration() -> None:
    text = "models:\n" + model("iris") + model("other") + model("iris")
    assert one_problem(text) == (
        "models[2].name: duplicate model name 'iris' (already declared at models[0]) (line 4)"
    )


def test_missing_required_field_points_at_its_parent_line() -> None:
    text = "models:\n" + model("a") + model("b", endpoint="{instance_type: ml.m5.large}")
    assert problems_of(text) == ["models[1].endpoint.name: field required (line 3)"]


def test_missing_required_fields_of_a_block_model_are_all_reported() -> None:
    text = """\
        models:
          - name: a
            framework: sklearn
          - name: b
            artifact: s3://bkt/b
        """
    assert problems_of(text) == [
        "models[0].artifact: field required (line 2)",
        "models[0].sha256: field required (line 2)",
        "models[1].framework: field required (line 4)",
        "models[1].sha256: field required (line 4)",
    ]


def test_every_problem_is_reported_at_once_with_its_own_line() -> None:
    text = """\
        runtime:
          safety_margin: 1.5
        jobs:
          max_attempts: 0
        auth:
          api_keys: {short: alice}
        """
    assert problems_of(text) == [
        "runtime.safety_margin: input should be less than or equal to 1, got 1.5 (line 2)",
        "auth.api_keys: API key shor... is shorter than 16 characters (line 6)",
        "jobs.max_attempts: input should be greater than or equal to 1, got 0 (line 4)",
    ]


@pytest.mark.parametrize(
    ("sha", "length"),
    [("abc123", 6), ("a" * 63, 63), ("a" * 65, 65), ("g" * 64, 64), ("0f4c...", 7)],
)
def test_sha256_must_be_64_hex_characters(sha: str, length: int) -> None:
    text = "models:\n" + model(sha256=f"'{sha}'")
    assert one_problem(text) == (
        f"models[0].sha256: must be 64 hexadecimal characters, got {length} characters (line 2)"
    )


def test_uppercase_sha256_is_normalised_and_the_prefix_accepted() -> None:
    digest = hashlib.sha256(b"model").hexdigest()
    text = "models:\n" + model("a", sha256=digest.upper()) + model("b", sha256=f"'sha256:{digest}'")
    cfg = parse_config(text)
    assert [m.sha256 for m in cfg.models] == [digest, digest]
    assert cfg.models[1].version == f"sha256:{digest}"


def test_storage_location_with_an_unknown_scheme_is_refused() -> None:
    assert one_problem("storage:\n  job_table: postgres://db\n") == (
        "storage.job_table: must be sqlite:///PATH or dynamodb://table-name, got 'postgres://db' (line 2)"
    )


def test_a_yaml_boolean_where_a_string_belongs_says_to_quote_it() -> None:
    # `name: off` is the boolean False in YAML 1.1, a classic surprise.
    assert one_problem("models:\n" + model("off")) == (
        "models[0].name: input should be a valid string, got False "
        "(quote the value: YAML reads unquoted yes/no/on/off as booleans) (line 2)"
    )


def test_repeated_yaml_keys_are_refused_instead_of_silently_dropped() -> None:
    text = "runtime: {sync_timeout_s: 10}\nmodels:\n  - name: a\n    name: b\nruntime: {}\n"
    assert sorted(problems_of(text)) == [
        "models[0].name: key given twice, first on line 3 (line 4)",
        "runtime: key given twice, first on line 1 (line 5)",
    ]


# ---------------------------------------------------------------- unreadable files


def test_yaml_syntax_error_gives_its_line_and_column() -> None:
    problem = one_problem("runtime:\n  sync_timeout_s: [29\nrouting: {}\n")
    assert problem.startswith("not valid YAML: ")
    assert "(line 3, column" in problem


def test_several_yaml_documents_are_refused() -> None:
    assert one_problem("version: 1\n---\nversion: 1\n").startswith(
        "not valid YAML: expected a single document"
    )


@pytest.mark.parametrize(("text", "kind"), [("- a\n- b\n", "list"), ("just words\n", "str"), ("42\n", "int")])
def test_top_level_must_be_a_mapping(text: str, kind: str) -> None:
    assert one_problem(text) == f"the top level must be a mapping of keys, got {kind}"


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path / "nope.yaml")
    assert exc.value.problems == ["cannot read the file: No such file or directory"]


def test_a_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path)
    assert exc.value.problems[0].startswith("cannot read the file: ")


def test_a_binary_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(b"version: 1\n\xff\xfe\x00")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert exc.value.problems == ["cannot read the file: not UTF-8 text (byte 11)"]


# Any YAML value at all (and any text) gives a config or ConfigError: never another exception.
yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)
section_names = st.sampled_from(
    ["runtime", "routing", "prices", "storage", "auth", "jobs", "sagemaker", "models", "version"]
)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(section_names, yaml_values, max_size=4) | yaml_values)
def test_no_document_raises_anything_but_config_error(doc: object) -> None:
    try:
        parse_config(yaml.safe_dump(doc))
    except ConfigError as e:
        assert e.problems and all(isinstance(p, str) and p for p in e.problems)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=60))
def test_no_text_raises_anything_but_config_error(text: str) -> None:
    try:
        parse_config(text)
    except ConfigError as e:
        assert e.problems


# ---------------------------------------------------------------- locations


def _write(path: Path, data: bytes = b"model bytes") -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def test_relative_locations_resolve_against_the_files_folder_not_the_cwd(tmp_path: Path) -> None:
    folder = tmp_path / "deploy"
    digest = _write(folder / "models" / "iris.joblib", b"12345")
    cfg_path = folder / "router.yaml"
    cfg_path.write_text(
        textwrap.dedent(f"""\
            storage:
              artifacts: file://./models
              jobs: file://data/jobs
              job_table: sqlite:///./state/jobs.db
            models:
              - {{name: iris, framework: sklearn, artifact: file://./models/iris.joblib, sha256: {digest}}}
            """)
    )
    assert not (Path.cwd() / "models" / "iris.joblib").exists()  # the cwd could not satisfy it
    cfg = load_config(cfg_path)
    real = folder.resolve()
    assert cfg.storage.artifacts == f"file://{real}/models"
    assert cfg.storage.jobs == f"file://{real}/data/jobs"
    assert cfg.storage.job_table == f"sqlite:///{real}/state/jobs.db"
    assert cfg.models[0].artifact == f"file://{real}/models/iris.joblib"
    assert cfg.models[0].size_bytes == 5  # filled from the file


def test_omitted_storage_defaults_resolve_against_the_files_folder_too(tmp_path: Path) -> None:
    cfg_path = tmp_path / "router.yaml"
    cfg_path.write_text("storage: {jobs: 's3://bkt/jobs'}\n")
    storage = load_config(cfg_path).storage
    assert storage.artifacts == f"file://{tmp_path.resolve()}/models"
    assert storage.jobs == "s3://bkt/jobs"
    assert storage.job_table == f"sqlite:///{tmp_path.resolve()}/.router/jobs.db"
    assert load_config(write_empty(tmp_path / "sub" / "r.yaml")).storage.artifacts == (
        f"file://{tmp_path.resolve()}/sub/models"
    )


def write_empty(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    return path


def test_absolute_locations_are_kept(tmp_path: Path) -> None:
    text = "storage: {artifacts: 'file:///srv/models', job_table: 'sqlite:////var/lib/jobs.db'}\n"
    cfg = parse_config(text, base_dir=tmp_path)
    assert cfg.storage.artifacts == "file:///srv/models"
    assert cfg.storage.job_table == "sqlite:////var/lib/jobs.db"


def test_missing_file_artifact_gives_the_resolved_path_and_line(tmp_path: Path) -> None:
    cfg_path = tmp_path / "router.yaml"
    cfg_path.write_text(
        "models:\n"
        + model("a", artifact="s3://bkt/a.joblib")
        + f"  - name: b\n    framework: onnx\n    artifact: file://./models/b.onnx\n    sha256: {SHA}\n"
    )
    with pytest.raises(ConfigError) as exc:
        load_config(cfg_path)
    assert exc.value.problems == [
        f"models[1].artifact: file not found: {tmp_path.resolve()}/models/b.onnx (line 5)"
    ]
    # Offline tooling may skip the check; s3:// artifacts are never checked offline.
    assert load_config(cfg_path, check_artifacts=False).models[1].name == "b"


# docs/configuration.md's minimal example, verbatim except its shortened sha256 placeholders.
_DOC = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
DESIGN_EXAMPLE = re.search(r"<!-- minimal-example -->\n```yaml\n(.*?)```", _DOC, re.S).group(1)  # type: ignore[union-attr]


def test_the_design_example_is_accepted_as_written(tmp_path: Path) -> None:
    iris = _write(tmp_path / "models" / "iris.joblib", b"iris")
    embedder = _write(tmp_path / "models" / "embedder.tar.gz", b"embedder")
    text = DESIGN_EXAMPLE.replace("0f4c...", iris).replace("9a1b...", embedder)
    assert text.count(iris) == 1 and text.count(embedder) == 1
    (tmp_path / "router.yaml").write_text(text)
    cfg = load_config(tmp_path / "router.yaml")
    assert [m.name for m in cfg.models] == ["iris", "embedder"]
    assert cfg.runtime.lambda_ephemeral_mb == 2048
    assert cfg.auth.api_keys == {"key-alice-0123456789": "alice", "key-bob-0123456789": "bob"}
    embed = cfg.model("embedder")
    assert embed is not None and embed.endpoint is not None and embed.endpoint.name == "embedder-prod"
    assert cfg.models[0].artifact == f"file://{tmp_path.resolve()}/models/iris.joblib"


def test_the_aws_example_validates_offline() -> None:
    cfg = load_config(Path(__file__).resolve().parents[2] / "examples" / "operator.yaml")
    assert {m.name: m.framework for m in cfg.models} == {
        "iris": "sklearn",
        "churn-forest": "sklearn",
        "embedder": "pytorch",
    }
    assert all(m.size_bytes for m in cfg.models)
    assert cfg.storage.job_table.startswith("dynamodb://")


# ---------------------------------------------------------------- batch-transform settings


BT_BASE = "sagemaker:\n  batch_transform: {instance_type: ml.m5.xlarge, max_payload_mb: 10, max_retries: 2}\n"


def test_batch_settings_merge_the_models_overrides_over_the_defaults() -> None:
    cfg = parse_config(
        BT_BASE + "models:\n" + model(batch_transform="{instance_type: ml.g4dn.xlarge, instance_count: 2}")
    )
    bt = cfg.batch_settings(cfg.models[0])
    assert bt is not None
    assert (bt.instance_type, bt.instance_count, bt.max_payload_mb, bt.max_retries) == (
        "ml.g4dn.xlarge",
        2,
        10,
        2,
    )


def test_batch_settings_without_override_are_the_defaults() -> None:
    cfg = parse_config(BT_BASE + "models:\n" + model())
    assert cfg.batch_settings(cfg.models[0]) == cfg.sagemaker.batch_transform


def test_batch_transform_disabled_or_unconfigured_gives_no_settings() -> None:
    disabled = parse_config(BT_BASE + "models:\n" + model(batch_transform="{enabled: false}"))
    assert disabled.batch_settings(disabled.models[0]) is None
    unconfigured = parse_config("models:\n" + model())
    assert unconfigured.batch_settings(unconfigured.models[0]) is None


def test_a_models_own_batch_transform_works_without_sagemaker_defaults() -> None:
    cfg = parse_config("models:\n" + model(batch_transform="{max_payload_mb: 20}"))
    bt = cfg.batch_settings(cfg.models[0])
    assert bt is not None and bt.max_payload_mb == 20 and bt.instance_type == "ml.m5.xlarge"


def test_concurrency_times_payload_above_100_is_refused_in_the_defaults() -> None:
    text = "sagemaker:\n  batch_transform:\n    max_payload_mb: 30\n    max_concurrent_transforms: 4\n"
    assert one_problem(text) == (
        "sagemaker.batch_transform: max_concurrent_transforms x max_payload_mb = 120 "
        "exceeds SageMaker's limit of 100 (line 2)"
    )


def test_concurrency_times_payload_above_100_is_refused_after_the_merge() -> None:
    # Each side is valid alone; only the merged settings break the limit. Refusing it at load
    # time means the model does not fail later, at its first CreateTransformJob.
    text = BT_BASE + "models:\n" + model() + model("big", batch_transform="{max_concurrent_transforms: 20}")
    assert one_problem(text) == (
        "models[1].batch_transform: with the sagemaker.batch_transform defaults merged in: "
        "max_concurrent_transforms x max_payload_mb = 200 exceeds SageMaker's limit of 100 (line 5)"
    )


def test_exactly_100_is_allowed() -> None:
    cfg = parse_config(BT_BASE + "models:\n" + model(batch_transform="{max_concurrent_transforms: 10}"))
    bt = cfg.batch_settings(cfg.models[0])
    assert bt is not None and bt.max_concurrent_transforms * bt.max_payload_mb == 100


def test_models_are_found_by_name() -> None:
    cfg = parse_config("models:\n" + model("a") + model("b"))
    assert cfg.model("b") is cfg.models[1]
    assert cfg.model("c") is None


def test_the_config_is_frozen() -> None:
    cfg = RouterConfig()
    with pytest.raises(ValueError, match="frozen"):
        cfg.runtime.sync_timeout_s = 10  # type: ignore[misc]
