"""The pure job rules: the transition table, job ids, digests, the record format and cursors."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from router import jobs as jm
from router.domain import FINISHED, Job, JobStatus, OutputKind, Route
from router.errors import InvalidRequest

S = JobStatus
T0 = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)

EXPECTED_MOVES = {
    (S.QUEUED, S.RUNNING),
    (S.QUEUED, S.FAILED),
    (S.QUEUED, S.CANCELLING),
    (S.QUEUED, S.CANCELLED),
    (S.RUNNING, S.SUCCEEDED),
    (S.RUNNING, S.FAILED),
    (S.RUNNING, S.CANCELLING),
    (S.CANCELLING, S.CANCELLED),
}


def job(**kw: object) -> Job:
    base: dict[str, object] = {
        "job_id": jm.new_job_id(T0),
        "owner": "alice",
        "model": "iris",
        "status": S.QUEUED,
        "route": Route.BATCH_TRANSFORM,
        "reason": "r",
        "created_at": T0,
        "updated_at": T0,
        "input_uri": "s3://b/k",
    }
    base.update(kw)
    return Job(**base)  # type: ignore[arg-type]


def test_the_transition_table_is_exactly_the_documented_one() -> None:
    moves = {(a, b) for a in JobStatus for b in JobStatus if jm.can_transition(a, b)}
    assert moves == EXPECTED_MOVES


@pytest.mark.parametrize("final", sorted(FINISHED, key=lambda s: s.value))
def test_finished_states_are_absorbing(final: JobStatus) -> None:
    assert not any(jm.can_transition(final, b) for b in JobStatus)


def test_no_self_loops_so_repeats_are_no_ops() -> None:
    assert not any(jm.can_transition(s, s) for s in JobStatus)


def test_late_finish_after_cancelling_is_not_a_move() -> None:
    assert not jm.can_transition(S.CANCELLING, S.SUCCEEDED)
    assert not jm.can_transition(S.CANCELLING, S.FAILED)


@pytest.mark.parametrize("to", list(JobStatus))
def test_sources_is_the_inverse_of_the_table(to: JobStatus) -> None:
    assert jm.sources(to) == frozenset(a for a, b in EXPECTED_MOVES if b == to)


def test_sources_of_queued_is_empty_and_allowed_from_intersects() -> None:
    assert jm.sources(S.QUEUED) == frozenset()
    assert jm.allowed_from(frozenset(JobStatus), S.CANCELLED) == {S.QUEUED, S.CANCELLING}
    assert jm.allowed_from(frozenset({S.SUCCEEDED}), S.RUNNING) == frozenset()


def test_every_status_reaches_a_finished_state() -> None:
    for start in JobStatus:
        seen, todo = {start}, [start]
        while todo:
            for nxt in jm.TRANSITIONS[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        assert seen & FINISHED


# --- ids, digests ----------------------------------------------------------------------------


def test_job_id_is_a_crockford_ulid_with_the_time_in_front() -> None:
    jid = jm.new_job_id(T0)
    assert jid.startswith("job_") and len(jid) == 4 + 26
    assert set(jid[4:]) <= set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")
    ms = 0
    for ch in jid[4:14]:
        ms = ms * 32 + "0123456789ABCDEFGHJKMNPQRSTVWXYZ".index(ch)
    assert ms == int(T0.timestamp() * 1000)


def test_job_ids_are_unique_and_sort_by_time() -> None:
    same_ms = {jm.new_job_id(T0) for _ in range(1000)}
    assert len(same_ms) == 1000
    times = [T0 + timedelta(milliseconds=i * 7) for i in range(50)]
    ids = [jm.new_job_id(t) for t in times]
    assert ids == sorted(ids)


def test_job_id_treats_naive_time_as_utc() -> None:
    assert jm.new_job_id(T0.replace(tzinfo=None))[:14] == jm.new_job_id(T0)[:14]


def test_request_digest_ignores_key_order_and_sees_values() -> None:
    a = jm.request_digest({"instances": [[1, 2]], "output": "predict"})
    b = jm.request_digest({"output": "predict", "instances": [[1, 2]]})
    c = jm.request_digest({"output": "proba", "instances": [[1, 2]]})
    assert a == b != c
    assert a.startswith("sha256:") and len(a) == 7 + 64


# --- time and record ---------------------------------------------------------------------------


def test_time_text_is_fixed_width_utc_and_sorts_like_time() -> None:
    east = timezone(timedelta(hours=2))
    assert jm.format_time(datetime(2026, 1, 2, 5, 4, 5, tzinfo=east)) == "2026-01-02T03:04:05.000000Z"
    assert jm.parse_time("2026-01-02T03:04:05Z") == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    texts = [jm.format_time(T0 + timedelta(microseconds=n)) for n in (0, 1, 999_999, 10**6)]
    assert texts == sorted(texts)


def test_record_round_trip_of_a_full_job() -> None:
    full = job(
        status=S.SUCCEEDED,
        output_uri="s3://b/o",
        output_kind=OutputKind.PROBA,
        started_at=T0,
        finished_at=T0 + timedelta(seconds=1),
        records_total=3,
        records_done=3,
        error={"code": "x", "details": {"n": [1, None]}},
        backend_name="tj-1",
        idempotency_key="k",
        request_digest="sha256:00",
        checkpoint={"offset": 3},
        attempts=2,
        version=5,
        expires_at=T0 + timedelta(days=30),
        extra={"é": "ü"},
    )
    rec = jm.to_record(full)
    assert rec["status"] == "succeeded" and rec["created_at"] == "2026-01-02T03:04:05.123456Z"
    assert rec["error"] == '{"code":"x","details":{"n":[1,null]}}'
    assert all(v is None or isinstance(v, str | int) for v in rec.values())
    assert jm.from_record(json.loads(json.dumps(rec))) == full


@given(
    records=st.none() | st.integers(0, 10**12),
    extra=st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=3),
    micros=st.integers(0, 10**12),
)
def test_record_round_trip_property(records: int | None, extra: dict[str, object], micros: int) -> None:
    j = job(records_total=records, extra=extra, created_at=T0 + timedelta(microseconds=micros))
    assert jm.from_record(jm.to_record(j)) == j


# --- moves ------------------------------------------------------------------------------------


def test_apply_transition_sets_started_finished_expiry_and_version() -> None:
    later = T0 + timedelta(seconds=10)
    running = jm.apply_transition(job(), S.RUNNING, later, 30, {"backend_name": "b"})
    assert (running.status, running.started_at, running.updated_at, running.version) == (S.RUNNING, later, later, 2)
    assert running.finished_at is None and running.expires_at is None
    end = T0 + timedelta(seconds=20)
    done = jm.apply_transition(running, S.FAILED, end, 7, {"error": {"code": "e"}})
    assert (done.started_at, done.finished_at, done.expires_at) == (later, end, end + timedelta(days=7))
    assert done.version == 3 and done.error == {"code": "e"}


def test_apply_transition_keeps_a_given_started_or_finished_time() -> None:
    given_at = T0 - timedelta(seconds=5)
    running = jm.apply_transition(job(), S.RUNNING, T0, 30, {"started_at": given_at})
    assert running.started_at == given_at
    done = jm.apply_transition(running, S.SUCCEEDED, T0, 1, {"finished_at": given_at})
    assert (done.finished_at, done.expires_at) == (given_at, given_at + timedelta(days=1))


@pytest.mark.parametrize("name", ["status", "version", "job_id", "owner", "created_at", "updated_at", "expires_at", "nope"])
def test_managed_fields_cannot_be_changed(name: str) -> None:
    with pytest.raises(TypeError, match=name):
        jm.apply_update(job(), T0, {name: None})


def test_prepare_new_gives_a_finished_job_its_expiry() -> None:
    assert jm.prepare_new(job(), T0, 3).expires_at is None
    failed = jm.prepare_new(job(status=S.FAILED), T0, 3)
    assert (failed.finished_at, failed.expires_at) == (T0, T0 + timedelta(days=3))


def test_is_expired_at_and_after_expiry() -> None:
    j = job(expires_at=T0)
    assert not jm.is_expired(j, T0 - timedelta(microseconds=1))
    assert jm.is_expired(j, T0)
    assert not jm.is_expired(job(), T0 + timedelta(days=10**4))


# --- cursors ----------------------------------------------------------------------------------


def test_cursor_round_trip_and_owner_binding() -> None:
    j = job()
    cur = jm.encode_cursor("alice", jm.owner_sort_key(j))
    assert "=" not in cur
    assert jm.decode_cursor(cur, "alice") == jm.owner_sort_key(j)
    with pytest.raises(InvalidRequest):
        jm.decode_cursor(cur, "bob")


@pytest.mark.parametrize(
    "raw",
    [b"\xff\xfe", b"null", b'{"v":2,"o":"alice","k":"a#b"}', b'{"v":1,"o":"alice","k":"nohash"}', b'{"v":1,"o":"alice","k":"a#b","x":1}'],
)
def test_malformed_cursors_are_invalid_requests(raw: bytes) -> None:
    with pytest.raises(InvalidRequest):
        jm.decode_cursor(base64.urlsafe_b64encode(raw).decode(), "alice")
