"""Small helpers every `router` command shares: exit codes, how a bad config is reported, and help text."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

from router.config import ModelSpec, RouterConfig, load_config
from router.errors import ConfigError

EXIT_OK = 0
EXIT_INVALID = 2


def load_model_spec(config_path: Path, name: str) -> tuple[RouterConfig, ModelSpec] | None:
    """Load the config and find one model; on failure print why to stderr and return None."""
    try:
        cfg = load_config(config_path)
    except ConfigError as e:
        print_config_error(e)
        return None
    model = cfg.model(name)
    if model is None:
        known = ", ".join(m.name for m in cfg.models) or "none"
        print(f"{config_path}: no model named {name!r} (models: {known})", file=sys.stderr)
        return None
    return cfg, model


def print_config_error(e: ConfigError) -> None:
    """Every problem on its own line, `path: message (line N)`, on stderr; never a traceback."""
    count = len(e.problems)
    print(f"{e.source}: invalid config, {count} problem{'s' if count != 1 else ''}:", file=sys.stderr)
    for problem in e.problems:
        print(f"  {problem}", file=sys.stderr)


def wrap(text: str) -> str:
    """Wrap help prose (RawDescriptionHelpFormatter keeps examples' line breaks, not prose's)."""
    return textwrap.fill(text, width=100)
