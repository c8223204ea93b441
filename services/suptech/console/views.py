"""Server-rendered HTML pages: plain strings, every value escaped."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Any
from zoneinfo import ZoneInfo

from google.protobuf.json_format import MessageToDict
from google.protobuf.timestamp_pb2 import Timestamp

from suptech.console import i18n
from suptech.console.chart import ChartLabels, entity_chart, pick_model, score_chart
from suptech.v1 import alerts_pb2, findings_pb2, sandbox_pb2

__all__ = ["View", "alert_row", "alert_json"]


@dataclass(frozen=True)
class View:
    """Who is looking: language, time zone, what they may do, and the form token."""

    lang: str
    tz: str
    triage: bool = False
    decide: bool = False
    csrf: str = ""
    signed_in: bool = True

    def t(self, key: str) -> str:
        return i18n.label(key, self.lang)

    def time(self, ts: Timestamp, present: bool = True) -> str:
        if not present or (ts.seconds == 0 and ts.nanos == 0):
            return "-"
        when = ts.ToDatetime(tzinfo=UTC).astimezone(ZoneInfo(self.tz))
        return when.strftime("%Y-%m-%d %H:%M:%S %Z")


def page(v: View, title: str, body: str) -> str:
    nav = ""
    if v.signed_in:
        nav = (
            f'<nav><a href="/" accesskey="a">{v.t("alerts")}</a> '
            f'<a href="/overview" accesskey="o">{v.t("overview")}</a> '
            f'<a href="/silences" accesskey="s">{v.t("silences")}</a> '
            f'<form method="post" action="/logout" class="inline">{_csrf(v)}'
            f'<button type="submit">{v.t("sign_out")}</button></form>'
            f'<span class="who">{escape(v.tz)}</span></nav>'
        )
    return (
        f'<!doctype html><html lang="{"zh-CN" if v.lang == "zh" else "en"}"><head>'
        '<meta charset="utf-8"><meta name="viewport" content="width=device-width">'
        f"<title>{escape(title)} · {v.t('title')}</title>"
        '<link rel="stylesheet" href="/static/console.css"></head><body>'
        f'<header><h1>{v.t("title")}</h1>{nav}</header><main id="main">{body}</main>'
        '<script src="/static/console.js"></script></body></html>'
    )


def _csrf(v: View) -> str:
    return f'<input type="hidden" name="csrf" value="{escape(v.csrf)}">'


def login_page(v: View, error: str = "") -> str:
    err = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    zh_sel = " selected" if v.lang == "zh" else ""
    en_sel = " selected" if v.lang == "en" else ""
    body = (
        f'{err}<form method="post" action="/login" class="login">'
        f'<label for="token">{v.t("token")}</label>'
        '<input id="token" name="token" type="password" autocomplete="off" required autofocus>'
        f'<label for="tz">{v.t("time_zone")}</label>'
        f'<input id="tz" name="tz" value="{escape(v.tz)}">'
        f'<label for="lang">{v.t("language")}</label>'
        f'<select id="lang" name="lang"><option value="zh"{zh_sel}>中文</option>'
        f'<option value="en"{en_sel}>English</option></select>'
        f'<button type="submit" id="sign-in">{v.t("sign_in")}</button></form>'
    )
    return page(v, v.t("sign_in"), body)


def alert_json(a: alerts_pb2.Alert, v: View) -> dict[str, Any]:
    """What the live list needs of one alert, with labels already in the viewer's language."""
    return {
        "id": a.alert_id,
        "version": a.version,
        "html": alert_row(a, v),
    }


