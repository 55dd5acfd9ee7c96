"""Logging for the commands, with every credential masked in every log line.

Connectors already keep credentials out of their own errors; this is the net under the
libraries they drive. Every value read through `connectors.config.secret` (and every
session token a vendor hands out) is registered here, and a filter on the handlers
replaces it with `***` in each record's message and traceback, whichever logger wrote it.
httpx is also kept at WARNING: it logs each request's URL at INFO, and a Slack webhook's
URL is itself the secret.

CSAUTO_LOG_FORMAT=json writes one JSON object per line: time, level, logger, message, and
`workflow_id`, `run_id`, `activity`, `account_id` when known (inside an activity from
Temporal's activity context, from the SDK's workflow logger, or given as
`extra={"account_id": ...}`), with any other scalar `extra` and the traceback. Every string
in it is masked, extras included. A formatter of our own rather than python-json-logger:
twenty lines, no dependency, and the masking reaches every field it writes.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime
from typing import Any

from temporalio import activity

MASK = "***"
_SHORTEST = 6  # shorter values would mask ordinary words

_known: set[str] = set()
_ordered: tuple[str, ...] = ()
_lock = threading.Lock()


def register(*values: str) -> None:
    """Mask these values in log output from now on."""
    global _ordered
    fresh = {v for v in values if v and len(v) >= _SHORTEST} - _known
    if not fresh:
        return
    with _lock:
        _known.update(fresh)
        _ordered = tuple(sorted(_known, key=len, reverse=True))  # a longer value first


def mask(text: str) -> str:
    for value in _ordered:
        if value in text:
            text = text.replace(value, MASK)
    return text


class MaskSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not _ordered:
            return True
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg, record.args = mask(message), None
        if record.exc_text:
            record.exc_text = mask(record.exc_text)
        if record.stack_info:
            record.stack_info = mask(record.stack_info)
        return True


# the context keys, first in each line after the four fixed ones
CONTEXT = ("workflow_id", "run_id", "activity", "account_id")
_RECORD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
# the SDK's context dicts (read by TemporalContext) and uvicorn's coloured copy of a message
_SKIP = {"temporal_activity", "temporal_workflow", "activity_info", "workflow_info"}
_SKIP |= {"color_message"}


class TemporalContext(logging.Filter):
    """Adds `workflow_id`, `run_id` and `activity` to records written in an activity (by
    any logger) or by the SDK's workflow logger, unless the record has them already."""

    def filter(self, record: logging.LogRecord) -> bool:
        found: dict[str, Any] = {}
        details = getattr(record, "temporal_workflow", None)  # workflow.logger's extra
        if isinstance(details, dict):
            found = {"workflow_id": details.get("workflow_id"), "run_id": details.get("run_id")}
        elif activity.in_activity():
            info = activity.info()
            found = {
                "workflow_id": info.workflow_id,
                "run_id": info.workflow_run_id,
                "activity": info.activity_type,
            }
        for key, value in found.items():
            if value and not hasattr(record, key):
                setattr(record, key, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record; every string masked."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        extras = {k: v for k, v in vars(record).items() if k not in _RECORD and k not in _SKIP}
        for key in (*CONTEXT, *sorted(extras)):
            value = extras.get(key)
            if isinstance(value, (str, int, float, bool)) and key not in out:
                out[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        masked = {k: mask(v) if isinstance(v, str) else v for k, v in out.items()}
        return json.dumps(masked, ensure_ascii=False, default=str)


def setup(level: int = logging.INFO, fmt: str | None = None) -> None:
    """basicConfig, with the mask on every root handler. CSAUTO_LOG_LEVEL (DEBUG, INFO,
    WARNING, ERROR) overrides the command's level; CSAUTO_LOG_FORMAT=json its format."""
    from csautomation.settings import Settings

    settings = Settings()
    named = settings.log_level.strip().upper()
    if named in ("DEBUG", "INFO", "WARNING", "ERROR"):
        level = getattr(logging, named)
    logging.basicConfig(level=level, format=fmt or logging.BASIC_FORMAT)
    as_json = settings.log_format.strip().lower() == "json"
    for handler in logging.getLogger().handlers:
        install(handler, level)
        if as_json:
            use_json(handler)


def use_json(handler: logging.Handler) -> None:
    """`handler` writes JSON lines, with Temporal's context on each record."""
    handler.setFormatter(JsonFormatter())
    if not any(isinstance(f, TemporalContext) for f in handler.filters):
        handler.addFilter(TemporalContext())


def install(handler: logging.Handler, level: int) -> None:
    """`handler` on the root logger at `level`, masking secrets; httpx kept quiet."""
    if not any(isinstance(f, MaskSecrets) for f in handler.filters):
        handler.addFilter(MaskSecrets())
    root = logging.getLogger()
    if handler not in root.handlers:
        root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("httpx").setLevel(max(level, logging.WARNING))
    logging.getLogger("alembic").setLevel(max(level, logging.WARNING))  # its plugin roll-call
