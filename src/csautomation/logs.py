"""Logging for the commands, with every credential masked in every log line.

Connectors already keep credentials out of their own errors; this is the net under the
libraries they drive. Every value read through `connectors.config.secret` (and every
session token a vendor hands out) is registered here, and a filter on the handlers
replaces it with `***` in each record's message and traceback, whichever logger wrote it.
httpx is also kept at WARNING: it logs each request's URL at INFO, and a Slack webhook's
URL is itself the secret.
"""

from __future__ import annotations

import logging
import os
import threading

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


def setup(level: int = logging.INFO, fmt: str | None = None) -> None:
    """basicConfig, with the mask on every root handler. CSAUTO_LOG_LEVEL (DEBUG, INFO,
    WARNING, ERROR) overrides the command's level."""
    named = os.environ.get("CSAUTO_LOG_LEVEL", "").strip().upper()
    if named in ("DEBUG", "INFO", "WARNING", "ERROR"):
        level = getattr(logging, named)
    logging.basicConfig(level=level, format=fmt or logging.BASIC_FORMAT)
    for handler in logging.getLogger().handlers:
        install(handler, level)


def install(handler: logging.Handler, level: int) -> None:
    """`handler` on the root logger at `level`, masking secrets; httpx kept quiet."""
    if not any(isinstance(f, MaskSecrets) for f in handler.filters):
        handler.addFilter(MaskSecrets())
    root = logging.getLogger()
    if handler not in root.handlers:
        root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("httpx").setLevel(max(level, logging.WARNING))
