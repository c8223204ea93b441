"""The suptech institution SDK: stream telemetry to the regulator's ingest gateway.

Depends on the contracts (``suptech.v1``), grpcio and protobuf only: ``pip install suptech``.
"""

from suptech.sdk.aio import AsyncTelemetryClient
from suptech.sdk.client import ClientStats, Rejection, TelemetryClient, new_event_id
from suptech.sdk.pseudonym import is_pseudonym, pseudonymise
from suptech.sdk.spool import SpoolLockedError

__all__ = [
    "AsyncTelemetryClient",
    "ClientStats",
    "Rejection",
    "SpoolLockedError",
    "TelemetryClient",
    "is_pseudonym",
    "new_event_id",
    "pseudonymise",
]
