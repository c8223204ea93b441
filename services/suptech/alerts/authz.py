"""Who may call the alert service, and what they may see.

Regulator staff authenticate with a bearer token or a client certificate (mutual TLS); both are
looked up in one tokens file (``ALERTS_TOKENS_FILE``)::

    {
      "k7Qm...at-least-16-chars": {"name": "li.wei", "role": "analyst",
                                   "jurisdictions": ["bank-sz-01"],
                                   "expires": "2026-06-30T00:00:00+08:00"},
      "cert:console.regulator.example": {"name": "console", "role": "viewer",
                                         "jurisdictions": ["*"]}
    }

Tokens are at least 16 characters (a shorter one refuses the whole file at load). ``expires``
(ISO 8601 with a time zone, optional) ends a credential at that instant. The service re-reads the
file when it changes (:class:`ReloadingTokenStore`), so a token removed or expired stops working
within ``ALERTS_TOKENS_RELOAD_S`` without a restart, open StreamAlerts included. A file that turns
unreadable or malformed is logged and refused: the last good one stays in force until it is fixed.

Roles are ordered ``viewer < analyst < supervisor < admin``. An institution credential (role
``institution``, or an entry naming an ``institution_id``) authenticates but may do nothing here:
institutions must never read the regulator's alerts about them. ``jurisdictions`` scopes which
institutions a principal sees; a partner regulator lists only the institutions shared with it.
"""

from __future__ import annotations

import contextvars
import enum
import hashlib
import inspect
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import grpc

from suptech.common.credentials import (
    CERT_PREFIX,
    MalformedAuthorization,
    ReloadingFile,
    TokenTable,
    bearer_token,
    certificate_identity,
    parse_expiry,
)

__all__ = [
    "ALERT_SERVICE",
    "AuthError",
    "AuthInterceptor",
    "Credentials",
    "MIN_TOKEN_CHARS",
    "Permission",
    "PermissionDeniedError",
    "Principal",
    "ReloadingTokenStore",
    "Role",
    "TokenStore",
    "TokensFileError",
    "UnauthenticatedError",
    "authenticate",
    "authorize",
    "can_see",
    "current_principal",
    "method_permission",
    "recheck",
]

log = logging.getLogger(__name__)

ALERT_SERVICE = "suptech.v1.AlertService"
ALL_JURISDICTIONS = "*"
# As the gateway requires: a short token can be guessed.
MIN_TOKEN_CHARS = 16


class Role(enum.IntEnum):
    """Staff roles; a higher role holds every permission of the lower ones."""

    INSTITUTION = 0
    VIEWER = 1
    ANALYST = 2
    SUPERVISOR = 3
    ADMIN = 4


class Permission(enum.Enum):
    READ = "read"
    TRIAGE = "triage"
    DECIDE = "decide"
    ADMINISTER = "administer"


# The least role holding each permission.
_PERMISSION_ROLE: dict[Permission, Role] = {
    Permission.READ: Role.VIEWER,
    Permission.TRIAGE: Role.ANALYST,
    Permission.DECIDE: Role.SUPERVISOR,
    Permission.ADMINISTER: Role.ADMIN,
}

_METHOD_PERMISSION: dict[str, Permission] = {
    "ListAlerts": Permission.READ,
    "GetAlert": Permission.READ,
    "StreamAlerts": Permission.READ,
    "ListAuditEntries": Permission.READ,
    "ListSilences": Permission.READ,
    "ListSandboxTests": Permission.READ,
    "ListEntityScores": Permission.READ,
    "Acknowledge": Permission.TRIAGE,
    "Assign": Permission.TRIAGE,
    "Resolve": Permission.DECIDE,
    "CreateSilence": Permission.DECIDE,
    "ExpireSilence": Permission.DECIDE,
}


class AuthError(Exception):
    """A refused call; ``code`` is the gRPC status the caller receives."""

    code = grpc.StatusCode.PERMISSION_DENIED


class UnauthenticatedError(AuthError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDeniedError(AuthError):
    code = grpc.StatusCode.PERMISSION_DENIED


class TokensFileError(ValueError):
    """The tokens file is unreadable or malformed; the message names the entry at fault."""


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role
    jurisdictions: frozenset[str]
    # The credential stops working at this instant (aware UTC); None: until removed from the file.
    expires: datetime | None = None

    @property
    def sees_all(self) -> bool:
        return ALL_JURISDICTIONS in self.jurisdictions


current_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "suptech_alerts_current_principal", default=None
)
"""The caller of the gRPC method being served, set by :class:`AuthInterceptor`."""

_recheck: contextvars.ContextVar[Callable[[], Principal] | None] = contextvars.ContextVar(
    "suptech_alerts_recheck", default=None
)


