"""Who is calling: a per-institution bearer token, or the subject of a mutual-TLS certificate."""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import grpc

__all__ = ["Authenticator", "identity_from_auth_context"]


def identity_from_auth_context(auth_context: Mapping[str, Sequence[bytes]]) -> str | None:
    """Institution id from a verified client certificate: subject CN, else the first SAN.

    gRPC fills these keys only when the TLS handshake verified the certificate against the
    configured client CA, so their presence is the proof.
    """
    # An absent CN is reported as one empty value, so empty values are skipped, not final.
    for key in ("x509_common_name", "x509_subject_alternative_name"):
        for value in auth_context.get(key) or ():
            if value:
                return value.decode("utf-8", "replace")
    return None


class Authenticator:
    def __init__(self, tokens: Mapping[str, str]) -> None:
        self._tokens = [(t.encode(), inst) for t, inst in tokens.items()]

    def identity_from_token(self, token: str) -> str | None:
        presented = token.encode("utf-8", "replace")
        found: str | None = None
        # Compare against every token, without stopping at a match, so timing reveals nothing.
        for known, institution in self._tokens:
            if hmac.compare_digest(known, presented):
                found = institution
        return found

    def identify(
        self,
        metadata: Iterable[tuple[str, str | bytes]],
        auth_context: Mapping[str, Sequence[bytes]],
    ) -> str | None:
        """The caller's institution id, or ``None`` when it is not authenticated.

        A token, when sent, must be valid; when both a token and a certificate are presented
        they must name the same institution.
        """
        cert_identity = identity_from_auth_context(auth_context)
        header = None
        for key, value in metadata:
            if key == "authorization":
                header = value if isinstance(value, str) else value.decode("utf-8", "replace")
                break
        if header is None:
            return cert_identity
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        token_identity = self.identity_from_token(token.strip())
        if token_identity is None:
            return None
        if cert_identity is not None and cert_identity != token_identity:
            return None
        return token_identity

    async def authenticate(self, context: Any) -> str:
        """The institution id of the call, or abort it with ``UNAUTHENTICATED``."""
        identity = self.identify(context.invocation_metadata() or (), context.auth_context() or {})
        if identity is None:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "authenticate with 'authorization: Bearer <token>' or a client certificate",
            )
            raise AssertionError("unreachable: abort raises")
        return identity
