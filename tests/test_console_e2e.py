"""The web console in a real headless Chromium, against the real alert service (SQLite, the
shared Kafka broker, the tokens file): findings go in through Kafka, the supervisor signs in with
her token, watches them arrive, drills down and triages in the page. Screenshots of the main pages
are kept under perf/results/console/.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from kafka import KafkaProducer
from sqlalchemy import select
from suptech.alerts.app import AlertApp, build_alert_service
from suptech.alerts.config import AlertsConfig
from suptech.alerts.models import AuditLogRow
from suptech.alerts.scores import EntityKey
from suptech.common.topics import FINDINGS, SCORES, topic_name
from suptech.console.app import Console
from suptech.console.config import ConsoleConfig
from suptech.detector.logic.scores import Score, to_batches
from suptech.v1 import alerts_pb2, alerts_pb2_grpc, findings_pb2, sandbox_pb2

from simulators.stream import publish_registry

playwright = pytest.importorskip("playwright.async_api")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed"),
]
SHOTS = Path(__file__).resolve().parent.parent / "perf" / "results" / "console"
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
TOKENS: dict[str, dict[str, Any]] = {
    "tok-16chars-supervisor": {
        "name": "wang.fang",
        "role": "supervisor",
        "jurisdictions": ["bank-a"],
    },
    "tok-16chars-other-sup": {"name": "chen.jie", "role": "supervisor", "jurisdictions": ["*"]},
    "tok-16chars-viewer": {"name": "li.viewer", "role": "viewer", "jurisdictions": ["bank-a"]},
    "tok-16chars-gateway": {"name": "bank-a", "institution_id": "bank-a"},
}
SUP, OTHER, VIEWER, INSTITUTION = list(TOKENS)


def finding(n: int, institution: str = "bank-a", entity: str = "actor-1") -> findings_pb2.Finding:
    f = findings_pb2.Finding(
        finding_id=f"{institution}-{entity}-{n}-{uuid.uuid4().hex[:6]}",
        family=findings_pb2.FAMILY_DATA_LEAKAGE,
        institution_id=institution,
        entity_kind="actor",
        entity_id=entity,
        rule_id="bulk_export",
        score=0.9 + n / 100,
        threshold=0.92,
        grade=findings_pb2.GRADE_MAJOR,
        summary=f"bulk export by {entity}",
        contributions=[findings_pb2.Contribution(feature="records", observed=9e4, baseline=300)],
        evidence_event_ids=[f"ev-{entity}-{n}"],
    )
    f.event_time.FromDatetime(T0 + timedelta(minutes=n))
    return f


def sandbox_finding(institution: str, users: int, cap: int) -> findings_pb2.Finding:
    """What the detector's sandbox.user_cap rule emits for an app past its approved user cap."""
    f = findings_pb2.Finding(
        finding_id=f"sbx-{institution}-{uuid.uuid4().hex[:6]}",
        family=findings_pb2.FAMILY_SANDBOX,
        institution_id=institution,
        entity_kind="app",
        entity_id=f"pay-{institution}",
        rule_id="sandbox.user_cap",
        score=users,
        threshold=cap,
        grade=findings_pb2.GRADE_MAJOR,
        summary=f"App pay-{institution} has {users} users, cap {cap}",
        contributions=[findings_pb2.Contribution(feature="user_cap", observed=users, baseline=cap)],
        evidence_event_ids=[f"sbx-ev-{institution}"],
    )
    f.event_time.FromDatetime(T0)
    return f


def registered(test_id: str, institution: str, app: str) -> sandbox_pb2.SandboxTest:
    """A register entry as the regulator publishes it (user cap 1000, as sandbox_finding's)."""
    t = sandbox_pb2.SandboxTest(
        test_id=test_id,
        institution_id=institution,
        app_id=app,
        name=f"{app} pilot",
        user_cap=1000,
        single_amount_cap_fen=5_000_000,
        daily_amount_cap_fen=200_000_000,
        approved_features=["qr_payment"],
    )
    t.start_time.FromDatetime(datetime(2026, 1, 1, 12, tzinfo=UTC))
    t.end_time.FromDatetime(datetime(2027, 6, 30, 12, tzinfo=UTC))
    return t


