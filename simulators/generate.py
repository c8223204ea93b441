"""``python -m simulators.generate --seed 7 --days 7 --scale 1.0 --incidents all --out DIR``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from simulators.clock import DEFAULT_START
from simulators.scenario import generate, write


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m simulators.generate", description=__doc__)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--days", type=int, default=7, help="simulated days (default 7)")
    p.add_argument("--scale", type=float, default=1.0, help="multiplies data-access volume")
    p.add_argument(
        "--incidents",
        default="all",
        help="all | none | comma list of kinds and family:<data_leakage|it_autonomy|sandbox>",
    )
    p.add_argument("--start", default=DEFAULT_START, help="simulated start, ISO 8601 with offset")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    began = time.monotonic()
    try:
        scenario = generate(args.seed, args.days, args.scale, args.incidents, args.start)
    except ValueError as exc:
        p.error(str(exc))
    counts = write(scenario, args.out)
    total = sum(counts.values())
    print(
        f"wrote {total} events ({', '.join(f'{k}={v}' for k, v in sorted(counts.items()))}), "
        f"{len(scenario.ground_truth)} incidents, {len(scenario.registry)} sandbox tests "
        f"to {args.out} in {time.monotonic() - began:.1f}s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
