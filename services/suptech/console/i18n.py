"""Labels in Chinese and English; grade and family names as the regulator uses them."""

from __future__ import annotations

__all__ = ["GRADE_NAMES", "label"]

_LABELS: dict[str, tuple[str, str]] = {
    "title": ("监管预警台", "Supervisory alert console"),
    "sign_in": ("登录", "Sign in"),
    "sign_out": ("退出", "Sign out"),
    "token": ("访问令牌", "Access token"),
    "time_zone": ("时区", "Time zone"),
    "language": ("语言", "Language"),
    "alerts": ("预警", "Alerts"),
    "overview": ("概览", "Overview"),
    "silences": ("静默规则", "Silences"),
    "family": ("类别", "Family"),
    "grade": ("等级", "Grade"),
    "min_grade": ("最低等级", "Minimum grade"),
    "state": ("状态", "State"),
    "institution": ("机构", "Institution"),
    "entity": ("对象", "Entity"),
    "summary": ("摘要", "Summary"),
    "last_seen": ("最近发生", "Last seen"),
    "first_seen": ("首次发生", "First seen"),
    "created": ("预警生成", "Alert created"),
    "deadline": ("确认期限", "Ack deadline"),
    "escalation": ("升级", "Escalation"),
    "assignee": ("负责人", "Assignee"),
    "findings": ("发现", "Findings"),
    "count": ("数量", "Count"),
    "total": ("合计", "Total"),
    "any": ("全部", "Any"),
    "since_hours": ("最近(小时)", "Last (hours)"),
    "filter": ("筛选", "Filter"),
    "live": ("实时", "Live"),
    "reconnecting": ("重连中", "Reconnecting"),
    "explanation": (
        "解释:主要特征(观测值/基线)",
        "Explanation: top features (observed vs baseline)",
    ),
    "evidence": ("证据事件", "Evidence events"),
    "chart": ("评分与阈值", "Score and threshold"),
    "threshold": ("阈值", "Threshold"),
    "score": ("评分", "Score"),
    "observed": ("观测值", "Observed"),
    "expected": ("预期值", "Expected"),
    "finding_mark": ("本预警的发现", "This alert's finding"),
    "scores_of": ("逐事件评分:模型", "Per-event scores, model"),
    "events_n": ("个事件", "events"),
    "from_findings": (
        "依据本预警的发现绘制(服务暂无该对象的逐事件评分)",
        "Drawn from the alert's findings (the service holds no per-event scores of this entity)",
    ),
    "acknowledge": ("确认", "Acknowledge"),
    "assign": ("指派", "Assign"),
    "resolve": ("结案", "Resolve"),
    "verdict": ("结论", "Verdict"),
    "note": ("说明", "Note"),
    "silence": ("静默", "Silence"),
    "expire": ("解除", "Expire"),
    "ends_at": ("截止时间", "Ends at"),
    "hours": ("小时", "hours"),
    "comment": ("备注", "Comment"),
    "matchers": ("匹配条件", "Matchers"),
    "conflict": (
        "冲突:另一位监管人员已先行更新此预警。以下为最新状态,请确认后再操作。",
        "Conflict: another supervisor updated this alert first. Its current state is shown; "
        "review it before acting again.",
    ),
    "refused": ("无权执行此操作", "You may not do this"),
    "no_access": ("此凭证无权查看预警", "This credential may not read alerts"),
    "bad_token": ("令牌无效或已过期", "Unknown or expired token"),
    "unreachable": ("预警服务不可达", "The alert service cannot be reached"),
    "tls_refused": (
        "与预警服务的TLS握手失败(证书被拒或不受信任),请联系运维人员。",
        "The TLS handshake with the alert service failed (a certificate refused or not "
        "trusted): ask the operator to check the console's CA and client certificate.",
    ),
    "no_client_cert": (
        "本控制台未配置客户端证书(CONSOLE_ALERTS_CLIENT_CERT),而预警服务可能要求双向TLS。",
        "This console sends no client certificate (CONSOLE_ALERTS_CLIENT_CERT) and the service "
        "may require mutual TLS.",
    ),
    "silenced": ("已静默", "silenced"),
    "read_only": ("只读角色:无处置权限", "Read-only role: no triage"),
    "version": ("版本", "Version"),
    "done": ("已完成", "Done"),
    "by_institution": ("按机构与类别", "By institution and family"),
    "systemic": ("同一实体涉及多家机构", "Entities seen at several institutions"),
    "silence_created": ("已创建静默", "Silence created"),
    "silence_expired": ("静默已解除", "Silence expired"),
    "auto_resolved": ("自动结案", "auto-resolved"),
    "audit": ("审计记录", "Audit log"),
    "time": ("时间", "Time"),
    "actor": ("操作人", "Actor"),
    "action": ("操作", "Action"),
    "details": ("内容", "Details"),
    "entry": ("记录", "Entry"),
    "no_entries": ("尚无人工处置", "No action taken yet"),
    "from_version": ("原版本", "from version"),
    "level": ("级别", "level"),
    "created_by": ("创建人", "Created by"),
    "created_time": ("创建时间", "Created"),
    "active": ("生效中", "active"),
    "ended": ("已失效", "ended"),
    "show_expired": ("显示已失效", "Show ended"),
    "no_silences": ("无静默规则", "No silences"),
    "sandbox": ("创新试点:越界情况", "Sandbox tests: boundaries crossed"),
    "sandbox_note": (
        "来自试点类预警(含未登记的测试),未处置且最严重的在前。",
        "From the sandbox family's alerts (unregistered tests included), open and worst first.",
    ),
    "register": ("创新试点:登记的测试及其边界", "Sandbox tests: the register and its boundaries"),
    "register_note": (
        "每项登记的测试及其批准边界,旁列其越界预警;无越界者标为“边界内”。",
        "Every registered test with its approved boundaries and, beside it, the alerts of its "
        "app that crossed one; a test with none open is marked within its boundaries.",
    ),
    "register_incomplete": (
        "预警服务尚未读完试点登记册,列表可能不全。",
        "The alert service has not finished reading the register: the list may be incomplete.",
    ),
    "register_unavailable": ("无法读取试点登记册", "The register of tests cannot be read"),
    "test_id": ("测试编号", "Test"),
    "test_name": ("名称", "Name"),
    "period": ("测试期限", "Test period"),
    "user_cap": ("用户数上限", "User cap"),
    "single_cap": ("单笔上限(元)", "Single cap (yuan)"),
    "daily_cap": ("每日上限(元)", "Daily cap (yuan)"),
    "features": ("批准功能", "Approved features"),
    "crossings": ("越界", "Crossings"),
    "within": ("边界内", "within boundaries"),
    "no_tests": ("无登记的测试", "No registered tests"),
    "app": ("应用", "App"),
    "boundary": ("边界", "Boundary"),
}