def produce(bootstrap: str, prefix: str, findings: list[findings_pb2.Finding]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for f in findings:
        producer.send(topic_name(FINDINGS, prefix), key=b"k", value=f.SerializeToString())
    producer.flush()
    producer.close()


def produce_scores(bootstrap: str, prefix: str, entity: str, n: int) -> None:
    """The detector's per-event scores of bank-a's ``entity``, every 15 s from T0 (its finding(1)
    is at T0 + 1 min), encoded by the detector's own code; one alarm at finding(1)'s time."""
    t0 = int(T0.timestamp()) * 10**9
    scores = [
        Score("bank-a", "actor", entity, "leak.access", f"ev-{entity}-s{i}", t0 + i * 15 * 10**9,
              0.999 if i == 4 else 0.5 + i / 200, 0.99, 300.0 + (9e4 if i == 4 else i), 300.0,
              i == 4)
        for i in range(n)
    ]  # fmt: skip
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for batch in to_batches(scores):
        producer.send(topic_name(SCORES, prefix), key=b"bank-a", value=batch.SerializeToString())
    producer.flush()
    producer.close()


@pytest.fixture
async def service(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[AlertApp]:
    # SQLite, or PostgreSQL for a test marked ``postgres``.
    db_url = f"sqlite:///{tmp_path / 'a.db'}"
    if request.node.get_closest_marker("postgres"):
        db_url = str(request.getfixturevalue("postgres_url"))
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps(TOKENS))
    app = build_alert_service(
        AlertsConfig(
            port=0,
            host="127.0.0.1",
            db_url=db_url,
            kafka_addr=kafka_bootstrap,
            topic_prefix=topic_prefix,
            consumer_group=f"console-{uuid.uuid4().hex[:8]}",
            tokens_file=str(tokens),
            tick_s=3600,
        )
    )
    await app.start()
    yield app
    await app.stop()


@pytest.fixture
async def console(service: AlertApp) -> AsyncIterator[str]:
    c = Console(ConsoleConfig(port=0, alerts_addr=f"127.0.0.1:{service.port}"))
    await c.start()
    yield f"http://127.0.0.1:{c.port}"
    await c.stop()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    SHOTS.mkdir(parents=True, exist_ok=True)
    async with playwright.async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        await b.close()


async def sign_in(browser: Any, base: str, token: str, lang: str = "zh", tz: str = "") -> Any:
    page = await browser.new_page()
    page.set_default_timeout(20_000)
    await page.goto(f"{base}/")
    await page.fill("#token", token)
    if tz:
        await page.fill("#tz", tz)
    await page.select_option("#lang", lang)
    await page.click("#sign-in")
    await page.wait_for_load_state()
    return page


def stub(service: AlertApp) -> tuple[grpc.aio.Channel, alerts_pb2_grpc.AlertServiceStub]:
    ch = grpc.aio.insecure_channel(f"127.0.0.1:{service.port}")
    return ch, alerts_pb2_grpc.AlertServiceStub(ch)


def audit(service: AlertApp, alert_id: str) -> list[tuple[str, str]]:
    assert service.sessions is not None
    with service.sessions() as s:
        rows = s.scalars(select(AuditLogRow).where(AuditLogRow.alert_id == alert_id))
        return [(r.actor, r.action) for r in rows]


async def test_supervisor_watches_alerts_arrive_drills_down_and_triages(
    service: AlertApp, console: str, browser: Any, kafka_bootstrap: str, topic_prefix: str
) -> None:
    produce(kafka_bootstrap, topic_prefix, [finding(1), finding(2), finding(1, "bank-b")])
    page = await sign_in(browser, console, SUP, tz="Asia/Shanghai")
    row = page.locator("#alerts tbody tr", has_text="actor:actor-1")
    await row.wait_for()
    # Arriving live, without a reload: a second entity's finding.
    produce(kafka_bootstrap, topic_prefix, [finding(3, entity="actor-2")])
    await page.locator("#alerts tbody tr", has_text="actor:actor-2").wait_for()
    await page.wait_for_function("document.getElementById('live-status').className === 'live'")
    assert await page.locator("#total").text_content() == "2"
    # Out of jurisdiction: bank-b's alert is never shown (it went in before actor-2's).
    assert await page.locator("#alerts", has_text="bank-b").count() == 0
    assert "重大" in (await row.text_content() or "")
    await page.screenshot(path=str(SHOTS / "alert-list.png"), full_page=True)

    # Drill-down: findings, explanation, evidence, the chart with its threshold.
    await (
        page.locator("#alerts tbody tr", has_text="bulk export by actor-1")
        .filter(has=page.locator("td:nth-child(7)", has_text="2"))
        .wait_for()
    )
    await row.locator("a").click()
    await page.wait_for_selector("svg.chart polyline.threshold", state="attached")
    assert await page.locator("svg.chart circle.pt").count() == 2
    # No per-event scores of actor-1 here: the chart is the findings', and says so.
    assert await page.locator("svg.scores-chart").count() == 0
    assert "发现" in (await page.locator("#chart-source").text_content() or "")
    text = await page.locator("main").text_content() or ""
    assert "ev-actor-1-1" in text and "records: 90000 / 300" in text
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d CST", text)
    await page.screenshot(path=str(SHOTS / "alert-detail.png"), full_page=True)
    alert_id = page.url.rsplit("/", 1)[-1]

    assert await page.locator("#trail tr.audit").count() == 0
    await page.fill("#ack-form input[name=note]", "looking")
    await page.click("#ack")
    await page.wait_for_selector("#f-state:has-text('已确认')")
    # Each action's entry of the service's audit log appears in the page, with its note.
    ack = page.locator("#trail tr.audit[data-action=acknowledge]")
    assert "wang.fang (supervisor)" in (await ack.text_content() or "")
    assert await ack.locator("q.note").text_content() == "looking"
    await page.fill("#assign-form input[name=assignee]", "zhao.lei")
    await page.click("#assign")
    await page.wait_for_selector("#f-assignee:has-text('zhao.lei')")
    assigned = await page.locator("#trail tr.audit[data-action=assign]").text_content() or ""
    assert "wang.fang" in assigned and "- → zhao.lei" in assigned

    # Another supervisor gets there first: the stale form is refused and the page says so.
    ch, other = stub(service)
    got = await other.GetAlert(
        alerts_pb2.GetAlertRequest(alert_id=alert_id),
        metadata=[("authorization", f"Bearer {OTHER}")],
    )
    await other.Assign(
        alerts_pb2.AssignRequest(
            alert_id=alert_id, expected_version=got.alert.version, assignee="chen.jie"
        ),
        metadata=[("authorization", f"Bearer {OTHER}")],
    )
    await ch.close()
    await page.select_option("#resolve-form select[name=verdict]", "1")
    await page.fill("#resolve-form input[name=note]", "confirmed with the bank")
    await page.click("#resolve")
    await page.wait_for_selector("#conflict")
    assert await page.locator("#f-assignee").text_content() == "chen.jie"
    assert await page.locator("#f-state").text_content() == "已确认"
    # Who got there first is in the trail shown with the conflict.
    last = await page.locator("#trail tr.audit").last.text_content() or ""
    assert "chen.jie" in last and "zhao.lei → chen.jie" in last
    await page.screenshot(path=str(SHOTS / "conflict.png"), full_page=True)

    # The refreshed form carries the new version: resolving now works.
    await page.select_option("#resolve-form select[name=verdict]", "1")
    await page.fill("#resolve-form input[name=note]", "confirmed with the bank")
    await page.click("#resolve")
    await page.wait_for_selector("#f-state:has-text('已结案')")
    assert await page.locator("#f-note").text_content() == "confirmed with the bank"
    assert await page.locator("#resolve").count() == 0
    resolved = page.locator("#trail tr.audit[data-action=resolve]")
    assert "属实" in (await resolved.text_content() or "")
    assert await resolved.locator("q.note").text_content() == "confirmed with the bank"
    assert await page.locator("#trail tr.audit").count() == 4
    await page.screenshot(path=str(SHOTS / "alert-resolved.png"), full_page=True)
    actions = audit(service, alert_id)
    mine = [a for who, a in actions if who == "wang.fang"]
    assert len(mine) == 3 and ("chen.jie", mine[0]) not in actions
    assert sum(who == "chen.jie" for who, _ in actions) == 1


async def test_a_silence_made_in_the_page_marks_the_repeat_and_can_be_expired(
    service: AlertApp, console: str, browser: Any, kafka_bootstrap: str, topic_prefix: str
) -> None:
    produce(kafka_bootstrap, topic_prefix, [finding(1, entity="noisy")])
    # Silences made elsewhere (another supervisor, over gRPC) are listed too, within jurisdiction.
    ch, other = stub(service)
    # entity_id=all names no institution: it mutes that entity's alerts at every institution.
    for name, inst in (
        ("institution_id", "bank-a"),
        ("institution_id", "bank-b"),
        ("entity_id", "all"),
    ):
        req = alerts_pb2.CreateSilenceRequest(
            matchers=[alerts_pb2.Matcher(name=name, value=inst)],
            comment=f"maintenance at {inst}",
        )
        req.ends_at.FromDatetime(datetime.now(UTC) + timedelta(hours=2))
        await other.CreateSilence(req, metadata=[("authorization", f"Bearer {OTHER}")])
    await ch.close()
    page = await sign_in(browser, console, SUP, lang="en")
    await page.locator("#alerts tbody tr", has_text="noisy").locator("a").click()
    await page.fill("#silence-form input[name=comment]", "known batch job")
    await page.click("#silence")
    await page.wait_for_selector("#notice")
    assert "Silence created" in (await page.locator("#notice").text_content() or "")
    # A repeat from the same entity, after the silence: its alert is marked silenced, live.
    await page.goto(f"{console}/")
    await page.wait_for_function("document.getElementById('live-status').className === 'live'")
    produce(kafka_bootstrap, topic_prefix, [finding(2, entity="noisy")])
    await (
        page.locator("#alerts tbody tr", has_text="noisy")
        .locator(".tag", has_text="silenced")
        .wait_for()
    )
    await page.goto(f"{console}/silences")
    listed = page.locator("#silences tbody tr")
    assert await listed.count() == 3
    # One for every institution mutes hers too, so she sees it; lifting it is not hers to do.
    everyone = listed.filter(has_text="maintenance at all")
    assert await everyone.locator(".sstate").text_content() == "active"
    assert await everyone.locator("button.expire").count() == 0
    theirs = listed.filter(has_text="maintenance at bank-a")
    assert await theirs.locator(".creator").text_content() == "chen.jie"
    assert await page.locator("#silences", has_text="bank-b").count() == 0
    mine = listed.filter(has_text="known batch job")
    assert "entity_id=noisy" in (await mine.text_content() or "")
    assert await mine.locator(".creator").text_content() == "wang.fang"
    await mine.locator("button.expire").click()
    await page.wait_for_selector("#notice:has-text('Silence expired')")
    # Still listed, as ended, with no expire button; the other supervisor's stays in force.
    assert await mine.locator(".sstate").text_content() == "ended"
    assert await mine.locator("button.expire").count() == 0
    assert await theirs.locator("button.expire").count() == 1
    await page.screenshot(path=str(SHOTS / "silences.png"), full_page=True)


async def test_viewer_has_no_triage_and_a_forged_request_is_refused(
    service: AlertApp, console: str, browser: Any, kafka_bootstrap: str, topic_prefix: str
) -> None:
    # One partition (one key): bank-b's is in the store once bank-a's later one is shown.
    sandbox = [sandbox_finding("bank-b", 900, 500), sandbox_finding("bank-a", 1200, 1000)]
    produce(kafka_bootstrap, topic_prefix, [finding(1), *sandbox])
    produce_scores(kafka_bootstrap, topic_prefix, "actor-1", 40)
    tests = [
        registered("t-pay-a", "bank-a", "pay-bank-a"),
        registered("t-quiet-a", "bank-a", "quiet-bank-a"),
        registered("t-pay-b", "bank-b", "pay-bank-b"),
    ]
    publish_registry(kafka_bootstrap, topic_prefix, tests)
    page = await sign_in(browser, console, VIEWER, lang="en", tz="America/New_York")
    await page.locator("#alerts tbody tr", has_text="pay-bank-a").wait_for()
    assert "Supervisory alert console" in (await page.locator("h1").text_content() or "")
    row = page.locator("#alerts tbody tr", has_text="actor-1")
    for _ in range(200):  # the service follows scores.v1 in a thread of its own
        if service.scores.query(EntityKey("bank-a", "actor", "actor-1"), None, None, 1)[0]:
            break
        await asyncio.sleep(0.1)
    await row.locator("a").click()
    await page.wait_for_selector("#read-only")
    assert await page.locator("#ack, #assign, #resolve, #silence").count() == 0
    # The chart is the entity's per-event scores: observed vs expected, the score against its
    # threshold, the alarm and the alert's finding marked.
    chart = page.locator("svg.scores-chart")
    assert await chart.get_attribute("data-scores") == "40"
    for part in ("polyline.observed", "polyline.expected", "polyline.score", "polyline.threshold"):
        assert await chart.locator(part).count() == 1, part
    assert await chart.locator("line.finding-mark").count() == 1
    assert await chart.locator("circle.alarm").count() == 1
    assert "leak.access" in (await page.locator("#chart-source").text_content() or "")
    text = await page.locator("main").text_content() or ""
    assert re.search(r"\d\d:\d\d:\d\d E[SD]T", text)
    await page.screenshot(path=str(SHOTS / "viewer-detail.png"), full_page=True)
    alert_id = page.url.rsplit("/", 1)[-1]
    csrf = await page.locator("input[name=csrf]").first.get_attribute("value")
    forged = await page.request.post(
        f"{console}/alerts/{alert_id}/acknowledge", form={"csrf": csrf or "", "version": "0"}
    )
    assert forged.status == 403
    assert audit(service, alert_id) == []
    # The viewer reads the silences (why an alert is muted) but can neither expire nor make one.
    ch, other = stub(service)
    req = alerts_pb2.CreateSilenceRequest(
        matchers=[alerts_pb2.Matcher(name="institution_id", value="bank-a")], comment="upgrade"
    )
    req.ends_at.FromDatetime(datetime.now(UTC) + timedelta(hours=2))
    await other.CreateSilence(req, metadata=[("authorization", f"Bearer {OTHER}")])
    await ch.close()
    await page.goto(f"{console}/silences")
    assert "upgrade" in (await page.locator("#silences tbody").text_content() or "")
    assert await page.locator("button.expire, #silence-form").count() == 0
    # The overview names the sandbox app past its approved boundary, in jurisdiction only.
    await page.goto(f"{console}/overview")
    crossed = page.locator("#sandbox tbody tr[data-boundary='sandbox.user_cap']")
    assert await crossed.count() == 1
    text = await crossed.text_content() or ""
    assert "pay-bank-a" in text and "user cap" in text and "1200 users, cap 1000" in text
    # The register: her jurisdiction's tests, the one within its boundaries too, each with its
    # approved boundaries and its crossings beside it; bank-b's test is not shown.
    assert service.register is not None
    await asyncio.to_thread(service.register.wait_complete, 30)
    for _ in range(100):
        if len(service.register.tests) == 3:
            break
        await asyncio.sleep(0.1)
    await page.reload()
    rows = page.locator("#register tbody tr")
    assert [await r.get_attribute("data-test") for r in await rows.all()] == [
        "t-pay-a",
        "t-quiet-a",
    ]
    pay = rows.filter(has=page.locator("td", has_text="pay-bank-a"))
    assert await pay.locator(".crossing[data-boundary='sandbox.user_cap']").count() == 1
    pay_text = await pay.text_content() or ""
    assert "1000" in pay_text and "50,000.00" in pay_text and "qr_payment" in pay_text
    # The period in her zone: 2026-01-01 12:00 UTC is that day's 07:00 in New York.
    assert "2026-01-01 – 2027-06-30" in pay_text
    quiet = page.locator("#register tr[data-test='t-quiet-a'] .crossings")
    assert (await quiet.text_content() or "").strip() == "within boundaries"
    assert await page.locator("main", has_text="bank-b").count() == 0
    await page.screenshot(path=str(SHOTS / "overview.png"), full_page=True)

    # An institution's credential gets nothing, and an unknown token neither.
    other = await browser.new_page()
    for token, status in ((INSTITUTION, 403), ("tok-16chars-nobody-at-all", 401)):
        resp = await other.request.post(f"{console}/login", form={"token": token, "lang": "en"})
        assert resp.status == status
    await other.goto(f"{console}/")
    assert other.url.endswith("/login")


async def test_the_live_list_continues_from_the_rendered_page_and_resumes_after_its_last_id(
    service: AlertApp, console: str, browser: Any, kafka_bootstrap: str, topic_prefix: str
) -> None:
    produce(kafka_bootstrap, topic_prefix, [finding(i, entity=f"e{i}") for i in range(1, 7)])
    ch, other = stub(service)
    everyone = [("authorization", f"Bearer {OTHER}")]
    while (
        len((await other.ListAlerts(alerts_pb2.ListAlertsRequest(), metadata=everyone)).alerts) < 6
    ):
        await asyncio.sleep(0.2)
    await ch.close()
    page = await sign_in(browser, console, SUP)
    # The six are in the page as ListAlerts rendered it, and the stream starts after them.
    assert await page.locator("#alerts tbody tr").count() == 6
    # The page's own stream asks for the cursor its list was read at, not "0".
    async with page.expect_request(lambda r: "/events" in r.url) as opened:
        await page.reload()
    cursor = await page.locator("#alerts").get_attribute("data-cursor") or ""
    assert int(cursor) >= 6 and f"cursor={cursor}" in (await opened.value).url
    await page.wait_for_function("document.getElementById('live-status').className === 'live'")
    cookies = {c["name"]: c["value"] for c in await page.context.cookies()}

    async def frames(query: str, last: str | None, n: int) -> list[tuple[int, str]]:
        """(event id, entity) of the first ``n`` alert events of /events."""
        headers = {"Last-Event-ID": last} if last else {}
        got: list[tuple[int, str]] = []
        event_id = 0
        async with aiohttp.ClientSession(cookies=cookies) as http:
            async with http.get(f"{console}/events{query}", headers=headers) as resp:
                async for line in resp.content:
                    if line.startswith(b"id: "):
                        event_id = int(line[4:])
                    elif line.startswith(b"data: "):
                        entity = re.search(r"actor:(e\d+)", json.loads(line[6:])["html"])
                        got.append((event_id, entity.group(1) if entity else "?"))
                        if len(got) == n:
                            return got
        return got

    # From the page's cursor: the next event is the next change, not a replay of the six.
    first = asyncio.create_task(frames(f"?cursor={cursor}", None, 1))
    produce(kafka_bootstrap, topic_prefix, [finding(7, entity="e7")])
    [(seventh, entity)] = await asyncio.wait_for(first, 30)
    assert entity == "e7" and seventh > int(cursor)
    # Resumed after its last id (and Last-Event-ID wins over the page's cursor): no repeat, no gap.
    produce(kafka_bootstrap, topic_prefix, [finding(8, entity="e8")])
    resumed = await asyncio.wait_for(frames(f"?cursor={cursor}", str(seventh), 1), 30)
    assert resumed[0][1] == "e8" and resumed[0][0] > seventh
    # The page itself got both live, and only them.
    await page.locator("#alerts tbody tr", has_text="actor:e8").wait_for()
    assert await page.locator("#alerts tbody tr").count() == 8
    assert await page.locator("#alerts tbody tr.fresh").count() == 2


@pytest.mark.postgres
async def test_on_postgresql_an_alert_arrives_live_and_is_acknowledged(
    service: AlertApp, console: str, browser: Any, kafka_bootstrap: str, topic_prefix: str
) -> None:
    page = await sign_in(browser, console, SUP, lang="en")
    await page.wait_for_function("document.getElementById('live-status').className === 'live'")
    produce(kafka_bootstrap, topic_prefix, [finding(1, entity="pg-actor")])
    row = page.locator("#alerts tbody tr", has_text="pg-actor")
    await row.wait_for()
    assert await page.locator("#total").text_content() == "1"
    await row.locator("a").click()
    await page.click("#ack")
    await page.wait_for_selector("#f-state:has-text('acknowledged')")
    assert audit(service, page.url.rsplit("/", 1)[-1].split("?")[0]) == [
        ("wang.fang", "acknowledge")
    ]
