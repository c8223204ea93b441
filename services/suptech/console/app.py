"""The console's HTTP side (aiohttp): pages, the live event stream and triage forms.

Every read and every action is a call to the alert service with the signed-in supervisor's own
token, so the service's authorisation, jurisdictions and audit log apply unchanged; the console
holds no credential of its own and no path to the database.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import grpc
from aiohttp import web

from suptech.console import i18n, views
from suptech.console.client import AlertsClient, entity_scores, metadata, open_channel
from suptech.console.config import ConsoleConfig
from suptech.console.sessions import Session, Sessions
from suptech.v1 import alerts_pb2

__all__ = ["build_app", "Console"]

log = logging.getLogger(__name__)

COOKIE = "suptech_console"
STATIC = Path(__file__).parent / "static"
CLIENT: web.AppKey[AlertsClient] = web.AppKey("client", AlertsClient)
SESSIONS: web.AppKey[Sessions] = web.AppKey("sessions", Sessions)
CONFIG: web.AppKey[ConsoleConfig] = web.AppKey("config", ConsoleConfig)
STREAMS: web.AppKey[set[Any]] = web.AppKey("streams")
Handler = Callable[[web.Request, Session], Awaitable[web.StreamResponse]]
HTTP_OF = {
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.UNAVAILABLE: 503,
}


def _view(s: Session) -> views.View:
    return views.View(s.lang, s.tz, s.access.triage, s.access.decide, s.csrf)


def _html(body: str, status: int = 200) -> web.Response:
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")


def signed_in(handler: Handler, *, post: bool = False) -> Callable[..., Any]:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        s = request.app[SESSIONS].get(request.cookies.get(COOKIE))
        if s is None:
            if post:
                raise web.HTTPUnauthorized(text="sign in first")
            raise web.HTTPSeeOther("/login")
        if post:
            form = await request.post()
            if not secrets.compare_digest(str(form.get("csrf", "")), s.csrf):
                return _html(views.error_page(_view(s), 403, "bad form token"), 403)
        try:
            return await handler(request, s)
        except grpc.aio.AioRpcError as exc:
            status = HTTP_OF.get(exc.code(), 502)
            msg = _view(s).t("refused") if status == 403 else f"{exc.code().name}: {exc.details()}"
            return _html(views.error_page(_view(s), status, msg), status)

    return wrapped


async def login_form(request: web.Request) -> web.Response:
    cfg = request.app[CONFIG]
    return _html(views.login_page(views.View(cfg.language, cfg.time_zone, signed_in=False)))


async def login(request: web.Request) -> web.Response:
    cfg = request.app[CONFIG]
    form = await request.post()
    token = str(form.get("token", "")).strip()
    lang = "en" if form.get("lang") == "en" else "zh"
    tz = str(form.get("tz", "")).strip() or cfg.time_zone
    v = views.View(lang, cfg.time_zone, signed_in=False)
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, IsADirectoryError):
        return _html(views.login_page(v, f"{v.t('time_zone')}: {tz}"), 400)
    if not token:
        # Never a call without the supervisor's token: over mutual TLS the service would take
        # the console's own certificate as the caller.
        return _html(views.login_page(v, v.t("bad_token")), 401)
    try:
        access = await request.app[CLIENT].access(token)
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.UNAVAILABLE:
            return _html(views.login_page(v, _unavailable(cfg, v, exc)), 503)
        return _html(views.login_page(v, v.t("bad_token")), 401)
    if not access.read:
        return _html(views.login_page(v, v.t("no_access")), 403)
    sid = request.app[SESSIONS].create(Session(token, access, lang, tz))
    resp = web.HTTPSeeOther("/")
    resp.set_cookie(COOKIE, sid, httponly=True, samesite="Strict", path="/")
    raise resp


# What gRPC's details say when the TLS handshake, not the network, failed. With TLS 1.3 a
# server that refuses the client's certificate (or its absence) just closes the socket after
# the handshake: the client sees "Socket closed", where a service that is down is "refused".
_TLS_MARKS = ("ssl", "tls", "handshake", "certificate", "socket closed")


def _unavailable(cfg: ConsoleConfig, v: views.View, exc: grpc.aio.AioRpcError) -> str:
    """The sign-in page's line for an unreachable service, and one log line with gRPC's own
    reason: a refused certificate reads differently from a service that is down."""
    details = exc.details() or ""
    tls = bool(cfg.alerts_ca) and any(m in details.lower() for m in _TLS_MARKS)
    log.warning(
        "sign-in: alert service at %s (%s) unavailable: %s",
        cfg.alerts_addr,
        _tls_mode(cfg),
        details,
    )
    if not tls:
        return v.t("unreachable")
    return v.t("tls_refused") + ("" if cfg.alerts_client_cert else " " + v.t("no_client_cert"))


def _tls_mode(cfg: ConsoleConfig) -> str:
    if not cfg.alerts_ca:
        return "plaintext"
    return "mutual TLS" if cfg.alerts_client_cert else "TLS, no client certificate"


async def logout(request: web.Request, s: Session) -> web.Response:
    request.app[SESSIONS].drop(request.cookies.get(COOKIE))
    resp = web.HTTPSeeOther("/login")
    resp.del_cookie(COOKIE, path="/")
    raise resp


def _filters(q: Any) -> dict[str, Any]:
    def num(name: str) -> int:
        raw = str(q.get(name, "0"))
        return int(raw) if raw.isdigit() else 0

    return {
        "family": num("family"),
        "grade": num("grade"),
        "state": num("state"),
        "institution": str(q.get("institution", "")).strip(),
        "hours": num("hours"),
    }


def _list_request(flt: dict[str, Any]) -> alerts_pb2.ListAlertsRequest:
    req = alerts_pb2.ListAlertsRequest(
        family=flt["family"],
        min_grade=flt["grade"],
        state=flt["state"],
        institution_id=flt["institution"],
        page_size=500,
    )
    if flt["hours"]:
        req.since.FromDatetime(datetime.now(UTC) - timedelta(hours=flt["hours"]))
    return req


def _matches(a: alerts_pb2.Alert, flt: dict[str, Any]) -> bool:
    if flt["family"] and a.family != flt["family"]:
        return False
    if flt["grade"] and a.grade < flt["grade"]:
        return False
    if flt["state"] and a.state != flt["state"]:
        return False
    if flt["institution"] and a.institution_id != flt["institution"]:
        return False
    if flt["hours"]:
        since = datetime.now(UTC) - timedelta(hours=flt["hours"])
        if a.last_seen.ToDatetime(tzinfo=UTC) < since:
            return False
    return True


async def _list(
    client: AlertsClient, s: Session, flt: dict[str, Any], pages: int = 4
) -> tuple[list[Any], str]:
    """The alerts matching ``flt`` and the stream cursor of the first page: every change up to
    it is in the list, so the live stream continues from there."""
    req = _list_request(flt)
    out: list[alerts_pb2.Alert] = []
    cursor = ""
    for _ in range(pages):
        resp = await client.stub.ListAlerts(req, metadata=metadata(s.token))
        out.extend(resp.alerts)
        cursor = cursor or resp.stream_cursor
        if not resp.next_page_token:
            break
        req.page_token = resp.next_page_token
    return out, cursor


async def alert_list(request: web.Request, s: Session) -> web.Response:
    flt = _filters(request.query)
    alerts, cursor = await _list(request.app[CLIENT], s, flt)
    live = urlencode({k: v for k, v in request.query.items() if k != "cursor"})
    return _html(views.list_page(_view(s), alerts, flt, live, cursor))


async def _register(client: AlertsClient, s: Session) -> alerts_pb2.ListSandboxTestsResponse | None:
    """The register of sandbox tests in the supervisor's jurisdiction; None (logged) when the
    service cannot give it, so the rest of the overview still shows."""
    try:
        resp: alerts_pb2.ListSandboxTestsResponse = await client.stub.ListSandboxTests(
            alerts_pb2.ListSandboxTestsRequest(), metadata=metadata(s.token)
        )
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
            raise
        log.warning("ListSandboxTests failed: %s: %s", exc.code().name, exc.details())
        return None
    return resp


async def overview(request: web.Request, s: Session) -> web.Response:
    client = request.app[CLIENT]
    (alerts, _), register = await asyncio.gather(
        _list(client, s, _filters({}), pages=20), _register(client, s)
    )
    return _html(views.overview_page(_view(s), alerts, register))


async def events(request: web.Request, s: Session) -> web.StreamResponse:
    """Server-sent events from StreamAlerts. Each event's id is the service's cursor.

    The list page passes ``cursor``, the head its ListAlerts read before the rows it rendered,
    so the stream starts there and replays nothing older; the browser's automatic reconnect
    sends ``Last-Event-ID``, which wins, so a resumed stream has no gap and no repeat. With
    neither, the stream starts from now. A change made while the page was read may come once
    more; the page keeps a row's highest version."""
    flt = _filters(request.query)
    cursor = request.headers.get("Last-Event-ID") or request.query.get("cursor") or ""
    v = _view(s)
    call = request.app[CLIENT].stub.StreamAlerts(
        alerts_pb2.StreamAlertsRequest(cursor=cursor), metadata=metadata(s.token)
    )
    request.app[STREAMS].add(call)
    resp = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
    )
    await resp.prepare(request)
    await resp.write(b"retry: 1000\n: open\n\n")
    try:
        async for ev in call:
            body = views.alert_json(ev.alert, v)
            body["match"] = _matches(ev.alert, flt)
            frame = f"id: {ev.cursor}\nevent: alert\ndata: {json.dumps(body)}\n\n"
            await resp.write(frame.encode())
    except grpc.aio.AioRpcError as exc:
        # Credentials revoked or the service gone: say so; the browser retries the connection.
        data = json.dumps({"code": exc.code().name, "details": exc.details()})
        await resp.write(f"event: failure\ndata: {data}\n\n".encode())
    except (ConnectionResetError, RuntimeError, asyncio.CancelledError):
        pass
    finally:
        call.cancel()
        request.app[STREAMS].discard(call)
    return resp


