"""Who is calling: a per-institution bearer token, or a registered mutual-TLS certificate."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import grpc

from suptech.common.credentials import (
    MalformedAuthorization,
    bearer_token,
    certificate_identity,
)
from suptech.gateway.registry import Credential, Registry

__all__ = ["AuthFailure", "Authenticator", "Caller", "RegistrySource"]

Metadata = Iterable[tuple[str, str | bytes]]
AuthContext = Mapping[str, Sequence[bytes]]


class RegistrySource(Protocol):
    """A :class:`Registry`, or a ``ReloadingFile`` of one: the registry as it is now."""

    def current(self) -> Registry: ...


class AuthFailure(Exception):
    """A refused caller: ``code`` is what it is told (UNAUTHENTICATED: who are you?;
    PERMISSION_DENIED: known, but not an institution)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _unauthenticated(message: str) -> AuthFailure:
    return AuthFailure(grpc.StatusCode.UNAUTHENTICATED, message)


def _unexpired(credential: Credential, what: str, now: datetime) -> Credential:
    if credential.expires is not None and now >= credential.expires:
        raise _unauthenticated(f"{what} expired at {credential.expires.isoformat()}")
    return credential


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else min(a, b)


class Authenticator:
    def __init__(self, registry: RegistrySource) -> None:
        self._registry = registry

    def registry(self) -> Registry:
        return self._registry.current()

    def identify(
        self,
        metadata: Metadata,
        auth_context: AuthContext,
        now: datetime | None = None,
        registry: Registry | None = None,
    ) -> Credential:
        """The caller's institution (and when its credentials end); raises :class:`AuthFailure`.

        A token, when sent, must be valid; a certificate must be registered, because the CA
        that signed it may also sign certificates that are not institutions'. When both are
        presented they must name the same institution.
        """
        registry = registry if registry is not None else self.registry()
        now = now if now is not None else datetime.now(UTC)
        try:
            token = bearer_token(metadata)
        except MalformedAuthorization as exc:
            raise _unauthenticated(str(exc)) from None
        by_token = None
        if token is not None:
            found = registry.by_token(token)
            if found is None:
                raise _unauthenticated("unknown token")
            by_token = _unexpired(found, "token", now)
        identity = certificate_identity(auth_context)
        if identity is None:
            if by_token is None:
                raise _unauthenticated(
                    "authenticate with 'authorization: Bearer <token>' or a client certificate"
                )
            return by_token
        by_cert = registry.by_certificate(identity)
        if by_cert is None:
            raise AuthFailure(
                grpc.StatusCode.PERMISSION_DENIED,
                f"client certificate {identity!r} is not a registered institution",
            )
        by_cert = _unexpired(by_cert, f"client certificate {identity!r}", now)
        if by_token is None:
            return by_cert
        if by_token.institution != by_cert.institution:
            raise _unauthenticated("the token and the client certificate name two institutions")
        return Credential(by_cert.institution, _earliest(by_token.expires, by_cert.expires))

    async def authenticate(self, context: Any) -> Caller:
        """The call's caller, or abort the call (UNAUTHENTICATED or PERMISSION_DENIED)."""
        caller = Caller(self, tuple(context.invocation_metadata() or ()), context.auth_context())
        failure = caller.refusal()
        if failure is not None:
            await context.abort(failure.code, failure.message)
            raise AssertionError("unreachable: abort raises")
        return caller


@dataclass
class Caller:
    """One stream's caller, checked again on each batch: a stream lives for hours, and a token
    revoked or expired meanwhile must stop writing, not only new streams."""

    auth: Authenticator
    metadata: tuple[tuple[str, str | bytes], ...]
    auth_context: AuthContext | None
    institution: str = ""
    _registry: Registry | None = None
    _expires: datetime | None = None

    def refusal(self) -> AuthFailure | None:
        """None while the credentials hold; else why not. Cheap when nothing changed: the
        lookup runs again only after the registry was reloaded or an expiry passed."""
        registry = self.auth.registry()
        now = datetime.now(UTC)
        if registry is self._registry and (self._expires is None or now < self._expires):
            return None
        try:
            credential = self.auth.identify(self.metadata, self.auth_context or {}, now, registry)
        except AuthFailure as failure:
            return failure
        if self.institution and credential.institution != self.institution:
            return _unauthenticated("the credentials now name another institution: reconnect")
        self.institution = credential.institution
        self._registry, self._expires = registry, credential.expires
        return None
