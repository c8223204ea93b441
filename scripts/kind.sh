#!/usr/bin/env bash
# Run the whole of suptech on a local kind cluster. Needs a running Docker engine, kind and helm.
#
#   scripts/kind.sh up      create the cluster, build and load the image, install the chart
#   scripts/kind.sh down    delete the cluster
#   scripts/kind.sh status  show the release's pods and their health (suptech-ops health --kube)
#
# After `up`, the gateway listens on 127.0.0.1:50051 and the alert service on 127.0.0.1:50061; the
# development tokens are printed and kept in .state/kind/.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cluster=${KIND_CLUSTER:-suptech}
namespace=${SUPTECH_NAMESPACE:-suptech}
release=${SUPTECH_RELEASE:-suptech}
image=${SUPTECH_IMAGE:-suptech:dev}
state=$repo/.state/kind

die() { echo "kind.sh: $*" >&2; exit 1; }

need() {
  local missing=0
  if ! command -v docker >/dev/null 2>&1; then
    echo "kind.sh: docker is not installed. kind runs Kubernetes nodes as Docker containers:" >&2
    echo "         install Docker Engine (https://docs.docker.com/engine/install/)." >&2
    missing=1
  elif ! docker info >/dev/null 2>&1; then
    echo "kind.sh: docker is installed but no Docker engine answers (is the daemon running, and" >&2
    echo "         may this user use it?). Without one, render the chart offline instead:" >&2
    echo "         python scripts/render_chart.py" >&2
    missing=1
  fi
  if ! command -v kind >/dev/null 2>&1; then
    echo "kind.sh: kind is not installed: go install sigs.k8s.io/kind@v0.26.0" >&2
    missing=1
  fi
  if ! helm_bin=$("$repo/scripts/helm.sh" path 2>/dev/null); then
    echo "kind.sh: helm is not installed: scripts/helm.sh ensure (builds it with Go)" >&2
    missing=1
  fi
  [ "$missing" = 0 ] || exit 1
}

# Development tokens, made once and reused, so clients keep working across `up`s.
tokens() {
  mkdir -p "$state"
  [ -s "$state/gateway-token" ] || python3 -c 'import secrets; print(secrets.token_urlsafe(32))' >"$state/gateway-token"
  [ -s "$state/alerts-token" ] || python3 -c 'import secrets; print(secrets.token_urlsafe(32))' >"$state/alerts-token"
  [ -s "$state/webhook-secret" ] || python3 -c 'import secrets; print(secrets.token_urlsafe(32))' >"$state/webhook-secret"
}

up() {
  need
  tokens
  if kind get clusters 2>/dev/null | grep -qx "$cluster"; then
    echo "kind.sh: cluster $cluster exists; reusing it"
  else
    kind create cluster --name "$cluster" --config "$repo/k8s/kind-config.yaml" --wait 120s
  fi
  docker build -f "$repo/deploy/Dockerfile" -t "$image" "$repo"
  kind load docker-image "$image" --name "$cluster"
  local gw_token al_token
  gw_token=$(cat "$state/gateway-token")
  al_token=$(cat "$state/alerts-token")
  "$helm_bin" upgrade --install "$release" "$repo/helm/suptech" \
    --kube-context "kind-$cluster" --namespace "$namespace" --create-namespace \
    -f "$repo/k8s/kind-values.yaml" \
    --set "image.repository=${image%:*}" --set "image.tag=${image##*:}" \
    --set-json "secrets.gatewayTokens={\"$gw_token\":\"bank-001\"}" \
    --set-json "secrets.alertsTokens={\"$al_token\":{\"name\":\"supervisor-1\",\"role\":\"supervisor\",\"jurisdictions\":[\"*\"]}}" \
    --set "secrets.webhookSecret=$(cat "$state/webhook-secret")" \
    --wait --timeout 10m
  kubectl --context "kind-$cluster" -n "$namespace" get pods 2>/dev/null || true
  echo
  local health=0
  release_health || health=$?
  echo
  echo "gateway: 127.0.0.1:50051  token for institution bank-001: $gw_token"
  echo "alerts:  127.0.0.1:50061  token for supervisor-1:        $al_token"
  return "$health"
}

# The release's components as the API reports them (replicas, readiness, restarts) and each pod's
# grpc.health.v1 through a port-forward: suptech-ops health --kube (needs suptech[ops-k8s]).
release_health() {
  local ops=(suptech-ops)
  command -v suptech-ops >/dev/null 2>&1 || ops=(env "PYTHONPATH=$repo/services" python3 -m suptech.ops)
  "${ops[@]}" health --kube --context "kind-$cluster" --namespace "$namespace" --release "$release"
}

down() {
  command -v kind >/dev/null 2>&1 || die "kind is not installed: nothing to delete"
  kind delete cluster --name "$cluster"
}

status() {
  command -v kubectl >/dev/null 2>&1 || die "kubectl is not installed"
  kubectl --context "kind-$cluster" -n "$namespace" get pods,svc,pvc,jobs
  echo
  release_health
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up | down | status" >&2; exit 2 ;;
esac
