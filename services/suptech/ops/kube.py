"""A Helm release's components in a cluster, as the Kubernetes API reports them, and their health.

``health --kube`` asks what an SRE asks ``kubectl`` first: which Deployments and StatefulSets the
release has (the chart labels every object ``app.kubernetes.io/instance=<release>`` and
``app.kubernetes.io/component=<name>``), how many replicas each wants and has ready, and per pod
its phase, readiness and restarts. Then it asks each pod's ``grpc.health.v1`` on the port its
readiness probe asks (the kubelet's own question), reached by a port-forward through the API
server, so it works from a laptop against kind as ``health --target`` does on loopback. Pods of
Jobs (``topics``, ``kafka-access``) are not components and are left out.

The API's JSON is read as plain mappings (the shape ``kubectl get -o json`` prints), not as the
client's models: the supported client majors (30-37) generate different model classes for the
same JSON. The ``kubernetes`` package is the ``ops-k8s`` extra, imported only here and only when
a command needs it, so the service image and the rest of ``suptech-ops`` do without it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from suptech.ops.health import Target, TargetHealth, check_target
from suptech.ops.portforward import LocalForward, Stream, pod_port_opener

__all__ = [
    "INSTANCE_LABEL",
    "COMPONENT_LABEL",
    "MISSING_PACKAGE",
    "KubeUnavailable",
    "KubeError",
    "Cluster",
    "PodReport",
    "ComponentReport",
    "connect",
    "discover",
    "components",
    "check_health",
    "render",
]

INSTANCE_LABEL = "app.kubernetes.io/instance"
COMPONENT_LABEL = "app.kubernetes.io/component"
MISSING_PACKAGE = (
    "the kubernetes package is not installed (it is not in the service image): "
    "pip install 'suptech[ops-k8s]'"
)

Json = Mapping[str, Any]
# (pod name, port) -> a callable opening one connected stream to that pod's port.
Opener = Callable[[str, int], Callable[[], Stream]]


class KubeUnavailable(RuntimeError):
    """The API cannot be used at all: no ``kubernetes`` package, no kubeconfig, no such context."""


class KubeError(RuntimeError):
    """An API request failed (unreachable, forbidden): the check could not be made."""


@dataclass(frozen=True)
class Cluster:
    core: Any  # kubernetes.client.CoreV1Api
    apps: Any  # kubernetes.client.AppsV1Api
    context: str  # the kubeconfig context used, or "in-cluster"


@dataclass(frozen=True)
class PodReport:
    name: str
    phase: str
    ready: bool
    restarts: int
    # The port the readiness probe asks grpc.health.v1 on; None when it asks something else.
    health_port: int | None
    health: TargetHealth | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "phase": self.phase,
            "ready": self.ready,
            "restarts": self.restarts,
            "health_port": self.health_port,
            "health": None if self.health is None else _health_dict(self.health),
        }


@dataclass(frozen=True)
class ComponentReport:
    component: str
    kind: str  # Deployment or StatefulSet
    workload: str
    desired: int
    ready: int
    pods: tuple[PodReport, ...] = field(default_factory=tuple)

    @property
    def restarts(self) -> int:
        return sum(p.restarts for p in self.pods)

    @property
    def healthy(self) -> bool:
        """Every wanted replica ready, and every pod asked over gRPC SERVING SERVING."""
        return self.ready >= self.desired and all(
            p.health is None or p.health.healthy for p in self.pods
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "component": self.component,
            "kind": self.kind,
            "workload": self.workload,
            "desired": self.desired,
            "ready": self.ready,
            "restarts": self.restarts,
            "healthy": self.healthy,
            "pods": [p.to_dict() for p in self.pods],
        }


def connect(context: str, kubeconfig: str) -> Cluster:
    """API clients from the kubeconfig (``context``, or its current one), else in-cluster config."""
    try:
        from kubernetes import client, config
    except ModuleNotFoundError as exc:
        raise KubeUnavailable(MISSING_PACKAGE) from exc
    configuration = client.Configuration()
    # One retry, not urllib3's three with backoff: a dead API server should fail within --timeout.
    configuration.retries = 1
    # kubernetes.config is untyped; its loaders fill ``configuration`` in place.
    try:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, context=context or None, client_configuration=configuration
        )
        active = config.list_kube_config_contexts(config_file=kubeconfig)[1]  # type: ignore[no-untyped-call]
        used = context or str(active["name"])
    except config.ConfigException as exc:
        if context:
            raise KubeUnavailable(f"kubeconfig {kubeconfig}: {exc}") from None
        try:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except config.ConfigException:
            raise KubeUnavailable(
                f"no usable kubeconfig ({kubeconfig}: {exc}) and not running in a cluster"
            ) from None
        used = "in-cluster"
    api = client.ApiClient(configuration)
    return Cluster(client.CoreV1Api(api), client.AppsV1Api(api), used)


def discover(
    cluster: Cluster, namespace: str, release: str, timeout_s: float
) -> list[ComponentReport]:
    """The release's Deployments and StatefulSets with their pods, without health (yet)."""
    selector = f"{INSTANCE_LABEL}={release}"
    deployments = _items(cluster.apps.list_namespaced_deployment, namespace, selector, timeout_s)
    sets = _items(cluster.apps.list_namespaced_stateful_set, namespace, selector, timeout_s)
    pods = _items(cluster.core.list_namespaced_pod, namespace, selector, timeout_s)
    workloads = [("Deployment", w) for w in deployments] + [("StatefulSet", w) for w in sets]
    return components(workloads, pods)


