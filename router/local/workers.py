"""Local stand-ins for Lambda's asynchronous invoke and the scheduled sweeper under `router serve`:
a small thread pool that runs the worker handler with a Lambda-like deadline, and a background
thread that runs the sweeper (at start-up, to resume jobs a restart interrupted, then periodically).
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from router.handlers import Handler
from router.local.server import LocalContext

if TYPE_CHECKING:
    from router.jobs_service import JobsService

log = logging.getLogger("router.local")


class LocalWorkerQueue:
    """WorkerQueue for `router serve`. A job already waiting or running is not queued twice."""

    def __init__(self, workers: int, timeout_s: float) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="router-worker")
        self._timeout_s = timeout_s
        self._inflight: set[str] = set()
        self._lock = threading.Lock()
        self._closed = False
        self.handler: Handler | None = None  # set once the runtime exists (the worker needs the queue too)

    def enqueue(self, job_id: str) -> None:
        with self._lock:
            if self._closed or job_id in self._inflight:
                return
            self._inflight.add(job_id)
        self._pool.submit(self._run, job_id)

    def in_flight(self, job_id: str) -> bool:
        """True while the job waits in the pool or runs: a continuation waiting behind other long
        jobs is not a dead worker to the sweeper."""
        with self._lock:
            return job_id in self._inflight

    def _run(self, job_id: str) -> None:
        again = False
        try:
            assert self.handler is not None, "the runtime sets the worker handler before it starts"
            result = self.handler({"job_id": job_id}, LocalContext(f"worker-{job_id}", self._timeout_s))
            again = bool(result.get("continued"))
        except Exception:
            log.exception("worker failed for %s (the sweeper will retry)", job_id)
        finally:
            with self._lock:
                self._inflight.discard(job_id)
        if again:  # the handler asked to continue: queue it again now that it is not in flight
            self.enqueue(job_id)

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._pool.shutdown(wait=True, cancel_futures=True)


class LocalSweeper:
    def __init__(self, jobs: JobsService, interval_s: float) -> None:
        self._jobs = jobs
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="router-sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        first = True
        while not self._stop.is_set():
            try:
                # At start-up everything active is stale: its process is gone. Resume it now.
                self._jobs.sweep(stale_after_s=0.0 if first else None)
            except Exception:
                log.exception("sweep failed")
            first = False
            self._stop.wait(self._interval)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
