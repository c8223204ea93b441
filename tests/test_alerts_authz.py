"""The alert service's permission matrix and credential handling, as plain functions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from suptech.alerts.authz import (
    PermissionDeniedError,
    Principal,
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
    "tok-viewer": {"name": "vera", "role": "viewer", "jurisdictions": ["*"]},
    "tok-analyst": {"name": "ana", "role": "analyst", "jurisdictions": ["bank-sz-01"]},
    "tok-inst": {"name": "bank-sz-01", "role": "institution", "jurisdictions": []},
    "tok-gateway": {"name": "bank-sz-02", "institution_id": "bank-sz-02"},
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
    ana = authenticate(store, [("authorization", "Bearer tok-analyst")], None)
    assert (ana.name, ana.role, ana.jurisdictions) == ("ana", Role.ANALYST, {"bank-sz-01"})
    console = authenticate(store, [], {"x509_common_name": [b"console.regulator"]})
    assert console.role is Role.SUPERVISOR and console.sees_all
    # A gateway (institution) credential authenticates but is refused every method.
    for token in ("tok-inst", "tok-gateway"):
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
        ("[]", "expected an object"),
        ('{"t": {"role": "viewer", "jurisdictions": ["*"]}}', "'name'"),
        ('{"t": {"name": "x", "role": "god", "jurisdictions": ["*"]}}', "unknown role 'god'"),
        ('{"t": {"name": "x", "role": "viewer", "jurisdictions": "*"}}', "jurisdictions"),
        ('{"t": {"name": "x", "role": "viewer", "jurisdictions": []}}', "could see nothing"),
    ],
)
def test_bad_tokens_file_is_named(doc: str, reason: str) -> None:
    with pytest.raises(TokensFileError, match=reason):
        TokenStore.from_json(doc)


def test_tokens_file_error_never_echoes_the_token() -> None:
    with pytest.raises(TokensFileError) as info:
        TokenStore.from_json('{"super-secret-token": {"name": "x", "role": "god"}}')
    assert "super-secret-token" not in str(info.value)
