"""Who is calling: a per-institution bearer token, or the subject of a mutual-TLS certificate."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import grpc

from suptech.common.credentials import (
    MalformedAuthorization,
    TokenTable,
    bearer_token,
    certificate_identity,
)

__all__ = ["Authenticator"]


class Authenticator:
    def __init__(self, tokens: Mapping[str, str]) -> None:
        self._tokens = TokenTable(tokens)

    def identity_from_token(self, token: str) -> str | None:
        return self._tokens.find(token)

    def identify(
        self,
        metadata: Iterable[tuple[str, str | bytes]],
        auth_context: Mapping[str, Sequence[bytes]],
    ) -> str | None:
        """The caller's institution id, or ``None`` when it is not authenticated.

        A token, when sent, must be valid; when both a token and a certificate are presented
        they must name the same institution.
        """
        cert_identity = certificate_identity(auth_context)
        try:
            token = bearer_token(metadata)
        except MalformedAuthorization:
            return None
        if token is None:
            return cert_identity
        token_identity = self._tokens.find(token)
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
