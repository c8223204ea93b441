"""The chart's metrics and logs: scrape annotations, metrics ports, the optional ServiceMonitor,
the Grafana dashboard (whose every metric name the code must register) and JSON logs."""

from __future__ import annotations

import copy
import json
import os
import re
from typing import Any

import jsonschema
import pytest
import yaml
from suptech.alerts.metrics import AlertsMetrics
from suptech.common.metrics import metric_names
from suptech.detector.metrics import DetectorMetrics
from suptech.gateway.metrics import GatewayMetrics

from scripts import crd_schemas as crd
from scripts import render_chart as rc

CHART = rc.CHART
DASHBOARD = CHART / "dashboards" / "suptech.json"
SCHEMA = json.loads((CHART / "values.schema.json").read_text())
DEFAULTS = yaml.safe_load((CHART / "values.yaml").read_text())
DEFAULT_VALUES = CHART / "ci" / "default-values.yaml"
PORTS = {"gateway": 9464, "detector": 9465, "alerts": 9466}


def registered() -> set[str]:
    names: set[str] = set()
    for metrics in (GatewayMetrics(), DetectorMetrics(), AlertsMetrics()):
        names |= metric_names(metrics.registry)
    return names


def dashboard_names() -> set[str]:
    doc = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in doc["panels"] for t in p["targets"]]
    return {n for e in exprs for n in re.findall(r"\bsuptech_[a-z0-9_]+", e)}


def test_every_metric_the_dashboard_queries_is_one_the_code_registers() -> None:
    used = dashboard_names()
    assert used, "the dashboard queries no suptech metric"
    assert used <= registered(), f"not registered by any service: {sorted(used - registered())}"


def test_the_dashboard_shows_every_metric_the_services_register() -> None:
    families = {n for n in registered() if not n.endswith(("_sum", "_count", "_created"))}
    shown = {re.sub(r"_(total|bucket)$", "", n) for n in dashboard_names()}
    missing = {n for n in families if re.sub(r"_(total|bucket)$", "", n) not in shown}
    assert missing == set()


def errors(overrides: dict[str, Any]) -> list[str]:
    values = copy.deepcopy(DEFAULTS)
    for key, sub in overrides.items():
        values[key] = {**values.get(key, {}), **sub} if isinstance(sub, dict) else sub
    return [e.message for e in jsonschema.Draft7Validator(SCHEMA).iter_errors(values)]


@pytest.mark.parametrize(
    "overrides",
    [
        {"metrics": {"enabled": True, "serviceMonitor": {"enabled": "yes"}}},
        {"metrics": {"enabled": True, "serviceMonitor": {"interval": "often"}}},
        {"metrics": {"enabled": True, "sidecar": True}},
        {"logFormat": "xml"},
    ],
)
def test_schema_rejects_bad_metrics_and_log_values(overrides: dict[str, Any]) -> None:
    assert errors(overrides) != []


def test_schema_rejects_a_metrics_port_out_of_range() -> None:
    values = copy.deepcopy(DEFAULTS)
    values["components"]["gateway"]["metricsPort"] = 70000
    assert list(jsonschema.Draft7Validator(SCHEMA).iter_errors(values)) != []


# --- rendered by helm ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def helm() -> str:
    path = rc.find_helm()
    if path is None:
        why = "no helm binary: run scripts/helm.sh ensure (builds helm with Go, about 4 min)"
        if os.environ.get("SUPTECH_REQUIRE_HELM") == "1":
            pytest.fail(why)
        pytest.skip(why)
    return path


def kinds(manifests: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


def component(m: dict[str, Any]) -> str:
    return str(m["metadata"]["labels"].get("app.kubernetes.io/component", ""))


def test_every_component_is_scrapable_by_annotation_service_and_network_policy(
    helm: str,
) -> None:
    manifests = rc.render(helm, [DEFAULT_VALUES])
    workloads = [m for m in manifests if m["kind"] in ("Deployment", "StatefulSet")]
    seen = set()
    for w in workloads:
        name = component(w)
        if name not in PORTS:
            continue
        seen.add(name)
        port = PORTS[name]
        pod = w["spec"]["template"]
        ann = pod["metadata"]["annotations"]
        assert ann["prometheus.io/scrape"] == "true"
        assert ann["prometheus.io/port"] == str(port)
        assert ann["prometheus.io/path"] == "/metrics"
        c = pod["spec"]["containers"][0]
        assert {"name": "metrics", "containerPort": port, "protocol": "TCP"} in c["ports"]
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env["SUPTECH_METRICS_PORT"] == str(port)
    assert seen == set(PORTS)
    services = [m for m in manifests if m["kind"] == "Service" and component(m) in PORTS]
    with_metrics = {
        component(s): p["port"]
        for s in services
        for p in s["spec"].get("ports", [])
        if p["name"] == "metrics"
    }
    assert with_metrics == PORTS
    for policy in kinds(manifests, "NetworkPolicy").values():
        name = component(policy)
        if name in PORTS:
            ports = [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]]
            assert PORTS[name] in ports, name
    (config,) = [
        m
        for m in kinds(manifests, "ConfigMap").values()
        if "SUPTECH_LOG_LEVEL" in m.get("data", {})
    ]
    assert config["data"]["SUPTECH_LOG_FORMAT"] == "json"
    assert kinds(manifests, "ServiceMonitor") == {}


def test_service_monitor_and_dashboard_when_asked(helm: str, tmp_path: Any) -> None:
    values = tmp_path / "monitoring.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "metrics": {
                    "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prom"}},
                    "dashboard": {"enabled": True},
                }
            }
        )
    )
    manifests = rc.render(helm, [DEFAULT_VALUES, values])
    (monitor,) = kinds(manifests, "ServiceMonitor").values()
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prom"
    (expr,) = monitor["spec"]["selector"]["matchExpressions"]
    assert sorted(expr["values"]) == sorted(PORTS)
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "30s"}
    ]
    dashboards = [
        m for m in kinds(manifests, "ConfigMap").values() if "suptech.json" in m.get("data", {})
    ]
    (dashboard,) = dashboards
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["suptech.json"]) == json.loads(DASHBOARD.read_text())
    # The ServiceMonitor validates against prometheus-operator's CRD (vendored), the rest
    # against Kubernetes.
    assert crd.is_custom(monitor) and crd.errors(monitor) == []
    problems = [p for m in manifests if not crd.is_custom(m) for p in rc.schema_errors(m)]
    assert problems == []


def test_metrics_off_means_port_zero_and_nothing_to_scrape(helm: str, tmp_path: Any) -> None:
    values = tmp_path / "off.yaml"
    values.write_text(yaml.safe_dump({"metrics": {"enabled": False}, "logFormat": "text"}))
    manifests = rc.render(helm, [DEFAULT_VALUES, values])
    text = yaml.safe_dump_all(manifests)
    assert "prometheus.io/scrape" not in text
    for w in (m for m in manifests if m["kind"] in ("Deployment", "StatefulSet")):
        c = w["spec"]["template"]["spec"]["containers"][0]
        if component(w) in PORTS:
            env = {e["name"]: e.get("value") for e in c["env"]}
            assert env["SUPTECH_METRICS_PORT"] == "0"
            assert "metrics" not in {p["name"] for p in c.get("ports", [])}
