import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from suptech.v1 import findings_pb2 as _findings_pb2
from suptech.v1 import sandbox_pb2 as _sandbox_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AlertState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ALERT_STATE_UNSPECIFIED: _ClassVar[AlertState]
    ALERT_STATE_OPEN: _ClassVar[AlertState]
    ALERT_STATE_ACKNOWLEDGED: _ClassVar[AlertState]
    ALERT_STATE_RESOLVED: _ClassVar[AlertState]

class Verdict(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERDICT_UNSPECIFIED: _ClassVar[Verdict]
    VERDICT_TRUE_POSITIVE: _ClassVar[Verdict]
    VERDICT_FALSE_POSITIVE: _ClassVar[Verdict]
    VERDICT_BENIGN: _ClassVar[Verdict]

class AlertEventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ALERT_EVENT_KIND_UNSPECIFIED: _ClassVar[AlertEventKind]
    ALERT_EVENT_KIND_CREATED: _ClassVar[AlertEventKind]
    ALERT_EVENT_KIND_UPDATED: _ClassVar[AlertEventKind]
    ALERT_EVENT_KIND_ESCALATED: _ClassVar[AlertEventKind]
    ALERT_EVENT_KIND_RESOLVED: _ClassVar[AlertEventKind]
ALERT_STATE_UNSPECIFIED: AlertState
ALERT_STATE_OPEN: AlertState
ALERT_STATE_ACKNOWLEDGED: AlertState
ALERT_STATE_RESOLVED: AlertState
VERDICT_UNSPECIFIED: Verdict
VERDICT_TRUE_POSITIVE: Verdict
VERDICT_FALSE_POSITIVE: Verdict
VERDICT_BENIGN: Verdict
ALERT_EVENT_KIND_UNSPECIFIED: AlertEventKind
ALERT_EVENT_KIND_CREATED: AlertEventKind
ALERT_EVENT_KIND_UPDATED: AlertEventKind
ALERT_EVENT_KIND_ESCALATED: AlertEventKind
ALERT_EVENT_KIND_RESOLVED: AlertEventKind

class Alert(_message.Message):
    __slots__ = ("alert_id", "family", "institution_id", "entity_kind", "entity_id", "detector_id", "grade", "state", "summary", "assignee", "verdict", "resolution_note", "finding_count", "silenced", "version", "first_seen", "last_seen", "ack_deadline", "escalation_level", "created_time", "updated_time", "findings", "auto_resolved")
    ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    INSTITUTION_ID_FIELD_NUMBER: _ClassVar[int]
    ENTITY_KIND_FIELD_NUMBER: _ClassVar[int]
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    DETECTOR_ID_FIELD_NUMBER: _ClassVar[int]
    GRADE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    ASSIGNEE_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_NOTE_FIELD_NUMBER: _ClassVar[int]
    FINDING_COUNT_FIELD_NUMBER: _ClassVar[int]
    SILENCED_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    ACK_DEADLINE_FIELD_NUMBER: _ClassVar[int]
    ESCALATION_LEVEL_FIELD_NUMBER: _ClassVar[int]
    CREATED_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATED_TIME_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    AUTO_RESOLVED_FIELD_NUMBER: _ClassVar[int]
    alert_id: str
    family: _findings_pb2.Family
    institution_id: str
    entity_kind: str
    entity_id: str
    detector_id: str
    grade: _findings_pb2.Grade
    state: AlertState
    summary: str
    assignee: str
    verdict: Verdict
    resolution_note: str
    finding_count: int
    silenced: bool
    version: int
    first_seen: _timestamp_pb2.Timestamp
    last_seen: _timestamp_pb2.Timestamp
    ack_deadline: _timestamp_pb2.Timestamp
    escalation_level: int
    created_time: _timestamp_pb2.Timestamp
    updated_time: _timestamp_pb2.Timestamp
    findings: _containers.RepeatedCompositeFieldContainer[_findings_pb2.Finding]
    auto_resolved: bool
    def __init__(self, alert_id: _Optional[str] = ..., family: _Optional[_Union[_findings_pb2.Family, str]] = ..., institution_id: _Optional[str] = ..., entity_kind: _Optional[str] = ..., entity_id: _Optional[str] = ..., detector_id: _Optional[str] = ..., grade: _Optional[_Union[_findings_pb2.Grade, str]] = ..., state: _Optional[_Union[AlertState, str]] = ..., summary: _Optional[str] = ..., assignee: _Optional[str] = ..., verdict: _Optional[_Union[Verdict, str]] = ..., resolution_note: _Optional[str] = ..., finding_count: _Optional[int] = ..., silenced: _Optional[bool] = ..., version: _Optional[int] = ..., first_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ack_deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., escalation_level: _Optional[int] = ..., created_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., findings: _Optional[_Iterable[_Union[_findings_pb2.Finding, _Mapping]]] = ..., auto_resolved: _Optional[bool] = ...) -> None: ...

class Feedback(_message.Message):
    __slots__ = ("alert_id", "verdict", "institution_id", "family", "entity_kind", "entity_id", "detector_id", "finding_ids", "actor", "time")
    ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    INSTITUTION_ID_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    ENTITY_KIND_FIELD_NUMBER: _ClassVar[int]
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    DETECTOR_ID_FIELD_NUMBER: _ClassVar[int]
    FINDING_IDS_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    alert_id: str
    verdict: Verdict
    institution_id: str
    family: _findings_pb2.Family
    entity_kind: str
    entity_id: str
    detector_id: str
    finding_ids: _containers.RepeatedScalarFieldContainer[str]
    actor: str
    time: _timestamp_pb2.Timestamp
    def __init__(self, alert_id: _Optional[str] = ..., verdict: _Optional[_Union[Verdict, str]] = ..., institution_id: _Optional[str] = ..., family: _Optional[_Union[_findings_pb2.Family, str]] = ..., entity_kind: _Optional[str] = ..., entity_id: _Optional[str] = ..., detector_id: _Optional[str] = ..., finding_ids: _Optional[_Iterable[str]] = ..., actor: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Matcher(_message.Message):
    __slots__ = ("name", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: str
    def __init__(self, name: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class Silence(_message.Message):
    __slots__ = ("silence_id", "matchers", "ends_at", "comment", "created_by", "created_time", "expired", "caller_may_expire")
    SILENCE_ID_FIELD_NUMBER: _ClassVar[int]
    MATCHERS_FIELD_NUMBER: _ClassVar[int]
    ENDS_AT_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    CREATED_TIME_FIELD_NUMBER: _ClassVar[int]
    EXPIRED_FIELD_NUMBER: _ClassVar[int]
    CALLER_MAY_EXPIRE_FIELD_NUMBER: _ClassVar[int]
    silence_id: str
    matchers: _containers.RepeatedCompositeFieldContainer[Matcher]
    ends_at: _timestamp_pb2.Timestamp
    comment: str
    created_by: str
    created_time: _timestamp_pb2.Timestamp
    expired: bool
    caller_may_expire: bool
    def __init__(self, silence_id: _Optional[str] = ..., matchers: _Optional[_Iterable[_Union[Matcher, _Mapping]]] = ..., ends_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., comment: _Optional[str] = ..., created_by: _Optional[str] = ..., created_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expired: _Optional[bool] = ..., caller_may_expire: _Optional[bool] = ...) -> None: ...

class ListAlertsRequest(_message.Message):
    __slots__ = ("family", "min_grade", "institution_id", "state", "since", "until", "page_size", "page_token")
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    MIN_GRADE_FIELD_NUMBER: _ClassVar[int]
    INSTITUTION_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    family: _findings_pb2.Family
    min_grade: _findings_pb2.Grade
    institution_id: str
    state: AlertState
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    page_size: int
    page_token: str
    def __init__(self, family: _Optional[_Union[_findings_pb2.Family, str]] = ..., min_grade: _Optional[_Union[_findings_pb2.Grade, str]] = ..., institution_id: _Optional[str] = ..., state: _Optional[_Union[AlertState, str]] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListAlertsResponse(_message.Message):
    __slots__ = ("alerts", "next_page_token", "stream_cursor")
    ALERTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STREAM_CURSOR_FIELD_NUMBER: _ClassVar[int]
    alerts: _containers.RepeatedCompositeFieldContainer[Alert]
    next_page_token: str
    stream_cursor: str
    def __init__(self, alerts: _Optional[_Iterable[_Union[Alert, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., stream_cursor: _Optional[str] = ...) -> None: ...

class GetAlertRequest(_message.Message):
    __slots__ = ("alert_id",)
    ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    alert_id: str
    def __init__(self, alert_id: _Optional[str] = ...) -> None: ...

class GetAlertResponse(_message.Message):
    __slots__ = ("alert",)
    ALERT_FIELD_NUMBER: _ClassVar[int]
    alert: Alert
    def __init__(self, alert: _Optional[_Union[Alert, _Mapping]] = ...) -> None: ...

class StreamAlertsRequest(_message.Message):
    __slots__ = ("cursor",)
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    cursor: str
    def __init__(self, cursor: _Optional[str] = ...) -> None: ...

class AlertEvent(_message.Message):
    __slots__ = ("cursor", "kind", "alert")
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ALERT_FIELD_NUMBER: _ClassVar[int]
    cursor: str
    kind: AlertEventKind
    alert: Alert
    def __init__(self, cursor: _Optional[str] = ..., kind: _Optional[_Union[AlertEventKind, str]] = ..., alert: _Optional[_Union[Alert, _Mapping]] = ...) -> None: ...

class AcknowledgeRequest(_message.Message):
    __slots__ = ("alert_id", "expected_version", "note")
    ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    alert_id: str
    expected_version: int
    note: str
    def __init__(self, alert_id: _Optional[str] = ..., expected_version: _Optional[int] = ..., note: _Optional[str] = ...) -> None: ...

class AssignRequest(_message.Message):
    __slots__ = ("alert_id", "expected_version", "assignee")
    ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    ASSIGNEE_FIELD_NUMBER: _ClassVar[int]
    alert_id: str
    expected_version: int
    assignee: str
    def __init__(self, alert_id: _Optional[str] = ..., expected_version: _Optional[int] = ..., assignee: _Optional[str] = ...) -> None: ...

class ResolveRequest(_message.Message):
    __slots__ = ("alert_id", "expected_version", "verdict", "note")
    ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    alert_id: str
    expected_version: int
    verdict: Verdict
    note: str
    def __init__(self, alert_id: _Optional[str] = ..., expected_version: _Optional[int] = ..., verdict: _Optional[_Union[Verdict, str]] = ..., note: _Optional[str] = ...) -> None: ...

class AlertResponse(_message.Message):
    __slots__ = ("alert",)
    ALERT_FIELD_NUMBER: _ClassVar[int]
    alert: Alert
    def __init__(self, alert: _Optional[_Union[Alert, _Mapping]] = ...) -> None: ...

class CreateSilenceRequest(_message.Message):
    __slots__ = ("matchers", "ends_at", "comment")
    MATCHERS_FIELD_NUMBER: _ClassVar[int]
    ENDS_AT_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    matchers: _containers.RepeatedCompositeFieldContainer[Matcher]
    ends_at: _timestamp_pb2.Timestamp
    comment: str
    def __init__(self, matchers: _Optional[_Iterable[_Union[Matcher, _Mapping]]] = ..., ends_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., comment: _Optional[str] = ...) -> None: ...

class CreateSilenceResponse(_message.Message):
    __slots__ = ("silence",)
    SILENCE_FIELD_NUMBER: _ClassVar[int]
    silence: Silence
    def __init__(self, silence: _Optional[_Union[Silence, _Mapping]] = ...) -> None: ...

class ExpireSilenceRequest(_message.Message):
    __slots__ = ("silence_id",)
    SILENCE_ID_FIELD_NUMBER: _ClassVar[int]
    silence_id: str
    def __init__(self, silence_id: _Optional[str] = ...) -> None: ...

class ExpireSilenceResponse(_message.Message):
    __slots__ = ("silence",)
    SILENCE_FIELD_NUMBER: _ClassVar[int]
    silence: Silence
    def __init__(self, silence: _Optional[_Union[Silence, _Mapping]] = ...) -> None: ...

class ListAuditEntriesRequest(_message.Message):
    __slots__ = ("alert_id",)
    ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    alert_id: str
    def __init__(self, alert_id: _Optional[str] = ...) -> None: ...

class AuditEntry(_message.Message):
    __slots__ = ("entry_id", "time", "actor", "role", "action", "alert_id", "details", "hash")
    ENTRY_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    entry_id: int
    time: _timestamp_pb2.Timestamp
    actor: str
    role: str
    action: str
    alert_id: str
    details: _struct_pb2.Struct
    hash: str
    def __init__(self, entry_id: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., actor: _Optional[str] = ..., role: _Optional[str] = ..., action: _Optional[str] = ..., alert_id: _Optional[str] = ..., details: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., hash: _Optional[str] = ...) -> None: ...

class ListAuditEntriesResponse(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[AuditEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[AuditEntry, _Mapping]]] = ...) -> None: ...

class ListSilencesRequest(_message.Message):
    __slots__ = ("include_expired", "page_size")
    INCLUDE_EXPIRED_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    include_expired: bool
    page_size: int
    def __init__(self, include_expired: _Optional[bool] = ..., page_size: _Optional[int] = ...) -> None: ...

class ListSilencesResponse(_message.Message):
    __slots__ = ("silences",)
    SILENCES_FIELD_NUMBER: _ClassVar[int]
    silences: _containers.RepeatedCompositeFieldContainer[Silence]
    def __init__(self, silences: _Optional[_Iterable[_Union[Silence, _Mapping]]] = ...) -> None: ...

class ListSandboxTestsRequest(_message.Message):
    __slots__ = ("institution_id",)
    INSTITUTION_ID_FIELD_NUMBER: _ClassVar[int]
    institution_id: str
    def __init__(self, institution_id: _Optional[str] = ...) -> None: ...

class ListSandboxTestsResponse(_message.Message):
    __slots__ = ("tests", "complete")
    TESTS_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    tests: _containers.RepeatedCompositeFieldContainer[_sandbox_pb2.SandboxTest]
    complete: bool
    def __init__(self, tests: _Optional[_Iterable[_Union[_sandbox_pb2.SandboxTest, _Mapping]]] = ..., complete: _Optional[bool] = ...) -> None: ...

class ListEntityScoresRequest(_message.Message):
    __slots__ = ("institution_id", "entity_kind", "entity_id", "from_time", "to_time", "limit")
    INSTITUTION_ID_FIELD_NUMBER: _ClassVar[int]
    ENTITY_KIND_FIELD_NUMBER: _ClassVar[int]
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_TIME_FIELD_NUMBER: _ClassVar[int]
    TO_TIME_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    institution_id: str
    entity_kind: str
    entity_id: str
    from_time: _timestamp_pb2.Timestamp
    to_time: _timestamp_pb2.Timestamp
    limit: int
    def __init__(self, institution_id: _Optional[str] = ..., entity_kind: _Optional[str] = ..., entity_id: _Optional[str] = ..., from_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., to_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., limit: _Optional[int] = ...) -> None: ...

class ListEntityScoresResponse(_message.Message):
    __slots__ = ("scores", "truncated")
    SCORES_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    scores: _containers.RepeatedCompositeFieldContainer[_findings_pb2.AnomalyScore]
    truncated: bool
    def __init__(self, scores: _Optional[_Iterable[_Union[_findings_pb2.AnomalyScore, _Mapping]]] = ..., truncated: _Optional[bool] = ...) -> None: ...
