import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class VendorFactKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VENDOR_FACT_KIND_UNSPECIFIED: _ClassVar[VendorFactKind]
    VENDOR_FACT_KIND_SYSTEM: _ClassVar[VendorFactKind]
    VENDOR_FACT_KIND_RELEASE: _ClassVar[VendorFactKind]
    VENDOR_FACT_KIND_OUTAGE: _ClassVar[VendorFactKind]
    VENDOR_FACT_KIND_CORE_INSTITUTION: _ClassVar[VendorFactKind]
VENDOR_FACT_KIND_UNSPECIFIED: VendorFactKind
VENDOR_FACT_KIND_SYSTEM: VendorFactKind
VENDOR_FACT_KIND_RELEASE: VendorFactKind
VENDOR_FACT_KIND_OUTAGE: VendorFactKind
VENDOR_FACT_KIND_CORE_INSTITUTION: VendorFactKind

class VendorFact(_message.Message):
    __slots__ = ("version", "kind", "vendor", "institution_id", "system_id", "event_time", "event_id", "system_vendors", "core_uncontrollable", "interval_seconds")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    VENDOR_FIELD_NUMBER: _ClassVar[int]
    INSTITUTION_ID_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_VENDORS_FIELD_NUMBER: _ClassVar[int]
    CORE_UNCONTROLLABLE_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    version: int
    kind: VendorFactKind
    vendor: str
    institution_id: str
    system_id: str
    event_time: _timestamp_pb2.Timestamp
    event_id: str
    system_vendors: _containers.RepeatedScalarFieldContainer[str]
    core_uncontrollable: bool
    interval_seconds: int
    def __init__(self, version: _Optional[int] = ..., kind: _Optional[_Union[VendorFactKind, str]] = ..., vendor: _Optional[str] = ..., institution_id: _Optional[str] = ..., system_id: _Optional[str] = ..., event_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., event_id: _Optional[str] = ..., system_vendors: _Optional[_Iterable[str]] = ..., core_uncontrollable: _Optional[bool] = ..., interval_seconds: _Optional[int] = ...) -> None: ...
