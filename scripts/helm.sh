#!/usr/bin/env bash
# Provide the helm binary the chart tests and scripts/kind.sh use, built from the Go module proxy
# (no release tarball can be downloaded here).
#
#   scripts/helm.sh ensure     print the path of a helm binary, building it first when absent
#   scripts/helm.sh path       print the path of an installed helm binary, or fail
#   scripts/helm.sh -- ARGS    run helm with ARGS (ensuring it first)
#
# A binary is looked for in $HELM, then on PATH, then in $(go env GOPATH)/bin. Building takes
# several minutes on 2 cores; the tests skip (saying why) when no binary exists.
set -euo pipefail

version=${HELM_VERSION:-v3.16.4}

find_helm() {
  if [ -n "${HELM:-}" ] && [ -x "$HELM" ]; then echo "$HELM"; return 0; fi
  if command -v helm >/dev/null 2>&1; then command -v helm; return 0; fi
  if command -v go >/dev/null 2>&1; then
    local gobin
    gobin=$(go env GOBIN); [ -n "$gobin" ] || gobin="$(go env GOPATH)/bin"
    if [ -x "$gobin/helm" ]; then echo "$gobin/helm"; return 0; fi
  fi
  if [ -x "$HOME/go/bin/helm" ]; then echo "$HOME/go/bin/helm"; return 0; fi
  return 1
}

build_helm() {
  if ! command -v go >/dev/null 2>&1; then
    echo "helm.sh: helm is not installed and Go is not available to build it." >&2
    echo "helm.sh: install Go >= 1.22 (https://go.dev/dl) or helm itself, then re-run." >&2
    return 1
  fi
  echo "helm.sh: building helm $version with go install (several minutes on 2 cores)..." >&2
  # Without the release ldflags helm assumes Kubernetes 1.20: always pass --kube-version.
  GOFLAGS=-mod=mod nice -n 10 go install "helm.sh/helm/v3/cmd/helm@$version" >&2
  find_helm
}

case "${1:-ensure}" in
  path) find_helm || { echo "helm.sh: no helm binary found; run scripts/helm.sh ensure" >&2; exit 1; } ;;
  ensure) find_helm || build_helm ;;
  --) shift; bin=$(find_helm || build_helm); exec "$bin" "$@" ;;
  *) echo "usage: $0 ensure | path | -- HELM_ARGS..." >&2; exit 2 ;;
esac
