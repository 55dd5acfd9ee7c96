"""Following configuration files in a running process: when to look at them again, what to
say when a new version does not validate (once, not on every look), and which versions a
reload brought in."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from csautomation.config.files import fingerprint, yaml_files
from csautomation.errors import ConfigFileError

__all__ = ["Watch", "version_changes"]


class Watch:
    """The files of one or more folders, looked at at most every `interval` seconds.

    `look()` yields their fingerprints when it is time to look and they moved since the
    last look (an edit, a file added or removed), else None; one thread looks at a time,
    and a thread that finds another looking does not wait for it. `refused` logs a WARNING
    naming every problem, once per distinct set of problems, so a file left broken is
    reported once and not at every look.
    """

    def __init__(
        self,
        folders: Sequence[Sequence[Path]],
        seen: tuple[str, ...],
        interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.folders = [list(paths) for paths in folders]
        self.interval = interval
        self.last_error: ConfigFileError | None = None
        self._seen = seen
        self._clock = clock
        self._checked = clock()
        self._looking = threading.Lock()

    def fingerprints(self) -> tuple[str, ...]:
        return tuple(fingerprint(yaml_files(paths)) for paths in self.folders)

    def due(self, force: bool = False) -> bool:
        """Whether `look()` would look now: a check without the lock, for callers that ask
        on every evaluation (the answer is a hint; `look()` decides)."""
        return force or self._clock() - self._checked >= self.interval

    @contextmanager
    def look(self, force: bool = False) -> Iterator[tuple[str, ...] | None]:
        if not self._looking.acquire(blocking=False):
            yield None
            return
        try:
            now = self._clock()
            if not force and now - self._checked < self.interval:
                yield None
                return
            self._checked = now
            found = self.fingerprints()
            if not force and found == self._seen:
                yield None
                return
            self._seen = found
            yield found
        finally:
            self._looking.release()

    def refused(self, log: logging.Logger, exc: ConfigFileError, message: str) -> None:
        """The new files do not validate: say why (`message`, then every problem), unless
        this exact set of problems was said already."""
        if self.last_error is None or str(self.last_error) != str(exc):
            log.warning("%s:\n%s", message, exc, extra={"problems": len(exc.problems)})
        self.last_error = exc

    def accepted(self) -> bool:
        """The new files validate; True when the previous ones did not."""
        was_broken, self.last_error = self.last_error is not None, None
        return was_broken


def version_changes(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    """Each id whose version a reload changed, as `id version NEW (was OLD)`, `id version
    NEW (new)` or `id (removed)`, by id."""
    out = []
    for key in sorted(old.keys() | new.keys()):
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        if after is None:
            out.append(f"{key} (removed)")
        else:
            out.append(f"{key} version {after} ({'new' if before is None else f'was {before}'})")
    return out