async def _detail_html(
    request: web.Request, s: Session, message: str = "", conflict: bool = False
) -> str:
    """The alert and its audit trail, two calls in parallel (an action committed between them
    shows in full on the next load), then the entity's scores around it."""
    aid = request.match_info["alert_id"]
    stub, md = request.app[CLIENT].stub, metadata(s.token)
    got, trail = await asyncio.gather(
        stub.GetAlert(alerts_pb2.GetAlertRequest(alert_id=aid), metadata=md),
        stub.ListAuditEntries(alerts_pb2.ListAuditEntriesRequest(alert_id=aid), metadata=md),
    )
    scores = await entity_scores(stub, got.alert, md)
    return views.detail_page(_view(s), got.alert, trail.entries, message, conflict, scores)


async def detail(request: web.Request, s: Session) -> web.Response:
    done = request.query.get("done", "")
    v = _view(s)
    said = f"{v.t('done')}: {i18n.action(done, v.lang)}" if done else ""
    return _html(await _detail_html(request, s, said))


def _version(form: Any) -> int:
    raw = str(form.get("version", "0"))
    return int(raw) if raw.isdigit() else 0


async def _mutate(
    request: web.Request, s: Session, action: str, call: Callable[[Any], Awaitable[Any]]
) -> web.Response:
    aid = request.match_info["alert_id"]
    form = await request.post()
    try:
        await call(form)
    except grpc.aio.AioRpcError as exc:
        if exc.code() not in (grpc.StatusCode.ABORTED, grpc.StatusCode.FAILED_PRECONDITION):
            raise
        # Never a silent overwrite: show what the other supervisor made of it, and who did.
        return _html(await _detail_html(request, s, conflict=True), 409)
    raise web.HTTPSeeOther(f"/alerts/{aid}?done={action}")


