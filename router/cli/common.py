"""Small helpers every `router` command shares: how a bad config is reported, and help text."""

from __future__ import annotations

import sys
import textwrap

from router.errors import ConfigError


def print_config_error(e: ConfigError) -> None:
    """Every problem on its own line, `path: message (line N)`, on stderr; never a traceback."""
    count = len(e.problems)
    print(f"{e.source}: invalid config, {count} problem{'s' if count != 1 else ''}:", file=sys.stderr)
    for problem in e.problems:
        print(f"  {problem}", file=sys.stderr)


def wrap(text: str) -> str:
    """Wrap help prose (RawDescriptionHelpFormatter keeps examples' line breaks, not prose's)."""
    return textwrap.fill(text, width=100)
