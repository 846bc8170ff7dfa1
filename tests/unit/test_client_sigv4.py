"""The client signs requests for the deployed API's IAM auth (SigV4, service execute-api) and
sends nothing extra when talking to `router serve`."""

from __future__ import annotations

from router.client import RouterClient


def test_sigv4_headers_for_api_gateway() -> None:
    c = RouterClient("https://abc.execute-api.us-east-1.amazonaws.com/prod", sigv4_region="us-east-1")
    headers = c.sign("POST", c.base_url + "/v1/models/iris/predict", {"Content-Type": "application/json"}, b'{"instances": [[1]]}')
    auth = headers["Authorization"]
    assert auth.startswith("AWS4-HMAC-SHA256 Credential=testing/")  # tests/conftest.py's fake key
    assert "/us-east-1/execute-api/aws4_request" in auth
    assert "X-Amz-Date" in headers and headers.get("X-Amz-Security-Token") == "testing"


def test_no_signing_without_a_region() -> None:
    c = RouterClient("http://127.0.0.1:8080", api_key="k" * 16)
    assert c.sign("GET", c.base_url + "/v1/jobs", {"Accept": "application/json"}, None) == {"Accept": "application/json"}
