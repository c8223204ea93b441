import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Family(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FAMILY_UNSPECIFIED: _ClassVar[Family]
    FAMILY_DATA_LEAKAGE: _ClassVar[Family]
    FAMILY_IT_AUTONOMY: _ClassVar[Family]
    FAMILY_SANDBOX: _ClassVar[Family]

class Grade(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GRADE_UNSPECIFIED: _ClassVar[Grade]
    GRADE_GENERAL: _ClassVar[Grade]
    GRADE_SIGNIFICANT: _ClassVar[Grade]
    GRADE_MAJOR: _ClassVar[Grade]
    GRADE_CRITICAL: _ClassVar[Grade]

class Phase(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PHASE_UNSPECIFIED: _ClassVar[Phase]
    PHASE_ONSET: _ClassVar[Phase]
    PHASE_UPDATE: _ClassVar[Phase]
    PHASE_CLEAR: _ClassVar[Phase]
FAMILY_UNSPECIFIED: Family
FAMILY_DATA_LEAKAGE: Family
FAMILY_IT_AUTONOMY: Family
FAMILY_SANDBOX: Family
GRADE_UNSPECIFIED: Grade
GRADE_GENERAL: Grade
GRADE_SIGNIFICANT: Grade
GRADE_MAJOR: Grade
GRADE_CRITICAL: Grade
PHASE_UNSPECIFIED: Phase
PHASE_ONSET: Phase
PHASE_UPDATE: Phase
PHASE_CLEAR: Phase

class Contribution(_message.Message):
    __slots__ = ("feature", "observed", "baseline", "weight")
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_FIELD_NUMBER: _ClassVar[int]
    BASELINE_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    feature: str
    observed: float
    baseline: float
    weight: float
    def __init__(self, feature: _Optional[str] = ..., observed: _Optional[float] = ..., baseline: _Optional[float] = ..., weight: _Optional[float] = ...) -> None: ...

class Finding(_message.Message):
    __slots__ = ("finding_id", "family", "institution_id", "entity_kind", "entity_id", "rule_id", "model_id", "score", "threshold", "grade", "summary", "contributions", "evidence_event_ids", "event_time", "detected_time", "related_institution_ids", "phase", "condition_id", "declared_window_id")
    FINDING_ID_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    INSTITUTION_ID_FIELD_NUMBER: _ClassVar[int]
    ENTITY_KIND_FIELD_NUMBER: _ClassVar[int]
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    GRADE_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_EVENT_IDS_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    DETECTED_TIME_FIELD_NUMBER: _ClassVar[int]
    RELATED_INSTITUTION_IDS_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    CONDITION_ID_FIELD_NUMBER: _ClassVar[int]
    DECLARED_WINDOW_ID_FIELD_NUMBER: _ClassVar[int]
    finding_id: str
    family: Family
    institution_id: str
    entity_kind: str
    entity_id: str
    rule_id: str
    model_id: str
    score: float
    threshold: float
    grade: Grade
    summary: str
    contributions: _containers.RepeatedCompositeFieldContainer[Contribution]
    evidence_event_ids: _containers.RepeatedScalarFieldContainer[str]
    event_time: _timestamp_pb2.Timestamp
    detected_time: _timestamp_pb2.Timestamp
    related_institution_ids: _containers.RepeatedScalarFieldContainer[str]
    phase: Phase
    condition_id: str
    declared_window_id: str
    def __init__(self, finding_id: _Optional[str] = ..., family: _Optional[_Union[Family, str]] = ..., institution_id: _Optional[str] = ..., entity_kind: _Optional[str] = ..., entity_id: _Optional[str] = ..., rule_id: _Optional[str] = ..., model_id: _Optional[str] = ..., score: _Optional[float] = ..., threshold: _Optional[float] = ..., grade: _Optional[_Union[Grade, str]] = ..., summary: _Optional[str] = ..., contributions: _Optional[_Iterable[_Union[Contribution, _Mapping]]] = ..., evidence_event_ids: _Optional[_Iterable[str]] = ..., event_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., detected_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., related_institution_ids: _Optional[_Iterable[str]] = ..., phase: _Optional[_Union[Phase, str]] = ..., condition_id: _Optional[str] = ..., declared_window_id: _Optional[str] = ...) -> None: ...

class AnomalyScore(_message.Message):
    __slots__ = ("institution_id", "entity_kind", "entity_id", "model_id", "event_id", "event_time", "score", "threshold", "observed", "expected", "alarm")
    INSTITUTION_ID_FIELD_NUMBER: _ClassVar[int]
    ENTITY_KIND_FIELD_NUMBER: _ClassVar[int]
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_FIELD_NUMBER: _ClassVar[int]
    ALARM_FIELD_NUMBER: _ClassVar[int]
    institution_id: str
    entity_kind: str
    entity_id: str
    model_id: str
    event_id: str
    event_time: _timestamp_pb2.Timestamp
    score: float
    threshold: float
    observed: float
    expected: float
    alarm: bool
    def __init__(self, institution_id: _Optional[str] = ..., entity_kind: _Optional[str] = ..., entity_id: _Optional[str] = ..., model_id: _Optional[str] = ..., event_id: _Optional[str] = ..., event_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., score: _Optional[float] = ..., threshold: _Optional[float] = ..., observed: _Optional[float] = ..., expected: _Optional[float] = ..., alarm: _Optional[bool] = ...) -> None: ...

class AnomalyScoreBatch(_message.Message):
    __slots__ = ("institution_id", "scores")
    INSTITUTION_ID_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    institution_id: str
    scores: _containers.RepeatedCompositeFieldContainer[AnomalyScore]
    def __init__(self, institution_id: _Optional[str] = ..., scores: _Optional[_Iterable[_Union[AnomalyScore, _Mapping]]] = ...) -> None: ...
