"""The emulator's clock: real UTC time plus an offset a test may move forward.

Scheduled messages (`scheduled_at`) go out when this clock reaches their
time, so a test can send one "tomorrow" and then `POST /_emulator/clock`
instead of waiting (docs/design/emulator.md). Webhook retries are due on it too
(every 5 minutes, as Postscript's), and hear of each move (`on_advance`).
Subscriber timestamps keep real time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from postscript_audience_lab.emulator.postscript.model.subscriber import utc_now

__all__ = ["Clock"]


class Clock:
    def __init__(self) -> None:
        self._offset = timedelta(0)
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []

    def on_advance(self, listener: Callable[[], None]) -> None:
        """Call `listener` (from the advancing thread) after each move forward."""
        with self._lock:
            self._listeners.append(listener)

    def now(self) -> datetime:
        with self._lock:
            return utc_now() + self._offset

    @property
    def offset_s(self) -> float:
        with self._lock:
            return self._offset.total_seconds()

    def advance(self, seconds: float) -> datetime:
        """Move the clock forward by `seconds` (never back: what was sent stays sent)."""
        with self._lock:
            self._offset += timedelta(seconds=max(0.0, seconds))
            now, listeners = utc_now() + self._offset, list(self._listeners)
        for listener in listeners:
            listener()
        return now

    def advance_to(self, moment: datetime) -> datetime:
        """Move the clock forward to `moment`, if it is not there already."""
        return self.advance((moment - self.now()).total_seconds())

    def reset(self) -> None:
        with self._lock:
            self._offset = timedelta(0)
