"""From a clone under `router serve`: a file dropped into a trigger folder produces exactly one job
and its output, also when its event comes again (a restart looks at the folder anew); a webhook
receiver on loopback gets one signed notification per finished job, verifiable with the secret."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from router.client import ApiError
from router.notifications import ID_HEADER, verify
from tests.e2e.conftest import ALICE, Server, wait_for

SECRET = "e2e-webhook-secret-0123456789"
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]


class Receiver:
    """A webhook receiver on loopback: records every POST (headers, exact body bytes)."""

    def __init__(self) -> None:
        self.got: list[tuple[dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with outer.lock:
                    outer.got.append(({k: v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/router"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def bodies(self) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(b) for _, b in self.got]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


def trigger_config(demo_dir: Path, name: str, receiver: Receiver) -> tuple[Path, Path, Path]:
    data = yaml.safe_load((demo_dir / "operator.yaml").read_text())
    data["storage"] = {"artifacts": "file://./models", "jobs": f"file://./.{name}/jobs", "job_table": f"sqlite:///./.{name}/jobs.db"}
    data["triggers"] = [{"source": f"file://./.{name}/inbox/", "model": "iris", "owner": "alice", "output_prefix": f"file://./.{name}/results/", "poll_s": 0.2}]
    data["notifications"] = {"webhook_secret": SECRET, "backoff_s": 0.5}
    for m in data["models"]:
        if m["name"] == "iris":
            m["notify"] = {"webhook": receiver.url}
    path = demo_dir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    inbox, results = demo_dir / f".{name}/inbox", demo_dir / f".{name}/results"
    inbox.mkdir(parents=True)
    return path, inbox, results


def drop(inbox: Path, name: str, rows: list[list[float]]) -> None:
    """Written under a hidden name, then renamed in: the watcher never sees it half-written."""
    tmp = inbox / f".{name}.part"
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tmp.replace(inbox / name)


def test_a_dropped_file_makes_one_job_and_its_output_even_when_seen_again(demo_dir: Path, receiver: Receiver) -> None:
    config, inbox, results = trigger_config(demo_dir, "trig-once", receiver)
    server = Server(config).start()
    try:
        client = server.client(ALICE)
        drop(inbox, "batch 1.jsonl", ROWS)
        [job] = wait_for(lambda: client.list_jobs()["jobs"], timeout_s=120)
        done = client.wait(job["job_id"], timeout_s=300, poll_s=0.2)
        assert done["status"] == "succeeded", done
        assert done["input"]["uri"] == "file://" + str((inbox / "batch 1.jsonl").resolve())
        out = results / "batch 1.jsonl.out.jsonl"
        assert done["output"]["uri"] == "file://" + str(out.resolve())
        expected = client.predict("iris", ROWS)["predictions"]
        assert [json.loads(line) for line in out.read_text().splitlines()] == expected
    finally:
        server.stop()
    # The same file again (its event delivered twice): a fresh server looks at the folder anew.
    server = Server(config).start()
    try:
        client = server.client(ALICE)
        drop(inbox, "z-batch 2.jsonl", ROWS[:1])  # sorts after the first: handed over after it
        jobs = wait_for(lambda: (lambda js: js if len(js) >= 2 else None)(client.list_jobs()["jobs"]), timeout_s=120)
        assert len(jobs) == 2 and jobs[1]["job_id"] == job["job_id"]
        assert client.wait(jobs[0]["job_id"], timeout_s=300, poll_s=0.2)["status"] == "succeeded"
    finally:
        server.stop()
    assert sorted(p.name for p in results.iterdir()) == ["batch 1.jsonl.out.jsonl", "z-batch 2.jsonl.out.jsonl"]


def test_a_loopback_receiver_gets_one_signed_notification_per_finished_job(demo_dir: Path, receiver: Receiver) -> None:
    config, inbox, _ = trigger_config(demo_dir, "trig-notify", receiver)
    data = yaml.safe_load(config.read_text())
    for m in data["models"]:
        m.pop("notify", None)  # here: only the jobs that ask for it, and the trigger's through the model below
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    server = Server(config).start()
    try:
        client = server.client(ALICE)
        own = client.submit_job("iris", instances=ROWS, notify_webhook=receiver.url)
        plain = client.submit_job("iris", instances=ROWS)  # no notify: no notification
        cancelled = client.submit_job("forest-xl", instances=[[0.0] * 20], notify_webhook=receiver.url)
        client.cancel_job(cancelled["job_id"])
        ended = {j["job_id"]: client.wait(j["job_id"], timeout_s=300, poll_s=0.2) for j in (own, plain, cancelled)}
        assert ended[own["job_id"]]["status"] == "succeeded" and ended[cancelled["job_id"]]["status"] in ("cancelled", "succeeded")
        wait_for(lambda: len(receiver.got) >= 2, timeout_s=120)
        with pytest.raises(ApiError) as refused:
            client.request("POST", "/v1/models/iris/jobs", {"instances": ROWS, "notify": {"webhook": "ftp://example.com/x"}})
        assert (refused.value.status, refused.value.code) == (400, "invalid_request")
    finally:
        server.stop()  # waits for deliveries in flight: nothing arrives after this
    now = time.time()
    by_job: dict[str, dict[str, Any]] = {}
    for headers, body in receiver.got:
        assert verify(SECRET.encode(), body, headers, now_s=now), headers
        doc = json.loads(body)
        assert headers[ID_HEADER] == doc["notification_id"]
        assert doc["job_id"] not in by_job, "one notification per job"
        by_job[doc["job_id"]] = doc
    assert set(by_job) == {own["job_id"], cancelled["job_id"]}
    for job_id, doc in by_job.items():
        assert doc["status"] == ended[job_id]["status"] and doc["records"] == ended[job_id]["records"]
