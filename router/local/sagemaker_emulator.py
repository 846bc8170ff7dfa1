"""A local SageMaker: real-time endpoints as local model-server processes and batch-transform jobs
with SageMaker's semantics, running the same model code (`sagemaker_jobs`) as the real containers.

Endpoints: one `python -m sagemaker_jobs.serve` process per declared endpoint (Creating ->
InService once /ping answers), invoked over HTTP like InvokeEndpoint. Batch transform: jobs named
and adopted as on SageMaker, InProgress -> Completed | Failed | Stopped, one `<object>.out` per
input object, line splitting and mini-batches under MaxPayloadInMB, retries per mini-batch; every
status change is emitted as the EventBridge "SageMaker Transform Job State Change" event. Job
state lives on disk, so a `router serve` restart resumes what was running.
"""

from __future__ import annotations

import hashlib
import json
import logging
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

from router.config import BatchTransformDefaults, ModelSpec, RouterConfig, uri_to_path
from router.domain import Job
from router.errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    ModelIntegrityError,
    ModelRejectedInput,
)
from router.ports import BatchJobState, ObjectStore

log = logging.getLogger("router.emulator")

CANONICAL = {"sklearn": "model.joblib", "onnx": "model.onnx", "pytorch": "model.pt"}
EventSink = Callable[[dict[str, Any]], None]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def prepare_model_dir(model: ModelSpec, objects: ObjectStore, root: Path) -> Path:
    """What SageMaker does with ModelDataUrl: fetch, (verify: our addition), unpack to a model dir."""
    target = root / f"{model.name}-{model.sha256[:12]}"
    if (target / ".ready").exists():
        return target
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
        (tmp / ".ready").write_text(model.sha256)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


# ---------------------------------------------------------------- endpoints


class _EndpointProcess:
    def __init__(self, name: str, model: ModelSpec) -> None:
        self.name = name
        self.model = model
        self.status = "Creating"
        self.url: str | None = None
        self.proc: subprocess.Popen[str] | None = None
        self.drain: threading.Thread | None = None
        self.failure: str | None = None


class LocalEndpoints:
    """EndpointClient for `router serve`: local model-server processes."""

    def __init__(self, config: RouterConfig, objects: ObjectStore, work_dir: Path, *, invoke_timeout_s: float) -> None:
        self._config = config
        self._objects = objects
        self._dir = work_dir
        self._timeout = invoke_timeout_s
        self._eps = {m.endpoint.name: _EndpointProcess(m.endpoint.name, m) for m in config.models if m.endpoint is not None}
        self._threads: list[threading.Thread] = []
        self._closing = False

    def start(self) -> None:
        for ep in self._eps.values():
            t = threading.Thread(target=self._boot, args=(ep,), name=f"endpoint-{ep.name}", daemon=True)
            t.start()
            self._threads.append(t)

    def wait_ready(self, timeout_s: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(ep.status != "Creating" for ep in self._eps.values()):
                return all(ep.status == "InService" for ep in self._eps.values())
            time.sleep(0.05)
        return False

    def _boot(self, ep: _EndpointProcess) -> None:
        try:
            model_dir = prepare_model_dir(ep.model, self._objects, self._dir / "models")
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
            ep.url = line.strip().rsplit(" on ", 1)[1]
            ep.drain = threading.Thread(target=ep.proc.stdout.read, daemon=True)  # keep the pipe from filling
            ep.drain.start()
            for _ in range(600):
                try:
                    with urllib.request.urlopen(ep.url + "/ping", timeout=2) as r:
                        if r.status == 200:
                            ep.status = "InService"
                            log.info("endpoint %s InService at %s", ep.name, ep.url)
                            return
                except OSError:
                    time.sleep(0.1)
            raise BackendUnavailable(f"endpoint {ep.name} never answered /ping")
        except Exception as e:
            ep.status, ep.failure = "Failed", getattr(e, "message", str(e))
            if not self._closing:  # a shutdown during start-up is not a failure worth shouting about
                log.error("endpoint %s failed: %s", ep.name, ep.failure)

    def in_service(self, endpoint_name: str) -> bool:
        ep = self._eps.get(endpoint_name)
        return ep is not None and ep.status == "InService" and ep.proc is not None and ep.proc.poll() is None

    def invoke(self, endpoint_name: str, body: bytes, content_type: str = "application/json") -> bytes:
        ep = self._eps.get(endpoint_name)
        if ep is None or not self.in_service(endpoint_name) or ep.url is None:
            raise BackendUnavailable(f"endpoint {endpoint_name} is not InService")
        req = urllib.request.Request(
            ep.url + "/invocations", data=body, method="POST", headers={"Content-Type": content_type, "Accept": "application/json"}
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

    def close(self) -> None:
        self._closing = True
        for ep in self._eps.values():
            if ep.proc is not None and ep.proc.poll() is None:
                ep.proc.terminate()
                try:
                    ep.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    ep.proc.kill()
                    ep.proc.wait()
            if ep.drain is not None:
                ep.drain.join(timeout=5)
            if ep.proc is not None and ep.proc.stdout is not None:
                ep.proc.stdout.close()
            ep.status = "Deleted"


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
        from router.adapters.sagemaker_batch import transform_job_name, transform_job_request

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
            "detail-type": "SageMaker Transform Job State Change",
            "source": "aws.sagemaker",
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
