"""What a tabular model's records may be, and the matrix they become: feature names and count
(FeatureSchema), validated before any model sees them. Pure (numpy only): the inline runner and the
SageMaker request document both use it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import numpy as np
import numpy.typing as npt

from router.errors import InvalidInput
from router.jobs_io import NumberRows

Matrix = npt.NDArray[np.floating[Any]]  # float64, or float32 for a float32 ONNX graph
_NUMBER_TYPES = frozenset({int, float})
_ROW_TYPES = frozenset({list, tuple})
_INSTANCES_TYPES = frozenset({list, tuple, NumberRows})
_SMALL_BATCH = 64  # values; below this a Python-level finiteness scan beats numpy's call overhead


@dataclass(frozen=True, slots=True)
class FeatureSchema:
    """How a tabular model's records map to its input matrix: feature names (config first, else
    the model's) for object records, and the feature count (None: whatever the rows agree on)."""

    names: tuple[str, ...] | None
    n_features: int | None
    name_index: dict[str, int] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.names is not None:
            object.__setattr__(self, "name_index", {f: i for i, f in enumerate(self.names)})
            object.__setattr__(self, "n_features", len(self.names))

    def to_matrix(self, instances: Any, dtype: type[np.floating[Any]] = np.float64) -> Matrix:
        """Validated matrix [records, features] in `dtype` (float64, or a float32 model's input);
        InvalidInput says what and where."""
        return self.checked_matrix(instances, dtype)[0]

    def checked_matrix(self, instances: Any, dtype: type[np.floating[Any]]) -> tuple[Matrix, bool]:
        """to_matrix, and whether every value is within float32's range (so finite as float32 too)."""
        kind = type(instances)
        if kind in _INSTANCES_TYPES and len(instances) == 1:
            # One row of a few values, the typical sync request: the same checks as the general
            # path, cheaper. hypot() is at least every value's magnitude, and NaN or infinite when
            # one is: at most _ROW_BOUND means all finite and within float32's range. Anything
            # else (also a value near the limit) is left to the general path, which explains it.
            row = instances[0]
            n = self.n_features
            if type(row) in _ROW_TYPES and 0 < len(row) <= _SMALL_BATCH and (n is None or len(row) == n):
                try:
                    bounded = (kind is NumberRows or set(map(type, row)) <= _NUMBER_TYPES) and math.hypot(*row) <= _ROW_BOUND
                except (OverflowError, TypeError):  # an int beyond float64, a nested array
                    bounded = False
                if bounded:
                    return np.array(instances, dtype=dtype), True
        return _checked_matrix(instances, self, dtype)

    def refuse_beyond_float32(self, x: Matrix) -> None:
        """InvalidInput naming the first value of `x` outside float32's range, if there is one."""
        _refuse_beyond_float32(x, self)


_JSON_TYPE = {str: "string", type(None): "null", bool: "boolean", list: "array", tuple: "array", dict: "object"}


def _json_type(v: Any) -> str:
    return _JSON_TYPE.get(type(v), type(v).__name__)


def _checked_matrix(instances: Any, schema: FeatureSchema, dtype: type[np.floating[Any]]) -> tuple[Matrix, bool]:
    """_to_matrix, and whether every value is within float32's range (so finite as float32 too).
    Fast path: C-level type, length, finiteness and range checks; the per-value scan runs only to
    explain a rejection."""
    if not isinstance(instances, (list, tuple)) or not instances:  # noqa: UP038 (tuple form is faster)
        got = "an empty list" if isinstance(instances, (list, tuple)) else _json_type(instances)  # noqa: UP038
        raise InvalidInput(f"instances must be a non-empty list of records, got {got}", details={"got": got})
    typed = type(instances) is NumberRows
    n = schema.n_features
    row_types = set(map(type, instances))
    rows: Sequence[Any] = instances
    if not row_types <= _ROW_TYPES:
        rows = _objects_to_rows(instances, schema)
    lengths = set(map(len, rows))
    if lengths == {0}:
        raise InvalidInput("instances[0] is an empty record", details={"index": 0, "expected": n, "got": 0})
    if len(lengths) != 1 or (n is not None and n not in lengths):
        expected = n if n is not None else len(rows[0])
        i = next(i for i, r in enumerate(rows) if len(r) != expected)
        raise InvalidInput(
            f"instances[{i}] has {len(rows[i])} features, expected {expected}",
            details={"index": i, "expected": expected, "got": len(rows[i])},
        )
    f32 = dtype is np.float32
    if len(rows) * len(rows[0]) <= _SMALL_BATCH:
        # The few values of a typical sync request: checks over the Python numbers are several
        # times cheaper than numpy's per-call overhead, and the matrix is built once, in `dtype`.
        flat = list(chain.from_iterable(rows))
        try:
            ok = set(map(type, flat)) <= _NUMBER_TYPES and all(map(math.isfinite, flat))
            bounded = ok and max(flat) <= _FLOAT32_MAX and min(flat) >= -_FLOAT32_MAX
        except OverflowError:  # an int beyond float64: explained below
            ok = bounded = False
        if bounded or (ok and not f32):
            return np.array(rows, dtype=dtype), bounded
    x, bounded = _checked_float64(rows, schema, typed=typed)
    if f32:
        if not bounded:
            _refuse_beyond_float32(x, schema)  # the cast would turn such a value into infinity
        return x.astype(np.float32), True
    return x, bounded