# The sandbox family's rules (detector/logic/sandbox.py), each one approved boundary of a test.
BOUNDARY_NAMES: dict[str, tuple[str, str]] = {
    "sandbox.user_cap": ("用户数上限", "user cap"),
    "sandbox.single_amount_cap": ("单笔金额上限", "single transaction cap"),
    "sandbox.daily_amount_cap": ("每日金额上限", "daily amount cap"),
    "sandbox.outside_period": ("测试期限", "test period"),
    "sandbox.unapproved_feature": ("批准功能范围", "approved features"),
    "sandbox.unregistered_test": ("未登记测试", "unregistered test"),
    "sandbox.surge": ("交易量突增", "volume surge"),
    "sandbox.count_surge": ("次数突增", "count surge"),
}

ACTION_NAMES: dict[str, tuple[str, str]] = {
    "acknowledge": ("确认", "acknowledged"),
    "assign": ("指派", "assigned"),
    "resolve": ("结案", "resolved"),
    "escalate": ("升级", "escalated"),
    "auto_resolve": ("自动结案", "auto-resolved"),
}

GRADE_NAMES: dict[int, tuple[str, str]] = {
    0: ("-", "-"),
    1: ("一般", "general"),
    2: ("较大", "significant"),
    3: ("重大", "major"),
    4: ("特别重大", "critical"),
}

FAMILY_NAMES: dict[int, tuple[str, str]] = {
    0: ("-", "-"),
    1: ("数据泄露", "data leakage"),
    2: ("信息技术自主可控", "IT autonomy"),
    3: ("创新试点", "sandbox"),
}

STATE_NAMES: dict[int, tuple[str, str]] = {
    0: ("-", "-"),
    1: ("待处理", "open"),
    2: ("已确认", "acknowledged"),
    3: ("已结案", "resolved"),
}

VERDICT_NAMES: dict[int, tuple[str, str]] = {
    0: ("-", "-"),
    1: ("属实", "true positive"),
    2: ("误报", "false positive"),
    3: ("无害", "benign"),
}


def _pick(pair: tuple[str, str], lang: str) -> str:
    return pair[0] if lang == "zh" else pair[1]


def label(key: str, lang: str) -> str:
    return _pick(_LABELS[key], lang)


def grade(value: int, lang: str) -> str:
    zh, en = GRADE_NAMES.get(value, ("?", "?"))
    return zh if lang == "zh" else f"{zh} {en}"


def family(value: int, lang: str) -> str:
    return _pick(FAMILY_NAMES.get(value, ("?", "?")), lang)


def state(value: int, lang: str) -> str:
    return _pick(STATE_NAMES.get(value, ("?", "?")), lang)


def verdict(value: int, lang: str) -> str:
    return _pick(VERDICT_NAMES.get(value, ("?", "?")), lang)


def action(name: str, lang: str) -> str:
    """An audit action's label; an action this console does not know shows as written."""
    pair = ACTION_NAMES.get(name)
    return name if pair is None else _pick(pair, lang)


def boundary(rule_id: str, lang: str) -> str:
    pair = BOUNDARY_NAMES.get(rule_id)
    return rule_id if pair is None else _pick(pair, lang)
