"""``python -m suptech.ops <command>``."""

from __future__ import annotations

from suptech.ops.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