def recheck() -> Principal | None:
    """Authenticate the current call's credentials again, against the tokens file as it is now.

    For long calls (StreamAlerts): raises :class:`AuthError` once the credential was revoked or
    has expired. None when the service runs without authentication.
    """
    check = _recheck.get()
    return None if check is None else check()


class Credentials(Protocol):
    """What :func:`authenticate` looks credentials up in."""

    def by_token(self, token: str) -> Principal | None: ...

    def by_certificate(self, common_name: str) -> Principal | None: ...


class TokenStore:
    """Credentials by token and by certificate common name.

    Tokens are kept only as SHA-256 digests and compared in constant time against every entry, so
    neither a dict lookup's timing nor a memory dump gives a token away.
    """

    def __init__(self, entries: Mapping[str, Principal]) -> None:
        self._certs: dict[str, Principal] = {}
        tokens: dict[str, Principal] = {}
        for key, principal in entries.items():
            if key.startswith(CERT_PREFIX):
                self._certs[key[len(CERT_PREFIX) :]] = principal
            else:
                tokens[key] = principal
        self._tokens = TokenTable(tokens)

    @classmethod
    def from_json(cls, raw: str | bytes, source: str = "tokens file") -> TokenStore:
        try:
            doc = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise TokensFileError(f"{source}: not valid JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise TokensFileError(f"{source}: expected an object of token -> entry")
        return cls({key: _parse_entry(source, key, value) for key, value in doc.items()})

    @classmethod
    def from_file(cls, path: str | Path) -> TokenStore:
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise TokensFileError(f"cannot read tokens file {path}: {exc}") from None
        return cls.from_json(raw, str(path))

    def by_token(self, token: str) -> Principal | None:
        return self._tokens.find(token)

    def by_certificate(self, common_name: str) -> Principal | None:
        return self._certs.get(common_name)


class ReloadingTokenStore:
    """A :class:`TokenStore` read from a file and read again whenever the file changes.

    The file is looked at (one ``stat``) at most every ``check_every_s`` seconds, on the calls
    that need it (:class:`suptech.common.credentials.ReloadingFile`, as the gateway's registry).
    The first load raises :class:`TokensFileError`; a later bad or unreadable file is logged once
    and the last good tokens stay in force (their expiries included) until a good file replaces
    it: a typo must not lock every supervisor out. :attr:`error` says what is wrong meanwhile.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        check_every_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self._file = ReloadingFile(
            self.path,
            TokenStore.from_file,
            check_every_s=check_every_s,
            errors=(TokensFileError,),
            clock=clock,
        )

    @property
    def error(self) -> str:
        return self._file.error

    def current(self) -> TokenStore:
        return self._file.current()

    def by_token(self, token: str) -> Principal | None:
        return self.current().by_token(token)

    def by_certificate(self, common_name: str) -> Principal | None:
        return self.current().by_certificate(common_name)


def _parse_entry(source: str, key: str, value: Any) -> Principal:
    label = (
        key
        if key.startswith(CERT_PREFIX)
        else f"token #{hashlib.sha256(key.encode()).hexdigest()[:8]}"
    )
    where = f"{source}: entry {label}"
    if not key:
        raise TokensFileError(f"{source}: empty token")
    if not key.startswith(CERT_PREFIX) and len(key) < MIN_TOKEN_CHARS:
        raise TokensFileError(
            f"{where}: token is {len(key)} characters, at least {MIN_TOKEN_CHARS} are required"
        )
    if not isinstance(value, dict):
        raise TokensFileError(f"{where}: expected an object")
    name = value.get("name")
    if not isinstance(name, str) or not name:
        raise TokensFileError(f"{where}: 'name' must be a non-empty string")
    expires = _parse_expiry(where, value.get("expires"))
    if "institution_id" in value:
        # A gateway credential copied here by mistake still identifies an institution.
        return Principal(name, Role.INSTITUTION, frozenset(), expires)
    role_name = value.get("role")
    try:
        role = Role[str(role_name).upper()]
    except KeyError:
        known = ", ".join(r.name.lower() for r in Role)
        raise TokensFileError(f"{where}: unknown role {role_name!r} (one of {known})") from None
    jurisdictions = value.get("jurisdictions", [])
    if not isinstance(jurisdictions, list) or not all(
        isinstance(j, str) and j for j in jurisdictions
    ):
        raise TokensFileError(f"{where}: 'jurisdictions' must be a list of institution ids or '*'")
    if role is not Role.INSTITUTION and not jurisdictions:
        raise TokensFileError(f"{where}: 'jurisdictions' is empty, the principal could see nothing")
    return Principal(name, role, frozenset(jurisdictions), expires)


def _parse_expiry(where: str, raw: Any) -> datetime | None:
    try:
        return parse_expiry(raw)
    except ValueError as exc:
        raise TokensFileError(f"{where}: {exc}") from None


def authenticate(
    tokens: Credentials,
    invocation_metadata: Iterable[tuple[str, str | bytes]] | None,
    auth_context: Mapping[str, Sequence[bytes]] | None,
    now: datetime | None = None,
) -> Principal:
    """Identify the caller from ``authorization: Bearer <token>`` or its TLS client certificate.

    A presented token decides: a wrong token is refused even over a trusted certificate, so a
    misconfigured client fails loudly instead of acting under another identity.
    """
    try:
        token = bearer_token(invocation_metadata)
    except MalformedAuthorization as exc:
        raise UnauthenticatedError(str(exc)) from None
    if token is not None:
        principal = tokens.by_token(token)
        if principal is None:
            raise UnauthenticatedError("unknown token")
        return _unexpired(principal, "token", now)
    name = certificate_identity(auth_context)
    if name is not None:
        principal = tokens.by_certificate(name)
        if principal is None:
            raise UnauthenticatedError(f"client certificate {name!r} is not registered")
        return _unexpired(principal, f"client certificate {name!r}", now)
    raise UnauthenticatedError(
        "no credentials: send 'authorization: Bearer <token>' or a certificate"
    )


def _unexpired(principal: Principal, what: str, now: datetime | None) -> Principal:
    if principal.expires is not None and (now or datetime.now(UTC)) >= principal.expires:
        raise UnauthenticatedError(f"{what} expired at {principal.expires.isoformat()}")
    return principal


def _short_method(method_name: str) -> str:
    # Accepts "/suptech.v1.AlertService/Acknowledge" as well as "Acknowledge".
    return method_name.rsplit("/", 1)[-1]


def method_permission(method_name: str) -> Permission:
    """The permission a method needs; a method not in the matrix needs the admin role."""
    return _METHOD_PERMISSION.get(_short_method(method_name), Permission.ADMINISTER)


def authorize(principal: Principal, method_name: str) -> None:
    """Raise :class:`PermissionDeniedError` unless ``principal`` may call ``method_name``."""
    if principal.role is Role.INSTITUTION:
        raise PermissionDeniedError(f"{principal.name}: institution credentials have no access")
    needed = _PERMISSION_ROLE[method_permission(method_name)]
    if principal.role < needed:
        raise PermissionDeniedError(
            f"{principal.name} ({principal.role.name.lower()}) may not call "
            f"{_short_method(method_name)}: needs {needed.name.lower()}"
        )


def can_see(principal: Principal, institution_id: str) -> bool:
    """Whether the alerts of ``institution_id`` are within the principal's jurisdiction."""
    if principal.role is Role.INSTITUTION:
        return False
    return principal.sees_all or institution_id in principal.jurisdictions


Behavior = Callable[..., Any]


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Authenticates and authorizes every AlertService call; health and reflection stay open.

    The principal is published in :data:`current_principal` for the servicer, which uses it for
    jurisdiction scoping and for the audit trail.
    """

    def __init__(self, tokens: Credentials, service: str = ALERT_SERVICE) -> None:
        self._tokens = tokens
        self._prefix = f"/{service}/"

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or not method.startswith(self._prefix):
            return handler
        return _wrap_handler(handler, self._tokens, method)


def _check(tokens: Credentials, method: str, context: grpc.aio.ServicerContext) -> Principal:
    metadata = tuple(context.invocation_metadata() or ())
    auth_context = dict(context.auth_context() or {})

    def check() -> Principal:
        principal = authenticate(tokens, metadata, auth_context)
        authorize(principal, method)
        return principal

    principal = check()
    _recheck.set(check)
    return principal


def _wrap_handler(
    handler: grpc.RpcMethodHandler, tokens: Credentials, method: str
) -> grpc.RpcMethodHandler:
    def unary_response(behavior: Behavior) -> Behavior:
        async def wrapped(request_or_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                principal = _check(tokens, method, context)
            except AuthError as exc:
                await context.abort(exc.code, str(exc))
            current_principal.set(principal)
            return await behavior(request_or_iterator, context)

        return wrapped

    def stream_response(behavior: Behavior) -> Behavior:
        if inspect.isasyncgenfunction(behavior):

            async def wrapped_gen(
                request_or_iterator: Any, context: grpc.aio.ServicerContext
            ) -> AsyncIterator[Any]:
                try:
                    principal = _check(tokens, method, context)
                except AuthError as exc:
                    await context.abort(exc.code, str(exc))
                current_principal.set(principal)
                async for item in behavior(request_or_iterator, context):
                    yield item

            return wrapped_gen
        # A streaming handler written with ``await context.write(...)`` instead of yield.
        return unary_response(behavior)

    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(unary_response(handler.unary_unary), **kwargs)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(stream_response(handler.unary_stream), **kwargs)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(unary_response(handler.stream_unary), **kwargs)
    return grpc.stream_stream_rpc_method_handler(stream_response(handler.stream_stream), **kwargs)