async def acknowledge(request: web.Request, s: Session) -> web.Response:
    stub, aid = request.app[CLIENT].stub, request.match_info["alert_id"]

    async def call(form: Any) -> Any:
        req = alerts_pb2.AcknowledgeRequest(
            alert_id=aid, expected_version=_version(form), note=str(form.get("note", ""))
        )
        return await stub.Acknowledge(req, metadata=metadata(s.token))

    return await _mutate(request, s, "acknowledge", call)


async def assign(request: web.Request, s: Session) -> web.Response:
    stub, aid = request.app[CLIENT].stub, request.match_info["alert_id"]

    async def call(form: Any) -> Any:
        req = alerts_pb2.AssignRequest(
            alert_id=aid, expected_version=_version(form), assignee=str(form.get("assignee", ""))
        )
        return await stub.Assign(req, metadata=metadata(s.token))

    return await _mutate(request, s, "assign", call)


async def resolve(request: web.Request, s: Session) -> web.Response:
    stub, aid = request.app[CLIENT].stub, request.match_info["alert_id"]

    async def call(form: Any) -> Any:
        raw = str(form.get("verdict", "0"))
        req = alerts_pb2.ResolveRequest(
            alert_id=aid,
            expected_version=_version(form),
            verdict=int(raw) if raw.isdigit() else 0,  # type: ignore[arg-type]
            note=str(form.get("note", "")),
        )
        return await stub.Resolve(req, metadata=metadata(s.token))

    return await _mutate(request, s, "resolve", call)


