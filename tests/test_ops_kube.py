"""``suptech-ops health --kube``: a Helm release's components found and reported through the API.

There is no Docker engine here, so no kind cluster. These tests run the ``kubernetes`` package's
real client (kubeconfig loading, label selectors, HTTP) against a FAKE API SERVER of their own:
a small local HTTP server that answers only the three list endpoints the code reads (pods,
deployments, statefulsets of a namespace, filtered by an equality label selector) with JSON in
the API's shape. Its Deployments and StatefulSets are the chart's own, rendered by a real helm
with the kind values ``scripts/kind.sh`` installs, and its pods are made from their pod templates,
with the status fields a cluster would add. It does not implement port-forward: the forwarding
relay is tested with direct TCP connections to real gRPC health servers, and a port-forward
through the fake server fails (as it should, visibly). Port-forward through a real API server is
NOT tested here.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import socket
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import yaml
from suptech.common.grpc_server import GrpcServer
from suptech.ops import kube
from suptech.ops.cli import EXIT_CHECK_FAILED, EXIT_UNHEALTHY, EXIT_USAGE, main

from scripts import render_chart as rc

REPO = Path(__file__).resolve().parents[1]
NAMESPACE = "suptech"
RELEASE = "demo"
LIST_PATH = re.compile(
    r"^/(?:api/v1|apis/apps/v1)/namespaces/([^/]+)/(pods|deployments|statefulsets)$"
)


# --- the fake API server -----------------------------------------------------------------


class FakeApi(ThreadingHTTPServer):
    """Serves ``objects[(namespace, resource)]``; records every path it was asked."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.objects: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.forbidden: set[str] = set()
        self.requests: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FakeApi

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.server.requests.append(self.path)
        url = urlparse(self.path)
        m = LIST_PATH.match(url.path)
        if m is None:
            return self._send(404, _status(404, "NotFound", f"{url.path} is not served here"))
        namespace, resource = m.groups()
        if namespace in self.server.forbidden:
            return self._send(403, _status(403, "Forbidden", f"cannot list {resource}"))
        selector = parse_qs(url.query).get("labelSelector", [""])[0]
        wanted = dict(term.split("=", 1) for term in selector.split(",") if term)
        items = [
            o
            for o in self.server.objects.get((namespace, resource), [])
            if all(o["metadata"].get("labels", {}).get(k) == v for k, v in wanted.items())
        ]
        kind = {"pods": "PodList", "deployments": "DeploymentList"}.get(resource, "StatefulSetList")
        self._send(200, {"kind": kind, "apiVersion": "v1", "metadata": {}, "items": items})

    def _send(self, code: int, doc: dict[str, Any]) -> None:
        body = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "status": "Failure",
        "reason": reason,
        "code": code,
        "message": message,
    }


# --- the release, as the chart renders it and a cluster runs it ---------------------------


def _pods_of(workload: dict[str, Any], restarts: int, ready: bool) -> list[dict[str, Any]]:
    template = workload["spec"]["template"]
    name = workload["metadata"]["name"]
    sts = workload["kind"] == "StatefulSet"
    pods = []
    for i in range(int(workload["spec"].get("replicas", 1))):
        pods.append(
            {
                "metadata": {
                    "name": f"{name}-{i}" if sts else f"{name}-7d9c5-{i:05d}",
                    "namespace": NAMESPACE,
                    "labels": copy.deepcopy(template["metadata"]["labels"]),
                },
                "spec": copy.deepcopy(template["spec"]),
                "status": {
                    "phase": "Running",
                    "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                    "containerStatuses": [
                        {"name": c["name"], "restartCount": restarts, "ready": ready}
                        for c in template["spec"]["containers"]
                    ],
                },
            }
        )
    return pods


