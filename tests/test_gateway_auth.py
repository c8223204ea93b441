"""Unit tests of the gateway's caller identification and rate limiting (plain objects)."""

from __future__ import annotations

from suptech.common.credentials import certificate_identity
from suptech.gateway.auth import Authenticator
from suptech.gateway.ratelimit import RateLimiter

TOKEN_A = "a" * 43
TOKEN_B = "b" * 43
AUTH = Authenticator({TOKEN_A: "bank-a", TOKEN_B: "bank-b"})
# What gRPC reports for a verified client certificate (values copied from a real handshake).
CERT_CN = {"transport_security_type": [b"ssl"], "x509_common_name": [b"bank-c"]}
CERT_SAN_ONLY = {
    "transport_security_type": [b"ssl"],
    "x509_common_name": [b""],
    "x509_subject_alternative_name": [b"bank-u.example", b"spiffe://suptech/bank-u"],
}


def test_token_identifies_its_institution() -> None:
    assert AUTH.identify([("authorization", f"Bearer {TOKEN_B}")], {}) == "bank-b"
    assert AUTH.identify([("authorization", f"bearer {TOKEN_A}")], {}) == "bank-a"


def test_missing_wrong_or_malformed_token_is_refused() -> None:
    assert AUTH.identify([], {}) is None
    for header in (f"Bearer {TOKEN_A}x", "Bearer ", f"Basic {TOKEN_A}", TOKEN_A, "Bearer a"):
        assert AUTH.identify([("authorization", header)], {}) is None, header


def test_certificate_identity_cn_then_first_san() -> None:
    assert certificate_identity(CERT_CN) == "bank-c"
    assert certificate_identity(CERT_SAN_ONLY) == "bank-u.example"
    assert certificate_identity({"transport_security_type": [b"insecure"]}) is None
    assert AUTH.identify([], CERT_CN) == "bank-c"


def test_token_and_certificate_must_agree() -> None:
    assert AUTH.identify([("authorization", f"Bearer {TOKEN_A}")], CERT_CN) is None
    agreeing = {"x509_common_name": [b"bank-a"]}
    assert AUTH.identify([("authorization", f"Bearer {TOKEN_A}")], agreeing) == "bank-a"


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
