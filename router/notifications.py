"""Job-end notifications: a signed webhook POST (and/or an SNS message) per finished job, recorded
in the job table's outbox by the very transition that finishes the job, delivered at least once.

- The outbox entry is the job's `notification` field ({id, state, attempts, due_at, targets, done}),
  written by the terminal transition itself (lifecycle.outbox); the stores index it while it is
  pending (jobs.notification_due), so the sweeper re-delivers what a crash left undelivered.
- One id per job (`ntf_...`, from the job id): a receiver de-duplicates on it.
- The body is the job's final status document plus `notification_id`; it is signed with
  HMAC-SHA256 over `"<timestamp>." + body` (docs/api.md "Notifications" shows how to verify).
- Delivery never changes the job: failures only move the notification's own state (retries with
  exponential backoff, then `failed` after notifications.max_attempts).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import socket
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from router.config import RouterConfig
from router.domain import Job
from router.errors import InvalidRequest, RouterError
from router.jobs import format_time
from router.ports import JobStore, TopicPublisher, WebhookSender

log = logging.getLogger("router.notifications")

ID_HEADER = "X-Router-Notification-Id"
SIGNATURE_HEADER = "X-Router-Signature"
TIMESTAMP_HEADER = "X-Router-Timestamp"
REPLAY_TOLERANCE_S = 300  # a receiver refuses a timestamp further than this from its clock
LEASE_S = 60.0  # a claimed delivery is not retried by anyone else for this long


# ---------------------------------------------------------------- pure parts


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """`sha256=<hex>` of HMAC-SHA256(secret, "<timestamp>." + body)."""
    mac = hmac.new(secret, str(timestamp).encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: bytes, body: bytes, headers: Mapping[str, str], now_s: float, tolerance_s: float = REPLAY_TOLERANCE_S) -> bool:
    """What a receiver does: the signature matches the exact body bytes and the timestamp is recent."""
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        ts = int(lower.get(TIMESTAMP_HEADER.lower(), ""))
    except ValueError:
        return False
    if abs(now_s - ts) > tolerance_s:
        return False
    return hmac.compare_digest(signature(secret, ts, body), lower.get(SIGNATURE_HEADER.lower(), ""))


def backoff_s(attempts: int, base_s: float, cap_s: float) -> float:
    """Wait after the `attempts`-th failed delivery: base, 2 x base, 4 x base, ... capped."""
    return float(min(cap_s, base_s * (2 ** max(0, attempts - 1))))


def _is_private(addr: str) -> bool:
    ip = ipaddress.ip_address(addr)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def check_webhook_url(url: str, *, allow_private: bool) -> str:
    """`url` when the router may POST to it, else InvalidRequest. http(s) only, a host, no
    credentials in it; without `allow_private`, no loopback, private, link-local (instance
    metadata) or otherwise non-global address literal, and no `localhost` (names are checked
    again against what they resolve to at delivery: public_address)."""
    bad = InvalidRequest("notify.webhook must be an http:// or https:// URL with a host and no credentials")
    if len(url) > 2048 or any(c.isspace() for c in url):
        raise bad
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port
    except ValueError:
        raise bad from None
    if parts.scheme not in ("http", "https") or not host or parts.username is not None or parts.password is not None:
        raise bad
    if allow_private:
        return url
    if host == "localhost" or host.endswith(".localhost"):
        raise InvalidRequest("notify.webhook must not point at this host (localhost)")
    try:
        private = _is_private(host)
    except ValueError:
        return url  # a name: resolved and checked at delivery
    if private:
        raise InvalidRequest("notify.webhook must not point at a loopback, private or link-local address")
    return url


def public_address(host: str) -> bool:
    """True when every address `host` resolves to is global (delivery-time check on AWS)."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return True  # the POST itself fails and is retried
    return all(not _is_private(str(info[4][0]).split("%")[0]) for info in infos)


def model_targets(config: RouterConfig) -> dict[str, tuple[dict[str, str], ...]]:
    """Each model's own notification targets (models[].notify), for lifecycle.Policy.notify."""
    out: dict[str, tuple[dict[str, str], ...]] = {}
    for m in config.models:
        if m.notify is None:
            continue
        targets = []
        if m.notify.webhook:
            targets.append({"kind": "webhook", "url": m.notify.webhook})
        if m.notify.sns and config.notifications.sns_topic_arn:
            targets.append({"kind": "sns", "topic": config.notifications.sns_topic_arn})
        if targets:
            out[m.name] = tuple(targets)
    return out


# ---------------------------------------------------------------- delivery