def _install(api: FakeApi, manifests: list[dict[str, Any]], unready: set[str]) -> None:
    """Put a rendered release into the fake cluster: workloads with status, and their pods."""
    for m in manifests:
        if m["kind"] not in ("Deployment", "StatefulSet"):
            continue
        component = m["metadata"]["labels"]["app.kubernetes.io/component"]
        bad = component in unready
        pods = _pods_of(m, restarts=3 if bad else 0, ready=not bad)
        m = copy.deepcopy(m)
        del m["kind"], m["apiVersion"]  # list items carry neither
        m["status"] = {"replicas": len(pods), "readyReplicas": 0 if bad else len(pods)}
        resource = "deployments" if "strategy" in m["spec"] else "statefulsets"
        api.objects.setdefault((NAMESPACE, resource), []).append(m)
        api.objects.setdefault((NAMESPACE, "pods"), []).extend(pods)


@pytest.fixture(scope="module")
def helm() -> str:
    path = rc.find_helm()
    if path is None:
        pytest.skip("no helm binary: run scripts/helm.sh ensure")
    return path


@pytest.fixture(scope="module")
def chart(helm: str) -> dict[str, list[dict[str, Any]]]:
    kind_values = [REPO / "k8s" / "kind-values.yaml"]
    return {r: rc.render(helm, kind_values, release=r) for r in (RELEASE, "other")}


@pytest.fixture
def api(chart: dict[str, list[dict[str, Any]]]) -> Iterator[FakeApi]:
    server = FakeApi()
    _install(server, chart[RELEASE], unready={"detector"})
    _install(server, chart["other"], unready=set())  # another release in the same namespace
    # A finished Job's pod carries the release label too; it is not a component.
    job_pod = {
        "metadata": {
            "name": "demo-suptech-topics-x1",
            "labels": {
                "app.kubernetes.io/instance": RELEASE,
                "app.kubernetes.io/component": "topics",
            },
        },
        "spec": {"containers": [{"name": "topics"}]},
        "status": {"phase": "Succeeded"},
    }
    server.objects[(NAMESPACE, "pods")].append(job_pod)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def kubeconfig(api: FakeApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "kubeconfig"
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": api.url}}],
        "users": [{"name": "sre", "user": {"token": "t0ken"}}],
        "contexts": [
            {"name": "kind-fake", "context": {"cluster": "fake", "user": "sre"}},
            {"name": "nowhere", "context": {"cluster": "gone", "user": "sre"}},
        ],
        "current-context": "kind-fake",
    }
    path.write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.setenv("OPS_TIMEOUT_S", "5")
    return path


def run(argv: list[str]) -> tuple[int, str]:
    lines: list[str] = []
    rc_ = main(argv, out=lines.append)
    return rc_, "\n".join(lines)


# --- discovery and reporting -------------------------------------------------------------


def test_finds_the_releases_workloads_with_replicas_readiness_and_restarts(
    api: FakeApi, kubeconfig: Path
) -> None:
    cluster = kube.connect("", str(kubeconfig))
    assert cluster.context == "kind-fake"
    reports = kube.discover(cluster, NAMESPACE, RELEASE, 5.0)

    by = {r.component: r for r in reports}
    assert {"gateway", "detector", "alerts", "kafka"} <= set(by)
    assert "topics" not in by  # a Job's pod is not a component
    # Only this release's objects: the "other" release's are filtered out by the label selector.
    assert all(r.workload.startswith("demo-suptech-") for r in reports)
    assert all(p.name.startswith("demo-suptech-") for r in reports for p in r.pods)
    selectors = {parse_qs(urlparse(q).query)["labelSelector"][0] for q in api.requests}
    assert selectors == {"app.kubernetes.io/instance=demo"}
    assert len(api.requests) == 3  # pods, deployments, statefulsets: one list each

    assert (by["gateway"].kind, by["gateway"].desired, by["gateway"].ready) == ("Deployment", 1, 1)
    assert (by["detector"].kind, by["detector"].ready) == ("StatefulSet", 0)
    assert by["detector"].restarts == 3 and not by["detector"].pods[0].ready
    # The health port is the one the chart's readiness probe asks (the detector's own port).
    assert by["gateway"].pods[0].health_port == 50051
    assert by["detector"].pods[0].health_port == 50071
    assert by["kafka"].pods[0].health_port is None  # TCP probes: no grpc.health.v1 there


