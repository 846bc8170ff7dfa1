"""Hypothesis drives the SQLite job store through random submissions, duplicate submissions,
out-of-order and repeated transitions, cancels and versioned updates, and checks every answer
against a pure model of the rules (router/jobs.py's table, idempotency per owner, versions).
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule

from router import jobs as jm
from router.adapters.sqlite_jobs import SqliteJobStore
from router.domain import JobStatus
from tests.functional.test_jobstore_contract import FakeClock, make_job

S = JobStatus
OWNERS = ("alice", "bob")


@dataclass
class ModelJob:
    owner: str
    status: JobStatus
    version: int


class JobStoreMachine(RuleBasedStateMachine):
    jobs = Bundle("jobs")

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.model: dict[str, ModelJob] = {}
        self.keys: dict[tuple[str, str], str] = {}

    @initialize()
    def open_store(self) -> None:
        self.store = SqliteJobStore(":memory:", clock=self.clock)

    def teardown(self) -> None:
        if hasattr(self, "store"):
            self.store.close()

    @rule(target=jobs, owner=st.sampled_from(OWNERS), key=st.one_of(st.none(), st.sampled_from(["k1", "k2"])))
    def submit(self, owner: str, key: str | None) -> str:
        job, created = self.store.create(make_job(self.clock, owner, key=key))
        earlier = None if key is None else self.keys.get((owner, key))
        if earlier is None:
            assert created is True
            self.model[job.job_id] = ModelJob(owner, S.QUEUED, 1)
            if key is not None:
                self.keys[(owner, key)] = job.job_id
        else:
            assert created is False
            assert job.job_id == earlier  # a duplicate returns the first job, as it is now
            m = self.model[earlier]
            assert (job.status, job.version) == (m.status, m.version)
        return job.job_id

    @rule(
        job_id=jobs,
        from_=st.frozensets(st.sampled_from(list(JobStatus)), min_size=1),
        to=st.sampled_from(list(JobStatus)),
    )
    def transition(self, job_id: str, from_: frozenset[JobStatus], to: JobStatus) -> None:
        m = self.model[job_id]
        result = self.store.transition(job_id, from_, to)
        if m.status in from_ and jm.can_transition(m.status, to):
            assert result is not None
            assert (result.status, result.version) == (to, m.version + 1)
            assert (result.finished_at is not None) == to.finished
            m.status, m.version = to, m.version + 1
        else:
            assert result is None

    @rule(job_id=jobs)
    def cancel(self, job_id: str) -> None:
        """What DELETE does: a queued job ends at once, a running one is asked to stop."""
        m = self.model[job_id]
        done = self.store.transition(job_id, frozenset({S.QUEUED}), S.CANCELLED) or self.store.transition(
            job_id, frozenset({S.RUNNING}), S.CANCELLING
        )
        if m.status in (S.QUEUED, S.RUNNING):
            assert done is not None
            m.status = S.CANCELLED if m.status is S.QUEUED else S.CANCELLING
            m.version += 1
        else:
            assert done is None

    @rule(job_id=jobs, stale=st.booleans(), done=st.integers(0, 100))
    def update(self, job_id: str, stale: bool, done: int) -> None:
        m = self.model[job_id]
        result = self.store.update(job_id, m.version - 1 if stale else m.version, records_done=done)
        if stale:
            assert result is None
        else:
            assert result is not None and result.records_done == done and result.status is m.status
            m.version += 1

    @rule(seconds=st.integers(0, 3600))
    def tick(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @invariant()
    def store_matches_model(self) -> None:
        if not hasattr(self, "store"):
            return
        for owner in OWNERS:
            mine = {jid for jid, m in self.model.items() if m.owner == owner}
            listed = self.store.list_by_owner(owner, limit=1000).jobs
            assert {j.job_id for j in listed} == mine
            for j in listed:
                assert (j.status, j.version) == (self.model[j.job_id].status, self.model[j.job_id].version)
            assert self.store.count_active(owner) == sum(
                1 for jid in mine if self.model[jid].status.active
            )


JobStoreMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
TestJobStoreStateful = JobStoreMachine.TestCase
