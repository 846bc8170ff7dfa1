"""WebhookSender over urllib (standard library: nothing more in the Lambda package).

One POST, no redirects followed (a redirect could lead past the target checks of
router/notifications.py), the answer's status returned; no answer at all is BackendUnavailable.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from router.errors import BackendUnavailable


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx is the answer (a failed delivery), never followed


class UrllibWebhookSender:
    def __init__(self) -> None:
        self._opener = urllib.request.build_opener(_NoRedirect())

    def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float) -> int:
        request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
        try:
            with self._opener.open(request, timeout=timeout_s) as resp:
                resp.read(65536)  # drain a little: keeps the server from seeing a reset
                return int(resp.status)
        except urllib.error.HTTPError as e:
            e.close()
            return int(e.code)
        except (OSError, ValueError) as e:  # URLError, timeouts, refused connections, bad URLs
            reason = getattr(e, "reason", e)
            raise BackendUnavailable(f"webhook POST failed: {type(reason).__name__}: {reason}") from None
