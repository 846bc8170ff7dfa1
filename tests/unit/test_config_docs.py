"""docs/configuration.md and examples/operator.yaml cannot drift from router/config.py.

The doc has one `| key | type | default | constraint | description |` table per section, under a
heading naming the section in backticks (`### \\`runtime\\``) or `### Top level`.
"""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from router.config import RouterConfig

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "configuration.md"
EXAMPLE = ROOT / "examples" / "operator.yaml"
HEADER = ["key", "type", "default", "constraint", "description"]
REQUIRED = "*required*"


def sections(model: type[BaseModel] = RouterConfig, prefix: str = "") -> dict[str, type[BaseModel]]:
    """Every section model by its documented name: "" (top level), "runtime", "models[]", ..."""
    out: dict[str, type[BaseModel]] = {prefix: model}
    for name, field in model.model_fields.items():
        nested, is_list = _nested_model(field)
        if nested is not None:
            path = f"{prefix}.{name}" if prefix else name
            out.update(sections(nested, path + ("[]" if is_list else "")))
    return out


def _nested_model(field: FieldInfo) -> tuple[type[BaseModel] | None, bool]:
    ann = field.annotation
    is_list = typing.get_origin(ann) is list
    candidates = typing.get_args(ann) if is_list or isinstance(ann, types.UnionType) else (ann,)
    if typing.get_origin(ann) is typing.Union:
        candidates = typing.get_args(ann)
    for c in candidates:
        if isinstance(c, type) and issubclass(c, BaseModel):
            return c, is_list
    return None, False


def parse_doc(text: str) -> dict[str, dict[str, dict[str, str]]]:
    """{section: {key: {column: cell}}} from the doc's key tables."""
    tables: dict[str, dict[str, dict[str, str]]] = {}
    section: str | None = None
    for line in text.splitlines():
        heading = re.match(r"^#{2,4} (.+)$", line)
        if heading:
            title = heading.group(1).strip()
            named = re.fullmatch(r"`([^`]+)`", title)
            section = "" if title == "Top level" else named.group(1) if named else None
            continue
        if section is None or not line.startswith("|"):
            continue
        cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if cells == HEADER:
            assert section not in tables, f"two key tables for section {section!r}"
            tables[section] = {}
        elif section in tables and not set("".join(cells)) <= set("-: "):
            assert len(cells) == len(HEADER), f"{section}: malformed row {line!r}"
            key = cells[0].strip("`")
            assert key not in tables[section], f"{section}.{key} documented twice"
            tables[section][key] = dict(zip(HEADER, cells, strict=True))
    return tables


DOC_TABLES = parse_doc(DOC.read_text(encoding="utf-8"))
SECTIONS = sections()


def test_the_parser_finds_the_tables() -> None:
    # Guards the guard: a broken parser would make every other test here vacuous.
    assert {"", "runtime", "models[]", "models[].batch_transform"} <= set(DOC_TABLES)
    assert DOC_TABLES["runtime"]["sync_timeout_s"]["default"] == "`29`"


def test_every_section_is_documented_and_no_unknown_section_is() -> None:
    assert set(DOC_TABLES) == set(SECTIONS)


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_every_key_is_documented_and_no_unknown_key_is(section: str) -> None:
    assert set(DOC_TABLES.get(section, {})) == set(SECTIONS[section].model_fields)


def _documented_default(cell: str) -> Any:
    if cell == REQUIRED:
        return REQUIRED
    m = re.fullmatch(r"`([^`]*)`", cell)
    assert m, f"default cell must be {REQUIRED}, `yaml value` or a 'see ...' link, got {cell!r}"
    return yaml.safe_load(m.group(1))


def _actual_default(field: FieldInfo) -> Any:
    if field.is_required():
        return REQUIRED
    value = field.get_default(call_default_factory=True)
    return value.model_dump(exclude_none=True) if isinstance(value, BaseModel) else value


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_documented_defaults_match_the_models(section: str) -> None:
    for key, field in SECTIONS[section].model_fields.items():
        cell = DOC_TABLES[section][key]["default"]
        nested, _ = _nested_model(field)
        if cell.startswith("see "):
            # Only a field that is itself a documented section may point to it instead.
            assert nested is not None and not field.is_required(), f"{section}.{key}"
            continue
        assert _documented_default(cell) == _actual_default(field), f"{section}.{key}: doc says {cell}"


def _bounds(schema: dict[str, Any]) -> set[float]:
    """Numeric bounds of a property's JSON Schema (including inside anyOf for optional fields)."""
    found: set[float] = set()
    for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "minItems"):
        if k in schema:
            found.add(float(schema[k]))
    for sub in schema.get("anyOf", []):
        found |= _bounds(sub)
    if "additionalProperties" in schema and isinstance(schema["additionalProperties"], dict):
        found |= _bounds(schema["additionalProperties"])
    return found


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_documented_constraints_state_every_bound(section: str) -> None:
    props = SECTIONS[section].model_json_schema()["properties"]
    for key in SECTIONS[section].model_fields:
        cell = DOC_TABLES[section][key]["constraint"]
        numbers = {float(n) for n in re.findall(r"\d+(?:\.\d+)?", cell.replace(",", ""))}
        missing = _bounds(props[key]) - numbers - {1.0 if "at least 1" in cell else -1.0}
        assert not missing, f"{section}.{key}: constraint {cell!r} does not state {sorted(missing)}"
        has_pattern = "pattern" in props[key] or any("pattern" in s for s in props[key].get("anyOf", []))
        if has_pattern:
            assert cell, f"{section}.{key}: has a pattern but no documented constraint"


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_every_row_has_a_type_and_a_description(section: str) -> None:
    for key, row in DOC_TABLES[section].items():
        assert row["type"] and row["description"], f"{section}.{key}"


def test_literal_choices_are_documented() -> None:
    assert "`latency` | `cost`" in DOC_TABLES["routing"]["prefer"]["type"]
    for framework in ("sklearn", "onnx", "pytorch", "container"):
        assert f"`{framework}`" in DOC_TABLES["models[]"]["framework"]["type"]


def test_the_example_shows_every_key_of_every_section() -> None:
    # Optional keys may be commented out, but an operator reading the example sees them all.
    text = EXAMPLE.read_text(encoding="utf-8")
    shown = set(re.findall(r"^\s*(?:#\s*)?(?:-\s+)?([a-z_0-9]+):", text, flags=re.MULTILINE))
    shown |= set(re.findall(r"[{,]\s*([a-z_0-9]+):", text))  # flow mappings: {load_s: 1, ...}
    for section, model in SECTIONS.items():
        missing = set(model.model_fields) - shown
        assert not missing, (
            f"examples/operator.yaml does not show {section or 'top-level'} keys {sorted(missing)}"
        )
