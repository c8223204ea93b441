"""Offline validation of custom resources against the CRDs vendored in helm/schemas/crds.

Kubernetes' own kinds are validated with kubernetes-validate (scripts/render_chart.py); a custom
resource (a KEDA ScaledObject, ...) is not in those schemas. Here each served version of each
vendored CRD becomes a JSON schema, made strict as the API server is with fieldValidation=Strict:
an object that lists its properties accepts no other (unless the CRD preserves unknown fields).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jsonschema
import yaml

REPO = Path(__file__).resolve().parent.parent
CRD_DIR = REPO / "helm" / "schemas" / "crds"

Key = tuple[str, str]  # (apiVersion, kind)


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of an openAPIV3Schema in which unknown fields are errors, at every level."""
    out = dict(schema)
    props = out.get("properties")
    if isinstance(props, dict):
        out["properties"] = {k: strict(v) for k, v in props.items()}
        if "additionalProperties" not in out and not out.get(
            "x-kubernetes-preserve-unknown-fields"
        ):
            out["additionalProperties"] = False
    for key in ("items", "additionalProperties"):
        if isinstance(out.get(key), dict):
            out[key] = strict(out[key])
    for key in ("allOf", "anyOf", "oneOf"):
        if isinstance(out.get(key), list):
            out[key] = [strict(s) for s in out[key]]
    return out


@functools.cache
def schemas(directory: Path = CRD_DIR) -> dict[Key, dict[str, Any]]:
    """(apiVersion, kind) -> strict JSON schema, for every served version of every CRD here."""
    found: dict[Key, dict[str, Any]] = {}
    for path in sorted(directory.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                if version.get("served"):
                    key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
                    found[key] = strict(version["schema"]["openAPIV3Schema"])
    return found


def is_custom(manifest: dict[str, Any], directory: Path = CRD_DIR) -> bool:
    """Whether a vendored CRD defines this manifest's kind."""
    return (manifest.get("apiVersion", ""), manifest.get("kind", "")) in schemas(directory)


def errors(manifest: dict[str, Any], directory: Path = CRD_DIR) -> list[str]:
    """Every violation of its CRD's schema, or one error when no vendored CRD defines it."""
    key = (manifest.get("apiVersion", ""), manifest.get("kind", ""))
    name = f"{key[1]}/{manifest.get('metadata', {}).get('name')}"
    schema = schemas(directory).get(key)
    if schema is None:
        return [f"{name}: no CRD for {key[0]} {key[1]} in {directory}"]
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{name}: {e.message} at {'.'.join(map(str, e.absolute_path)) or '(root)'}"
        for e in sorted(validator.iter_errors(manifest), key=lambda e: list(e.absolute_path))
    ]