def _items(call: Callable[..., Any], namespace: str, selector: str, timeout_s: float) -> list[Json]:
    from kubernetes.client.exceptions import ApiException

    try:
        response = call(
            namespace, label_selector=selector, _preload_content=False, _request_timeout=timeout_s
        )
    except ApiException as exc:  # its str() carries every response header: say what matters
        what = getattr(call, "__name__", "list")
        raise KubeError(f"{what} in namespace {namespace}: {exc.status} {exc.reason}") from None
    items: list[Json] = json.loads(response.data).get("items") or []
    return items


def components(workloads: Iterable[tuple[str, Json]], pods: list[Json]) -> list[ComponentReport]:
    """One report per workload, with the pods its own selector matches, ordered by component."""
    reports = []
    for kind, w in workloads:
        meta, spec, status = w.get("metadata", {}), w.get("spec", {}), w.get("status", {})
        match = (spec.get("selector") or {}).get("matchLabels") or {}
        mine = [
            _pod_report(p)
            for p in pods
            if match
            and _matches(p, match)
            and not p.get("metadata", {}).get("deletionTimestamp")  # terminating: on its way out
        ]
        reports.append(
            ComponentReport(
                component=(meta.get("labels") or {}).get(COMPONENT_LABEL, meta.get("name", "?")),
                kind=kind,
                workload=meta.get("name", "?"),
                desired=int(spec.get("replicas", 1)),
                ready=int(status.get("readyReplicas") or 0),
                pods=tuple(sorted(mine, key=lambda p: p.name)),
            )
        )
    return sorted(reports, key=lambda r: (r.component, r.workload))


def _matches(pod: Json, match: Mapping[str, str]) -> bool:
    labels = pod.get("metadata", {}).get("labels") or {}
    return all(labels.get(k) == v for k, v in match.items())


def _pod_report(pod: Json) -> PodReport:
    status = pod.get("status", {})
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    restarts = sum(int(c.get("restartCount", 0)) for c in status.get("containerStatuses") or [])
    port = None
    for c in pod.get("spec", {}).get("containers") or []:
        grpc_probe = (c.get("readinessProbe") or {}).get("grpc")
        if grpc_probe and grpc_probe.get("port"):
            port = int(grpc_probe["port"])
            break
    return PodReport(
        name=pod.get("metadata", {}).get("name", "?"),
        phase=status.get("phase", "Unknown"),
        ready=ready,
        restarts=restarts,
        health_port=port,
    )


def check_health(
    cluster: Cluster,
    namespace: str,
    reports: list[ComponentReport],
    timeout_s: float,
    opener: Opener | None = None,
) -> list[ComponentReport]:
    """Ask every running pod's health port, concurrently, each through its own port-forward."""

    def api_forward(pod: str, port: int) -> Callable[[], Stream]:
        return pod_port_opener(cluster.core, namespace, pod, port)

    open_to = opener or api_forward
    asked = [
        (p.name, p.health_port)
        for r in reports
        for p in r.pods
        if p.phase == "Running" and p.health_port is not None
    ]
    if not asked:
        return reports
    with ThreadPoolExecutor(max_workers=min(len(asked), 16)) as pool:
        done = dict(
            zip(
                (pod for pod, _ in asked),
                pool.map(lambda a: _ask(a[0], a[1], open_to, timeout_s), asked),
                strict=True,
            )
        )
    return [
        replace(r, pods=tuple(replace(p, health=done.get(p.name)) for p in r.pods)) for r in reports
    ]


def _ask(pod: str, port: int, open_to: Opener, timeout_s: float) -> TargetHealth:
    with LocalForward(open_to(pod, port)) as forward:
        result = check_target(Target(pod, forward.address), timeout_s)
    if result.healthy or not forward.error:
        return result
    # The forward itself failed: that, not gRPC's "connection reset", is what to read.
    error = f"port-forward to {pod}:{port}: {forward.error}"
    return replace(
        result, ready=replace(result.ready, error=error), live=replace(result.live, error=error)
    )


def _health_dict(h: TargetHealth) -> dict[str, object]:
    d = h.to_dict()
    return {"healthy": d["healthy"], "ready": d["ready"], "live": d["live"]}


def render(reports: list[ComponentReport], namespace: str, release: str, context: str) -> str:
    lines = [f"release {release} in namespace {namespace} (context {context})"]
    if not reports:
        lines.append(
            f"no Deployment or StatefulSet labelled {INSTANCE_LABEL}={release} in {namespace}"
        )
        return "\n".join(lines)
    lines.append(f"{'COMPONENT':<14} {'KIND':<12} {'READY':<7} {'RESTARTS':<9} HEALTHY")
    for r in reports:
        lines.append(
            f"{r.component:<14} {r.kind:<12} {f'{r.ready}/{r.desired}':<7} {r.restarts:<9} "
            f"{'yes' if r.healthy else 'NO'}"
        )
        for p in r.pods:
            lines.append(f"  {_pod_line(p)}")
            if p.health is not None:
                error = p.health.ready.error or p.health.live.error
                if error:
                    lines.append(f"    {error}")
    bad = sum(not r.healthy for r in reports)
    lines.append(f"{len(reports) - bad}/{len(reports)} components healthy")
    return "\n".join(lines)


def _pod_line(p: PodReport) -> str:
    head = f"{p.name:<36} {p.phase:<10} {'ready' if p.ready else 'NOT READY':<10} "
    head += f"restarts {p.restarts:<4}"
    if p.health_port is None:
        return head + " (no gRPC health port)"
    if p.health is None:
        return head + f" :{p.health_port} not asked ({p.phase})"
    h = p.health
    return head + f" :{p.health_port} {h.ready.status} {h.live.status} {h.ready.latency_ms:.1f} ms"
