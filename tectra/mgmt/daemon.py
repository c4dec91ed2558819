"""tectra-mgmtd: the management daemon (placeholder entry point until the daemon lands)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("tectra-mgmtd: not built yet", file=sys.stderr)
    return 2
