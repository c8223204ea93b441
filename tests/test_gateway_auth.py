"""Unit tests of the gateway's caller identification and rate limiting (plain objects)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from suptech.common.credentials import certificate_identity
from suptech.gateway.auth import Authenticator, AuthFailure
from suptech.gateway.ratelimit import RateLimiter
from suptech.gateway.registry import Registry, RegistryError

TOKEN_A = "a" * 43
TOKEN_B = "b" * 43
TOKEN_OLD = "o" * 43
NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
REGISTRY = Registry.from_entries(
    {
        TOKEN_A: "bank-a",
        TOKEN_B: {"institution": "bank-b"},
        TOKEN_OLD: {"institution": "bank-a", "expires": "2026-12-03T17:00:00+08:00"},  # 09:00Z
        "cert:bank-c": "bank-c",
        "cert:bank-a": "bank-a",
        "cert:bank-u.example": "bank-u",
    }
)
AUTH = Authenticator(REGISTRY)
# What gRPC reports for a verified client certificate (values copied from a real handshake).
CERT_CN = {"transport_security_type": [b"ssl"], "x509_common_name": [b"bank-c"]}
CERT_SAN_ONLY = {
    "transport_security_type": [b"ssl"],
    "x509_common_name": [b""],
    "x509_subject_alternative_name": [b"bank-u.example", b"spiffe://suptech/bank-u"],
}
SUPERVISOR_CERT = {"transport_security_type": [b"ssl"], "x509_common_name": [b"supervisor-1"]}


def institution(metadata: Any, auth_context: Any, now: datetime = NOW) -> str:
    return AUTH.identify(metadata, auth_context, now).institution


def refused(metadata: Any, auth_context: Any, now: datetime = NOW) -> AuthFailure:
    with pytest.raises(AuthFailure) as info:
        AUTH.identify(metadata, auth_context, now)
    return info.value


def test_token_identifies_its_institution() -> None:
    assert institution([("authorization", f"Bearer {TOKEN_B}")], {}) == "bank-b"
    assert institution([("authorization", f"bearer {TOKEN_A}")], {}) == "bank-a"


def test_missing_wrong_or_malformed_token_is_unauthenticated() -> None:
    assert refused([], {}).code == grpc.StatusCode.UNAUTHENTICATED
    for header in (f"Bearer {TOKEN_A}x", "Bearer ", f"Basic {TOKEN_A}", TOKEN_A, "Bearer a"):
        assert refused([("authorization", header)], {}).code == grpc.StatusCode.UNAUTHENTICATED


def test_registered_certificate_identifies_by_cn_then_first_san() -> None:
    assert certificate_identity(CERT_CN) == "bank-c"
    assert certificate_identity(CERT_SAN_ONLY) == "bank-u.example"
    assert certificate_identity({"transport_security_type": [b"insecure"]}) is None
    assert institution([], CERT_CN) == "bank-c"
    # The registry maps a certificate identity to the institution id it stands for.
    assert institution([], CERT_SAN_ONLY) == "bank-u"


def test_unregistered_certificate_is_permission_denied_even_with_a_valid_token() -> None:
    """Signed by the same CA, a supervisor's certificate is authenticated but no institution."""
    failure = refused([], SUPERVISOR_CERT)
    assert failure.code == grpc.StatusCode.PERMISSION_DENIED
    assert "'supervisor-1' is not a registered institution" in failure.message
    with_token = refused([("authorization", f"Bearer {TOKEN_A}")], SUPERVISOR_CERT)
    assert with_token.code == grpc.StatusCode.PERMISSION_DENIED


def test_token_and_certificate_must_agree() -> None:
    mismatch = refused([("authorization", f"Bearer {TOKEN_A}")], CERT_CN)
    assert mismatch.code == grpc.StatusCode.UNAUTHENTICATED
    agreeing = {"x509_common_name": [b"bank-a"]}
    assert institution([("authorization", f"Bearer {TOKEN_A}")], agreeing) == "bank-a"


def test_a_token_works_until_its_expiry() -> None:
    md = [("authorization", f"Bearer {TOKEN_OLD}")]
    before = AUTH.identify(md, {}, NOW - timedelta(seconds=1))
    assert before.institution == "bank-a" and before.expires == NOW
    failure = refused(md, {}, NOW)
    assert failure.code == grpc.StatusCode.UNAUTHENTICATED
    assert failure.message == "token expired at 2026-12-03T09:00:00+00:00"


@pytest.mark.parametrize(
    ("entries", "reason"),
    [
        ({"short-token": "bank-a"}, "a token of 'bank-a' is shorter than 16 chars"),
        ({TOKEN_A: ""}, "non-empty string"),
        ({TOKEN_A: {"institution": "bank-a", "expiry": "2027-01-01T00:00:00Z"}}, "unknown keys"),
        ({TOKEN_A: {"expires": "2027-01-01T00:00:00Z"}}, "non-empty string"),
        ({TOKEN_A: {"institution": "bank-a", "expires": "2027-01-01T00:00:00"}}, "time zone"),
        ({TOKEN_A: {"institution": "bank-a", "expires": "soon"}}, "ISO 8601"),
        ({"cert:": "bank-a"}, "names no certificate identity"),
        ({TOKEN_A: "x" * 129}, "too long"),
    ],
)
def test_bad_registry_entries_are_named_never_the_token(
    entries: dict[str, Any], reason: str
) -> None:
    with pytest.raises(RegistryError, match=reason) as info:
        Registry.from_entries(entries, "tokens.json")
    assert TOKEN_A not in str(info.value) and "short-token" not in str(info.value)


def test_rate_limiter_buckets_refill_and_are_per_institution() -> None:
    now = [100.0]
    limiter = RateLimiter(rate=10.0, burst=20.0, clock=lambda: now[0])
    assert limiter.take("bank-a", 20) == 0.0
    wait = limiter.take("bank-a", 5)
    assert wait == 0.5  # 5 tokens at 10/s
    assert limiter.take("bank-b", 20) == 0.0  # its own bucket
    now[0] += 0.5
    assert limiter.take("bank-a", 5) == 0.0
    now[0] += 1000
    assert limiter.take("bank-a", 21) > 0  # never more than the burst
