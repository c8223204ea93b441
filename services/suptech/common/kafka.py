"""How every suptech Kafka client connects and how durable every topic is: one place, from env.

Every client (kafka-python in the gateway, the alert service, ``suptech ops`` and the topic set-up;
faust/aiokafka in the detector) takes its security settings from here, so a deployment switches
all of them to TLS and SASL/SCRAM with the same variables. A misconfiguration fails at once with
a :class:`ConfigError` naming the variable: a client that quietly fell back to PLAINTEXT would
send regulated data in clear.

The SASL password is read from a file (a mounted Secret), never from the environment, where it
would show in ``/proc/<pid>/environ`` and in crash reports. The file is read each time settings
are built, so a client made after a rotation uses the new password.
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from suptech.common.config import ConfigError, Setting, env_int, env_str

__all__ = [
    "PROTOCOLS",
    "MECHANISMS",
    "KAFKA_SETTINGS",
    "KafkaSecurity",
    "Replication",
    "load_kafka_security",
    "load_replication",
    "kafka_python_settings",
    "faust_credentials",
    "KafkaAuthError",
    "open_client",
]

T = TypeVar("T")

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN")

_P = "SUPTECH_KAFKA_"

KAFKA_SETTINGS: tuple[Setting, ...] = (
    Setting(f"{_P}SECURITY_PROTOCOL", "PLAINTEXT", "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"),
    Setting(f"{_P}SSL_CAFILE", None, "PEM CA bundle the brokers' certificates are checked against"),
    Setting(f"{_P}SSL_CERTFILE", None, "PEM client certificate (mutual TLS), with _KEYFILE"),
    Setting(f"{_P}SSL_KEYFILE", None, "PEM private key of _CERTFILE"),
    Setting(f"{_P}SASL_MECHANISM", "SCRAM-SHA-512", "SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN"),
    Setting(f"{_P}SASL_USERNAME", None, "SASL user (required with SASL_*)"),
    Setting(
        f"{_P}SASL_PASSWORD_FILE", None, "file holding the SASL password (required with SASL_*)"
    ),
    Setting(f"{_P}REPLICATION_FACTOR", 1, "replicas of every topic suptech creates"),
    Setting(f"{_P}MIN_INSYNC_REPLICAS", 1, "min.insync.replicas of every topic (<= the factor)"),
)


def _readable(name: str, path: str | None) -> None:
    if path is not None and not Path(path).is_file():
        raise ConfigError(f"environment variable {name}: {path} is not a readable file")


@dataclass(frozen=True)
class KafkaSecurity:
    """Validated security settings; :meth:`kafka_python` and :meth:`faust` turn them into what
    each client library takes."""

    protocol: str = "PLAINTEXT"
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password_file: str | None = None

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ConfigError(
                f"environment variable {_P}SECURITY_PROTOCOL must be one of "
                f"{', '.join(PROTOCOLS)}, got {self.protocol!r}"
            )
        self._check_ssl()
        self._check_sasl()

    @property
    def uses_ssl(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    def _check_ssl(self) -> None:
        given = {
            f"{_P}SSL_CAFILE": self.ssl_cafile,
            f"{_P}SSL_CERTFILE": self.ssl_certfile,
            f"{_P}SSL_KEYFILE": self.ssl_keyfile,
        }
        if not self.uses_ssl:
            # Set but unused means the operator expected TLS: refuse rather than go plaintext.
            for name, value in given.items():
                if value:
                    raise ConfigError(
                        f"environment variable {name} is set but {_P}SECURITY_PROTOCOL is "
                        f"{self.protocol}: use SSL or SASL_SSL, or unset it"
                    )
            return
        if bool(self.ssl_certfile) != bool(self.ssl_keyfile):
            raise ConfigError(f"{_P}SSL_CERTFILE and {_P}SSL_KEYFILE must be set together")
        for name, value in given.items():
            _readable(name, value)

    def _check_sasl(self) -> None:
        given = {
            f"{_P}SASL_MECHANISM": self.sasl_mechanism,
            f"{_P}SASL_USERNAME": self.sasl_username,
            f"{_P}SASL_PASSWORD_FILE": self.sasl_password_file,
        }
        if not self.uses_sasl:
            for name, value in given.items():
                if value:
                    raise ConfigError(
                        f"environment variable {name} is set but {_P}SECURITY_PROTOCOL is "
                        f"{self.protocol}: use SASL_PLAINTEXT or SASL_SSL, or unset it"
                    )
            return
        if self.sasl_mechanism not in MECHANISMS:
            raise ConfigError(
                f"environment variable {_P}SASL_MECHANISM must be one of "
                f"{', '.join(MECHANISMS)}, got {self.sasl_mechanism!r}"
            )
        if self.sasl_mechanism == "PLAIN" and not self.uses_ssl:
            raise ConfigError(
                f"{_P}SASL_MECHANISM=PLAIN over SASL_PLAINTEXT sends the password in clear: "
                "use SASL_SSL or a SCRAM mechanism"
            )
        if not self.sasl_username:
            raise ConfigError(
                f"environment variable {_P}SASL_USERNAME is required with {self.protocol}"
            )
        if not self.sasl_password_file:
            raise ConfigError(
                f"environment variable {_P}SASL_PASSWORD_FILE is required with {self.protocol}"
            )
        self.sasl_password()

    def sasl_password(self) -> str:
        """The password in the file, without its trailing newline; read now (rotation)."""
        name = f"{_P}SASL_PASSWORD_FILE"
        if not self.sasl_password_file:
            raise ConfigError(f"environment variable {name} is required with {self.protocol}")
        try:
            password = Path(self.sasl_password_file).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as e:
            raise ConfigError(
                f"{name}: cannot read {self.sasl_password_file}: {e.strerror}"
            ) from None
        if not password:
            raise ConfigError(f"{name}: {self.sasl_password_file} is empty")
        return password

    def kafka_python(self) -> dict[str, Any]:
        """Keyword arguments for ``KafkaProducer``/``KafkaConsumer``/``KafkaAdminClient``."""
        kwargs: dict[str, Any] = {"security_protocol": self.protocol}
        if self.uses_ssl:
            for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
                value = getattr(self, key)
                if value:
                    kwargs[key] = value
        if self.uses_sasl:
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.sasl_username
            kwargs["sasl_plain_password"] = self.sasl_password()
        return kwargs

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that checks the broker's certificate and host name against the CA
        (the system's trust store without ``SSL_CAFILE``), with the client certificate if any."""
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ssl_cafile)
        if self.ssl_certfile and self.ssl_keyfile:
            context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
        return context

    def faust(self) -> Any:
        """faust's ``broker_credentials``: ``None`` for PLAINTEXT, else faust.SSLCredentials or
        faust.SASLCredentials (with an SSL context for SASL_SSL)."""
        if self.protocol == "PLAINTEXT":
            return None
        import faust

        if self.protocol == "SSL":
            return faust.SSLCredentials(self.ssl_context())
        return faust.SASLCredentials(
            username=self.sasl_username,
            password=self.sasl_password(),
            mechanism=self.sasl_mechanism,
            ssl_context=self.ssl_context() if self.uses_ssl else None,
        )


