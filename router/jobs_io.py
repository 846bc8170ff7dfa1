"""JSON Lines and CSV for jobs: reading a job's input `chunk` records at a time, and encoding
records or predictions as JSON Lines. The lambda-job worker's throughput is mostly these two.

Chunks are counted in records (non-blank lines) from the start of the input, so a run resumed
from any checkpoint offset (a multiple of the chunk size) cuts the same chunks as the first run:
parts are deterministic, whoever writes them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from itertools import chain, islice
from json.encoder import encode_basestring_ascii
from typing import Any, BinaryIO

from router.errors import InvalidInput

# One encoder, not one per record; compact, and NaN/Infinity refused (ValueError) as JSON requires.
_ENCODE = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
_NUMBERS = frozenset({int, float})
_ROWS = frozenset({list, tuple})
# The only bytes of JSON text made of numbers and arrays: no strings, objects, true/false/null.
_NUMBER_ARRAY_BYTES = b"0123456789+-.eE,[] \t\r\n"


class NumberRows(list[Any]):
    """Records parsed from JSON text holding nothing but numbers and arrays: the runner may skip
    its per-value type scan (json.loads gives only int, float and list there; a nested array
    still fails the matrix conversion and is explained)."""


def encode_jsonl(items: Sequence[Any]) -> bytes:
    """One compact JSON value per line, byte for byte what encoding each item alone gives
    (so digests of staged inputs do not depend on which path ran). ValueError on NaN/Infinity.

    Fast paths, one C-level call per chunk instead of one encoder call per record: numbers
    (labels, regression values) are their repr (float.__repr__ and int.__repr__ are what json
    writes for finite values); strings go through json's own C string encoder; rows of numbers
    are encoded as one list whose `],[` separators become line breaks (no `],[` can occur inside
    a row of numbers)."""
    if not items:
        return b""
    kinds = set(map(type, items))
    if kinds <= _NUMBERS:
        if float not in kinds or all(map(math.isfinite, items)):
            return ("\n".join(map(repr, items)) + "\n").encode()
    elif kinds == {str}:
        return ("\n".join(map(encode_basestring_ascii, items)) + "\n").encode()
    elif kinds <= _ROWS and set(map(type, chain.from_iterable(items))) <= _NUMBERS:
        return (_ENCODE(items)[1:-1].replace("],[", "]\n[") + "\n").encode()
    return ("\n".join(map(_ENCODE, items)) + "\n").encode()


def read_chunks(f: BinaryIO, fmt: str, chunk: int, skip: int) -> Iterator[list[Any]]:
    """Records from a JSON Lines or CSV stream, `chunk` at a time (the last chunk may be
    shorter), after skipping `skip` records. Blank lines are not records. InvalidInput names
    the first bad line (1-based, blank lines counted)."""
    parse_fast = _parse_csv_fast if fmt == "csv" else _parse_jsonl_fast
    parse_lines = _parse_csv_lines if fmt == "csv" else _parse_jsonl_lines
    with f:
        lineno = _skip_records(f, skip)
        while True:
            raw = list(islice(f, chunk))
            if not raw:
                return
            first = lineno + 1
            lineno += len(raw)
            rows = parse_fast(raw)
            if rows is not None:
                yield rows
                continue
            # Blank lines or a bad record: drop the blanks, top the chunk up to `chunk` records,
            # and parse line by line (to name a bad line).
            numbered = [(first + i, line) for i, line in enumerate(raw) if not line.isspace()]
            while len(numbered) < chunk:
                more = list(islice(f, chunk - len(numbered)))
                if not more:
                    break
                numbered += [(lineno + 1 + i, line) for i, line in enumerate(more) if not line.isspace()]
                lineno += len(more)
            if numbered:
                yield parse_lines(numbered)


def _skip_records(f: BinaryIO, skip: int) -> int:
    """Consume lines until `skip` records have gone by; returns the lines consumed."""
    lines = 0
    left = skip
    while left > 0:
        raw = list(islice(f, left))
        if not raw:
            break
        lines += len(raw)
        left -= len(raw) - sum(map(bytes.isspace, raw))
    return lines


def _parse_jsonl_fast(raw: list[bytes]) -> list[Any] | None:
    """The whole chunk in one json.loads (5x faster than one call per line); None when that
    cannot give exactly one record per line (a blank line, a bad or a multi-value line)."""
    text = b"[" + b",".join(raw) + b"]"
    try:
        rows = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(rows, list) or len(rows) != len(raw):
        return None
    return rows if text.translate(None, _NUMBER_ARRAY_BYTES) else NumberRows(rows)


def _parse_jsonl_lines(lines: list[tuple[int, bytes]]) -> list[Any]:
    out = []
    for lineno, raw in lines:
        try:
            out.append(json.loads(raw))
        except (ValueError, UnicodeDecodeError):
            raise InvalidInput(f"input line {lineno} is not valid JSON", details={"line": lineno}) from None
    return out


def _parse_csv_fast(raw: list[bytes]) -> list[Any] | None:
    try:
        return [list(map(float, line.split(b","))) for line in raw]
    except ValueError:  # a blank line, or not a number: explained line by line
        return None


def _parse_csv_lines(lines: list[tuple[int, bytes]]) -> list[Any]:
    rows = []
    for lineno, line in lines:
        try:
            rows.append([float(x) for x in line.decode("utf-8").split(",")])
        except (ValueError, UnicodeDecodeError):
            raise InvalidInput(f"input line {lineno} is not valid CSV numbers", details={"line": lineno}) from None
    return rows
