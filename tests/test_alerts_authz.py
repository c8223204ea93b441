"""The alert service's permission matrix and credential handling, as plain functions."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from suptech.alerts.authz import (
    MIN_TOKEN_CHARS,
    PermissionDeniedError,
    Principal,
    ReloadingTokenStore,
    Role,
    TokensFileError,
    TokenStore,
    UnauthenticatedError,
    authenticate,
    authorize,
    can_see,
)

METHODS = [
    "ListAlerts",
    "GetAlert",
    "StreamAlerts",
    "Acknowledge",
    "Assign",
    "Resolve",
    "CreateSilence",
    "ExpireSilence",
]
READ = {"ListAlerts", "GetAlert", "StreamAlerts"}
TRIAGE = READ | {"Acknowledge", "Assign"}
DECIDE = TRIAGE | {"Resolve", "CreateSilence", "ExpireSilence"}
ALLOWED = {
    "viewer": READ,
    "analyst": TRIAGE,
    "supervisor": DECIDE,
    "admin": set(METHODS),
    "institution": set(),
}

TOKENS = {
    "tok-16chars-viewer": {"name": "vera", "role": "viewer", "jurisdictions": ["*"]},
    "tok-16chars-analyst": {"name": "ana", "role": "analyst", "jurisdictions": ["bank-sz-01"]},
    "tok-16chars-inst": {"name": "bank-sz-01", "role": "institution", "jurisdictions": []},
    "tok-16chars-gateway": {"name": "bank-sz-02", "institution_id": "bank-sz-02"},
    "cert:console.regulator": {"name": "console", "role": "supervisor", "jurisdictions": ["*"]},
}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("role", list(ALLOWED))
def test_permission_matrix(role: str, method: str) -> None:
    principal = Principal("p", Role[role.upper()], frozenset({"*"}))
    full = f"/suptech.v1.AlertService/{method}"
    if method in ALLOWED[role]:
        authorize(principal, full)
        authorize(principal, method)
    else:
        with pytest.raises(PermissionDeniedError):
            authorize(principal, full)


def test_unknown_method_needs_admin() -> None:
    authorize(Principal("root", Role.ADMIN, frozenset({"*"})), "/suptech.v1.AlertService/Purge")
    with pytest.raises(PermissionDeniedError, match="needs admin"):
        authorize(Principal("s", Role.SUPERVISOR, frozenset({"*"})), "Purge")


def test_jurisdiction_scoping() -> None:
    partner = Principal("partner", Role.ANALYST, frozenset({"bank-sz-01", "pay-sz-07"}))
    everyone = Principal("hq", Role.VIEWER, frozenset({"*"}))
    institution = Principal("bank-sz-01", Role.INSTITUTION, frozenset({"*"}))
    assert can_see(partner, "bank-sz-01")
    assert not can_see(partner, "bank-sz-02")
    assert can_see(everyone, "bank-sz-02")
    assert not can_see(institution, "bank-sz-01")


def test_authenticate_by_token_and_certificate(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps(TOKENS))
    store = TokenStore.from_file(path)
    ana = authenticate(store, [("authorization", "Bearer tok-16chars-analyst")], None)
    assert (ana.name, ana.role, ana.jurisdictions) == ("ana", Role.ANALYST, {"bank-sz-01"})
    console = authenticate(store, [], {"x509_common_name": [b"console.regulator"]})
    assert console.role is Role.SUPERVISOR and console.sees_all
    # A gateway (institution) credential authenticates but is refused every method.
    for token in ("tok-16chars-inst", "tok-16chars-gateway"):
        inst = authenticate(store, [("authorization", f"Bearer {token}")], None)
        with pytest.raises(PermissionDeniedError, match="institution"):
            authorize(inst, "ListAlerts")


@pytest.mark.parametrize(
    ("metadata", "auth_context", "reason"),
    [
        ([], None, "no credentials"),
        ([("authorization", "Bearer nope")], None, "unknown token"),
        ([("authorization", "Basic dG9r")], None, "Bearer"),
        ([("authorization", "Bearer ")], None, "Bearer"),
        ([], {"x509_common_name": [b"stranger"]}, "not registered"),
        # A wrong token is refused even with a registered certificate.
        (
            [("authorization", "Bearer nope")],
            {"x509_common_name": [b"console.regulator"]},
            "unknown token",
        ),
    ],
)
def test_authenticate_refuses(
    metadata: list[tuple[str, str]], auth_context: dict[str, list[bytes]] | None, reason: str
) -> None:
    store = TokenStore.from_json(json.dumps(TOKENS))
    with pytest.raises(UnauthenticatedError, match=reason):
        authenticate(store, metadata, auth_context)


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ("not json", "not valid JSON"),
        ("[" * 100_000, "not valid JSON"),
        ("[]", "expected an object"),
        ('{"t-0123456789abcdef": {"role": "viewer", "jurisdictions": ["*"]}}', "'name'"),
        (
            '{"t-0123456789abcdef": {"name": "x", "role": "god", "jurisdictions": ["*"]}}',
            "unknown role 'god'",
        ),
        (
            '{"t-0123456789abcdef": {"name": "x", "role": "viewer", "jurisdictions": "*"}}',
            "jurisdictions",
        ),
        (
            '{"t-0123456789abcdef": {"name": "x", "role": "viewer", "jurisdictions": []}}',
            "could see nothing",
        ),
    ],
)
def test_bad_tokens_file_is_named(doc: str, reason: str) -> None:
    with pytest.raises(TokensFileError, match=reason):
        TokenStore.from_json(doc)


def test_tokens_file_error_never_echoes_the_token() -> None:
    with pytest.raises(TokensFileError) as info:
        TokenStore.from_json('{"super-secret-token": {"name": "x", "role": "god"}}')
    assert "super-secret-token" not in str(info.value)


@pytest.mark.parametrize("token", ["", "x", "tok-viewer", "a" * (MIN_TOKEN_CHARS - 1)])
def test_short_tokens_refuse_the_file_at_load(token: str) -> None:
    doc = {token: {"name": "x", "role": "viewer", "jurisdictions": ["*"]}}
    with pytest.raises(TokensFileError, match="token") as info:
        TokenStore.from_json(json.dumps(doc))
    if token:
        assert f"at least {MIN_TOKEN_CHARS}" in str(info.value)
        assert token not in str(info.value)
    # Certificate names are identities checked by the TLS handshake, not secrets: no minimum.
    TokenStore.from_json(json.dumps({"cert:ab": doc[token]}))


NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def test_a_token_works_until_its_expiry() -> None:
    store = TokenStore.from_json(
        json.dumps(
            {
                "expiring-token-00001": {
                    "name": "temp",
                    "role": "viewer",
                    "jurisdictions": ["*"],
                    "expires": "2026-03-02T17:00:00+08:00",  # 09:00 UTC
                },
                "cert:auditor": {
                    "name": "auditor",
                    "role": "viewer",
                    "jurisdictions": ["*"],
                    "expires": "2026-03-01T00:00:00Z",
                },
            }
        )
    )
    md = [("authorization", "Bearer expiring-token-00001")]
    before = authenticate(store, md, None, now=NOW - timedelta(seconds=1))
    assert before.name == "temp" and before.expires == NOW
    with pytest.raises(UnauthenticatedError, match="expired"):
        authenticate(store, md, None, now=NOW)
    with pytest.raises(UnauthenticatedError, match="expired"):
        authenticate(store, [], {"x509_common_name": [b"auditor"]}, now=NOW)


@pytest.mark.parametrize(
    ("expires", "reason"),
    [
        ("2026-03-02T17:00:00", "time zone"),
        ("tomorrow", "ISO 8601"),
        (20260302, "ISO 8601"),
        ("9999-12-31T23:59:59-23:00", "out of range"),
        ("0001-01-01T00:00:00+01:00", "out of range"),
    ],
)
def test_bad_expiry_is_refused_at_load(expires: object, reason: str) -> None:
    doc = {"a-token-of-16-chars": {"name": "x", "role": "viewer", "jurisdictions": ["*"]}}
    doc["a-token-of-16-chars"]["expires"] = expires  # type: ignore[assignment]
    with pytest.raises(TokensFileError, match=reason):
        TokenStore.from_json(json.dumps(doc))


class Ticks:
    """The reloading store's own time source, advanced by hand."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _write(path: Path, doc: dict[str, object], stamp: int) -> None:
    path.write_text(json.dumps(doc))
    # Distinct modification times even on a coarse-grained file system.
    os.utime(path, ns=(stamp * 10**9, stamp * 10**9))