def _checked_float64(rows: Sequence[Any], schema: FeatureSchema, *, typed: bool = False) -> tuple[Matrix, bool]:
    """Equal-length rows as a float64 matrix of finite numbers, or InvalidInput naming the first
    bad value; and whether every value is within float32's range. `typed`: the values are known
    to be numbers or lists (NumberRows)."""
    if not typed and not set(map(type, chain.from_iterable(rows))) <= _NUMBER_TYPES:
        _explain_types(rows, schema)  # raises unless every value is a number subclass (numpy float)
    try:
        x = np.asarray(rows, dtype=np.float64)
    except (OverflowError, ValueError, TypeError):
        _explain_types(rows, schema)
        i, j = _first_unconvertible(rows)
        raise InvalidInput(
            f"{_where(i, j, schema)} is not representable as a 64-bit float",
            details={"index": i, "feature": _feature(j, schema)},
        ) from None
    if x.ndim != 2:
        raise InvalidInput("instances must be a list of records (rows of numbers)", details={"got_ndim": x.ndim})
    if x.size and np.abs(x).max() <= _FLOAT32_MAX:  # NaN and infinity fail this too: one pass for both
        return x, True
    if not np.isfinite(x).all():
        i, j = (int(v) for v in np.argwhere(~np.isfinite(x))[0])
        raise InvalidInput(
            f"{_where(i, j, schema)} is {float(x[i, j])!r}: NaN and infinity are not accepted",
            details={"index": i, "feature": _feature(j, schema), "got": repr(float(x[i, j]))},
        )
    return x, False


_FLOAT32_MAX = float(np.finfo(np.float32).max)
_ROW_BOUND = 1e38  # well inside float32's range (3.4e38): hypot()'s rounding cannot carry a value past it

def _refuse_beyond_float32(x: Matrix, schema: FeatureSchema) -> None:
    """InvalidInput naming the first value outside float32's range, if there is one."""
    big = np.argwhere(np.abs(x) > _FLOAT32_MAX)
    if big.size:
        i, j = (int(v) for v in big[0])
        raise InvalidInput(
            f"{_where(i, j, schema)} is {float(x[i, j])!r}: beyond the model's 32-bit float range (+-{_FLOAT32_MAX:.4g})",
            details={"index": i, "feature": _feature(j, schema), "got": repr(float(x[i, j]))},
        )


def _objects_to_rows(instances: Sequence[Any], schema: FeatureSchema) -> list[Any]:
    """Object records (keyed by feature name) in feature order; list records pass through."""
    rows: list[Any] = []
    for i, rec in enumerate(instances):
        if type(rec) in _ROW_TYPES:
            rows.append(rec)
            continue
        if not isinstance(rec, dict):
            raise InvalidInput(
                f"instances[{i}] must be a list of numbers or an object keyed by feature name, got {_json_type(rec)}",
                details={"index": i, "got": _json_type(rec)},
            )
        if schema.names is None or schema.name_index is None:
            raise InvalidInput(
                f"instances[{i}] is an object, but this model has no feature names; send rows as lists of numbers",
                details={"index": i},
            )
        if len(rec) != len(schema.names) or not all(k in schema.name_index for k in rec):
            unknown = sorted(str(k) for k in rec if k not in schema.name_index)
            missing = [f for f in schema.names if f not in rec]
            parts = ([f"unknown feature(s) {', '.join(unknown)}"] if unknown else []) + (
                [f"missing feature(s) {', '.join(missing)}"] if missing else []
            )
            raise InvalidInput(
                f"instances[{i}]: {'; '.join(parts)}; expected {', '.join(schema.names)}",
                details={"index": i, "unknown": unknown, "missing": missing, "expected": list(schema.names)},
            )
        rows.append([rec[f] for f in schema.names])
    return rows


def _explain_types(rows: Sequence[Any], schema: FeatureSchema) -> None:
    for i, row in enumerate(rows):
        for j, v in enumerate(row):
            if isinstance(v, bool) or not isinstance(v, int | float | np.number) or isinstance(v, np.bool_):
                raise InvalidInput(
                    f"{_where(i, j, schema)} must be a number, got {_json_type(v)}",
                    details={"index": i, "feature": _feature(j, schema), "got": _json_type(v)},
                )


def _first_unconvertible(rows: Sequence[Any]) -> tuple[int, int]:
    for i, row in enumerate(rows):
        for j, v in enumerate(row):
            try:
                f = float(v)
            except (OverflowError, ValueError, TypeError):
                return i, j
            if math.isinf(f) and not (isinstance(v, float) and math.isinf(v)):
                return i, j
    return 0, 0


def _feature(j: int, schema: FeatureSchema) -> str | int:
    return schema.names[j] if schema.names is not None and j < len(schema.names) else j


def _where(i: int, j: int, schema: FeatureSchema) -> str:
    name = f" ({schema.names[j]})" if schema.names is not None and j < len(schema.names) else ""
    return f"instances[{i}][{j}]{name}"
