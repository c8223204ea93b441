#!/usr/bin/env bash
# Build the institution SDK wheel (sdk/python/pyproject.toml) into dist/: stage the SDK's own
# sources (suptech/__init__.py, py.typed, suptech/sdk, suptech/v1) in a temporary directory, so
# nothing of the server tree can end up in the wheel. Prints the wheel's path.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python3}"
out="${1:-$root/dist}"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/suptech" "$out"
cp "$root/sdk/python/pyproject.toml" "$stage/"
cp "$root/services/suptech/sdk/README.md" "$stage/README.md"
cp "$root/services/suptech/__init__.py" "$root/services/suptech/py.typed" "$stage/suptech/"
for pkg in sdk v1; do
  mkdir -p "$stage/suptech/$pkg"
  find "$root/services/suptech/$pkg" -maxdepth 1 -type f \
    \( -name '*.py' -o -name '*.pyi' -o -name 'py.typed' \) -exec cp {} "$stage/suptech/$pkg/" \;
done
"$python" -m pip wheel -q --no-deps --no-build-isolation -w "$out" "$stage" >&2
ls -t "$out"/suptech_sdk-*.whl | head -1
