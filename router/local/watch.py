"""`router serve`'s stand-in for S3 object-created events: a thread that looks at every file://
trigger source folder every `poll_s` seconds and hands each new file to the trigger use case
(router/triggers.py), exactly like the trigger Lambda does with an S3 event.

A file still being written is not picked up: a file is taken only once its size and mtime are the
same on two looks in a row. (A writer that pauses longer than `poll_s` should write elsewhere, or
under a hidden name such as `.x.part`, and rename it into place: hidden files are never taken.)
A restart looks at every file again; the job's idempotency key (location + mtime + size) makes
that a no-op for files that already started their job.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from router.config import uri_to_path
from router.errors import RouterError
from router.triggers import ObjectCreated, Triggers

log = logging.getLogger("router.local")


class FolderWatcher:
    def __init__(self, triggers: Triggers) -> None:
        self._triggers = triggers
        sources = [t for t in triggers.config.triggers if t.source.startswith("file://")]
        for t in triggers.config.triggers:
            if t not in sources:
                log.warning("trigger %s is not watched under router serve: only file:// sources are (s3:// ones get S3 events on AWS)", t.source)
        self._folders = [uri_to_path(t.source) for t in sources]
        self.interval_s = min((t.poll_s for t in sources), default=2.0)
        self._last: dict[Path, tuple[int, int]] = {}  # what the previous look saw
        self._done: set[tuple[Path, str]] = set()  # (file, version) handed over successfully
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="router-trigger-watch", daemon=True)

    def start(self) -> None:
        if self._folders:
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.look()
            except Exception:
                log.exception("trigger folder look failed")
            self._stop.wait(self.interval_s)

    def _files(self) -> dict[Path, tuple[int, int]]:
        seen: dict[Path, tuple[int, int]] = {}
        for folder in self._folders:
            for root, dirs, names in os.walk(folder):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(names):
                    if name.startswith("."):
                        continue
                    path = Path(root) / name
                    try:
                        st = path.stat()
                    except OSError:
                        continue  # gone meanwhile
                    if path.is_file():
                        seen[path] = (st.st_size, st.st_mtime_ns)
        return seen

    def look(self) -> list[dict[str, object]]:
        """One look at the folders: start the job of every file unchanged since the last look."""
        now = self._files()
        results: list[dict[str, object]] = []
        for path, (size, mtime_ns) in now.items():
            if self._last.get(path) != (size, mtime_ns):
                continue  # new or still changing: look again next time
            version = f"file:{mtime_ns}-{size}"
            if (path, version) in self._done:
                continue
            try:
                results.append(self._triggers.on_object(ObjectCreated("file://" + str(path), version, size)))
                self._done.add((path, version))
            except RouterError as e:  # transient: the next look tries again
                log.warning("trigger for %s deferred: %s", path, e.message)
        self._last = now
        self._done = {(p, v) for p, v in self._done if p in now}
        return results