def load_kafka_security(environ: Mapping[str, str] | None = None) -> KafkaSecurity:
    """The ``SUPTECH_KAFKA_*`` security settings, validated (raises :class:`ConfigError`)."""

    def opt(suffix: str) -> str | None:
        return env_str(f"{_P}{suffix}", "", environ) or None

    protocol = env_str(f"{_P}SECURITY_PROTOCOL", "PLAINTEXT", environ).strip().upper()
    mechanism = opt("SASL_MECHANISM")
    if mechanism is None and protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
        mechanism = "SCRAM-SHA-512"
    return KafkaSecurity(
        protocol=protocol,
        ssl_cafile=opt("SSL_CAFILE"),
        ssl_certfile=opt("SSL_CERTFILE"),
        ssl_keyfile=opt("SSL_KEYFILE"),
        sasl_mechanism=mechanism.strip().upper() if mechanism else None,
        sasl_username=opt("SASL_USERNAME"),
        sasl_password_file=opt("SASL_PASSWORD_FILE"),
    )


def kafka_python_settings(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``**kafka_python_settings()`` into every kafka-python client constructor."""
    return load_kafka_security(environ).kafka_python()


class KafkaAuthError(ConnectionError):
    """The brokers refused the client's credentials (or TLS failed): retrying cannot help."""


class _AuthFailures(logging.Handler):
    """Collects what kafka-python logs when a broker refuses a handshake: its clients only raise
    "Unable to bootstrap" once their timeout is spent, the reason is in the log alone."""

    MARKS = ("SaslAuthenticationFailedError", "AuthorizationError", "Handshake failed", "SSL:")

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.refused: list[str] = []
        # The broker answered ApiVersions, then the socket closed: with SASL that is the broker
        # dropping a failed authentication (kafka-python 3.0 over TLS sometimes loses the error
        # response that precedes the close, measured 2 in 5 attempts).
        self.cut_after_hello = 0
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        with self._guard:
            if any(mark in text for mark in self.MARKS):
                self.refused.append(text)
            elif "broker_version=(" in text and "Connection lost" in text:
                self.cut_after_hello += 1


@contextmanager
def _watch_auth() -> Iterator[_AuthFailures]:
    handler = _AuthFailures()
    logger = logging.getLogger("kafka")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def _refusal(sec: KafkaSecurity, bootstrap: object, failures: _AuthFailures) -> str | None:
    who = f" as {sec.sasl_username} ({sec.sasl_mechanism})" if sec.uses_sasl else ""
    where = f"Kafka at {bootstrap} refused the connection{who} over {sec.protocol}"
    if failures.refused:
        return f"{where}: {failures.refused[-1]}"
    if sec.uses_sasl and failures.cut_after_hello:
        return (
            f"{where}: the broker closed the connection during SASL authentication "
            "(wrong password or mechanism, or no SCRAM credentials for this user)"
        )
    return None


# kafka-python 3.0 backs off up to 30 s between reconnects to a broker by default: after a broker
# restart a consumer sat idle for ~30 s more (measured by perf/chaos: alerts back 40 s after a
# restart whose broker answered after 10 s). One second keeps reconnects cheap and recovery quick.
RECONNECT_BACKOFF_MAX_MS = 1000


def open_client(
    factory: Callable[..., T], *, security: KafkaSecurity | None = None, **kwargs: Any
) -> T:
    """``factory(**kwargs)`` (a kafka-python client class) with the ``SUPTECH_KAFKA_*`` security
    settings and a reconnect backoff of at most :data:`RECONNECT_BACKOFF_MAX_MS`; a refused
    password or certificate raises :class:`KafkaAuthError` naming the user and the broker's
    reason, instead of kafka-python's bare "Unable to bootstrap" timeout."""
    sec = security or load_kafka_security()
    kwargs.setdefault("reconnect_backoff_max_ms", RECONNECT_BACKOFF_MAX_MS)
    with _watch_auth() as failures:
        try:
            return factory(**kwargs, **sec.kafka_python())
        except Exception as e:
            reason = _refusal(sec, kwargs.get("bootstrap_servers"), failures)
            if reason is None:
                raise
            raise KafkaAuthError(reason) from e


def faust_credentials(environ: Mapping[str, str] | None = None) -> Any:
    """``faust.App(..., broker_credentials=faust_credentials())``; ``None`` for PLAINTEXT."""
    return load_kafka_security(environ).faust()


@dataclass(frozen=True)
class Replication:
    """Replicas per topic and ``min.insync.replicas``: with ``acks=all`` a write is acknowledged
    only once ``min_insync`` replicas have it, so factor 3 / min ISR 2 survives one broker lost
    without losing an acknowledged record or refusing writes."""

    factor: int = 1
    min_insync: int = 1

    def __post_init__(self) -> None:
        if self.factor < 1:
            raise ConfigError(f"environment variable {_P}REPLICATION_FACTOR must be >= 1")
        if not 1 <= self.min_insync <= self.factor:
            raise ConfigError(
                f"environment variable {_P}MIN_INSYNC_REPLICAS must be between 1 and "
                f"{_P}REPLICATION_FACTOR ({self.factor}), got {self.min_insync}"
            )


def load_replication(environ: Mapping[str, str] | None = None) -> Replication:
    """``SUPTECH_KAFKA_REPLICATION_FACTOR`` / ``_MIN_INSYNC_REPLICAS`` (1/1: one test broker)."""
    return Replication(
        factor=env_int(f"{_P}REPLICATION_FACTOR", 1, environ),
        min_insync=env_int(f"{_P}MIN_INSYNC_REPLICAS", 1, environ),
    )