class Notifier:
    """Delivers outbox entries: claim (a version-checked lease), send to each target not yet
    done, then record delivered / retry at backoff / failed. Safe to run from several places at
    once (immediate delivery, the sweeper): a lost claim skips, a crash leaves it pending."""

    def __init__(
        self,
        config: RouterConfig,
        store: JobStore,
        clock: Any,
        document: Callable[[Job], dict[str, Any]],
        *,
        webhook: WebhookSender | None,
        topic: TopicPublisher | None = None,
        allow_private: bool = False,
        dispatch: Callable[[Callable[[], None]], None] | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.document = document
        self.webhook = webhook
        self.topic = topic
        self.allow_private = allow_private or config.notifications.allow_private_webhooks
        self._dispatch = dispatch or (lambda fn: fn())

    def check_submitted(self, notify: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """A job body's `notify`, validated (InvalidRequest), as stored on the job."""
        if notify is None:
            return None
        url = notify.get("webhook")
        if set(notify) != {"webhook"} or not isinstance(url, str):
            raise InvalidRequest("notify must be {\"webhook\": URL}")
        if self.config.webhook_secret() is None:
            raise InvalidRequest("webhook notifications are not enabled on this router (no notifications.webhook_secret)")
        return {"webhook": check_webhook_url(url, allow_private=self.allow_private)}

    def after_finish(self, job: Job) -> None:
        """A JobsService end hook: immediate delivery of a job that just finished with a
        notification record (in the background where the runtime has one)."""
        if job.notification is not None and job.notification.get("state") == "pending":
            self._dispatch(lambda: self._deliver_quietly(job.job_id))

    def _deliver_quietly(self, job_id: str) -> None:
        try:
            job = self.store.get(job_id)
            if job is not None:
                self.deliver(job)
        except Exception:
            log.exception("notification of %s failed; the sweeper retries", job_id)

    def deliver_due(self, limit: int = 100) -> dict[str, int]:
        counts = {"notified": 0, "notify_retry": 0, "notify_failed": 0}
        for job in self.store.list_notifications_due(due_before=self.clock.now(), limit=limit):
            try:
                state = self.deliver(job)
            except RouterError as e:
                log.warning("notification of %s: %s", job.job_id, e.message)
                continue
            if state == "delivered":
                counts["notified"] += 1
            elif state == "pending":
                counts["notify_retry"] += 1
            elif state == "failed":
                counts["notify_failed"] += 1
        return counts

    def deliver(self, job: Job) -> str | None:
        """One delivery round of `job`'s notification; returns its state after, None when skipped."""
        n = job.notification
        now = self.clock.now()
        if not n or n.get("state") != "pending" or str(n.get("due_at", "")) > format_time(now):
            return None
        attempts = int(n.get("attempts", 0)) + 1
        lease = format_time(now + timedelta(seconds=LEASE_S + self.config.notifications.timeout_s * len(n.get("targets", []))))
        claimed = self.store.update(job.job_id, job.version, notification={**n, "attempts": attempts, "due_at": lease})
        if claimed is None:
            return None  # someone else delivers (or the job moved): skip
        body = json.dumps({"notification_id": n["id"], **self.document(job)}, separators=(",", ":"), sort_keys=True).encode("utf-8")
        done = list(n.get("done", []))
        errors: list[str] = []
        for i, target in enumerate(n.get("targets", [])):
            if i in done:
                continue
            try:
                self._send(target, str(n["id"]), body)
                done.append(i)
            except RouterError as e:
                errors.append(f"{target.get('kind')}: {e.message}")
        record: dict[str, Any] = {**n, "attempts": attempts, "done": done}
        if len(done) == len(n.get("targets", [])):
            record.update(state="delivered", delivered_at=format_time(self.clock.now()))
            record.pop("last_error", None)
        elif attempts >= self.config.notifications.max_attempts:
            record.update(state="failed", last_error="; ".join(errors)[:500])
            log.error("notification %s of %s given up after %d attempts: %s", n["id"], job.job_id, attempts, record["last_error"])
        else:
            s = self.config.notifications
            wait = backoff_s(attempts, s.backoff_s, s.backoff_max_s)
            record.update(due_at=format_time(self.clock.now() + timedelta(seconds=wait)), last_error="; ".join(errors)[:500])
        if self.store.update(job.job_id, claimed.version, notification=record) is None:
            return None  # the lease was taken over (a slow round): the other round records it
        return str(record["state"])

    def _send(self, target: Mapping[str, str], nid: str, body: bytes) -> None:
        if target.get("kind") == "sns":
            if self.topic is None:
                raise InvalidRequest("no SNS publisher in this runtime")
            self.topic.publish(target["topic"], body.decode("utf-8"), {"notification_id": nid})
            return
        secret = self.config.webhook_secret()
        if self.webhook is None or secret is None:
            raise InvalidRequest("webhook delivery is not configured (notifications.webhook_secret)")
        url = check_webhook_url(target["url"], allow_private=self.allow_private)
        host = urlsplit(url).hostname or ""
        if not self.allow_private and not public_address(host):
            raise InvalidRequest(f"{host} resolves to a private address: refused")
        ts = int(self.clock.now().timestamp())
        headers = {
            "Content-Type": "application/json",
            ID_HEADER: nid,
            TIMESTAMP_HEADER: str(ts),
            SIGNATURE_HEADER: signature(secret, ts, body),
            "User-Agent": "inference-router-notifier/1",
        }
        status = self.webhook.post(url, body, headers, self.config.notifications.timeout_s)
        if not 200 <= status < 300:
            raise InvalidRequest(f"HTTP {status}")
