"""Development token files: ``python -m suptech.gateway.tokens new bank-a bank-b > tokens.json``.

Prints ``{"<token>": "<institution_id>", ...}`` (the GATEWAY_TOKENS_FILE format) with a fresh
random token per institution; ``--merge FILE`` keeps the entries already in FILE (expiries and
``cert:<identity>`` registrations included: see :mod:`suptech.gateway.registry`).
"""

from __future__ import annotations

import argparse
import json
import secrets
from collections.abc import Sequence

__all__ = ["new_tokens", "main"]


def new_tokens(institutions: Sequence[str]) -> dict[str, str]:
    return {secrets.token_urlsafe(32): institution for institution in institutions}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m suptech.gateway.tokens")
    sub = parser.add_subparsers(dest="command", required=True)
    new = sub.add_parser("new", help="print a token file with one new token per institution")
    new.add_argument("institutions", nargs="+")
    new.add_argument("--merge", metavar="FILE", help="include the tokens of an existing file")
    args = parser.parse_args(argv)
    tokens: dict[str, object] = {}
    if args.merge:
        with open(args.merge, encoding="utf-8") as f:
            tokens.update(json.load(f))
    tokens.update(new_tokens(args.institutions))
    print(json.dumps(tokens, indent=2))


if __name__ == "__main__":
    main()
