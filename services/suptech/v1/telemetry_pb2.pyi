import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DataClass(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DATA_CLASS_UNSPECIFIED: _ClassVar[DataClass]
    DATA_CLASS_C1: _ClassVar[DataClass]
    DATA_CLASS_C2: _ClassVar[DataClass]
    DATA_CLASS_C3: _ClassVar[DataClass]

class Channel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHANNEL_UNSPECIFIED: _ClassVar[Channel]
    CHANNEL_API: _ClassVar[Channel]
    CHANNEL_BATCH: _ClassVar[Channel]
    CHANNEL_CONSOLE: _ClassVar[Channel]
    CHANNEL_PARTNER: _ClassVar[Channel]

class Operation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OPERATION_UNSPECIFIED: _ClassVar[Operation]
    OPERATION_QUERY: _ClassVar[Operation]
    OPERATION_READ: _ClassVar[Operation]
    OPERATION_EXPORT: _ClassVar[Operation]
    OPERATION_TRANSFER: _ClassVar[Operation]

class DestinationKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DESTINATION_KIND_UNSPECIFIED: _ClassVar[DestinationKind]
    DESTINATION_KIND_INTERNAL: _ClassVar[DestinationKind]
    DESTINATION_KIND_PARTNER: _ClassVar[DestinationKind]
    DESTINATION_KIND_EXTERNAL: _ClassVar[DestinationKind]
    DESTINATION_KIND_CROSS_BORDER: _ClassVar[DestinationKind]

class ActorRole(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTOR_ROLE_UNSPECIFIED: _ClassVar[ActorRole]
    ACTOR_ROLE_EMPLOYEE: _ClassVar[ActorRole]
    ACTOR_ROLE_ADMIN: _ClassVar[ActorRole]
    ACTOR_ROLE_SERVICE: _ClassVar[ActorRole]
    ACTOR_ROLE_PARTNER: _ClassVar[ActorRole]
    ACTOR_ROLE_CONTRACTOR: _ClassVar[ActorRole]

class SystemTier(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SYSTEM_TIER_UNSPECIFIED: _ClassVar[SystemTier]
    SYSTEM_TIER_CORE: _ClassVar[SystemTier]
    SYSTEM_TIER_IMPORTANT: _ClassVar[SystemTier]
    SYSTEM_TIER_GENERAL: _ClassVar[SystemTier]

class Layer(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LAYER_UNSPECIFIED: _ClassVar[Layer]
    LAYER_CHIP: _ClassVar[Layer]
    LAYER_SERVER: _ClassVar[Layer]
    LAYER_OS: _ClassVar[Layer]
    LAYER_DATABASE: _ClassVar[Layer]
    LAYER_MIDDLEWARE: _ClassVar[Layer]
    LAYER_CORE_APPLICATION: _ClassVar[Layer]
    LAYER_CLOUD: _ClassVar[Layer]

class MigrationStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MIGRATION_STATUS_UNSPECIFIED: _ClassVar[MigrationStatus]
    MIGRATION_STATUS_NOT_STARTED: _ClassVar[MigrationStatus]
    MIGRATION_STATUS_IN_PROGRESS: _ClassVar[MigrationStatus]
    MIGRATION_STATUS_COMPLETED: _ClassVar[MigrationStatus]

class WindowKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WINDOW_KIND_UNSPECIFIED: _ClassVar[WindowKind]
    WINDOW_KIND_MAINTENANCE: _ClassVar[WindowKind]
    WINDOW_KIND_CHANGE: _ClassVar[WindowKind]
    WINDOW_KIND_BATCH: _ClassVar[WindowKind]
DATA_CLASS_UNSPECIFIED: DataClass
DATA_CLASS_C1: DataClass
DATA_CLASS_C2: DataClass
DATA_CLASS_C3: DataClass
CHANNEL_UNSPECIFIED: Channel
CHANNEL_API: Channel
CHANNEL_BATCH: Channel
CHANNEL_CONSOLE: Channel
CHANNEL_PARTNER: Channel
OPERATION_UNSPECIFIED: Operation
OPERATION_QUERY: Operation
OPERATION_READ: Operation
OPERATION_EXPORT: Operation
OPERATION_TRANSFER: Operation
DESTINATION_KIND_UNSPECIFIED: DestinationKind
DESTINATION_KIND_INTERNAL: DestinationKind
DESTINATION_KIND_PARTNER: DestinationKind
DESTINATION_KIND_EXTERNAL: DestinationKind
DESTINATION_KIND_CROSS_BORDER: DestinationKind
ACTOR_ROLE_UNSPECIFIED: ActorRole
ACTOR_ROLE_EMPLOYEE: ActorRole
ACTOR_ROLE_ADMIN: ActorRole
ACTOR_ROLE_SERVICE: ActorRole
ACTOR_ROLE_PARTNER: ActorRole
ACTOR_ROLE_CONTRACTOR: ActorRole
SYSTEM_TIER_UNSPECIFIED: SystemTier
SYSTEM_TIER_CORE: SystemTier
SYSTEM_TIER_IMPORTANT: SystemTier
SYSTEM_TIER_GENERAL: SystemTier
LAYER_UNSPECIFIED: Layer
LAYER_CHIP: Layer
LAYER_SERVER: Layer
LAYER_OS: Layer
LAYER_DATABASE: Layer
LAYER_MIDDLEWARE: Layer
LAYER_CORE_APPLICATION: Layer
LAYER_CLOUD: Layer
MIGRATION_STATUS_UNSPECIFIED: MigrationStatus
MIGRATION_STATUS_NOT_STARTED: MigrationStatus
MIGRATION_STATUS_IN_PROGRESS: MigrationStatus
MIGRATION_STATUS_COMPLETED: MigrationStatus
WINDOW_KIND_UNSPECIFIED: WindowKind
WINDOW_KIND_MAINTENANCE: WindowKind
WINDOW_KIND_CHANGE: WindowKind
WINDOW_KIND_BATCH: WindowKind

class Classification(_message.Message):
    __slots__ = ("data_class", "security_level")
    DATA_CLASS_FIELD_NUMBER: _ClassVar[int]
    SECURITY_LEVEL_FIELD_NUMBER: _ClassVar[int]
    data_class: DataClass
    security_level: int
    def __init__(self, data_class: _Optional[_Union[DataClass, str]] = ..., security_level: _Optional[int] = ...) -> None: ...

class FieldsByClass(_message.Message):
    __slots__ = ("c1", "c2", "c3")
    C1_FIELD_NUMBER: _ClassVar[int]
    C2_FIELD_NUMBER: _ClassVar[int]
    C3_FIELD_NUMBER: _ClassVar[int]
    c1: int
    c2: int
    c3: int
    def __init__(self, c1: _Optional[int] = ..., c2: _Optional[int] = ..., c3: _Optional[int] = ...) -> None: ...

class DataAccessEvent(_message.Message):
    __slots__ = ("system_id", "actor_pseudonym", "actor_role", "channel", "operation", "records", "fields", "bytes_out", "destination_kind", "destination_pseudonym", "destination_country", "bytes_in", "duration_ms")
    SYSTEM_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_PSEUDONYM_FIELD_NUMBER: _ClassVar[int]
    ACTOR_ROLE_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    BYTES_OUT_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_KIND_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_PSEUDONYM_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_COUNTRY_FIELD_NUMBER: _ClassVar[int]
    BYTES_IN_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    system_id: str
    actor_pseudonym: str
    actor_role: ActorRole
    channel: Channel
    operation: Operation
    records: int
    fields: FieldsByClass
    bytes_out: int
    destination_kind: DestinationKind
    destination_pseudonym: str
    destination_country: str
    bytes_in: int
    duration_ms: int
    def __init__(self, system_id: _Optional[str] = ..., actor_pseudonym: _Optional[str] = ..., actor_role: _Optional[_Union[ActorRole, str]] = ..., channel: _Optional[_Union[Channel, str]] = ..., operation: _Optional[_Union[Operation, str]] = ..., records: _Optional[int] = ..., fields: _Optional[_Union[FieldsByClass, _Mapping]] = ..., bytes_out: _Optional[int] = ..., destination_kind: _Optional[_Union[DestinationKind, str]] = ..., destination_pseudonym: _Optional[str] = ..., destination_country: _Optional[str] = ..., bytes_in: _Optional[int] = ..., duration_ms: _Optional[int] = ...) -> None: ...

class Component(_message.Message):
    __slots__ = ("layer", "vendor", "product", "version", "independently_controllable")
    LAYER_FIELD_NUMBER: _ClassVar[int]
    VENDOR_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    INDEPENDENTLY_CONTROLLABLE_FIELD_NUMBER: _ClassVar[int]
    layer: Layer
    vendor: str
    product: str
    version: str
    independently_controllable: bool
    def __init__(self, layer: _Optional[_Union[Layer, str]] = ..., vendor: _Optional[str] = ..., product: _Optional[str] = ..., version: _Optional[str] = ..., independently_controllable: _Optional[bool] = ...) -> None: ...

class ITPostureReport(_message.Message):
    __slots__ = ("system_id", "tier", "components", "availability", "incidents", "latency_ms_p95", "error_rate", "unpatched_critical_vulns", "migration_status", "interval_seconds", "oldest_unpatched_critical_days")
    SYSTEM_ID_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    AVAILABILITY_FIELD_NUMBER: _ClassVar[int]
    INCIDENTS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_P95_FIELD_NUMBER: _ClassVar[int]
    ERROR_RATE_FIELD_NUMBER: _ClassVar[int]
    UNPATCHED_CRITICAL_VULNS_FIELD_NUMBER: _ClassVar[int]
    MIGRATION_STATUS_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    OLDEST_UNPATCHED_CRITICAL_DAYS_FIELD_NUMBER: _ClassVar[int]
    system_id: str
    tier: SystemTier
    components: _containers.RepeatedCompositeFieldContainer[Component]
    availability: float
    incidents: int
    latency_ms_p95: float
    error_rate: float
    unpatched_critical_vulns: int
    migration_status: MigrationStatus
    interval_seconds: int
    oldest_unpatched_critical_days: int
    def __init__(self, system_id: _Optional[str] = ..., tier: _Optional[_Union[SystemTier, str]] = ..., components: _Optional[_Iterable[_Union[Component, _Mapping]]] = ..., availability: _Optional[float] = ..., incidents: _Optional[int] = ..., latency_ms_p95: _Optional[float] = ..., error_rate: _Optional[float] = ..., unpatched_critical_vulns: _Optional[int] = ..., migration_status: _Optional[_Union[MigrationStatus, str]] = ..., interval_seconds: _Optional[int] = ..., oldest_unpatched_critical_days: _Optional[int] = ...) -> None: ...

class SandboxMetricsReport(_message.Message):
    __slots__ = ("test_id", "app_id", "active_users", "cumulative_users", "transaction_count", "transaction_amount_fen", "max_transaction_amount_fen", "complaints", "incidents", "fund_loss_fen", "features_in_use", "interval_seconds")
    TEST_ID_FIELD_NUMBER: _ClassVar[int]
    APP_ID_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_USERS_FIELD_NUMBER: _ClassVar[int]
    CUMULATIVE_USERS_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_COUNT_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_AMOUNT_FEN_FIELD_NUMBER: _ClassVar[int]
    MAX_TRANSACTION_AMOUNT_FEN_FIELD_NUMBER: _ClassVar[int]
    COMPLAINTS_FIELD_NUMBER: _ClassVar[int]
    INCIDENTS_FIELD_NUMBER: _ClassVar[int]
    FUND_LOSS_FEN_FIELD_NUMBER: _ClassVar[int]
    FEATURES_IN_USE_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    test_id: str
    app_id: str
    active_users: int
    cumulative_users: int
    transaction_count: int
    transaction_amount_fen: int
    max_transaction_amount_fen: int
    complaints: int
    incidents: int
    fund_loss_fen: int
    features_in_use: _containers.RepeatedScalarFieldContainer[str]
    interval_seconds: int
    def __init__(self, test_id: _Optional[str] = ..., app_id: _Optional[str] = ..., active_users: _Optional[int] = ..., cumulative_users: _Optional[int] = ..., transaction_count: _Optional[int] = ..., transaction_amount_fen: _Optional[int] = ..., max_transaction_amount_fen: _Optional[int] = ..., complaints: _Optional[int] = ..., incidents: _Optional[int] = ..., fund_loss_fen: _Optional[int] = ..., features_in_use: _Optional[_Iterable[str]] = ..., interval_seconds: _Optional[int] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("source_id", "interval_seconds", "sdk_version", "vouches_for")
    SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SDK_VERSION_FIELD_NUMBER: _ClassVar[int]
    VOUCHES_FOR_FIELD_NUMBER: _ClassVar[int]
    source_id: str
    interval_seconds: int
    sdk_version: str
    vouches_for: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, source_id: _Optional[str] = ..., interval_seconds: _Optional[int] = ..., sdk_version: _Optional[str] = ..., vouches_for: _Optional[_Iterable[str]] = ...) -> None: ...

class MetricSample(_message.Message):
    __slots__ = ("name", "unit", "value", "component")
    NAME_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    COMPONENT_FIELD_NUMBER: _ClassVar[int]
    name: str
    unit: str
    value: float
    component: str
    def __init__(self, name: _Optional[str] = ..., unit: _Optional[str] = ..., value: _Optional[float] = ..., component: _Optional[str] = ...) -> None: ...

class MetricsReport(_message.Message):
    __slots__ = ("system_id", "samples", "interval_seconds")
    SYSTEM_ID_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    system_id: str
    samples: _containers.RepeatedCompositeFieldContainer[MetricSample]
    interval_seconds: int
    def __init__(self, system_id: _Optional[str] = ..., samples: _Optional[_Iterable[_Union[MetricSample, _Mapping]]] = ..., interval_seconds: _Optional[int] = ...) -> None: ...

class MaintenanceWindow(_message.Message):
    __slots__ = ("window_id", "kind", "start", "end", "system_ids", "reason", "cancelled")
    WINDOW_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_IDS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    window_id: str
    kind: WindowKind
    start: _timestamp_pb2.Timestamp
    end: _timestamp_pb2.Timestamp
    system_ids: _containers.RepeatedScalarFieldContainer[str]
    reason: str
    cancelled: bool
    def __init__(self, window_id: _Optional[str] = ..., kind: _Optional[_Union[WindowKind, str]] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., system_ids: _Optional[_Iterable[str]] = ..., reason: _Optional[str] = ..., cancelled: _Optional[bool] = ...) -> None: ...

class BusinessCalendar(_message.Message):
    __slots__ = ("time_zone", "holidays", "working_days")
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    HOLIDAYS_FIELD_NUMBER: _ClassVar[int]
    WORKING_DAYS_FIELD_NUMBER: _ClassVar[int]
    time_zone: str
    holidays: _containers.RepeatedScalarFieldContainer[str]
    working_days: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, time_zone: _Optional[str] = ..., holidays: _Optional[_Iterable[str]] = ..., working_days: _Optional[_Iterable[str]] = ...) -> None: ...

class TelemetryEnvelope(_message.Message):
    __slots__ = ("event_id", "institution_id", "event_time", "classification", "data_access", "it_posture", "sandbox", "heartbeat", "metrics", "maintenance", "calendar")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    INSTITUTION_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    CLASSIFICATION_FIELD_NUMBER: _ClassVar[int]
    DATA_ACCESS_FIELD_NUMBER: _ClassVar[int]
    IT_POSTURE_FIELD_NUMBER: _ClassVar[int]
    SANDBOX_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    MAINTENANCE_FIELD_NUMBER: _ClassVar[int]
    CALENDAR_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    institution_id: str
    event_time: _timestamp_pb2.Timestamp
    classification: Classification
    data_access: DataAccessEvent
    it_posture: ITPostureReport
    sandbox: SandboxMetricsReport
    heartbeat: Heartbeat
    metrics: MetricsReport
    maintenance: MaintenanceWindow
    calendar: BusinessCalendar
    def __init__(self, event_id: _Optional[str] = ..., institution_id: _Optional[str] = ..., event_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., classification: _Optional[_Union[Classification, _Mapping]] = ..., data_access: _Optional[_Union[DataAccessEvent, _Mapping]] = ..., it_posture: _Optional[_Union[ITPostureReport, _Mapping]] = ..., sandbox: _Optional[_Union[SandboxMetricsReport, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., metrics: _Optional[_Union[MetricsReport, _Mapping]] = ..., maintenance: _Optional[_Union[MaintenanceWindow, _Mapping]] = ..., calendar: _Optional[_Union[BusinessCalendar, _Mapping]] = ...) -> None: ...

class TelemetryBundle(_message.Message):
    __slots__ = ("institution_id", "batch_id", "received_time", "events")
    INSTITUTION_ID_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_TIME_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    institution_id: str
    batch_id: str
    received_time: _timestamp_pb2.Timestamp
    events: _containers.RepeatedCompositeFieldContainer[TelemetryEnvelope]
    def __init__(self, institution_id: _Optional[str] = ..., batch_id: _Optional[str] = ..., received_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., events: _Optional[_Iterable[_Union[TelemetryEnvelope, _Mapping]]] = ...) -> None: ...