async def test_health_is_asked_per_pod_through_the_forward_relay(
    api: FakeApi, kubeconfig: Path
) -> None:
    """Each pod's health port is reached through LocalForward; here its far end is a direct TCP
    connection to a real in-process gRPC health server per pod, not an API port-forward."""
    servers = {}
    cluster = kube.connect("", str(kubeconfig))
    reports = kube.discover(cluster, NAMESPACE, RELEASE, 5.0)
    pods = [p for r in reports for p in r.pods if p.health_port is not None]
    for p in pods:
        servers[p.name] = GrpcServer(
            host="127.0.0.1", port=0, registrations=(), service_names=("x.v1.Foo",)
        )
        await servers[p.name].start()
    alerts_pod = next(p.name for r in reports if r.component == "alerts" for p in r.pods)
    await servers[alerts_pod].set_serving(False)  # its database is down: not ready, alive
    asked: list[tuple[str, int]] = []

    def direct(pod: str, port: int) -> Any:
        asked.append((pod, port))
        return lambda: socket.create_connection(("127.0.0.1", servers[pod].port))

    try:
        checked = await asyncio.to_thread(
            kube.check_health, cluster, NAMESPACE, reports, 5.0, direct
        )
    finally:
        for s in servers.values():
            await s.stop()
    by = {r.component: r for r in checked}
    assert sorted(asked) == sorted((p.name, p.health_port) for p in pods)
    gw = by["gateway"].pods[0].health
    assert gw is not None and (gw.ready.status, gw.live.status) == ("SERVING", "SERVING")
    assert by["gateway"].healthy
    al = by["alerts"].pods[0].health
    assert al is not None and (al.ready.status, al.live.status) == ("NOT_SERVING", "SERVING")
    assert not by["alerts"].healthy
    assert not by["detector"].healthy  # SERVING, but 0/1 replicas ready
    assert by["kafka"].healthy and by["kafka"].pods[0].health is None

    text = kube.render(checked, NAMESPACE, RELEASE, cluster.context)
    assert "release demo in namespace suptech (context kind-fake)" in text
    assert re.search(r"^detector\s+StatefulSet\s+0/1\s+3\s+NO$", text, re.M)
    assert re.search(r"^gateway\s+Deployment\s+1/1\s+0\s+yes$", text, re.M)
    assert re.search(rf"{alerts_pod}.* :50061 NOT_SERVING SERVING", text)


def test_cli_reports_the_release_and_a_failed_port_forward(api: FakeApi, kubeconfig: Path) -> None:
    rc_, text = run(["health", "--kube", "--release", RELEASE, "--namespace", NAMESPACE, "--json"])
    assert rc_ == EXIT_UNHEALTHY
    doc = json.loads(text)
    assert (doc["release"], doc["namespace"], doc["context"]) == (RELEASE, NAMESPACE, "kind-fake")
    by = {c["component"]: c for c in doc["components"]}
    assert by["detector"]["restarts"] == 3 and by["detector"]["ready"] == 0
    # The fake server has no port-forward endpoint: the forward's own error is what is shown.
    gw = by["gateway"]["pods"][0]["health"]
    assert gw["ready"]["status"] == "UNREACHABLE"
    assert "port-forward to demo-suptech-gateway-" in gw["ready"]["error"]
    # ... in one line, with the API's reason (here the fake's 404 Status message).
    assert "404 Not Found: /api/v1/namespaces/suptech/pods/" in gw["ready"]["error"]
    assert "\n" not in gw["ready"]["error"]


