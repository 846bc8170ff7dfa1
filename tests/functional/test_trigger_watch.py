"""router serve's folder watcher: a file is handed to the trigger use case once it stopped
changing between two looks (never half-written), hidden files never, each version once per
process; a restart hands every file over again (the job's idempotency key makes that a no-op)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from router.config import RouterConfig
from router.errors import Throttled
from router.local.watch import FolderWatcher
from router.triggers import ObjectCreated


class RecordingTriggers:
    """Stands in for router.triggers.Triggers: records what the watcher hands over."""

    def __init__(self, config: RouterConfig, fail: int = 0) -> None:
        self.config = config
        self.seen: list[ObjectCreated] = []
        self.fail = fail

    def on_object(self, obj: ObjectCreated) -> dict[str, Any]:
        if self.fail:
            self.fail -= 1
            raise Throttled("the job table is busy")
        self.seen.append(obj)
        return {"uri": obj.uri}


def config(inbox: Path, out: Path) -> RouterConfig:
    return RouterConfig.model_validate({
        "models": [{"name": "m", "framework": "sklearn", "artifact": "file:///m.joblib", "sha256": "ab" * 32}],
        "triggers": [{"source": f"file://{inbox}/", "model": "m", "owner": "alice", "output_prefix": f"file://{out}/", "poll_s": 0.5}],
    })


def test_a_file_still_being_written_waits_until_it_stops_changing(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    (inbox / "day1").mkdir(parents=True)
    triggers = RecordingTriggers(config(inbox, tmp_path / "out"))
    watcher = FolderWatcher(triggers)  # type: ignore[arg-type]  # the fake has the one method it calls
    growing = inbox / "day1" / "rows.jsonl"
    growing.write_text("[1, 2]\n")
    (inbox / ".rows.jsonl.part").write_text("[3, 4]\n")  # hidden: never taken
    assert watcher.look() == []  # first sight
    with growing.open("a") as f:
        f.write("[5, 6]\n")  # still being written
    assert watcher.look() == []
    assert [o.uri for o in triggers.seen] == []
    assert [r["uri"] for r in watcher.look()] == [f"file://{growing}"]  # unchanged since the last look
    assert triggers.seen[0].size == len("[1, 2]\n[5, 6]\n")
    assert watcher.look() == [] and len(triggers.seen) == 1  # once per version
    restarted = FolderWatcher(triggers)  # type: ignore[arg-type]
    restarted.look()
    restarted.look()
    assert [o.version for o in triggers.seen] == [triggers.seen[0].version] * 2  # same version again: the key dedupes


def test_a_transient_failure_is_retried_on_the_next_look(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    triggers = RecordingTriggers(config(inbox, tmp_path / "out"), fail=1)
    watcher = FolderWatcher(triggers)  # type: ignore[arg-type]
    (inbox / "a.csv").write_text("1,2\n")
    watcher.look()
    assert watcher.look() == [] and triggers.seen == []  # throttled
    assert [r["uri"] for r in watcher.look()] == [f"file://{inbox}/a.csv"]
