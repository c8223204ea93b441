import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SandboxTest(_message.Message):
    __slots__ = ("test_id", "institution_id", "app_id", "name", "user_cap", "single_amount_cap_fen", "daily_amount_cap_fen", "approved_features", "start_time", "end_time")
    TEST_ID_FIELD_NUMBER: _ClassVar[int]
    INSTITUTION_ID_FIELD_NUMBER: _ClassVar[int]
    APP_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    USER_CAP_FIELD_NUMBER: _ClassVar[int]
    SINGLE_AMOUNT_CAP_FEN_FIELD_NUMBER: _ClassVar[int]
    DAILY_AMOUNT_CAP_FEN_FIELD_NUMBER: _ClassVar[int]
    APPROVED_FEATURES_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    test_id: str
    institution_id: str
    app_id: str
    name: str
    user_cap: int
    single_amount_cap_fen: int
    daily_amount_cap_fen: int
    approved_features: _containers.RepeatedScalarFieldContainer[str]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, test_id: _Optional[str] = ..., institution_id: _Optional[str] = ..., app_id: _Optional[str] = ..., name: _Optional[str] = ..., user_cap: _Optional[int] = ..., single_amount_cap_fen: _Optional[int] = ..., daily_amount_cap_fen: _Optional[int] = ..., approved_features: _Optional[_Iterable[str]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