class _RefusedInPod:
    """Stands in for one port of the API's PortForward when the pod's port refuses: the stream
    ends at once and the error channel says why (the kubelet's wording)."""

    def __init__(self) -> None:
        self._sock, far = socket.socketpair()
        far.close()

    def recv(self, size: int, /) -> bytes:
        return self._sock.recv(size)

    def sendall(self, data: bytes, /) -> None:
        self._sock.sendall(data)

    def shutdown(self, how: int, /) -> None:
        self._sock.shutdown(how)

    def close(self) -> None:
        self._sock.close()

    def failure(self) -> str:
        return (
            "error forwarding port 50061 to pod 1f2e, uid : failed to connect: connection refused"
        )


def test_a_refused_pod_port_is_reported_with_the_kubelets_reason() -> None:
    pod = kube.PodReport("demo-suptech-alerts-0", "Running", True, 0, 50061)
    report = kube.ComponentReport("alerts", "Deployment", "demo-suptech-alerts", 1, 1, (pod,))
    nowhere = kube.Cluster(core=None, apps=None, context="test")
    (checked,) = kube.check_health(
        nowhere, NAMESPACE, [report], 5.0, lambda pod, port: _RefusedInPod
    )
    health = checked.pods[0].health
    assert health is not None and health.ready.status == "UNREACHABLE"
    assert "connect: connection refused" in health.ready.error
    assert health.ready.error.startswith("port-forward to demo-suptech-alerts-0:50061: error ")
    assert not checked.healthy


def test_cli_exit_codes_for_an_empty_namespace_a_forbidden_one_and_a_bad_context(
    api: FakeApi, kubeconfig: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc_, text = run(["health", "--kube", "--release", "nope"])
    assert rc_ == EXIT_UNHEALTHY
    assert "no Deployment or StatefulSet labelled app.kubernetes.io/instance=nope" in text

    api.forbidden.add("locked")
    rc_, _ = run(["health", "--kube", "--namespace", "locked"])
    assert rc_ == EXIT_CHECK_FAILED
    assert "403 Forbidden" in capsys.readouterr().err

    rc_, _ = run(["health", "--kube", "--context", "absent"])
    assert rc_ == EXIT_USAGE
    assert "absent" in capsys.readouterr().err

    rc_, _ = run(["health", "--kube", "--target", "x=127.0.0.1:1"])
    assert rc_ == EXIT_USAGE


# --- packaging ---------------------------------------------------------------------------


def test_without_the_kubernetes_package_the_error_says_which_extra_to_install() -> None:
    # None in sys.modules makes `import kubernetes` fail as it does where it is not installed.
    code = (
        "import sys; sys.modules['kubernetes'] = None\n"
        "from suptech.ops.cli import main\n"
        "raise SystemExit(main(['health', '--kube']))\n"
    )
    env = {"PYTHONPATH": f"{REPO / 'services'}:{REPO}", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == EXIT_USAGE, proc.stderr
    assert "the kubernetes package is not installed" in proc.stderr
    assert "pip install 'suptech[ops-k8s]'" in proc.stderr


def _requirements(extras: dict[str, list[str]], extra: str) -> list[str]:
    """An extra's requirements, with ``suptech[a,b]`` self-references expanded."""
    out = []
    for req in extras[extra]:
        m = re.fullmatch(r"suptech\[([^\]]+)\]", req)
        if m:
            for inner in m.group(1).split(","):
                out += _requirements(extras, inner.strip())
        else:
            out.append(req)
    return out


def test_kubernetes_is_its_own_extra_and_not_in_the_service_image() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras: dict[str, list[str]] = project["optional-dependencies"]

    def names(extra: str) -> set[str]:
        return {re.split(r"[<>=!\[ ;]", r, maxsplit=1)[0] for r in _requirements(extras, extra)}

    assert "kubernetes" not in names("server")
    assert "kubernetes" in names("ops-k8s")
    assert "kubernetes" in names("dev")  # the tests above need it
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    installed = re.findall(r'"(?:\.|suptech)\[([^\]]+)\]"', dockerfile)
    assert installed, "the Dockerfile installs no extra?"
    for group in installed:
        for extra in group.split(","):
            assert "kubernetes" not in names(extra.strip()), f"the image installs [{extra}]"
