"""A local SageMaker: real-time endpoints as local model-server processes and batch-transform jobs
with SageMaker's semantics, running the same model code (`sagemaker_jobs`) as the real containers.

Endpoints: one `python -m sagemaker_jobs.serve` process per declared endpoint (Creating ->
InService once /ping answers), invoked over HTTP like InvokeEndpoint. Batch transform: jobs named
and adopted as on SageMaker, InProgress -> Completed | Failed | Stopped, one `<object>.out` per
input object, line splitting and mini-batches under MaxPayloadInMB, retries per mini-batch; every
status change is emitted as the EventBridge "SageMaker Transform Job State Change" event.
Asynchronous inference: a queue and one instance per endpoint, S3 in/out on the file store, the
success/error SNS notification delivered like the transform events, scale to zero after idle. Job
state lives on disk, so a `router serve` restart resumes what was running.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import logging
import queue
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from router.adapters.sagemaker_batch import transform_job_request
from router.config import BatchTransformDefaults, ModelSpec, RouterConfig, uri_to_path
from router.domain import Job
from router.errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    ModelIntegrityError,
    ModelRejectedInput,
)
from router.ports import AsyncInvocation, AsyncOutcome, BatchJobState, ObjectStore
from router.sagemaker_names import transform_job_name
from router.transform_events import EVENT_DETAIL_TYPE, EVENT_SOURCE

log = logging.getLogger("router.emulator")

CONTENT_TYPE_JSON = "application/json"
CANONICAL = {"sklearn": "model.joblib", "onnx": "model.onnx", "pytorch": "model.pt"}
EventSink = Callable[[dict[str, Any]], None]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


# What this process verified in each prepared model folder: {relative path: sha256}. A folder is
# trusted only against this, never on its own say-so, so a file planted in it (a pickle, a
# code/inference.py) after verification is caught before a model server loads the folder.
_verified: dict[Path, dict[str, str]] = {}
_prepare_lock = threading.Lock()


def _manifest(folder: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        if p.is_symlink():
            out[rel] = "symlink:" + str(p.readlink())
        elif p.is_file():
            out[rel] = _sha256(p)
    return out


def prepare_model_dir(model: ModelSpec, objects: ObjectStore, root: Path) -> Path:
    """What SageMaker does with ModelDataUrl: fetch, (verify: our addition), unpack to a model dir.

    A folder prepared earlier is reused only if every file in it still has the digest recorded
    when this process unpacked the verified artifact; otherwise (changed, or prepared by an earlier
    run) it is rebuilt from the artifact, whose sha256 is checked again."""
    target = root / f"{model.name}-{model.sha256[:12]}"
    with _prepare_lock:
        known = _verified.get(target)
        if known is not None and target.is_dir():
            if _manifest(target) == known:
                return target
            log.warning("prepared model folder %s changed since it was verified; rebuilding it from the artifact", target.name)
        _verified.pop(target, None)
        tmp = root / f".{target.name}.{uuid.uuid4().hex}"
        tmp.mkdir(parents=True)
        try:
            art = tmp / "artifact"
            objects.fetch_to(model.artifact, str(art))
            if _sha256(art) != model.sha256:
                raise ModelIntegrityError(f"artifact of {model.name} does not match its sha256; not deployed")
            if model.artifact.endswith((".tar.gz", ".tgz")):
                from sagemaker_jobs.package import unpack

                unpack(art, tmp)
                art.unlink()
            else:
                art.rename(tmp / CANONICAL.get(model.framework, art.name))
            manifest = _manifest(tmp)
            if target.exists() or target.is_symlink():
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                else:
                    target.unlink()
            tmp.rename(target)
            _verified[target] = manifest
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return target


# ---------------------------------------------------------------- endpoints


class _EndpointProcess:
    def __init__(self, name: str, model: ModelSpec, *, serverless: bool = False) -> None:
        self.name = name
        self.model = model
        self.status = "Creating"
        self.url: str | None = None
        self.proc: subprocess.Popen[str] | None = None
        self.drain: threading.Thread | None = None
        self.failure: str | None = None
        self.restarts = 0
        # Serverless: the model server runs only while there are calls (started by the first,
        # stopped `idle_s` after the last); `slots` caps concurrent calls at MaxConcurrency.
        self.serverless = serverless
        self.lock = threading.Lock()  # a cold start, a call's bookkeeping and a scale-in never interleave
        self.in_flight = 0
        self.last_call = 0.0
        self.cold_starts = 0
        spec = model.serverless
        self.slots = threading.BoundedSemaphore(spec.max_concurrency if serverless and spec is not None else 1)


class LocalEndpoints:
    """EndpointClient for `router serve`: local model-server processes, supervised. A model server
    that exits while the router serves is restarted (the endpoint is Creating meanwhile: requests
    for it get 503 with Retry-After), after a pause that doubles on each failed restart.

    Serverless endpoints (a model's `serverless`) are InService once their model folder is
    verified, with no process: the first call starts the model server (the cold start, which that
    call waits for), later calls reuse it, and it stops `serverless_idle_s` after the last call
    (scale to zero). More than MaxConcurrency calls at once are throttled (503), as SageMaker does."""

    RESTART_DELAY_S = 0.5
    MAX_RESTART_DELAY_S = 30.0
    MAX_FAILED_RESTARTS = 5  # in a row; then the endpoint is Failed

    def __init__(
        self, config: RouterConfig, objects: ObjectStore, work_dir: Path, *, invoke_timeout_s: float, serverless_idle_s: float = 120.0
    ) -> None:
        self._config = config
        self._objects = objects
        self._dir = work_dir
        self._timeout = invoke_timeout_s
        self.serverless_idle_s = serverless_idle_s
        self._eps = {m.endpoint.name: _EndpointProcess(m.endpoint.name, m) for m in config.models if m.endpoint is not None}
        for m in config.models:
            name = m.serverless_endpoint_name
            if name is not None:
                self._eps[name] = _EndpointProcess(name, m, serverless=True)
        self._threads: list[threading.Thread] = []
        self._closing = False
        self._stop = threading.Event()
        self._spawn_lock = threading.Lock()  # close() never races a restart's Popen

    def start(self) -> None:
        for ep in self._eps.values():
            target = self._create_serverless if ep.serverless else self._supervise
            t = threading.Thread(target=target, args=(ep,), name=f"endpoint-{ep.name}", daemon=True)
            t.start()
            self._threads.append(t)
        if any(ep.serverless for ep in self._eps.values()):
            t = threading.Thread(target=self._scale_in, name="serverless-scale-in", daemon=True)
            t.start()
            self._threads.append(t)

    # -- serverless endpoints
    def _create_serverless(self, ep: _EndpointProcess) -> None:
        """CreateEndpoint of a serverless endpoint: InService once its model folder is verified,
        Failed when the artifact is missing or does not match its digest. No instance starts."""
        try:
            prepare_model_dir(ep.model, self._objects, self._dir / "models")
        except Exception as e:
            ep.status, ep.failure = "Failed", getattr(e, "message", str(e))
            log.error("serverless endpoint %s failed: %s", ep.name, ep.failure)
            return
        ep.status = "InService"
        log.info("serverless endpoint %s InService (scaled to zero until its first call)", ep.name)

    def _scale_in(self) -> None:
        """Stop every serverless model server idle for `serverless_idle_s` (scale to zero)."""
        interval = max(0.05, min(1.0, self.serverless_idle_s / 4))
        while not self._stop.wait(interval):
            for ep in self._eps.values():
                if not ep.serverless:
                    continue
                with ep.lock:
                    idle = time.monotonic() - ep.last_call
                    if ep.proc is None or ep.in_flight or idle < self.serverless_idle_s:
                        continue
                    self._stop_process(ep)
                    log.info("serverless endpoint %s scaled to zero after %.3g s idle", ep.name, idle)

    def _stop_process(self, ep: _EndpointProcess) -> None:
        if ep.proc is not None and ep.proc.poll() is None:
            ep.proc.terminate()
            try:
                ep.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                ep.proc.kill()
                ep.proc.wait()
        self._reap(ep)
        ep.proc, ep.url = None, None

    def _invoke_serverless(self, ep: _EndpointProcess, body: bytes, content_type: str) -> bytes:
        status = self.status(ep.name)
        if status != "InService":
            raise BackendUnavailable(f"serverless endpoint {ep.name} is {status}, not InService",
                                     details={"endpoint": ep.name, "endpoint_status": status})
        spec = ep.model.serverless
        assert spec is not None
        if not ep.slots.acquire(blocking=False):
            raise BackendUnavailable(
                f"serverless endpoint {ep.name} is at its MaxConcurrency of {spec.max_concurrency} calls; retry shortly",
                details={"endpoint": ep.name, "aws_error": "ThrottlingException"},
            )
        try:
            with ep.lock:
                ep.in_flight += 1
                if not self.warm(ep.name):  # cold start: this call waits for the model server
                    self._stop_process(ep)
                    if not self._boot(ep):
                        failure = ep.failure
                        ep.status = "Deleted" if self._closing else "InService"  # the next call tries again
                        raise BackendUnavailable(f"serverless endpoint {ep.name}: its model server did not start: {failure}",
                                                 details={"endpoint": ep.name})
                    ep.cold_starts += 1
                url = ep.url
            assert url is not None
            return self._post(ep.name, url, body, content_type)
        finally:
            with ep.lock:
                ep.in_flight -= 1
                ep.last_call = time.monotonic()
            ep.slots.release()

    def cold_starts(self, endpoint_name: str) -> int:
        """How many times a serverless endpoint's model server was started (for operators and tests)."""
        ep = self._eps.get(endpoint_name)
        return 0 if ep is None else ep.cold_starts

    def wait_ready(self, timeout_s: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(ep.status != "Creating" for ep in self._eps.values()):
                return all(ep.status == "InService" for ep in self._eps.values())
            time.sleep(0.05)
        return False

    def _supervise(self, ep: _EndpointProcess) -> None:
        """Boot the endpoint's model server, then keep it running. One that never started is Failed
        (its artifact or model is the problem); one that exits later is restarted."""
        if not self._boot(ep):
            return
        delay, failed, up_since = self.RESTART_DELAY_S, 0, time.monotonic()
        while not self._closing:
            assert ep.proc is not None
            code = ep.proc.wait()
            if self._closing:
                return
            if time.monotonic() - up_since > 60:
                delay = self.RESTART_DELAY_S  # it ran a while: not a crash loop
            self._reap(ep)
            ep.status, ep.url = "Creating", None
            log.warning("endpoint %s: its model server exited (code %s); restarting it", ep.name, code)
            while True:
                if self._stop.wait(delay):
                    return
                delay = min(delay * 2, self.MAX_RESTART_DELAY_S)
                if self._boot(ep):
                    ep.restarts, failed, up_since = ep.restarts + 1, 0, time.monotonic()
                    break
                if self._closing:
                    return
                failed += 1
                if failed >= self.MAX_FAILED_RESTARTS:
                    log.error("endpoint %s: %d restarts failed in a row; it stays Failed", ep.name, failed)
                    return
                ep.status = "Creating"

    def _boot(self, ep: _EndpointProcess) -> bool:
        """Start the model server on a verified model folder; True once it answers /ping (InService)."""
        try:
            model_dir = prepare_model_dir(ep.model, self._objects, self._dir / "models")
            with self._spawn_lock:
                if self._closing:
                    return False
                ep.proc = subprocess.Popen(
                    [sys.executable, "-m", "sagemaker_jobs.serve", "--model-dir", str(model_dir), "--host", "127.0.0.1", "--port", "0"],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    text=True,
                )
            assert ep.proc.stdout is not None
            line = ep.proc.stdout.readline()  # "serving MODEL on http://host:port"
            if " on http" not in line:
                raise BackendUnavailable(f"model server for {ep.name} did not start: {line.strip() or 'no output'}")
            url = line.strip().rsplit(" on ", 1)[1]
            ep.drain = threading.Thread(target=ep.proc.stdout.read, daemon=True)  # keep the pipe from filling
            ep.drain.start()
            for _ in range(600):
                if self._closing or ep.proc.poll() is not None:
                    break
                try:
                    with urllib.request.urlopen(url + "/ping", timeout=2) as r:
                        if r.status == 200:
                            ep.url, ep.status, ep.failure = url, "InService", None
                            log.info("endpoint %s InService at %s", ep.name, url)
                            return True
                except OSError:
                    time.sleep(0.1)
            raise BackendUnavailable(f"endpoint {ep.name} never answered /ping")
        except Exception as e:
            ep.status, ep.failure = "Failed", getattr(e, "message", str(e))
            if ep.proc is not None and ep.proc.poll() is None:
                ep.proc.kill()
            self._reap(ep)
            if not self._closing:  # a shutdown during start-up is not a failure worth shouting about
                log.error("endpoint %s failed: %s", ep.name, ep.failure)
            return False

    def _reap(self, ep: _EndpointProcess) -> None:
        if ep.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                ep.proc.wait(timeout=10)
        if ep.drain is not None:
            ep.drain.join(timeout=5)
            ep.drain = None
        if ep.proc is not None and ep.proc.stdout is not None:
            ep.proc.stdout.close()

    def status(self, endpoint_name: str) -> str:
        """SageMaker's EndpointStatus for it: Creating (also while its model server restarts),
        InService, Failed, Deleted."""
        ep = self._eps.get(endpoint_name)
        if ep is None:
            return "NotFound"
        if ep.serverless:
            return "Deleted" if self._closing else ep.status  # no instance is normal: scaled to zero
        if ep.status == "InService" and (ep.proc is None or ep.proc.poll() is not None):
            return "Deleted" if self._closing else "Creating"  # died; the supervisor restarts it
        return ep.status

    def in_service(self, endpoint_name: str) -> bool:
        return self.status(endpoint_name) == "InService"

    def warm(self, endpoint_name: str) -> bool:
        """Its model server is running: a real-time endpoint's always is once InService, a
        serverless one's between its first call and scaling to zero."""
        ep = self._eps.get(endpoint_name)
        return ep is not None and ep.proc is not None and ep.proc.poll() is None and ep.url is not None

    def pid(self, endpoint_name: str) -> int | None:
        """The model server's process id (for operators and tests)."""
        ep = self._eps.get(endpoint_name)
        return None if ep is None or ep.proc is None else ep.proc.pid

    def invoke(self, endpoint_name: str, body: bytes, content_type: str = "application/json") -> bytes:
        ep = self._eps.get(endpoint_name)
        if ep is not None and ep.serverless:
            return self._invoke_serverless(ep, body, content_type)
        url = None if ep is None else ep.url
        if ep is None or not self.in_service(endpoint_name) or url is None:
            raise BackendUnavailable(f"endpoint {endpoint_name} is {self.status(endpoint_name)}, not InService",
                                     details={"endpoint": endpoint_name, "endpoint_status": self.status(endpoint_name)})
        return self._post(endpoint_name, url, body, content_type)

    def _post(self, endpoint_name: str, url: str, body: bytes, content_type: str) -> bytes:
        """POST /invocations to a model server, with InvokeEndpoint's error mapping."""
        req = urllib.request.Request(
            url + "/invocations", data=body, method="POST", headers={"Content-Type": content_type, "Accept": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=self._timeout) as r:
                return bytes(r.read())
        except urllib.error.HTTPError as e:
            # As the endpoint adapter maps InvokeEndpoint's ModelError by its OriginalStatusCode.
            details = {"endpoint": endpoint_name, "aws_error": "ModelError", "model_status": e.code}
            with e:  # the error response holds the connection until closed
                error_body = e.read()
            if 400 <= e.code < 500:
                raise ModelRejectedInput.from_endpoint(endpoint_name, e.code, error_body) from None
            raise BackendError(f"endpoint {endpoint_name}: the model failed on this request", details=details) from None
        except TimeoutError:
            raise BackendTimeout(f"endpoint {endpoint_name} did not answer within {self._timeout:g} s") from None
        except urllib.error.URLError as e:
            if isinstance(e.reason, TimeoutError):
                raise BackendTimeout(f"endpoint {endpoint_name} did not answer within {self._timeout:g} s") from None
            raise BackendUnavailable(f"endpoint {endpoint_name} is unreachable: {e.reason}") from None
        except (OSError, http.client.HTTPException) as e:  # the model server died mid-call
            raise BackendUnavailable(f"endpoint {endpoint_name} dropped the call ({type(e).__name__})") from None

    def close(self) -> None:
        with self._spawn_lock:
            self._closing = True
        self._stop.set()
        for ep in self._eps.values():
            if ep.proc is not None and ep.proc.poll() is None:
                ep.proc.terminate()
                try:
                    ep.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    ep.proc.kill()
                    ep.proc.wait()
            self._reap(ep)
            ep.status = "Deleted"
            if ep.serverless:
                ep.proc, ep.url = None, None  # no instance left
        for t in self._threads:
            t.join(timeout=5)


# ---------------------------------------------------------------- batch transform


class TransformStopped(Exception):
    pass


class LocalBatch:
    """BatchClient for `router serve`: transform jobs run in threads, state kept on disk."""

    def __init__(
        self,
        config: RouterConfig,
        objects: ObjectStore,
        work_dir: Path,
        *,
        on_event: EventSink | None = None,
        startup_s: float = 0.2,
        batch_records: int = 500,
    ) -> None:
        self._config = config
        self._objects = objects
        self._dir = work_dir
        self._state_dir = work_dir / "transform-jobs"
        self._state_dir.mkdir(parents=True, exist_ok=True)
        self.on_event = on_event
        self.startup_s = startup_s
        self._batch_records = batch_records
        self._lock = threading.Lock()
        self._stops: dict[str, threading.Event] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._closed = threading.Event()

    # -- state on disk
    def _path(self, name: str) -> Path:
        return self._state_dir / f"{name}.json"

    def _read(self, name: str) -> dict[str, Any] | None:
        try:
            return dict(json.loads(self._path(name).read_text()))
        except (OSError, ValueError):
            return None

    def _write(self, rec: dict[str, Any]) -> None:
        p = self._path(rec["TransformJobName"])
        tmp = p.with_suffix(".tmp")
        tmp.write_text(json.dumps(rec))
        tmp.replace(p)

    # -- the port
    def submit(self, job: Job, model: ModelSpec, settings: BatchTransformDefaults, input_uri: str, output_uri: str) -> str:
        name = transform_job_name(job.job_id)
        # The very CreateTransformJob parameters the AWS adapter sends; the job runs by them.
        params = transform_job_request(job, model, settings, input_uri, output_uri, model_name=model.name)
        with self._lock:
            if self._read(name) is not None:
                return name  # adopt: SageMaker refuses a second job with the same name
            rec = {
                "TransformJobName": name,
                "TransformJobStatus": "InProgress",
                "ModelName": model.name,
                "ModelSha256": model.sha256,
                "Input": input_uri,
                "Output": output_uri,
                "OutputKind": job.output_kind.value,
                "MaxPayloadInMB": params["MaxPayloadInMB"],
                "MaxRetries": params["ModelClientConfig"]["InvocationsMaxRetries"],
                "BatchStrategy": params["BatchStrategy"],
                "ContentType": params["TransformInput"]["ContentType"],
                "SplitType": params["TransformInput"]["SplitType"],
                "Accept": params["TransformOutput"]["Accept"],
                "AssembleWith": params["TransformOutput"]["AssembleWith"],
                "CreationTime": _now(),
            }
            self._write(rec)
            self._launch(name)
        self._emit(rec)
        return name

    def describe(self, name: str) -> BatchJobState | None:
        rec = self._read(name)
        if rec is None:
            return None
        return BatchJobState(name=name, status=rec["TransformJobStatus"], failure_reason=rec.get("FailureReason"))

    def stop(self, name: str) -> None:
        with self._lock:
            rec = self._read(name)
            if rec is None or rec["TransformJobStatus"] != "InProgress":
                return  # stopping a finished or unknown job is not an error
            rec["TransformJobStatus"] = "Stopping"
            self._write(rec)
            ev = self._stops.get(name)
            if ev is not None:
                ev.set()
            running = name in self._threads
        if not running:
            self._finish(name, "Stopped", None)

    def resume(self) -> None:
        """After a restart: continue transform jobs that were InProgress (re-run from the start,
        as SageMaker retries; the output objects are rewritten whole)."""
        for p in sorted(self._state_dir.glob("*.json")):
            rec = self._read(p.stem)
            if rec and rec["TransformJobStatus"] == "InProgress":
                with self._lock:
                    self._launch(p.stem)
            elif rec and rec["TransformJobStatus"] == "Stopping":
                self._finish(p.stem, "Stopped", None)

    def close(self) -> None:
        self._closed.set()
        for ev in list(self._stops.values()):
            ev.set()
        for t in list(self._threads.values()):
            t.join(timeout=10)

    # -- running
    def _launch(self, name: str) -> None:
        ev = threading.Event()
        self._stops[name] = ev
        t = threading.Thread(target=self._run, args=(name, ev), name=f"transform-{name}", daemon=True)
        self._threads[name] = t
        t.start()

    def _run(self, name: str, stop: threading.Event) -> None:
        from sagemaker_jobs.serve import load_service, transform_file

        rec = self._read(name)
        assert rec is not None
        status, reason = "Completed", None
        try:
            if stop.wait(self.startup_s):  # provisioning; a stop during it ends the job
                raise TransformStopped()
            model = self._config.model(rec["ModelName"])
            if model is None or model.sha256 != rec["ModelSha256"]:
                raise BackendError(f"model {rec['ModelName']} with that digest is not deployed")
            model_dir = prepare_model_dir(model, self._objects, self._dir / "models")
            service = load_service(model_dir)
            inputs = self._inputs(rec["Input"])
            if not inputs:
                raise BackendError("no input objects under " + rec["Input"])
            out_dir = uri_to_path(rec["Output"])
            # A job recorded before the emulator kept its parameters ran the JSON Lines transform.
            legacy_type = "application/jsonlines" + ("; output=proba" if rec["OutputKind"] == "proba" else "")
            how = {
                "content_type": rec.get("ContentType", legacy_type),
                "accept": rec.get("Accept", "application/jsonlines"),
                "split_type": rec.get("SplitType", "Line"),
                "batch_strategy": rec.get("BatchStrategy", "MultiRecord"),
                "assemble_with": rec.get("AssembleWith", "Line"),
            }
            for path in inputs:
                attempt = 0
                while True:
                    if stop.is_set():
                        raise TransformStopped()
                    try:
                        transform_file(
                            service, path, out_dir, **how,
                            batch_records=self._batch_records, max_payload_bytes=int(rec["MaxPayloadInMB"]) * 1024 * 1024 or None,
                            **_stop_kw(transform_file, stop),
                        )
                        break
                    except TransformStopped:
                        raise
                    except Exception as e:
                        if type(e).__name__ == "TransformStopped":
                            raise TransformStopped() from None
                        attempt += 1
                        if attempt > int(rec["MaxRetries"]):
                            raise BackendError(f"{path.name}: {e}") from None
        except TransformStopped:
            status = "Stopped"
        except Exception as e:
            status, reason = "Failed", getattr(e, "message", None) or str(e) or type(e).__name__
            log.warning("transform job %s failed: %s", name, reason)
        finally:
            with self._lock:
                self._threads.pop(name, None)
                self._stops.pop(name, None)
        if self._closed.is_set() and status == "Stopped":
            return  # shutting down: leave it InProgress on disk, resume() continues it next start
        self._finish(name, status, reason)

    def _inputs(self, uri: str) -> list[Path]:
        p = uri_to_path(uri)
        if p.is_file():
            return [p]
        if p.is_dir():
            return sorted(x for x in p.rglob("*") if x.is_file() and not x.name.startswith("."))
        return []

    def _finish(self, name: str, status: str, reason: str | None) -> None:
        with self._lock:
            rec = self._read(name)
            if rec is None or rec["TransformJobStatus"] in ("Completed", "Failed", "Stopped"):
                return
            rec["TransformJobStatus"] = status
            rec["TransformEndTime"] = _now()
            if reason:
                rec["FailureReason"] = reason[:1024]
            self._write(rec)
        self._emit(rec)

    def _emit(self, rec: dict[str, Any]) -> None:
        if self.on_event is None:
            return
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": EVENT_DETAIL_TYPE,
            "source": EVENT_SOURCE,
            "account": "000000000000",
            "time": _now(),
            "region": "local",
            "resources": [f"arn:aws:sagemaker:local:000000000000:transform-job/{rec['TransformJobName']}"],
            "detail": {k: v for k, v in rec.items() if k in ("TransformJobName", "TransformJobStatus", "FailureReason", "ModelName", "CreationTime", "TransformEndTime")},
        }
        try:
            self.on_event(event)
        except Exception:
            log.exception("event delivery failed for %s (the sweeper will repair)", rec["TransformJobName"])


def _stop_kw(fn: Callable[..., Any], stop: threading.Event) -> dict[str, Any]:
    import inspect

    return {"should_stop": stop.is_set} if "should_stop" in inspect.signature(fn).parameters else {}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ---------------------------------------------------------------- asynchronous inference


class _AsyncEndpoint:
    def __init__(self, name: str, model: ModelSpec, output_path: str, failure_path: str) -> None:
        self.name = name
        self.model = model
        self.output_path = output_path.rstrip("/")
        self.failure_path = failure_path.rstrip("/")
        self.queue: queue.Queue[str] = queue.Queue()
        self.service: Any = None  # the loaded model while an instance is up
        self.instances = 0
        self.starting = False
        self.thread: threading.Thread | None = None


class LocalAsyncEndpoints:
    """AsyncInferenceClient for `router serve`: SageMaker asynchronous inference endpoints on the
    local file store. InvokeEndpointAsync queues the request (the same InferenceId is adopted, as
    a retried dispatch must not run twice); one instance per endpoint works through the queue,
    starting from zero when it has none (`startup_s`, then the model loads), writes the model's
    answer to `<output_path>/<InferenceId>.out` or its error to `<failure_path>/<InferenceId>-error.out`,
    and publishes SageMaker's success/error notification, as the SNS event a subscribed Lambda gets,
    to `on_event`. An instance idle for the model's `scale_to_zero_after_s` scales in to
    `min_instances`. Requests live on disk, so a restart resumes the queue."""

    REGION = "local"
    ACCOUNT = "000000000000"

    def __init__(
        self,
        config: RouterConfig,
        objects: ObjectStore,
        work_dir: Path,
        *,
        on_event: EventSink | None = None,
        startup_s: float = 0.2,
    ) -> None:
        self._config = config
        self._objects = objects
        self._dir = work_dir
        self._state_dir = work_dir / "async-requests"
        self._state_dir.mkdir(parents=True, exist_ok=True)
        self.on_event = on_event
        self.startup_s = startup_s
        self._lock = threading.Lock()
        self._closed = threading.Event()
        root = config.storage.jobs.rstrip("/")
        self._eps: dict[str, _AsyncEndpoint] = {}
        for m in config.models:
            spec, name = m.async_inference, m.async_endpoint_name
            if spec is not None and name is not None:
                self._eps[name] = _AsyncEndpoint(
                    name, m, spec.output_path or f"{root}/async-output/", spec.failure_path or f"{root}/async-failure/"
                )
                self._eps[name].instances = spec.min_instances

    # -- state on disk
    def _path(self, inference_id: str) -> Path:
        return self._state_dir / f"{hashlib.sha256(inference_id.encode()).hexdigest()[:32]}.json"

    def _read(self, inference_id: str) -> dict[str, Any] | None:
        try:
            return dict(json.loads(self._path(inference_id).read_text()))
        except (OSError, ValueError):
            return None

    def _write(self, rec: dict[str, Any]) -> None:
        p = self._path(rec["InferenceId"])
        tmp = p.with_suffix(".tmp")
        tmp.write_text(json.dumps(rec))
        tmp.replace(p)

    # -- the port
    def invoke(self, endpoint_name: str, input_uri: str, inference_id: str, *, invocation_timeout_s: int) -> AsyncInvocation:
        ep = self._eps.get(endpoint_name)
        if ep is None:
            raise BackendError(f"SageMaker InvokeEndpointAsync failed: Endpoint {endpoint_name} not found.",
                               details={"aws_error": "ValidationError"})
        with self._lock:
            rec = self._read(inference_id)
            if rec is None:
                rec = {
                    "InferenceId": inference_id,
                    "EndpointName": endpoint_name,
                    "InputLocation": input_uri,
                    "OutputLocation": f"{ep.output_path}/{inference_id}.out",
                    "FailureLocation": f"{ep.failure_path}/{inference_id}-error.out",
                    "InvocationTimeoutSeconds": invocation_timeout_s,
                    "Status": "InProgress",
                    "ReceivedTime": _now(),
                }
                self._write(rec)
                ep.queue.put(inference_id)
        return AsyncInvocation(inference_id, rec["OutputLocation"], rec["FailureLocation"])

    def in_service(self, endpoint_name: str) -> bool | None:
        ep = self._eps.get(endpoint_name)
        return None if ep is None else ep.instances > 0 and not ep.starting

    def instance_count(self, endpoint_name: str) -> int:
        """Instances up (for operators and tests): 0 when scaled to zero."""
        ep = self._eps.get(endpoint_name)
        return 0 if ep is None else ep.instances

    def request(self, inference_id: str) -> dict[str, Any] | None:
        """The request's record as the emulator keeps it (Status InProgress | Completed | Failed)."""
        return self._read(inference_id)

    def start(self) -> None:
        """Resume requests a restart left InProgress (in arrival order), then start the instances' loops."""
        pending = sorted((r for p in self._state_dir.glob("*.json") if (r := self._read_path(p))), key=lambda r: r["ReceivedTime"])
        for rec in pending:
            ep = self._eps.get(rec["EndpointName"])
            if ep is not None and rec["Status"] == "InProgress":
                ep.queue.put(rec["InferenceId"])
        for ep in self._eps.values():
            ep.thread = threading.Thread(target=self._serve, args=(ep,), name=f"async-{ep.name}", daemon=True)
            ep.thread.start()

    def _read_path(self, p: Path) -> dict[str, Any] | None:
        try:
            return dict(json.loads(p.read_text()))
        except (OSError, ValueError):
            return None

    def close(self) -> None:
        self._closed.set()
        for ep in self._eps.values():
            if ep.thread is not None:
                ep.thread.join(timeout=10)

    # -- the instance
    def _serve(self, ep: _AsyncEndpoint) -> None:
        spec = ep.model.async_inference
        assert spec is not None
        idle_since = time.monotonic()
        while not self._closed.is_set():
            try:
                inference_id = ep.queue.get(timeout=0.1)
            except queue.Empty:
                if ep.instances > spec.min_instances and time.monotonic() - idle_since >= spec.scale_to_zero_after_s:
                    ep.instances, ep.service = spec.min_instances, None
                    log.info("async endpoint %s scaled in to %d instances after %g s idle", ep.name, ep.instances, spec.scale_to_zero_after_s)
                continue
            rec = self._read(inference_id)
            if rec is None or rec["Status"] != "InProgress":
                continue
            if self._closed.is_set():
                return  # stays InProgress on disk: start() resumes it next time
            self._run(ep, rec)
            idle_since = time.monotonic()

    def _run(self, ep: _AsyncEndpoint, rec: dict[str, Any]) -> None:
        from sagemaker_jobs import inference
        from sagemaker_jobs.serve import load_service

        outcome: AsyncOutcome
        try:
            if ep.service is None:
                ep.starting = True
                try:
                    if ep.instances == 0 and self._closed.wait(self.startup_s):  # provisioning an instance from zero
                        return
                    ep.service = load_service(prepare_model_dir(ep.model, self._objects, self._dir / "models"))
                    ep.instances = max(ep.instances, 1)
                finally:
                    ep.starting = False
            body = self._objects.get_bytes(rec["InputLocation"])
            answer, content_type = ep.service.invoke(body, CONTENT_TYPE_JSON, CONTENT_TYPE_JSON)
            self._objects.put_bytes(rec["OutputLocation"], answer, content_type)
            outcome = AsyncOutcome(rec["InferenceId"], "Completed", output_uri=rec["OutputLocation"])
        except Exception as e:
            status = int(getattr(e, "status", 500)) if isinstance(e, inference.InputError) else 500
            code = str(getattr(e, "code", "model_error")) if status < 500 else "model_error"
            message = str(e) or type(e).__name__
            self._objects.put_bytes(
                rec["FailureLocation"], json.dumps({"error": {"code": code, "message": message}}).encode(), CONTENT_TYPE_JSON
            )
            # SageMaker's own wording of a failed async request.
            reason = (
                f'ClientError: Received client error ({status}) from model with message "{message[:500]}". See the endpoint logs for more information.'
                if status < 500
                else f"ClientError: Received server error ({status}) from model. See the endpoint logs for more information."
            )
            log.warning("async request %s failed: %s", rec["InferenceId"], message)
            outcome = AsyncOutcome(rec["InferenceId"], "Failed", failure_uri=rec["FailureLocation"], failure_reason=reason)
        with self._lock:
            rec = {**rec, "Status": outcome.status, "EndTime": _now(), **({"FailureReason": outcome.failure_reason} if outcome.failure_reason else {})}
            self._write(rec)
        self._notify(ep, rec, outcome)

    def _notify(self, ep: _AsyncEndpoint, rec: dict[str, Any], outcome: AsyncOutcome) -> None:
        from router.async_inference import notification_message, sns_event

        if self.on_event is None:
            return
        spec = ep.model.async_inference
        assert spec is not None
        kind = "success" if outcome.status == "Completed" else "error"
        topic = (spec.success_topic if kind == "success" else spec.error_topic) or (
            f"arn:aws:sns:{self.REGION}:{self.ACCOUNT}:{ep.name}-{kind}"
        )
        message = notification_message(
            outcome, endpoint_name=ep.name, input_uri=rec["InputLocation"], region=self.REGION,
            event_time=rec["EndTime"], received_time=rec["ReceivedTime"],
        )
        try:
            self.on_event(sns_event(message, topic_arn=topic, message_id=str(uuid.uuid4()), timestamp=rec["EndTime"]))
        except Exception:
            log.exception("notification delivery failed for %s (the sweeper will find the output)", rec["InferenceId"])
