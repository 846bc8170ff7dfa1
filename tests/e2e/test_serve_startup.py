"""What `router serve` prints when it starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import Server, wait_for

pytestmark = pytest.mark.e2e


def test_the_no_api_keys_warning_is_printed_once(tmp_path: Path) -> None:
    cfg = tmp_path / "op.yaml"
    cfg.write_text("auth: {enabled: true}\nmodels: []\n")
    srv = Server(cfg).start()
    try:
        wait_for(lambda: any("auth.api_keys is empty" in line for line in srv.log), timeout_s=30)
    finally:
        srv.stop()
    assert sum("auth.api_keys is empty" in line for line in srv.log) == 1, srv.log