async def silences(request: web.Request, s: Session) -> web.Response:
    # Every silence the service holds that can mute this supervisor's alerts, ended ones too:
    # she must be able to see why an alert was muted last night.
    got = await request.app[CLIENT].stub.ListSilences(
        alerts_pb2.ListSilencesRequest(include_expired=True, page_size=200),
        metadata=metadata(s.token),
    )
    msg = request.query.get("done", "")
    v = _view(s)
    text = v.t("silence_created") if msg == "created" else v.t("silence_expired") if msg else ""
    return _html(views.silences_page(v, got.silences, text))


async def create_silence(request: web.Request, s: Session) -> web.Response:
    form = await request.post()
    matchers = [
        alerts_pb2.Matcher(name=k.removeprefix("m_"), value=str(val).strip())
        for k, val in form.items()
        if k.startswith("m_") and str(val).strip()
    ]
    hours = views.parse_hours(str(form.get("hours", "0"))) or 1
    req = alerts_pb2.CreateSilenceRequest(matchers=matchers, comment=str(form.get("comment", "")))
    req.ends_at.FromDatetime(datetime.now(UTC) + timedelta(hours=hours))
    await request.app[CLIENT].stub.CreateSilence(req, metadata=metadata(s.token))
    raise web.HTTPSeeOther("/silences?done=created")


async def expire_silence(request: web.Request, s: Session) -> web.Response:
    sid = request.match_info["silence_id"]
    await request.app[CLIENT].stub.ExpireSilence(
        alerts_pb2.ExpireSilenceRequest(silence_id=sid), metadata=metadata(s.token)
    )
    raise web.HTTPSeeOther("/silences?done=expired")


async def _end_streams(app: web.Application) -> None:
    # Open event streams would hold the shutdown until their next event: end them now.
    streams: set[Any] = app[STREAMS]
    for call in list(streams):
        call.cancel()


def build_app(cfg: ConsoleConfig, channel: grpc.aio.Channel | None = None) -> web.Application:
    app = web.Application()
    app[CONFIG] = cfg
    app[CLIENT] = AlertsClient(channel or open_channel(cfg))
    app[SESSIONS] = Sessions(cfg.session_idle_s)
    app[STREAMS] = set()
    app.on_shutdown.append(_end_streams)
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", signed_in(logout, post=True))
    app.router.add_get("/", signed_in(alert_list))
    app.router.add_get("/overview", signed_in(overview))
    app.router.add_get("/events", signed_in(events))
    app.router.add_get("/alerts/{alert_id}", signed_in(detail))
    app.router.add_post("/alerts/{alert_id}/acknowledge", signed_in(acknowledge, post=True))
    app.router.add_post("/alerts/{alert_id}/assign", signed_in(assign, post=True))
    app.router.add_post("/alerts/{alert_id}/resolve", signed_in(resolve, post=True))
    app.router.add_get("/silences", signed_in(silences))
    app.router.add_post("/silences", signed_in(create_silence, post=True))
    app.router.add_post("/silences/{silence_id}/expire", signed_in(expire_silence, post=True))
    app.router.add_static("/static", STATIC)
    return app


class Console:
    """Run the console in an asyncio loop: ``await start()``, ``port``, ``await stop()``."""

    def __init__(self, cfg: ConsoleConfig) -> None:
        self.cfg = cfg
        self.app = build_app(cfg)
        # A closed browser tab ends its handler (and so its StreamAlerts call) at once.
        self._runner = web.AppRunner(self.app, handler_cancellation=True, shutdown_timeout=5)
        self.port = cfg.port

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.cfg.host, self.cfg.port)
        await site.start()
        server: Any = site._server
        if server is not None and getattr(server, "sockets", None):
            self.port = int(server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        await self._runner.cleanup()
        await self.app[CLIENT].channel.close()