def test_edited_tokens_file_revokes_and_adds_without_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    alice = {"name": "alice", "role": "analyst", "jurisdictions": ["*"]}
    bob = {"name": "bob", "role": "viewer", "jurisdictions": ["*"]}
    _write(path, {"alice-token-0000001": alice}, 1)
    ticks = Ticks()
    store = ReloadingTokenStore(path, check_every_s=1.0, clock=ticks)

    def who(token: str) -> str:
        return authenticate(store, [("authorization", f"Bearer {token}")], None).name

    assert who("alice-token-0000001") == "alice"
    _write(path, {"bob-token-000000001": bob}, 2)
    ticks.t = 0.5  # not looked at again yet
    assert who("alice-token-0000001") == "alice"
    ticks.t = 1.5
    with pytest.raises(UnauthenticatedError, match="unknown token"):
        who("alice-token-0000001")
    assert who("bob-token-000000001") == "bob"

    # A file that turns bad is refused and the last good tokens stay (a typo must not lock every
    # supervisor out; a revocation waits for the fix, which the error says is needed)...
    _write(path, {"short": bob, "carol-token-0000001": bob}, 3)
    ticks.t = 3.0
    assert who("bob-token-000000001") == "bob"
    with pytest.raises(UnauthenticatedError, match="unknown token"):
        who("carol-token-0000001")
    assert "at least" in store.error
    # ...until it is fixed.
    _write(path, {"carol-token-0000001": bob}, 4)
    ticks.t = 4.5
    assert who("carol-token-0000001") == "bob" and store.error == ""
    with pytest.raises(UnauthenticatedError, match="unknown token"):
        who("bob-token-000000001")
    # Deleted (unreadable): the same, the last good file stays in force; an empty one revokes all.
    path.unlink()
    ticks.t = 6.0
    assert who("carol-token-0000001") == "bob" and "cannot read" in store.error
    _write(path, {}, 5)
    ticks.t = 7.5
    with pytest.raises(UnauthenticatedError, match="unknown token"):
        who("carol-token-0000001")


def test_missing_tokens_file_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(TokensFileError, match="cannot read tokens file"):
        ReloadingTokenStore(tmp_path / "absent.json")
