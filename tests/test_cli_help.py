"""``--help`` on every entry point: prints the settings and exits 0 without touching anything.

Each runs in a subprocess with a broker address nothing listens on: help that connected (or,
as ``python -m suptech.alerts`` did, started the service and created topics) would hang or fail.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from suptech.alerts.config import SETTINGS as ALERTS_SETTINGS
from suptech.common.config import COMMON_SETTINGS, Setting
from suptech.console.config import SETTINGS as CONSOLE_SETTINGS
from suptech.detector.config import SETTINGS as DETECTOR_SETTINGS
from suptech.gateway.config import SETTINGS as GATEWAY_SETTINGS
from suptech.ops.config import SETTINGS as OPS_SETTINGS

from tests.test_gateway import closed_port

REPO = Path(__file__).resolve().parents[1]
SERVICES = REPO / "services" / "suptech"

# module -> variables its help must name (the service's settings, all of them).
ENTRY_POINTS: dict[str, tuple[str, ...]] = {
    "suptech.gateway": tuple(s.name for s in GATEWAY_SETTINGS + COMMON_SETTINGS),
    "suptech.detector": tuple(s.name for s in DETECTOR_SETTINGS + COMMON_SETTINGS),
    "suptech.alerts": tuple(s.name for s in ALERTS_SETTINGS + COMMON_SETTINGS),
    "suptech.console": tuple(s.name for s in CONSOLE_SETTINGS),
    "suptech.ops": tuple(s.name for s in OPS_SETTINGS),
    "suptech.alerts.feed": ("--target", "--token-file"),
    "suptech.detector.replay": ("--out", "--registry"),
    # The console scripts of pyproject.toml: suptech-send, suptech-gateway, suptech-ops.
    "suptech.sdk.cli": ("send",),
}

CONFIG_SETTINGS: dict[str, tuple[Setting, ...]] = {
    "gateway": GATEWAY_SETTINGS,
    "detector": DETECTOR_SETTINGS,
    "alerts": ALERTS_SETTINGS,
    "console": CONSOLE_SETTINGS,
    "ops": OPS_SETTINGS,
}


@pytest.mark.parametrize("module", sorted(ENTRY_POINTS))
def test_help_prints_the_settings_and_exits_without_connecting(module: str, tmp_path: Path) -> None:
    env = dict(
        os.environ,
        PYTHONPATH=f"{REPO / 'services'}{os.pathsep}{REPO}",
        KAFKA_ADDR=f"127.0.0.1:{closed_port()}",
        ALERTS_DB_URL=f"sqlite:///{tmp_path / 'never.db'}",
    )
    proc = subprocess.run(
        [sys.executable, "-m", module, "--help"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    for name in ENTRY_POINTS[module]:
        assert name in proc.stdout, f"{module} --help does not name {name}"
    # Nothing was started: no database file, no state directory.
    assert list(tmp_path.iterdir()) == []


# KUBECONFIG: the standard variable, read by suptech-ops for health --kube.
VARIABLE = re.compile(
    r"(ALERTS|CONSOLE|DETECTOR|GATEWAY|KAFKA|OPS|SUPTECH)_[A-Z0-9_]*[A-Z0-9]|KUBECONFIG"
)


def _read_variables(config_py: Path) -> set[str]:
    """Names of the environment variables a config module mentions as whole strings
    (``env_str("NAME", ...)``, ``env.get("NAME")``, a tuple of names it reads, the name a
    range check reports), outside its own ``Setting(...)`` declarations."""
    tree = ast.parse(config_py.read_text())
    declared = {
        id(node.args[0])
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Setting" and node.args
    }
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and VARIABLE.fullmatch(node.value)
        and id(node) not in declared
    }


@pytest.mark.parametrize("service", sorted(CONFIG_SETTINGS))
def test_help_lists_every_variable_the_config_reads(service: str) -> None:
    """A variable added to a config module and not to its SETTINGS would be invisible in
    --help: the list is checked against what the module's source reads."""
    read = _read_variables(SERVICES / service / "config.py")
    listed = {s.name for s in CONFIG_SETTINGS[service]}
    assert read, f"no variable found in {service}/config.py"
    assert read <= listed, f"{service} --help misses {sorted(read - listed)}"
    assert listed <= read, f"{service} --help names variables it never reads: {listed - read}"
