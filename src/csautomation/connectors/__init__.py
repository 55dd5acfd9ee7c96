"""Connectors: one interface per capability, one module per vendor.

Only the capabilities and the registry are imported here: a vendor module (and its SDK) is
imported when a connector of its type is configured (`loader.VENDORS`).
"""

from csautomation.connectors.base import (
    Checkable,
    Completion,
    CompletionSource,
    Connector,
    FieldUpdate,
    NotifyConnector,
    NotifyRequest,
    Receipt,
    RecordConnector,
    TaskConnector,
    TaskRequest,
)
from csautomation.connectors.registry import Connectors, UnknownConnectorError

__all__ = [
    "Checkable",
    "Completion",
    "CompletionSource",
    "Connector",
    "Connectors",
    "FieldUpdate",
    "NotifyConnector",
    "NotifyRequest",
    "Receipt",
    "RecordConnector",
    "TaskConnector",
    "TaskRequest",
    "UnknownConnectorError",
]
