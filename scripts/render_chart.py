#!/usr/bin/env python3
"""Render the suptech Helm chart offline and check what Kubernetes would be given.

    python scripts/render_chart.py                      # every helm/suptech/ci/*-values.yaml
    python scripts/render_chart.py -f my-values.yaml    # one value set
    python scripts/render_chart.py --print -f ...       # also print the manifests

For each value set: ``helm lint --strict``, ``helm template`` (which checks values.schema.json),
strict validation of every manifest against the Kubernetes OpenAPI schemas (kubernetes-validate),
and the pod hardening rules of the chart. Needs a helm binary (``scripts/helm.sh ensure``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "helm" / "suptech"
KUBE_VERSION = "1.31.0"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job")


class RenderError(RuntimeError):
    """helm refused the chart or the values; the message is helm's."""


def find_helm() -> str | None:
    """Path of a helm binary: $HELM, then PATH, then Go's bin directory; None when absent."""
    env = os.environ.get("HELM")
    if env and os.access(env, os.X_OK):
        return env
    on_path = shutil.which("helm")
    if on_path:
        return on_path
    gobin = os.environ.get("GOBIN")
    gopath = Path(os.environ.get("GOPATH") or Path.home() / "go")
    for candidate in ([Path(gobin) / "helm"] if gobin else []) + [gopath / "bin" / "helm"]:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def _helm(helm: str, args: Sequence[str]) -> str:
    proc = subprocess.run([helm, *args], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RenderError((proc.stderr or proc.stdout).strip())
    return proc.stdout


def render(
    helm: str,
    values_files: Sequence[Path] = (),
    set_values: Sequence[str] = (),
    release: str = "suptech",
    namespace: str = "suptech",
    chart: Path = CHART,
) -> list[dict[str, Any]]:
    """``helm template`` the chart; return its manifests as dicts, in order."""
    args = ["template", release, str(chart), "--namespace", namespace]
    args += ["--kube-version", KUBE_VERSION]
    for f in values_files:
        args += ["-f", str(f)]
    for s in set_values:
        args += ["--set", s]
    docs = yaml.safe_load_all(_helm(helm, args))
    return [d for d in docs if d]


def lint(helm: str, values_files: Sequence[Path] = (), chart: Path = CHART) -> str:
    args = ["lint", "--strict", str(chart), "--kube-version", KUBE_VERSION]
    for f in values_files:
        args += ["-f", str(f)]
    return _helm(helm, args)


def schema_errors(manifest: dict[str, Any], kube_version: str = KUBE_VERSION) -> list[str]:
    """Strict OpenAPI validation of one manifest (unknown fields are errors)."""
    import kubernetes_validate

    try:
        from scripts import crd_schemas
    except ImportError:  # run as scripts/render_chart.py: scripts/ is on sys.path
        import crd_schemas  # type: ignore[no-redef]

    if crd_schemas.is_custom(manifest):
        return crd_schemas.errors(manifest)

    version = ".".join(kube_version.split(".")[:2])
    try:
        kubernetes_validate.validate(manifest, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [f"{describe(manifest)}: {e.message} at {'.'.join(map(str, e.path))}"]
    return []


def describe(manifest: dict[str, Any]) -> str:
    return f"{manifest.get('kind')}/{manifest.get('metadata', {}).get('name')}"


def pod_spec(manifest: dict[str, Any]) -> dict[str, Any] | None:
    if manifest.get("kind") not in WORKLOAD_KINDS:
        return None
    spec: dict[str, Any] = manifest["spec"]["template"]["spec"]
    return spec


def containers(manifest: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = pod_spec(manifest)
    if spec is not None:
        yield from spec.get("initContainers", [])
        yield from spec.get("containers", [])


def hardening_problems(manifest: dict[str, Any]) -> list[str]:
    """What breaks the chart's pod rules: non-root, read-only root, no capabilities, seccomp,
    no service-account token, requests and limits, and probes on long-running containers."""
    spec = pod_spec(manifest)
    if spec is None:
        return []
    where = describe(manifest)
    problems: list[str] = []
    pod_sc = spec.get("securityContext", {})
    if pod_sc.get("runAsNonRoot") is not True:
        problems.append(f"{where}: pod runAsNonRoot is not true")
    if pod_sc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problems.append(f"{where}: pod seccompProfile is not RuntimeDefault")
    if spec.get("automountServiceAccountToken") is not False:
        problems.append(f"{where}: service-account token is mounted")
    long_running = manifest["kind"] != "Job"
    for c in containers(manifest):
        at = f"{where} container {c['name']}"
        sc = c.get("securityContext", {})
        if sc.get("runAsNonRoot") is not True:
            problems.append(f"{at}: runAsNonRoot is not true")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{at}: root filesystem is writable")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{at}: privilege escalation is allowed")
        if sc.get("privileged"):
            problems.append(f"{at}: privileged")
        if sc.get("capabilities", {}).get("drop") != ["ALL"]:
            problems.append(f"{at}: capabilities are not dropped (drop: [ALL])")
        if sc.get("capabilities", {}).get("add"):
            problems.append(f"{at}: adds capabilities")
        res = c.get("resources", {})
        for kind in ("requests", "limits"):
            for r in ("cpu", "memory"):
                if r not in res.get(kind, {}):
                    problems.append(f"{at}: no {kind}.{r}")
        mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
        if "/tmp" not in mounts:
            problems.append(f"{at}: no writable /tmp on a read-only root")
        if long_running:
            for probe in ("readinessProbe", "livenessProbe"):
                if probe not in c:
                    problems.append(f"{at}: no {probe}")
    return problems


def grpc_probe_problems(manifest: dict[str, Any], image_repository: str) -> list[str]:
    """suptech's own long-running containers must be probed with native gRPC health checks."""
    if manifest.get("kind") not in ("Deployment", "StatefulSet"):
        return []
    problems = []
    for c in containers(manifest):
        if not c["image"].startswith(image_repository + ":"):
            continue
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            if "grpc" not in c.get(probe, {}):
                problems.append(f"{describe(manifest)} container {c['name']}: {probe} is not gRPC")
    return problems


def ci_values_files(chart: Path = CHART) -> list[Path]:
    return sorted((chart / "ci").glob("*-values.yaml"))


def check(helm: str, values_files: Sequence[Path]) -> list[str]:
    """Every problem helm, Kubernetes' schemas or the hardening rules find for one value set."""
    try:
        lint(helm, values_files)
        manifests = render(helm, values_files)
    except RenderError as e:
        return [str(e)]
    problems = []
    for m in manifests:
        problems += schema_errors(m)
        problems += hardening_problems(m)
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-f", "--values", type=Path, action="append", default=[])
    parser.add_argument("--print", action="store_true", help="print the rendered manifests")
    args = parser.parse_args(argv)
    helm = find_helm()
    if helm is None:
        print("render_chart: no helm binary; run scripts/helm.sh ensure", file=sys.stderr)
        return 2
    sets = [args.values] if args.values else [[f] for f in ci_values_files()]
    failed = False
    for values in sets:
        label = ", ".join(str(v) for v in values)
        problems = check(helm, values)
        if args.print and not problems:
            print(yaml.safe_dump_all(render(helm, values), sort_keys=False))
        print(f"{label}: {'ok' if not problems else f'{len(problems)} problem(s)'}")
        for p in problems:
            print(f"  - {p}")
        failed |= bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
