#!/usr/bin/env bash
# Regenerates the Python contracts from protos/ into services/suptech/v1 (the one place they live).
#   scripts/gen_protos.sh          regenerate
#   scripts/gen_protos.sh --check  fail when the committed code is stale
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

gen() {
  local out=$1
  mkdir -p "$out/suptech/v1"
  python3 -m grpc_tools.protoc -I protos \
    --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
    protos/suptech/v1/*.proto
  printf '"""Generated from protos/suptech/v1 by scripts/gen_protos.sh; do not edit."""\n' \
    > "$out/suptech/v1/__init__.py"
}

if [ "${1:-}" = "--check" ]; then
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  gen "$tmp"
  if ! diff -r -x __pycache__ "$tmp/suptech/v1" services/suptech/v1 >/dev/null; then
    diff -r -x __pycache__ "$tmp/suptech/v1" services/suptech/v1 | head -40 >&2 || true
    echo "gen_protos: services/suptech/v1 is stale: did you forget to run scripts/gen_protos.sh?" >&2
    exit 1
  fi
  echo "gen_protos: generated code is up to date"
else
  rm -f services/suptech/v1/*_pb2*.py services/suptech/v1/*_pb2*.pyi
  gen services
  echo "gen_protos: regenerated services/suptech/v1"
fi
