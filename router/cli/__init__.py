"""`router` command line: operator and developer commands.

Each `router/cli/*_cmd.py` module registers one command group through `register(subparsers)`;
they are discovered here so commands stay independent. CLI-only code: handlers never import it.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence

from router import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="router",
        description="Route ML inference between inline Lambda, SageMaker endpoints and batch jobs, and explain every choice.",
    )
    parser.add_argument("--version", action="version", version=f"router {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    import router.cli as pkg

    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if info.name.endswith("_cmd"):
            importlib.import_module(f"router.cli.{info.name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader left (`router ... | head`): stop quietly; point stdout at /dev/null so the
        # interpreter's final flush cannot raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