def alert_row(a: alerts_pb2.Alert, v: View) -> str:
    flags = f' <span class="tag">{v.t("silenced")}</span>' if a.silenced else ""
    if a.escalation_level:
        flags += f' <span class="tag esc">{v.t("escalation")} {a.escalation_level}</span>'
    return (
        f'<tr id="alert-{escape(a.alert_id)}" data-version="{a.version}" '
        f'data-family="{a.family}" data-grade="{a.grade}" data-state="{a.state}" '
        f'class="grade-{a.grade} state-{a.state}">'
        f'<td class="grade">{escape(i18n.grade(a.grade, v.lang))}</td>'
        f"<td>{escape(i18n.family(a.family, v.lang))}</td>"
        f'<td class="state">{escape(i18n.state(a.state, v.lang))}</td>'
        f"<td>{escape(a.institution_id)}</td>"
        f"<td>{escape(a.entity_kind)}:{escape(a.entity_id)}</td>"
        f'<td><a href="/alerts/{escape(a.alert_id)}">{escape(a.summary or a.alert_id)}</a>'
        f"{flags}</td>"
        f"<td>{a.finding_count}</td>"
        f"<td>{escape(v.time(a.last_seen, a.HasField('last_seen')))}</td>"
        f"<td>{escape(v.time(a.ack_deadline, a.HasField('ack_deadline')))}</td>"
        f"<td>{escape(a.assignee)}</td></tr>"
    )


def _options(names: dict[int, tuple[str, str]], chosen: int, v: View, fmt: Any) -> str:
    out = [f'<option value="0">{v.t("any")}</option>']
    for value in names:
        if value:
            sel = " selected" if value == chosen else ""
            out.append(f'<option value="{value}"{sel}>{escape(fmt(value, v.lang))}</option>')
    return "".join(out)


