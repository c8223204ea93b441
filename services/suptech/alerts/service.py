"""The gRPC AlertService: supervisors list, read, follow and triage alerts.

Authentication and authorization happen in :class:`suptech.alerts.authz.AuthInterceptor`, which
publishes the caller in ``current_principal``; here the principal scopes what is visible and names
who acted in the audit log. Store calls are blocking and run in worker threads.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC
from typing import Any, NoReturn, TypeVar

import grpc
from opentelemetry import trace

from suptech.alerts import audit, authz
from suptech.alerts.sandbox_register import SandboxRegister
from suptech.alerts.scores import EntityKey, ScoreHistory
from suptech.alerts.store import (
    ALL,
    AlertFilter,
    AlertStore,
    InvalidRequestError,
    InvalidTransitionError,
    NotFoundError,
    OutOfScopeError,
    Scope,
    StoreError,
    VersionConflictError,
)
from suptech.common.otel import context_from_traceparent, setup_telemetry
from suptech.v1 import alerts_pb2, alerts_pb2_grpc, findings_pb2

__all__ = ["AlertServicer", "DEV_PRINCIPAL", "STATUS_OF"]

T = TypeVar("T")

# With ALERTS_INSECURE_DEV and no tokens file (local development, loopback only) every caller
# acts as this principal.
DEV_PRINCIPAL = authz.Principal("dev", authz.Role.ADMIN, frozenset({"*"}))

STATUS_OF: dict[type[StoreError], grpc.StatusCode] = {
    NotFoundError: grpc.StatusCode.NOT_FOUND,
    VersionConflictError: grpc.StatusCode.ABORTED,
    InvalidTransitionError: grpc.StatusCode.FAILED_PRECONDITION,
    InvalidRequestError: grpc.StatusCode.INVALID_ARGUMENT,
    OutOfScopeError: grpc.StatusCode.PERMISSION_DENIED,
}


def _principal() -> authz.Principal:
    return authz.current_principal.get() or DEV_PRINCIPAL


def _scope(p: authz.Principal) -> Scope:
    return ALL if p.sees_all else Scope(frozenset(p.jurisdictions))


def _role(p: authz.Principal) -> str:
    return p.role.name.lower()


async def _abort(context: grpc.aio.ServicerContext, code: grpc.StatusCode, msg: str) -> NoReturn:
    await context.abort(code, msg)
    raise AssertionError("abort returned")


class AlertServicer(alerts_pb2_grpc.AlertServiceServicer):  # type: ignore[misc]
    # Called with each alert change sent on a stream and the time the stream opened (metrics).
    on_streamed: Callable[[alerts_pb2.Alert, float], None] | None = None

    def __init__(
        self,
        store: AlertStore,
        *,
        stream_poll_s: float = 0.5,
        register: SandboxRegister | None = None,
        scores: ScoreHistory | None = None,
    ) -> None:
        self._store = store
        self._poll_s = stream_poll_s
        self._register = register
        self._scores = scores
        self._tracer = setup_telemetry("alerts")[0]

    async def _call(
        self, context: grpc.aio.ServicerContext, fn: Callable[..., T], *args: Any, **kw: Any
    ) -> T:
        try:
            return await asyncio.to_thread(fn, *args, **kw)
        except StoreError as exc:
            await _abort(context, STATUS_OF[type(exc)], str(exc))

    async def ListAlerts(
        self, request: alerts_pb2.ListAlertsRequest, context: grpc.aio.ServicerContext
    ) -> alerts_pb2.ListAlertsResponse:
        if request.family not in findings_pb2.Family.values():
            await _abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, f"unknown family {request.family}"
            )
        if request.min_grade not in findings_pb2.Grade.values():
            await _abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, f"unknown grade {request.min_grade}"
            )
        if request.state not in alerts_pb2.AlertState.values():
            await _abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, f"unknown state {request.state}"
            )
        since = request.since.ToDatetime(tzinfo=UTC) if request.HasField("since") else None
        until = request.until.ToDatetime(tzinfo=UTC) if request.HasField("until") else None
        if since is not None and until is not None and since >= until:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "since must be before until")
        flt = AlertFilter(
            family=request.family,
            min_grade=request.min_grade,
            institution_id=request.institution_id,
            state=request.state,
            since=since,
            until=until,
        )
        # Read before the page: a stream from here misses no change the page does not show.
        head = await self._call(context, self._store.head_cursor)
        alerts, token = await self._call(
            context,
            self._store.list_alerts,
            flt,
            request.page_size,
            request.page_token,
            _scope(_principal()),
        )
        return alerts_pb2.ListAlertsResponse(
            alerts=alerts, next_page_token=token, stream_cursor=str(head)
        )

    async def GetAlert(
        self, request: alerts_pb2.GetAlertRequest, context: grpc.aio.ServicerContext
    ) -> alerts_pb2.GetAlertResponse:
        await _require_id(context, request.alert_id)
        alert = await self._call(
            context, self._store.get_alert, request.alert_id, _scope(_principal())
        )
        return alerts_pb2.GetAlertResponse(alert=alert)

    async def ListAuditEntries(
        self, request: alerts_pb2.ListAuditEntriesRequest, context: grpc.aio.ServicerContext
    ) -> alerts_pb2.ListAuditEntriesResponse:
        await _require_id(context, request.alert_id)
        entries = await self._call(
            context, self._store.audit_trail, request.alert_id, _scope(_principal())
        )
        return alerts_pb2.ListAuditEntriesResponse(entries=[_audit_proto(e) for e in entries])

    async def StreamAlerts(
        self, request: alerts_pb2.StreamAlertsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[alerts_pb2.AlertEvent]:
        raw = request.cursor.strip()
        if raw == "":
            cursor = await asyncio.to_thread(self._store.head_cursor)
        elif raw.isdigit() and len(raw) <= 19:
            cursor = int(raw)
        else:
            await _abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"cursor {request.cursor[:40]!r} is not one StreamAlerts sent ('' or '0' to start)",
            )
        principal = _principal()
        scope = _scope(principal)
        opened_at = time.time()
        ready = self._store.changes.subscribe()
        try:
            while True:
                # A stream outlives its first check: a credential revoked in the tokens file or
                # expired since ends it within one poll period.
                try:
                    again = authz.recheck()
                except authz.AuthError as exc:
                    await _abort(context, exc.code, f"{exc}: stream closed")
                if again is not None and again != principal:
                    await _abort(
                        context,
                        grpc.StatusCode.UNAUTHENTICATED,
                        "credentials changed since the stream opened: reconnect",
                    )
                # Cleared before the read: a commit after it sets ``ready`` again (no lost wake-up).
                ready.clear()
                events, reached = await asyncio.to_thread(
                    self._store.events_after, cursor, 500, scope
                )
                for event_id, kind, snapshot, tp in events:
                    alert = alerts_pb2.Alert.FromString(snapshot)
                    span = self._stream_span(event_id, kind, alert, tp)
                    try:
                        yield alerts_pb2.AlertEvent(
                            cursor=str(event_id),
                            kind=kind,  # type: ignore[arg-type]
                            alert=alert,
                        )
                    finally:
                        if span is not None:
                            span.end()
                    if self.on_streamed is not None:
                        self.on_streamed(alert, opened_at)
                if reached == cursor:
                    # Woken by this process's writers; the timeout catches other replicas' events.
                    try:
                        await asyncio.wait_for(ready.wait(), self._poll_s)
                    except TimeoutError:
                        pass
                cursor = reached
        finally:
            self._store.changes.unsubscribe(ready)

    def _stream_span(
        self, event_id: int, kind: int, alert: alerts_pb2.Alert, tp: str | None
    ) -> trace.Span | None:
        """A span for sending one alert change on this stream, in the trace of the finding that
        caused it (child of that finding's store span, read back from the change log, so any
        replica, after any restart, continues it). None for a change with no trace: triage,
        escalation and findings that came untraced cost no span.

        Not made current: the generator is suspended between sends, and a context attached
        across a ``yield`` would leak into the gRPC loop.
        """
        if not tp:
            return None
        return self._tracer.start_span(
            "suptech.alerts.stream",
            context=context_from_traceparent(tp),
            kind=trace.SpanKind.PRODUCER,
            attributes={
                "rpc.system": "grpc",
                "rpc.service": "suptech.v1.AlertService",
                "rpc.method": "StreamAlerts",
                "suptech.alert_id": alert.alert_id,
                "suptech.institution_id": alert.institution_id,
                "suptech.alert_event.cursor": str(event_id),
                "suptech.alert_event.kind": alerts_pb2.AlertEventKind.Name(kind),
            },
        )

    async def Acknowledge(
        self, request: alerts_pb2.AcknowledgeRequest, context: grpc.aio.ServicerContext
    ) -> alerts_pb2.AlertResponse:
        await _require_id(context, request.alert_id)
        p = _principal()
        alert = await self._call(
            context,
            self._store.acknowledge,
            request.alert_id,
            request.expected_version,
            actor=p.name,
            role=_role(p),
            note=request.note,
            scope=_scope(p),
        )
        return alerts_pb2.AlertResponse(alert=alert)

    async def Assign(
        self, request: alerts_pb2.AssignRequest, context: grpc.aio.ServicerContext
    ) -> alerts_pb2.AlertResponse:
        await _require_id(context, request.alert_id)
        p = _principal()
        alert = await self._call(
            context,
            self._store.assign,
            request.alert_id,
            request.expected_version,
            actor=p.name,
            role=_role(p),
            assignee=request.assignee,
            scope=_scope(p),
        )
        return alerts_pb2.AlertResponse(alert=alert)

    async def Resolve(
        self, request: alerts_pb2.ResolveRequest, context: grpc.aio.ServicerContext
    ) -> alerts_pb2.AlertResponse:
        await _require_id(context, request.alert_id)
        p = _principal()
        alert = await self._call(
            context,
            self._store.resolve,
            request.alert_id,
            request.expected_version,
            actor=p.name,
            role=_role(p),
            verdict=request.verdict,
            note=request.note,
            scope=_scope(p),
        )
        return alerts_pb2.AlertResponse(alert=alert)

    async def CreateSilence(
        self, request: alerts_pb2.CreateSilenceRequest, context: grpc.aio.ServicerContext
    ) -> alerts_pb2.CreateSilenceResponse:
        p = _principal()
        if not request.HasField("ends_at"):
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "ends_at is required")
        if not p.sees_all:
            # A silence is global: a principal scoped to some institutions could mute others'.
            for m in request.matchers:
                if m.name == "institution_id" and m.value in p.jurisdictions:
                    break
            else:
                await _abort(
                    context,
                    grpc.StatusCode.PERMISSION_DENIED,
                    "a scoped principal must match an institution_id within its jurisdiction",
                )
        silence = await self._call(
            context,
            self._store.create_silence,
            [(m.name, m.value) for m in request.matchers],
            request.ends_at.ToDatetime(tzinfo=UTC),
            comment=request.comment,
            actor=p.name,
            role=_role(p),
        )
        return alerts_pb2.CreateSilenceResponse(silence=silence)

    async def ExpireSilence(
        self, request: alerts_pb2.ExpireSilenceRequest, context: grpc.aio.ServicerContext
    ) -> alerts_pb2.ExpireSilenceResponse:
        if not request.silence_id:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "silence_id is required")
        p = _principal()
        silence = await self._call(
            context,
            self._store.expire_silence,
            request.silence_id,
            actor=p.name,
            role=_role(p),
            scope=_scope(p),
        )
        return alerts_pb2.ExpireSilenceResponse(silence=silence)

    async def ListSilences(
        self, request: alerts_pb2.ListSilencesRequest, context: grpc.aio.ServicerContext
    ) -> alerts_pb2.ListSilencesResponse:
        p = _principal()
        silences = await self._call(
            context,
            self._store.list_silences,
            request.include_expired,
            request.page_size,
            _scope(p),
        )
        if not _may(p, "ExpireSilence"):
            for sil in silences:
                sil.caller_may_expire = False
        return alerts_pb2.ListSilencesResponse(silences=silences)

    async def ListSandboxTests(
        self, request: alerts_pb2.ListSandboxTestsRequest, context: grpc.aio.ServicerContext
    ) -> alerts_pb2.ListSandboxTestsResponse:
        register = self._register
        if register is None:
            await _abort(
                context, grpc.StatusCode.UNAVAILABLE, "this service does not read the register"
            )
        tests = register.tests.visible(_scope(_principal()), request.institution_id)
        return alerts_pb2.ListSandboxTestsResponse(tests=tests, complete=register.complete)

    async def ListEntityScores(
        self, request: alerts_pb2.ListEntityScoresRequest, context: grpc.aio.ServicerContext
    ) -> alerts_pb2.ListEntityScoresResponse:
        key = EntityKey(request.institution_id, request.entity_kind, request.entity_id)
        for name, value in zip(key._fields, key, strict=True):
            if not value or len(value) > 256:
                await _abort(
                    context, grpc.StatusCode.INVALID_ARGUMENT, f"{name} is required (<= 256)"
                )
        lo = request.from_time.ToNanoseconds() if request.HasField("from_time") else None
        hi = request.to_time.ToNanoseconds() if request.HasField("to_time") else None
        if lo is not None and hi is not None and lo >= hi:
            await _abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, "from_time must be before to_time"
            )
        if request.limit > MAX_SCORES:
            await _abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, f"limit is at most {MAX_SCORES}"
            )
        # Out of jurisdiction answers as an entity with no scores: nothing says it exists.
        if self._scores is None or not _scope(_principal()).allows(key.institution_id):
            return alerts_pb2.ListEntityScoresResponse()
        # Decoding a full entity's 2000 takes ~15 ms: off the event loop.
        chosen, truncated = await asyncio.to_thread(
            self._scores.query, key, lo, hi, request.limit or DEFAULT_SCORES
        )
        return alerts_pb2.ListEntityScoresResponse(scores=chosen, truncated=truncated)


# ListEntityScores: a page when the caller sets no limit, and the most it may ask for.
DEFAULT_SCORES = 500
MAX_SCORES = 2000


def _may(p: authz.Principal, method: str) -> bool:
    """Whether the interceptor would let ``p`` call ``method``: what a client may offer."""
    try:
        authz.authorize(p, method)
    except authz.AuthError:
        return False
    return True


def _audit_proto(e: audit.AuditEntry) -> alerts_pb2.AuditEntry:
    out = alerts_pb2.AuditEntry(
        entry_id=e.id,
        actor=e.actor,
        role=e.role,
        action=e.action,
        alert_id=e.alert_id or "",
        hash=e.hash,
    )
    out.time.FromDatetime(e.ts)
    out.details.update(e.details)
    return out


async def _require_id(context: grpc.aio.ServicerContext, alert_id: str) -> None:
    if not alert_id:
        await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "alert_id is required")
    if len(alert_id) > 64:
        await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "alert_id is too long")
