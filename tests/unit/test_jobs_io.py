"""Job JSON Lines / CSV I/O (router.jobs_io): the fast encoders write byte for byte what encoding
each record alone writes (staged-input digests depend on it), chunks are whole records counted
from the start whatever blank lines sit where (resumed runs cut the same parts), bad lines are
named, and only pure number arrays are marked as typed for the runner."""

from __future__ import annotations

import io
import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from router.errors import InvalidInput
from router.features import FeatureSchema
from router.jobs_io import NumberRows, encode_jsonl, read_chunks

ONE_BY_ONE = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def per_record(items: list[Any]) -> bytes:
    return "".join(ONE_BY_ONE(v) + "\n" for v in items).encode()


numbers = st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**70), 2**70)
values = st.one_of(
    st.lists(numbers, min_size=1, max_size=30),  # labels, regression values
    st.lists(st.text(max_size=8), min_size=1, max_size=30),  # string labels (commas, quotes, unicode)
    st.lists(st.lists(numbers, max_size=5), min_size=1, max_size=30),  # probabilities, input rows
    st.lists(st.lists(st.lists(numbers, max_size=3), max_size=3), min_size=1, max_size=10),  # multi-output
    st.lists(st.one_of(numbers, st.text(max_size=3), st.booleans(), st.none()), min_size=1, max_size=20),
    st.lists(st.dictionaries(st.text(max_size=3), numbers, max_size=3), min_size=1, max_size=10),
)


@given(values)
def test_fast_encoding_is_byte_identical_to_one_record_at_a_time(items: list[Any]) -> None:
    assert encode_jsonl(items) == per_record(items)


@pytest.mark.parametrize("items", [[1.0, math.nan], [[0.5, math.inf]], [{"a": -math.inf}], [1, 2.0, math.nan]])
def test_non_finite_values_are_refused(items: list[Any]) -> None:
    with pytest.raises(ValueError):
        encode_jsonl(items)


def test_bools_stay_json_booleans() -> None:
    assert encode_jsonl([True, False, 1]) == b"true\nfalse\n1\n"


def chunks(text: bytes, chunk: int, skip: int = 0, fmt: str = "jsonl") -> list[list[Any]]:
    return list(read_chunks(io.BufferedReader(io.BytesIO(text)), fmt, chunk, skip))  # type: ignore[arg-type]


def test_chunks_hold_whole_records_whatever_blank_lines_sit_where() -> None:
    records = [[i, i + 0.5] for i in range(23)]
    lines = [json.dumps(r) for r in records]
    # Blank and whitespace-only lines here and there, CRLF on some lines, no final newline.
    text = ("\n".join(lines[:4]) + "\n\n   \n" + "\r\n".join(lines[4:11]) + "\n\n" + "\n".join(lines[11:])).encode()
    got = chunks(text, 5)
    assert [len(c) for c in got] == [5, 5, 5, 5, 3]
    assert [r for c in got for r in c] == records
    # Resuming after any multiple of the chunk cuts the same chunks as the first run.
    for done in range(1, 5):
        assert chunks(text, 5, skip=5 * done) == got[done:]


def test_bad_lines_are_named_counting_blank_lines() -> None:
    text = b'[1, 2]\n\n[3, 4]\n[5, oops]\n[7, 8]\n'
    with pytest.raises(InvalidInput) as info:
        chunks(text, 10)
    assert info.value.details == {"line": 4}
    with pytest.raises(InvalidInput) as info:  # after a skip, lines still count from the file's start
        chunks(b"[1]\n[2]\n[3]\nnope\n", 1, skip=2)
    assert info.value.details == {"line": 4}


def test_a_line_with_two_records_is_not_two_records() -> None:
    with pytest.raises(InvalidInput) as info:
        chunks(b"[1, 2]\n[3, 4], [5, 6]\n", 10)
    assert info.value.details == {"line": 2}


def test_csv_chunks_and_errors() -> None:
    assert chunks(b"1,2\n\n3.5, 4\r\n5,6", 2, fmt="csv") == [[[1.0, 2.0], [3.5, 4.0]], [[5.0, 6.0]]]
    with pytest.raises(InvalidInput) as info:
        chunks(b"1,2\n3,x\n", 5, fmt="csv")
    assert info.value.details == {"line": 2}


def test_only_pure_number_arrays_are_marked_typed() -> None:
    assert type(chunks(b"[1, 2.5e3]\n[-3, 4]\n", 5)[0]) is NumberRows
    for text in (b'["1", 2]\n', b"[true, 2]\n", b"[null, 2]\n", b'{"a": 1}\n'):
        assert type(chunks(text, 5)[0]) is list


def test_typed_rows_are_still_validated_by_the_runner() -> None:
    schema = FeatureSchema(names=None, n_features=2)
    for text, expected in ((b"[1, [2]]\n" * 100, "must be a number"), (b"[1e400, 2]\n" * 100, "NaN and infinity")):
        rows = chunks(text, 100)[0]
        assert type(rows) is NumberRows
        with pytest.raises(InvalidInput, match=expected):
            schema.to_matrix(rows)
    assert schema.to_matrix(chunks(b"[1, 2]\n" * 100, 100)[0]).tolist() == np.ones((100, 2)).dot([[1, 0], [0, 2]]).tolist()
