"""Webhook signing as a receiver checks it, target URL checks, and the retry schedule."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from router.errors import InvalidRequest
from router.lifecycle import notification_id
from router.notifications import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    backoff_s,
    check_webhook_url,
    signature,
    verify,
)

SECRET = b"a-webhook-secret-of-32-bytes-...."
BODY = b'{"job_id":"job_01","notification_id":"ntf_01","status":"succeeded"}'


def test_the_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    # What docs/api.md tells a receiver to compute, spelled out with the standard library.
    expected = hmac.new(SECRET, b"1767225600." + BODY, hashlib.sha256).hexdigest()
    assert signature(SECRET, 1767225600, BODY) == "sha256=" + expected


def test_a_receiver_accepts_the_exact_body_and_refuses_anything_else() -> None:
    headers = {TIMESTAMP_HEADER: "1767225600", SIGNATURE_HEADER: signature(SECRET, 1767225600, BODY)}
    assert verify(SECRET, BODY, headers, now_s=1767225600 + 10)
    assert verify(SECRET, BODY, {k.lower(): v for k, v in headers.items()}, now_s=1767225600)  # header case
    assert not verify(SECRET, BODY + b" ", headers, now_s=1767225600)  # one byte more
    assert not verify(b"another-secret-of-enough-length", BODY, headers, now_s=1767225600)
    assert not verify(SECRET, BODY, headers, now_s=1767225600 + 301)  # replayed later
    assert not verify(SECRET, BODY, {**headers, TIMESTAMP_HEADER: "1767225601"}, now_s=1767225600)  # timestamp is signed
    assert not verify(SECRET, BODY, {SIGNATURE_HEADER: headers[SIGNATURE_HEADER]}, now_s=1767225600)


def test_one_stable_id_per_job() -> None:
    assert notification_id("job_01ABC") == notification_id("job_01ABC") == "ntf_01ABC"


def test_backoff_doubles_up_to_its_cap() -> None:
    assert [backoff_s(n, 30, 300) for n in range(1, 7)] == [30, 60, 120, 240, 300, 300]


@pytest.mark.parametrize("url", ["https://hooks.example.com/x?y=1", "http://93.184.216.34:8080/hook", "https://[2606:2800:220:1::]/h"])
def test_public_http_and_https_urls_are_accepted(url: str) -> None:
    assert check_webhook_url(url, allow_private=False) == url


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/x", "file:///etc/passwd", "https://user:pw@example.com/", "https:///nohost", "example.com/hook",
     "https://exa mple.com/", "javascript:alert(1)", "https://example.com:99999/"],
)
def test_other_schemes_credentials_and_malformed_urls_are_refused(url: str) -> None:
    with pytest.raises(InvalidRequest):
        check_webhook_url(url, allow_private=True)


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:9000/h", "http://localhost/h", "http://169.254.169.254/latest/meta-data/", "http://10.0.0.7/",
     "http://192.168.1.1/", "http://[::1]/", "http://[::ffff:127.0.0.1]/", "http://0.0.0.0/"],
)
def test_internal_targets_are_refused_on_aws_and_allowed_locally(url: str) -> None:
    with pytest.raises(InvalidRequest):
        check_webhook_url(url, allow_private=False)
    assert check_webhook_url(url, allow_private=True) == url


def test_a_name_that_resolves_to_this_host_is_not_a_public_address() -> None:
    # The delivery-time check on AWS (a name passes the URL check, its addresses must be global).
    from router.notifications import public_address

    assert public_address("localhost") is False
