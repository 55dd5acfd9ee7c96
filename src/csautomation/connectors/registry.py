"""Which connector serves a step: the one it names, else the default for the capability."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from csautomation.connectors.base import (
    Connector,
    NotifyConnector,
    RecordConnector,
    TaskConnector,
)
from csautomation.errors import ConfigError

log = logging.getLogger(__name__)


class UnknownConnectorError(ConfigError, LookupError):
    """A step names a connector that is not configured, or one without the capability
    the step needs; no retry will fix it."""


class Connectors:
    """Connectors by id. `fallback` (the embedded default) serves names that are not
    configured, with a warning, so the shipped playbooks run before any vendor is set up."""

    def __init__(
        self,
        by_name: Mapping[str, Connector],
        default: str,
        fallback: str | None,
        defaults: Mapping[str, str] | None = None,
    ) -> None:
        self.by_name = dict(by_name)
        self.default = default
        self.fallback = fallback
        self.defaults = dict(defaults or {})  # capability -> connector id
        self._warned: set[str] = set()

    def _get(self, name: str | None, capability: str) -> Connector:
        key = name or self.defaults.get(capability, self.default)
        if key in self.by_name:
            return self.by_name[key]
        if self.fallback is None:
            raise UnknownConnectorError(
                f"no connector '{key}' is configured (known: {', '.join(sorted(self.by_name))})"
            )
        if key not in self._warned:
            self._warned.add(key)
            log.warning("connector '%s' is not configured; using '%s'", key, self.fallback)
        return self.by_name[self.fallback]

    def close(self) -> None:
        """Close each connector's HTTP client (those that keep one)."""
        for connector in self.by_name.values():
            close = getattr(connector, "close", None)
            if callable(close):
                close()

    def tasks(self, name: str | None) -> TaskConnector:
        c = self._get(name, "tasks")
        if isinstance(c, TaskConnector):
            return c
        raise _incapable(c, "tasks")

    def notifier(self, name: str | None) -> NotifyConnector:
        c = self._get(name, "notify")
        if isinstance(c, NotifyConnector):
            return c
        raise _incapable(c, "notify")

    def records(self, name: str | None) -> RecordConnector:
        c = self._get(name, "records")
        if isinstance(c, RecordConnector):
            return c
        raise _incapable(c, "records")


def _incapable(connector: Connector, capability: str) -> UnknownConnectorError:
    return UnknownConnectorError(f"connector '{connector.name}' does not serve {capability}")
