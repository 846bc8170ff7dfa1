"""Helpers for the deep-model (PyTorch) tests. `make test` installs the CPU torch, so under CI a
missing torch fails the run instead of silently skipping the TorchScript paths."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import pytest


def require_torch() -> Any:
    if os.environ.get("CI"):
        import torch

        return torch
    return pytest.importorskip("torch", reason="deep-model tests need torch: `make test` installs the CPU build")


def save_torchscript(module: Any, path: Path) -> Path:
    """Script a torch.nn.Module and save it as TorchScript (what SageMaker's PyTorch images load
    as model.pt). torch >= 2.13 deprecates torch.jit.script in favour of torch.export."""
    torch = require_torch()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=DeprecationWarning)
        scripted = torch.jit.script(module)
    scripted.save(str(path))
    return path
