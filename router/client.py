"""A small Python client for the router's HTTP API (docs/api.md), standard library only.

    from router.client import RouterClient
    c = RouterClient("http://127.0.0.1:8080", api_key="key-alice-0123456789")
    c.predict("iris", [[5.1, 3.5, 1.4, 0.2]])
    job = c.submit_job("iris", instances=rows, idempotency_key="nightly-2026-11-22")
    job = c.wait(job["job_id"]); c.download(job, "out.jsonl")

Errors come back as `ApiError` carrying the documented status, code and message.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO

FINISHED = frozenset({"succeeded", "failed", "cancelled"})


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, body: Any = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.body = body


class RouterClient:
    """`api_key` for `router serve` (Bearer); `sigv4_region` for the AWS API (IAM auth: requests are
    signed with the caller's AWS credentials through botocore, imported only then)."""

    def __init__(self, base_url: str, api_key: str | None = None, *, timeout_s: float = 60.0, sigv4_region: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.sigv4_region = sigv4_region

    def sign(self, method: str, url: str, headers: dict[str, str], data: bytes | None) -> dict[str, str]:
        """SigV4 headers for API Gateway (service `execute-api`) with the default AWS credentials."""
        if not self.sigv4_region:
            return headers
        import botocore.session
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        creds = botocore.session.get_session().get_credentials()
        if creds is None:
            raise ApiError(0, "unauthorized", "no AWS credentials found to sign the request (SigV4)")
        req = AWSRequest(method=method, url=url, data=data or b"", headers=headers)
        SigV4Auth(creds, "execute-api", self.sigv4_region).add_auth(req)
        return dict(req.headers.items())

    # ------------------------------------------------------------ plumbing

    def request(
        self, method: str, path: str, body: Any = None, *, headers: dict[str, str] | None = None, query: dict[str, Any] | None = None
    ) -> tuple[int, dict[str, str], Any]:
        url = self.base_url + path
        if query:
            q = {k: v for k, v in query.items() if v is not None}
            if q:
                url += "?" + urllib.parse.urlencode(q)
        hdrs = {"Accept": "application/json", **(headers or {})}
        if self.api_key:
            hdrs["Authorization"] = f"Bearer {self.api_key}"
        data = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":")).encode()
            hdrs["Content-Type"] = "application/json"
        hdrs = self.sign(method, url, hdrs, data)
        req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                raw = resp.read()
                return resp.status, dict(resp.headers), json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                parsed = json.loads(raw)
                err = parsed.get("error", {})
                raise ApiError(e.code, err.get("code", "error"), err.get("message", ""), parsed) from None
            except (ValueError, AttributeError):
                raise ApiError(e.code, "error", raw.decode("utf-8", "replace")[:200]) from None
        except urllib.error.URLError as e:
            raise ApiError(0, "unreachable", f"cannot reach {self.base_url}: {e.reason}") from None

    # ------------------------------------------------------------ API

    def health(self) -> Any:
        return self.request("GET", "/v1/health")[2]

    def models(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/v1/models")[2]["models"])

    def predict(self, model: str, instances: list[Any], output: str = "predict") -> Any:
        return self.request("POST", f"/v1/models/{model}/predict", {"instances": instances, "output": output})[2]

    def route(self, model: str, **description: Any) -> Any:
        return self.request("POST", f"/v1/models/{model}/route", description)[2]

    def submit_job(
        self,
        model: str,
        *,
        instances: list[Any] | None = None,
        input_uri: str | None = None,
        input_format: str = "jsonl",
        output: str = "predict",
        idempotency_key: str | None = None,
        notify_webhook: str | None = None,
    ) -> Any:
        body: dict[str, Any] = {"output": output}
        if notify_webhook is not None:
            body["notify"] = {"webhook": notify_webhook}
        if instances is not None:
            body["instances"] = instances
        else:
            body["input"] = {"uri": input_uri, "format": input_format}
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return self.request("POST", f"/v1/models/{model}/jobs", body, headers=headers)[2]

    def upload(self, source: BinaryIO | bytes) -> str:
        """Upload a large job input through a presigned slot; returns its input_uri."""
        slot = self.request("POST", "/v1/uploads")[2]
        data = source if isinstance(source, bytes) else source.read()
        req = urllib.request.Request(slot["upload_url"], data=data, method=slot.get("method", "PUT"), headers=slot.get("headers") or {})
        with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
            resp.read()
        return str(slot["input_uri"])

    def get_job(self, job_id: str) -> Any:
        return self.request("GET", f"/v1/jobs/{job_id}")[2]

    def list_jobs(self, *, status: str | None = None, model: str | None = None, limit: int | None = None, cursor: str | None = None) -> Any:
        return self.request("GET", "/v1/jobs", query={"status": status, "model": model, "limit": limit, "cursor": cursor})[2]

    def iter_jobs(self, **filters: Any) -> Iterable[dict[str, Any]]:
        cursor = None
        while True:
            page = self.list_jobs(cursor=cursor, **filters)
            yield from page["jobs"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def cancel_job(self, job_id: str) -> Any:
        return self.request("DELETE", f"/v1/jobs/{job_id}")[2]

    def wait(
        self,
        job_id: str,
        *,
        timeout_s: float = 3600.0,
        poll_s: float = 0.5,
        max_poll_s: float = 10.0,
        on_update: Callable[[dict[str, Any]], None] | None = None,
    ) -> Any:
        """Poll until the job finishes (backing off from poll_s to max_poll_s)."""
        deadline = time.monotonic() + timeout_s
        delay = poll_s
        while True:
            job = self.get_job(job_id)
            if on_update:
                on_update(job)
            if job["status"] in FINISHED:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['status']} after {timeout_s:g} s")
            time.sleep(delay)
            delay = min(max_poll_s, delay * 1.5)

    def download(self, job: dict[str, Any], dest: str | Path) -> Path:
        url = ((job.get("output") or {}).get("download_url")) or self.get_job(job["job_id"])["output"]["download_url"]
        path = Path(dest)
        with urllib.request.urlopen(url, timeout=self.timeout_s) as resp, path.open("wb") as out:
            while block := resp.read(1 << 20):
                out.write(block)
        return path
