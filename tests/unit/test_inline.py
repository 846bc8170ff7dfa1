"""Input validation of the inline runner (FeatureSchema): what a request may contain before the
model sees it, and how precisely a bad request is explained. Pure: no model, no files."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from router.errors import InvalidInput
from router.features import FeatureSchema

IRIS = FeatureSchema(names=("sepal_length", "sepal_width", "petal_length", "petal_width"), n_features=None)
UNNAMED = FeatureSchema(names=None, n_features=3)
UNKNOWN_WIDTH = FeatureSchema(names=None, n_features=None)


def reject(schema: FeatureSchema, instances: Any) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        schema.to_matrix(instances)
    return info.value


def test_list_rows_become_a_float64_matrix() -> None:
    x = IRIS.to_matrix([[5.1, 3.5, 1.4, 0.2], [6, 3, 4, 1]])
    assert x.dtype == np.float64
    assert x.tolist() == [[5.1, 3.5, 1.4, 0.2], [6.0, 3.0, 4.0, 1.0]]


def test_object_rows_follow_feature_order_and_mix_with_list_rows() -> None:
    x = IRIS.to_matrix(
        [
            [5.1, 3.5, 1.4, 0.2],
            {"petal_width": 1.5, "sepal_length": 6.0, "petal_length": 4.5, "sepal_width": 2.9},
        ]
    )
    assert x.tolist() == [[5.1, 3.5, 1.4, 0.2], [6.0, 2.9, 4.5, 1.5]]


def test_names_define_the_feature_count() -> None:
    assert IRIS.n_features == 4
    assert reject(IRIS, [[1, 2, 3]]).details == {"index": 0, "expected": 4, "got": 3}


@pytest.mark.parametrize("instances", [[], {}, "1,2,3", None, 5, {"instances": [[1, 2, 3]]}])
def test_instances_must_be_a_non_empty_list(instances: Any) -> None:
    err = reject(UNNAMED, instances)
    assert "non-empty list" in err.message


def test_wrong_feature_count_names_the_first_bad_record() -> None:
    err = reject(UNNAMED, [[1, 2, 3], [1, 2, 3], [1, 2, 3], [1, 2]])
    assert err.details == {"index": 3, "expected": 3, "got": 2}
    assert err.message == "instances[3] has 2 features, expected 3"


def test_all_rows_the_wrong_width_is_rejected_too() -> None:
    assert reject(UNNAMED, [[1, 2, 3, 4], [1, 2, 3, 4]]).details == {"index": 0, "expected": 3, "got": 4}


def test_ragged_rows_are_rejected_when_the_width_is_unknown() -> None:
    assert UNKNOWN_WIDTH.to_matrix([[1, 2], [3, 4]]).shape == (2, 2)
    assert reject(UNKNOWN_WIDTH, [[1, 2], [3, 4], [5]]).details == {"index": 2, "expected": 2, "got": 1}


def test_empty_records_are_rejected() -> None:
    assert reject(UNKNOWN_WIDTH, [[], []]).details["index"] == 0


def test_unknown_and_missing_feature_names_are_listed() -> None:
    err = reject(IRIS, [[1, 2, 3, 4], {"sepal_length": 1, "sepal_width": 2, "petal_length": 3, "petal_wdth": 4}])
    assert err.details["index"] == 1
    assert err.details["unknown"] == ["petal_wdth"]
    assert err.details["missing"] == ["petal_width"]
    assert "petal_wdth" in err.message and "petal_width" in err.message

    err = reject(IRIS, [{"sepal_length": 1, "sepal_width": 2, "petal_length": 3}])
    assert err.details["missing"] == ["petal_width"] and err.details["unknown"] == []

    extra = {"sepal_length": 1, "sepal_width": 2, "petal_length": 3, "petal_width": 4, "colour": 5}
    assert reject(IRIS, [extra]).details["unknown"] == ["colour"]


def test_object_rows_need_feature_names() -> None:
    err = reject(UNNAMED, [{"a": 1, "b": 2, "c": 3}])
    assert "no feature names" in err.message and err.details == {"index": 0}


@pytest.mark.parametrize(
    ("value", "got"),
    [("1.5", "string"), (None, "null"), (True, "boolean"), (False, "boolean"), ([1.0], "array"), ({"v": 1}, "object")],
)
def test_non_numbers_are_rejected_with_their_position(value: Any, got: str) -> None:
    err = reject(IRIS, [[1, 2, 3, 4], [1, 2, value, 4]])
    assert err.details == {"index": 1, "feature": "petal_length", "got": got}
    assert err.message == f"instances[1][2] (petal_length) must be a number, got {got}"


def test_non_numbers_in_object_rows_name_the_feature() -> None:
    err = reject(IRIS, [{"sepal_length": 1, "sepal_width": "wide", "petal_length": 3, "petal_width": 4}])
    assert err.details == {"index": 0, "feature": "sepal_width", "got": "string"}


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_are_rejected(bad: float) -> None:
    err = reject(UNNAMED, [[1.0, 2.0, 3.0], [1.0, bad, 3.0]])
    assert err.details["index"] == 1 and err.details["feature"] == 1
    assert "NaN and infinity are not accepted" in err.message


@pytest.mark.parametrize("records", [1, 21, 1000])  # both the small-batch and the vectorised check
def test_non_finite_values_are_found_in_batches_of_any_size(records: int) -> None:
    rows = [[float(i), 1.0, 2.0] for i in range(records)]
    rows[-1][2] = math.nan
    assert reject(UNNAMED, rows).details == {"index": records - 1, "feature": 2, "got": "nan"}


def test_integers_too_large_for_a_float_are_rejected() -> None:
    err = reject(UNNAMED, [[1, 2, 3], [1, 2, 10**400]])
    assert err.details == {"index": 1, "feature": 2}


def test_numpy_numbers_from_in_process_callers_are_accepted() -> None:
    x = UNNAMED.to_matrix([[np.float64(1.5), np.int64(2), 3.0]])
    assert x.tolist() == [[1.5, 2.0, 3.0]]


def test_numpy_booleans_are_not_numbers() -> None:
    assert reject(UNNAMED, [[np.bool_(True), 2, 3]]).details["got"] == "bool"


finite = st.floats(allow_nan=False, allow_infinity=False, width=64) | st.integers(-(2**53), 2**53)


@given(st.lists(st.lists(finite, min_size=3, max_size=3), min_size=1, max_size=20))
def test_any_finite_rows_pass_through_unchanged(rows: list[list[float]]) -> None:
    assert UNNAMED.to_matrix(rows).tolist() == [[float(v) for v in r] for r in rows]


@given(
    st.lists(st.lists(finite, min_size=3, max_size=3), min_size=1, max_size=20),
    st.data(),
    st.sampled_from([math.nan, math.inf, -math.inf]),
)
def test_any_single_non_finite_value_is_found(rows: list[list[float]], data: st.DataObject, bad: float) -> None:
    i = data.draw(st.integers(0, len(rows) - 1))
    j = data.draw(st.integers(0, 2))
    rows[i][j] = bad
    err = reject(UNNAMED, rows)
    assert (err.details["index"], err.details["feature"]) == (i, j)


# ---------------------------------------------------------------- a float32 model's input


def reject32(schema: FeatureSchema, instances: Any) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        schema.to_matrix(instances, np.float32)
    return info.value


@pytest.mark.parametrize("records", [1, 1000])  # the small-batch and the vectorised path
def test_a_float32_matrix_is_built_directly(records: int) -> None:
    rows = [[1.5, 2, -3.25]] * records
    x = UNNAMED.to_matrix(rows, np.float32)
    assert x.dtype == np.float32 and x.shape == (records, 3) and x[0].tolist() == [1.5, 2.0, -3.25]


@pytest.mark.parametrize("records", [1, 1000])
@pytest.mark.parametrize("big", [3.5e38, -1e300, 10**39])
def test_values_beyond_float32_are_refused_before_the_cast(records: int, big: float) -> None:
    rows = [[1.0, 2.0, 3.0] for _ in range(records)]
    rows[-1][1] = big
    err = reject32(UNNAMED, rows)  # pytest turns numpy's overflow warning into an error: none is raised
    assert err.details == {"index": records - 1, "feature": 1, "got": repr(float(big))}
    assert "32-bit float range" in err.message


@pytest.mark.parametrize("bad", [math.nan, math.inf, 10**400, "7", True])
def test_the_float32_path_explains_like_the_float64_one(bad: Any) -> None:
    rows = [[1.0, 2.0, 3.0], [1.0, bad, 3.0]]
    assert reject32(UNNAMED, rows).details == reject(UNNAMED, rows).details


@given(st.lists(st.lists(st.floats(-3e38, 3e38, width=64) | st.integers(-(2**53), 2**53), min_size=3, max_size=3), min_size=1, max_size=30))
def test_any_float32_range_rows_convert_as_numpy_does(rows: list[list[float]]) -> None:
    assert UNNAMED.to_matrix(rows, np.float32).tolist() == np.array(rows, dtype=np.float64).astype(np.float32).tolist()


# ---------------------------------------------------------------- one row answers as a batch does

_any_value = (
    st.sampled_from([math.nan, math.inf, -math.inf, 3.5e38, -3.5e38, 1e308, -1e308, 3.4028234663852886e38])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(-(2**70), 2**70)
    | st.sampled_from([10**400, True, False, None, "1", [1.0], []])
)


def _outcome(schema: FeatureSchema, instances: Any, dtype: Any) -> tuple[Any, ...]:
    try:
        x, bounded = schema.checked_matrix(instances, dtype)
    except InvalidInput as e:
        return ("refused", e.message, e.details)
    return ("ok", x.dtype, x.shape[1], x[0].tolist(), bounded)


@example(3, [(1, math.nan)], np.float64, None, False)
@example(3, [(2, -math.inf)], np.float64, 3, True)
@example(3, [(1, 3.5e38)], np.float32, None, True)
@example(3, [(1, -3.5e38)], np.float64, None, False)
@example(3, [(0, 1e308), (1, 1e308)], np.float64, None, True)
@example(3, [(0, 1e308), (1, 1e308)], np.float32, None, True)
@example(3, [(1, 10**400)], np.float64, None, False)
@example(3, [(1, [1.0])], np.float64, None, True)
@example(3, [(1, True)], np.float32, None, False)
@example(20, [], np.float32, 3, False)
@example(2, [(0, 3.402823466385289e38), (1, 1e-300)], np.float32, None, True)
@example(2, [(0, 2e38)], np.float64, None, True)
@example(0, [], np.float64, None, False)
@given(
    st.integers(0, 70),
    st.lists(st.tuples(st.integers(0, 2**16), _any_value), max_size=3),
    st.sampled_from([np.float64, np.float32]),
    st.sampled_from([None, 3, 20]),
    st.booleans(),
)
def test_one_row_is_checked_as_the_same_row_in_a_batch(
    width: int, changes: list[tuple[int, Any]], dtype: Any, n_features: int | None, typed: bool
) -> None:
    """The single-row shortcut gives the matrix, the float32 bound and the refusal (same words)
    that the batch path gives for that row: two copies of a row fail on the first one's value."""
    from router.jobs_io import NumberRows

    row: list[Any] = [float(j) - 2.5 for j in range(width)]
    for j, value in changes:
        if width:
            row[j % width] = value
    schema = FeatureSchema(names=None, n_features=n_features)
    wrap = NumberRows if typed and all(type(v) in (int, float, list) for v in row) else list  # its contract
    one, two = _outcome(schema, wrap([row]), dtype), _outcome(schema, wrap([row, list(row)]), dtype)
    assert one == two
