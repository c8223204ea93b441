from suptech.v1 import telemetry_pb2 as _telemetry_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RejectReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REJECT_REASON_UNSPECIFIED: _ClassVar[RejectReason]
    REJECT_REASON_MISSING_FIELD: _ClassVar[RejectReason]
    REJECT_REASON_OUT_OF_RANGE: _ClassVar[RejectReason]
    REJECT_REASON_TIMESTAMP_SKEW: _ClassVar[RejectReason]
    REJECT_REASON_TOO_LARGE: _ClassVar[RejectReason]
    REJECT_REASON_UNKNOWN_ENUM: _ClassVar[RejectReason]
    REJECT_REASON_INSTITUTION_MISMATCH: _ClassVar[RejectReason]
    REJECT_REASON_DUPLICATE_IN_BATCH: _ClassVar[RejectReason]
    REJECT_REASON_INVALID_FORMAT: _ClassVar[RejectReason]
    REJECT_REASON_NO_PAYLOAD: _ClassVar[RejectReason]
REJECT_REASON_UNSPECIFIED: RejectReason
REJECT_REASON_MISSING_FIELD: RejectReason
REJECT_REASON_OUT_OF_RANGE: RejectReason
REJECT_REASON_TIMESTAMP_SKEW: RejectReason
REJECT_REASON_TOO_LARGE: RejectReason
REJECT_REASON_UNKNOWN_ENUM: RejectReason
REJECT_REASON_INSTITUTION_MISMATCH: RejectReason
REJECT_REASON_DUPLICATE_IN_BATCH: RejectReason
REJECT_REASON_INVALID_FORMAT: RejectReason
REJECT_REASON_NO_PAYLOAD: RejectReason

class TelemetryBatch(_message.Message):
    __slots__ = ("batch_id", "events", "traceparent")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENT_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    events: _containers.RepeatedCompositeFieldContainer[_telemetry_pb2.TelemetryEnvelope]
    traceparent: str
    def __init__(self, batch_id: _Optional[str] = ..., events: _Optional[_Iterable[_Union[_telemetry_pb2.TelemetryEnvelope, _Mapping]]] = ..., traceparent: _Optional[str] = ...) -> None: ...

class EventRejection(_message.Message):
    __slots__ = ("index", "event_id", "reason", "detail")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    index: int
    event_id: str
    reason: RejectReason
    detail: str
    def __init__(self, index: _Optional[int] = ..., event_id: _Optional[str] = ..., reason: _Optional[_Union[RejectReason, str]] = ..., detail: _Optional[str] = ...) -> None: ...

class BatchAck(_message.Message):
    __slots__ = ("batch_id", "accepted", "rejections")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REJECTIONS_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    accepted: int
    rejections: _containers.RepeatedCompositeFieldContainer[EventRejection]
    def __init__(self, batch_id: _Optional[str] = ..., accepted: _Optional[int] = ..., rejections: _Optional[_Iterable[_Union[EventRejection, _Mapping]]] = ...) -> None: ...