def list_page(
    v: View,
    alerts: Sequence[alerts_pb2.Alert],
    flt: dict[str, Any],
    live_query: str,
    cursor: str = "",
) -> str:
    form = (
        '<form method="get" action="/" class="filters" id="filters">'
        f'<label>{v.t("family")} <select name="family">'
        f"{_options(i18n.FAMILY_NAMES, flt['family'], v, i18n.family)}</select></label>"
        f'<label>{v.t("min_grade")} <select name="grade">'
        f"{_options(i18n.GRADE_NAMES, flt['grade'], v, i18n.grade)}</select></label>"
        f'<label>{v.t("state")} <select name="state">'
        f"{_options(i18n.STATE_NAMES, flt['state'], v, i18n.state)}</select></label>"
        f'<label>{v.t("institution")} <input name="institution" '
        f'value="{escape(flt["institution"])}" size="12"></label>'
        f'<label>{v.t("since_hours")} <input name="hours" type="number" min="0" '
        f'value="{flt["hours"] or ""}" size="4"></label>'
        f'<button type="submit">{v.t("filter")}</button></form>'
    )
    heads = ["grade", "family", "state", "institution", "entity", "summary", "findings"]
    heads += ["last_seen", "deadline", "assignee"]
    th = "".join(f'<th scope="col">{v.t(h)}</th>' for h in heads)
    rows = "".join(alert_row(a, v) for a in alerts)
    table = (
        f'<table id="alerts" data-live="{escape(live_query)}" data-cursor="{escape(cursor)}">'
        f"<thead><tr>{th}</tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )
    status = f'<p id="live-status" aria-live="polite" data-live="{v.t("live")}" '
    status += f'data-reconnecting="{v.t("reconnecting")}">…</p>'
    return page(v, v.t("alerts"), form + counts_table(alerts, v) + status + table)


def counts_table(alerts: Iterable[alerts_pb2.Alert], v: View) -> str:
    counts: Counter[tuple[int, int]] = Counter((a.family, a.grade) for a in alerts)
    grades = [g for g in i18n.GRADE_NAMES if g]
    families = sorted({f for f, _ in counts})
    th = "".join(f'<th scope="col">{escape(i18n.grade(g, v.lang))}</th>' for g in grades)
    rows = []
    for fam in families:
        cells = [counts[(fam, g)] for g in grades]
        tds = "".join(f'<td data-g="{g}">{c}</td>' for g, c in zip(grades, cells, strict=True))
        rows.append(
            f'<tr data-family="{fam}"><th scope="row">{escape(i18n.family(fam, v.lang))}</th>'
            f'{tds}<td class="sum">{sum(cells)}</td></tr>'
        )
    total = sum(counts.values())
    return (
        f'<table id="counts"><caption>{v.t("count")}</caption><thead><tr><th></th>{th}'
        f'<th scope="col">{v.t("total")}</th></tr></thead><tbody>{"".join(rows)}</tbody>'
        f'<tfoot><tr><th scope="row">{v.t("total")}</th><td colspan="{len(grades)}"></td>'
        f'<td id="total">{total}</td></tr></tfoot></table>'
    )


def detail_page(
    v: View,
    a: alerts_pb2.Alert,
    entries: Sequence[alerts_pb2.AuditEntry] = (),
    message: str = "",
    conflict: bool = False,
    scores: Sequence[findings_pb2.AnomalyScore] = (),
) -> str:
    msg = ""
    if conflict:
        msg = f'<p class="error conflict" role="alert" id="conflict">{v.t("conflict")}</p>'
    elif message:
        msg = f'<p class="notice" role="status">{escape(message)}</p>'
    facts = [
        ("grade", escape(i18n.grade(a.grade, v.lang))),
        ("family", escape(i18n.family(a.family, v.lang))),
        ("state", escape(i18n.state(a.state, v.lang))),
        ("institution", escape(a.institution_id)),
        ("entity", f"{escape(a.entity_kind)}:{escape(a.entity_id)}"),
        ("first_seen", escape(v.time(a.first_seen, a.HasField("first_seen")))),
        ("last_seen", escape(v.time(a.last_seen, a.HasField("last_seen")))),
        ("deadline", escape(v.time(a.ack_deadline, a.HasField("ack_deadline")))),
        ("escalation", str(a.escalation_level)),
        ("assignee", escape(a.assignee) or "-"),
        ("verdict", escape(i18n.verdict(a.verdict, v.lang))),
        ("note", escape(a.resolution_note) or "-"),
        ("version", str(a.version)),
    ]
    dl = "".join(f'<dt>{v.t(k)}</dt><dd id="f-{k}">{val}</dd>' for k, val in facts)
    body = (
        f'{msg}<h2 id="summary">{escape(a.summary or a.alert_id)}</h2>'
        f'<dl class="facts">{dl}</dl>{triage_forms(v, a)}'
        f"<section><h3>{v.t('chart')}</h3>{alert_chart(v, a, scores)}</section>"
        f"<section><h3>{v.t('findings')}</h3>{findings_table(v, a)}</section>"
        f"<section><h3>{v.t('audit')}</h3>{trail(v, a, entries)}</section>"
    )
    return page(v, a.summary or a.alert_id, body)


def alert_chart(v: View, a: alerts_pb2.Alert, scores: Sequence[findings_pb2.AnomalyScore]) -> str:
    """The entity's per-event scores around the alert when the service holds some, else the
    findings' scores; a caption says which, so nobody mistakes one for the other."""
    chosen = pick_model(scores, a.findings)
    if not chosen:
        svg = score_chart(a.findings, v.t("score"), v.t("threshold"))
        return f'<p class="caption" id="chart-source">{v.t("from_findings")}</p>{svg}'
    labels = ChartLabels(
        v.t("chart"), v.t("observed"), v.t("expected"), v.t("score"), v.t("threshold"),
        v.t("finding_mark"),
    )  # fmt: skip

    def when(ns: int) -> str:
        ts = Timestamp()
        ts.FromNanoseconds(ns)
        return v.time(ts)

    caption = (
        f'<p class="caption" id="chart-source">{v.t("scores_of")} '
        f"<code>{escape(chosen[0].model_id)}</code>, {len(chosen)} {v.t('events_n')}</p>"
    )
    return caption + entity_chart(chosen, a.findings, labels, when)


def findings_table(v: View, a: alerts_pb2.Alert) -> str:
    rows = []
    for f in sorted(a.findings, key=lambda f: f.event_time.ToSeconds()):
        contrib = "".join(
            f"<li>{escape(c.feature)}: {c.observed:g} / {c.baseline:g}</li>"
            for c in f.contributions
        )
        evidence = "".join(f"<li><code>{escape(e)}</code></li>" for e in f.evidence_event_ids)
        rows.append(
            f'<tr class="finding"><td>{escape(v.time(f.event_time, f.HasField("event_time")))}'
            f"</td><td>{f.score:.3f} / {f.threshold:.3f}</td>"
            f"<td>{escape(i18n.grade(f.grade, v.lang))}</td><td>{escape(f.summary)}</td>"
            f'<td><ul class="contrib">{contrib}</ul></td>'
            f'<td><ul class="evidence">{evidence}</ul></td></tr>'
        )
    heads = ["last_seen", "score", "grade", "summary", "explanation", "evidence"]
    th = "".join(f'<th scope="col">{v.t(h)}</th>' for h in heads)
    body = "".join(rows)
    return f'<table id="findings"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def trail(v: View, a: alerts_pb2.Alert, entries: Sequence[alerts_pb2.AuditEntry]) -> str:
    """The alert's audit log as the service keeps it: who did what, when, and what they wrote.

    Each row carries the entry's chain position and hash, so a supervisor can cite it and an
    auditor can find it in ``audit verify``'s chain.
    """
    created = f'<p id="created">{v.t("created")}: {escape(v.time(a.created_time))}</p>'
    if not entries:
        return f'{created}<p id="trail" class="notice">{v.t("no_entries")}</p>'
    heads = ["time", "actor", "action", "details", "entry"]
    th = "".join(f'<th scope="col">{v.t(h)}</th>' for h in heads)
    rows = "".join(
        f'<tr class="audit" data-action="{escape(e.action)}">'
        f"<td>{escape(v.time(e.time))}</td>"
        f"<td>{escape(e.actor)} ({escape(e.role)})</td>"
        f'<td class="action">{escape(i18n.action(e.action, v.lang))}</td>'
        f'<td class="details">{audit_details(v, MessageToDict(e.details))}</td>'
        f'<td><code title="{escape(e.hash)}">#{e.entry_id} {escape(e.hash[:12])}</code></td></tr>'
        for e in entries
    )
    return f'{created}<table id="trail"><thead><tr>{th}</tr></thead><tbody>{rows}</tbody></table>'


def audit_details(v: View, d: dict[str, Any]) -> str:
    """An entry's details in words: the change it made (before -> after) and the note given."""
    parts: list[str] = []
    if "assignee" in d:
        before = escape(str(d.get("previous") or "-"))
        parts.append(f"{v.t('assignee')}: {before} → {escape(str(d['assignee']))}")
    if d.get("verdict"):
        name = str(d["verdict"])
        known = name in alerts_pb2.Verdict.keys()
        said = i18n.verdict(alerts_pb2.Verdict.Value(name), v.lang) if known else name
        parts.append(f"{v.t('verdict')}: {escape(said)}")
    if d.get("note"):
        parts.append(f'{v.t("note")}: <q class="note">{escape(str(d["note"]))}</q>')
    if "level" in d:
        parts.append(f"{v.t('level')} {escape(_number(d['level']))}")
    if "from_version" in d:
        parts.append(f"{v.t('from_version')} {escape(_number(d['from_version']))}")
    shown = {"assignee", "previous", "verdict", "note", "level", "from_version"}
    parts += [f"{escape(k)}: {escape(str(val))}" for k, val in d.items() if k not in shown]
    return " · ".join(parts)


def _number(value: Any) -> str:
    # A protobuf Struct carries every number as a double.
    return f"{value:g}" if isinstance(value, float) else str(value)


def triage_forms(v: View, a: alerts_pb2.Alert) -> str:
    if not v.triage:
        return f'<p class="notice" id="read-only">{v.t("read_only")}</p>'
    base = f'{_csrf(v)}<input type="hidden" name="version" value="{a.version}">'
    aid = escape(a.alert_id)
    forms = []
    if a.state == alerts_pb2.ALERT_STATE_OPEN:
        forms.append(
            f'<form method="post" action="/alerts/{aid}/acknowledge" id="ack-form">{base}'
            f'<input name="note" aria-label="{v.t("note")}" placeholder="{v.t("note")}">'
            f'<button type="submit" id="ack">{v.t("acknowledge")}</button></form>'
        )
    if a.state != alerts_pb2.ALERT_STATE_RESOLVED:
        forms.append(
            f'<form method="post" action="/alerts/{aid}/assign" id="assign-form">{base}'
            f'<input name="assignee" required aria-label="{v.t("assignee")}" '
            f'placeholder="{v.t("assignee")}">'
            f'<button type="submit" id="assign">{v.t("assign")}</button></form>'
        )
    if v.decide and a.state != alerts_pb2.ALERT_STATE_RESOLVED:
        opts = "".join(
            f'<option value="{k}">{escape(i18n.verdict(k, v.lang))}</option>'
            for k in i18n.VERDICT_NAMES
            if k
        )
        forms.append(
            f'<form method="post" action="/alerts/{aid}/resolve" id="resolve-form">{base}'
            f'<select name="verdict" aria-label="{v.t("verdict")}">{opts}</select>'
            f'<input name="note" required aria-label="{v.t("note")}" placeholder="{v.t("note")}">'
            f'<button type="submit" id="resolve">{v.t("resolve")}</button></form>'
        )
        forms.append(silence_form(v, a))
    return f'<section class="triage">{"".join(forms)}</section>'


def silence_form(v: View, a: alerts_pb2.Alert | None = None) -> str:
    fields = ("institution_id", "family", "entity_kind", "entity_id", "detector_id", "grade")
    pre: dict[str, str] = {}
    if a is not None:
        pre = {
            "institution_id": a.institution_id,
            "entity_kind": a.entity_kind,
            "entity_id": a.entity_id,
            "detector_id": a.detector_id,
        }
    inputs = "".join(
        f'<label>{f} <input name="m_{f}" value="{escape(pre.get(f, ""))}" size="10"></label>'
        for f in fields
    )
    return (
        f'<form method="post" action="/silences" id="silence-form"><fieldset>'
        f"<legend>{v.t('silence')} · {v.t('matchers')}</legend>{_csrf(v)}{inputs}"
        f'<label>{v.t("ends_at")} <input name="hours" type="number" min="1" value="4" size="3">'
        f" {v.t('hours')}</label>"
        f'<label>{v.t("comment")} <input name="comment" required></label>'
        f'<button type="submit" id="silence">{v.t("silence")}</button></fieldset></form>'
    )


def silences_page(v: View, silences: Sequence[alerts_pb2.Silence], message: str = "") -> str:
    msg = f'<p class="notice" role="status" id="notice">{escape(message)}</p>' if message else ""
    rows = []
    for s in silences:
        m = ", ".join(f"{escape(x.name)}={escape(x.value)}" for x in s.matchers)
        expire = ""
        # The service says which ones this supervisor may expire (role and jurisdiction).
        if s.caller_may_expire:
            expire = (
                f'<form method="post" action="/silences/{escape(s.silence_id)}/expire">'
                f'{_csrf(v)}<button type="submit" class="expire">{v.t("expire")}</button></form>'
            )
        state = v.t("ended") if s.expired else v.t("active")
        rows.append(
            f'<tr id="silence-{escape(s.silence_id)}" class="{"ended" if s.expired else "active"}">'
            f"<td><code>{escape(s.silence_id[:12])}</code></td><td>{m}</td>"
            f"<td>{escape(v.time(s.ends_at))}</td><td>{escape(s.comment)}</td>"
            f'<td class="creator">{escape(s.created_by)}</td>'
            f"<td>{escape(v.time(s.created_time))}</td>"
            f'<td class="sstate">{state}</td><td>{expire}</td></tr>'
        )
    heads = ["silence", "matchers", "ends_at", "comment", "created_by", "created_time", "state"]
    th = "".join(f'<th scope="col">{v.t(h)}</th>' for h in heads) + "<td></td>"
    empty = f'<tr><td colspan="8">{v.t("no_silences")}</td></tr>'
    table = (
        f'<table id="silences"><thead><tr>{th}</tr></thead>'
        f"<tbody>{''.join(rows) or empty}</tbody></table>"
    )
    form = silence_form(v) if v.decide else ""
    return page(v, v.t("silences"), msg + table + form)


def overview_page(
    v: View,
    alerts: Sequence[alerts_pb2.Alert],
    register: alerts_pb2.ListSandboxTestsResponse | None = None,
) -> str:
    """``register`` None: the service could not give the register (the rest still shows)."""
    by = Counter((a.institution_id, a.family) for a in alerts)
    fams = sorted({f for _, f in by})
    insts = sorted({i for i, _ in by})
    th = "".join(f'<th scope="col">{escape(i18n.family(f, v.lang))}</th>' for f in fams)
    rows = "".join(
        f'<tr><th scope="row">{escape(i)}</th>'
        + "".join(f"<td>{by[(i, f)]}</td>" for f in fams)
        + "</tr>"
        for i in insts
    )
    spread: dict[str, set[str]] = {}
    for a in alerts:
        spread.setdefault(f"{a.entity_kind}:{a.entity_id}", set()).add(a.institution_id)
    systemic = "".join(
        f"<li>{escape(e)}: {escape(', '.join(sorted(s)))}</li>"
        for e, s in sorted(spread.items())
        if len(s) > 1
    )
    body = (
        f'<h2>{v.t("by_institution")}</h2><table id="by-institution"><thead><tr><th></th>{th}'
        f"</tr></thead><tbody>{rows}</tbody></table>"
        f'<h2>{v.t("systemic")}</h2><ul id="systemic">{systemic or "<li>-</li>"}</ul>'
        f"{register_table(v, register, alerts)}{sandbox_table(v, alerts)}"
    )
    return page(v, v.t("overview"), body)


def _yuan(fen: int) -> str:
    return f"{fen / 100:,.2f}" if fen else "-"


def _period(v: View, t: sandbox_pb2.SandboxTest) -> str:
    start = v.time(t.start_time, t.HasField("start_time"))[:10]
    end = v.time(t.end_time, t.HasField("end_time"))[:10]
    return f"{start} – {end}"


def _crossings(v: View, crossed: Sequence[alerts_pb2.Alert]) -> str:
    """The test's crossing alerts, open first; "within" when none is unresolved."""
    links = "".join(
        f'<li class="crossing" data-boundary="{escape(a.detector_id)}">'
        f'<a href="/alerts/{escape(a.alert_id)}">{escape(i18n.boundary(a.detector_id, v.lang))}'
        f"</a> {escape(i18n.grade(a.grade, v.lang))} · {escape(i18n.state(a.state, v.lang))}</li>"
        for a in sorted(
            crossed, key=lambda a: (a.state == alerts_pb2.ALERT_STATE_RESOLVED, -a.grade)
        )
    )
    within = all(a.state == alerts_pb2.ALERT_STATE_RESOLVED for a in crossed)
    tag = f'<span class="within">{v.t("within")}</span>' if within else ""
    return f"{tag}<ul>{links}</ul>" if links else tag


def register_table(
    v: View,
    register: alerts_pb2.ListSandboxTestsResponse | None,
    alerts: Sequence[alerts_pb2.Alert],
) -> str:
    """Every registered test with its approved boundaries and the sandbox alerts of its app next
    to it, so a test within its boundaries shows as such rather than by its absence."""
    title = f'<h2>{v.t("register")}</h2><p class="notice">{v.t("register_note")}</p>'
    if register is None:
        return f'{title}<p class="error" id="register-error">{v.t("register_unavailable")}</p>'
    by_app: dict[tuple[str, str], list[alerts_pb2.Alert]] = {}
    for a in alerts:
        if a.family == findings_pb2.FAMILY_SANDBOX:
            by_app.setdefault((a.institution_id, a.entity_id), []).append(a)
    heads = ["institution", "test_id", "app", "test_name", "period", "user_cap", "single_cap"]
    heads += ["daily_cap", "features", "crossings"]
    th = "".join(f'<th scope="col">{v.t(h)}</th>' for h in heads)
    rows = "".join(
        f'<tr data-test="{escape(t.test_id)}"><td>{escape(t.institution_id)}</td>'
        f"<td>{escape(t.test_id)}</td><td>{escape(t.app_id)}</td><td>{escape(t.name)}</td>"
        f"<td>{escape(_period(v, t))}</td><td>{t.user_cap or '-'}</td>"
        f"<td>{_yuan(t.single_amount_cap_fen)}</td><td>{_yuan(t.daily_amount_cap_fen)}</td>"
        f"<td>{escape(', '.join(t.approved_features) or '-')}</td>"
        f'<td class="crossings">{_crossings(v, by_app.get((t.institution_id, t.app_id), []))}</td>'
        "</tr>"
        for t in register.tests
    )
    empty = f'<tr><td colspan="{len(heads)}">{v.t("no_tests")}</td></tr>'
    partial = (
        ""
        if register.complete
        else f'<p class="notice" id="register-partial">{v.t("register_incomplete")}</p>'
    )
    return (
        f'{title}{partial}<table id="register"><thead><tr>{th}</tr></thead>'
        f"<tbody>{rows or empty}</tbody></table>"
    )


def sandbox_table(v: View, alerts: Sequence[alerts_pb2.Alert]) -> str:
    """Sandbox apps that crossed an approved boundary: one row per app and boundary (the alert
    service groups a sandbox alert by institution, app and rule), worst first."""
    crossed = sorted(
        (a for a in alerts if a.family == findings_pb2.FAMILY_SANDBOX),
        key=lambda a: (a.state == alerts_pb2.ALERT_STATE_RESOLVED, -a.grade, a.institution_id),
    )
    heads = ["institution", "app", "boundary", "grade", "state", "summary", "last_seen"]
    th = "".join(f'<th scope="col">{v.t(h)}</th>' for h in heads)
    rows = "".join(
        f'<tr data-boundary="{escape(a.detector_id)}"><td>{escape(a.institution_id)}</td>'
        f"<td>{escape(a.entity_id)}</td>"
        f'<td class="boundary">{escape(i18n.boundary(a.detector_id, v.lang))}</td>'
        f"<td>{escape(i18n.grade(a.grade, v.lang))}</td>"
        f"<td>{escape(i18n.state(a.state, v.lang))}</td>"
        f'<td><a href="/alerts/{escape(a.alert_id)}">{escape(a.summary or a.alert_id)}</a></td>'
        f"<td>{escape(v.time(a.last_seen, a.HasField('last_seen')))}</td></tr>"
        for a in crossed
    )
    empty = f'<tr><td colspan="{len(heads)}">-</td></tr>'
    return (
        f'<h2>{v.t("sandbox")}</h2><p class="notice">{v.t("sandbox_note")}</p>'
        f'<table id="sandbox"><thead><tr>{th}</tr></thead><tbody>{rows or empty}</tbody></table>'
    )


def error_page(v: View, status: int, message: str) -> str:
    return page(v, str(status), f'<p class="error" role="alert" id="error">{escape(message)}</p>')


def parse_hours(raw: str) -> int:
    try:
        return max(0, int(raw))
    except ValueError:
        return 0


def now_utc() -> datetime:
    return datetime.now(UTC)
