"""router/errors.py and docs/api.md's error table name the same codes with the same statuses, and
every error class is raised somewhere in the router (no dead codes, no undocumented ones)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from router import errors

ROOT = Path(__file__).resolve().parents[2]
API_MD = ROOT / "docs" / "api.md"


def error_classes() -> list[type[errors.RouterError]]:
    found = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.RouterError)]
    return [c for c in found if c is not errors.RouterError]


def documented() -> dict[str, set[int]]:
    """`| 401 / 403 | `unauthorized`; `forbidden` (...) |` -> {"unauthorized": {401, 403}, ...}."""
    text = API_MD.read_text()
    table = text[text.index("| status | codes |"):].split("\n\n", 1)[0]
    codes: dict[str, set[int]] = {}
    for line in table.splitlines()[2:]:
        status, names = line.strip("|").split("|", 1)
        statuses = {int(s) for s in re.findall(r"\d{3}", status)}
        for name in re.findall(r"`([a-z_]+)`", re.sub(r"\([^)]*\)", "", names)):
            codes[name] = statuses
    return codes


def test_every_error_class_is_documented_with_its_status() -> None:
    table = documented()
    for cls in error_classes():
        assert cls.code in table, f"{cls.__name__}: code {cls.code!r} is not in docs/api.md's error table"
        assert cls.status in table[cls.code], f"{cls.__name__}: {cls.status} is not the documented status of {cls.code!r}"


def test_every_documented_code_has_a_class() -> None:
    codes = {cls.code for cls in error_classes()}
    assert set(documented()) <= codes, set(documented()) - codes


def test_every_error_class_is_used_by_the_router() -> None:
    used: set[str] = set()
    for path in [*ROOT.joinpath("router").rglob("*.py"), *ROOT.joinpath("sagemaker_jobs").rglob("*.py")]:
        if path.name == "errors.py" and path.parent.name == "router":
            continue
        used.update(n.id for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Name))
        used.update(n.attr for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Attribute))
    subclassed = {base.__name__ for cls in error_classes() for base in cls.__bases__}
    unused = [c.__name__ for c in error_classes() if c.__name__ not in used and c.__name__ not in subclassed]
    assert not unused, f"error classes nothing raises: {unused}"
