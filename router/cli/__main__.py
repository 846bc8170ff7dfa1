"""`python -m router.cli`: the same entry point as the `router` command."""

import sys

from router.cli import main

sys.exit(main())
