"""The emulator's clock: real UTC time plus an offset a test may move forward.

Scheduled messages (`scheduled_at`) go out when this clock reaches their
time, so a test can send one "tomorrow" and then `POST /_emulator/clock`
instead of waiting (docs/design.md §7). Nothing else reads it: subscriber
timestamps and webhook deliveries keep real time.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from postscript_audience_lab.emulator.postscript.subscriber import utc_now

__all__ = ["Clock"]


class Clock:
    def __init__(self) -> None:
        self._offset = timedelta(0)
        self._lock = threading.Lock()

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
            return utc_now() + self._offset

    def reset(self) -> None:
        with self._lock:
            self._offset = timedelta(0)
