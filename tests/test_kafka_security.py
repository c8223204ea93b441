"""Kafka over TLS and SASL/SCRAM: the config helper's rules, and every kind of client against a
real secure broker started by ``scripts/kafka.sh up-secure``."""

from __future__ import annotations

from pathlib import Path

import pytest
from suptech.common.config import ConfigError
from suptech.common.kafka import (
    faust_credentials,
    kafka_python_settings,
    load_kafka_security,
    load_replication,
)

# --- the config helper (no broker) ----------------------------------------------------------


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    """Stand-ins for mounted CA, certificate, key and password files (contents unused here)."""
    out = {}
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("-----BEGIN X-----\n")
        out[name] = str(tmp_path / name)
    (tmp_path / "password").write_text("s3cret-pass\n")
    out["password"] = str(tmp_path / "password")
    return out


def test_default_is_plaintext_with_nothing_else() -> None:
    assert kafka_python_settings({}) == {"security_protocol": "PLAINTEXT"}
    assert faust_credentials({}) is None


def test_sasl_ssl_gives_every_kafka_python_keyword(files: dict[str, str]) -> None:
    env = {
        "SUPTECH_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
        "SUPTECH_KAFKA_SSL_CAFILE": files["ca.pem"],
        "SUPTECH_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
        "SUPTECH_KAFKA_SASL_USERNAME": "gateway",
        "SUPTECH_KAFKA_SASL_PASSWORD_FILE": files["password"],
    }
    assert kafka_python_settings(env) == {
        "security_protocol": "SASL_SSL",
        "ssl_cafile": files["ca.pem"],
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "gateway",
        # the file's trailing newline is not part of the password
        "sasl_plain_password": "s3cret-pass",
    }


def test_sasl_mechanism_defaults_to_scram_sha_512(files: dict[str, str]) -> None:
    env = {
        "SUPTECH_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "SUPTECH_KAFKA_SASL_USERNAME": "ops",
        "SUPTECH_KAFKA_SASL_PASSWORD_FILE": files["password"],
    }
    assert load_kafka_security(env).sasl_mechanism == "SCRAM-SHA-512"


def test_password_file_is_read_again_for_each_client(files: dict[str, str]) -> None:
    env = {
        "SUPTECH_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "SUPTECH_KAFKA_SASL_USERNAME": "ops",
        "SUPTECH_KAFKA_SASL_PASSWORD_FILE": files["password"],
    }
    security = load_kafka_security(env)
    Path(files["password"]).write_text("rotated-pass\n")
    assert security.kafka_python()["sasl_plain_password"] == "rotated-pass"


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"SUPTECH_KAFKA_SECURITY_PROTOCOL": "TLS"}, "SUPTECH_KAFKA_SECURITY_PROTOCOL"),
        # TLS files given but the protocol would send in clear: refused, not ignored.
        ({"SUPTECH_KAFKA_SSL_CAFILE": "ca.pem"}, "SUPTECH_KAFKA_SSL_CAFILE"),
        ({"SUPTECH_KAFKA_SASL_USERNAME": "u"}, "SUPTECH_KAFKA_SASL_USERNAME"),
        (
            {"SUPTECH_KAFKA_SECURITY_PROTOCOL": "SSL", "SUPTECH_KAFKA_SSL_CERTFILE": "cert.pem"},
            "SUPTECH_KAFKA_SSL_KEYFILE",
        ),
        (
            {"SUPTECH_KAFKA_SECURITY_PROTOCOL": "SSL", "SUPTECH_KAFKA_SSL_CAFILE": "/nonexistent"},
            "SUPTECH_KAFKA_SSL_CAFILE",
        ),
        (
            {"SUPTECH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "SUPTECH_KAFKA_SASL_USERNAME": "u"},
            "SUPTECH_KAFKA_SASL_PASSWORD_FILE",
        ),
        (
            {
                "SUPTECH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "SUPTECH_KAFKA_SASL_PASSWORD_FILE": "password",
            },
            "SUPTECH_KAFKA_SASL_USERNAME",
        ),
        (
            {
                "SUPTECH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "SUPTECH_KAFKA_SASL_MECHANISM": "GSSAPI",
                "SUPTECH_KAFKA_SASL_USERNAME": "u",
                "SUPTECH_KAFKA_SASL_PASSWORD_FILE": "password",
            },
            "SUPTECH_KAFKA_SASL_MECHANISM",
        ),
        (
            {
                "SUPTECH_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                "SUPTECH_KAFKA_SASL_MECHANISM": "PLAIN",
                "SUPTECH_KAFKA_SASL_USERNAME": "u",
                "SUPTECH_KAFKA_SASL_PASSWORD_FILE": "password",
            },
            "PLAIN",
        ),
        (
            {
                "SUPTECH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "SUPTECH_KAFKA_SASL_USERNAME": "u",
                "SUPTECH_KAFKA_SASL_PASSWORD_FILE": "/nonexistent/password",
            },
            "SUPTECH_KAFKA_SASL_PASSWORD_FILE",
        ),
    ],
)
def test_invalid_combinations_fail_naming_the_variable(
    env: dict[str, str], names: str, files: dict[str, str]
) -> None:
    resolved = {
        k: files.get(v, v) if k.endswith(("FILE", "_CAFILE")) else v for k, v in env.items()
    }
    with pytest.raises(ConfigError, match=names):
        load_kafka_security(resolved)


def test_empty_password_file_is_refused(files: dict[str, str]) -> None:
    Path(files["password"]).write_text("\n")
    env = {
        "SUPTECH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "SUPTECH_KAFKA_SASL_USERNAME": "u",
        "SUPTECH_KAFKA_SASL_PASSWORD_FILE": files["password"],
    }
    with pytest.raises(ConfigError, match="empty"):
        load_kafka_security(env)


@pytest.mark.parametrize(
    ("factor", "isr", "ok"),
    [("1", "1", True), ("3", "2", True), ("3", "4", False), ("0", "1", False)],
)
def test_replication_settings(factor: str, isr: str, ok: bool) -> None:
    env = {
        "SUPTECH_KAFKA_REPLICATION_FACTOR": factor,
        "SUPTECH_KAFKA_MIN_INSYNC_REPLICAS": isr,
    }
    if ok:
        r = load_replication(env)
        assert (r.factor, r.min_insync) == (int(factor), int(isr))
    else:
        with pytest.raises(ConfigError, match="SUPTECH_KAFKA_"):
            load_replication(env)


def test_replication_defaults_suit_one_broker() -> None:
    r = load_replication({})
    assert (r.factor, r.min_insync) == (1, 1)
