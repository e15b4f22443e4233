"""How a run is stopped at a planned point: what to look for in the emulator's request
journal, and SIGKILL, sleeps and waits that end when the process does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping
from contextlib import suppress
from pathlib import Path
from typing import Any

__all__ = [
    "EVENTS_PATH",
    "KILLED_AT",
    "LIST_PATH",
    "is_event_ok",
    "is_lookup",
    "is_patch_ok",
    "is_write_ok",
    "kill_process",
    "sleep_while_alive",
    "wait_until_open",
]

LIST_PATH = "/api/v2/subscribers"
EVENTS_PATH = "/api/v2/events"
KILLED_AT: dict[int, float] = {}  # pid -> time.time() of its SIGKILL


def is_lookup(entry: Mapping[str, Any]) -> bool:
    return bool(entry["method"] == "GET" and entry["path"] == LIST_PATH)


def is_patch_ok(entry: Mapping[str, Any]) -> bool:
    return bool(entry["method"] == "PATCH" and entry["status"] == 200)


def is_event_ok(entry: Mapping[str, Any]) -> bool:
    return bool(
        entry["method"] == "POST" and entry["path"] == EVENTS_PATH and entry["status"] == 202
    )


def is_write_ok(entry: Mapping[str, Any]) -> bool:
    return is_patch_ok(entry) or is_event_ok(entry)


def kill_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        KILLED_AT[process.pid] = time.time()
        process.send_signal(signal.SIGKILL)
        process.wait()


def sleep_while_alive(process: subprocess.Popen[bytes], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(min(0.005, max(0.0, deadline - time.monotonic())))


def wait_until_open(process: subprocess.Popen[bytes], path: Path, timeout_s: float = 60.0) -> bool:
    """Wait until the process has `path` open (Linux /proc); False if it ended first."""
    wanted = str(path.resolve())
    fd_dir = Path(f"/proc/{process.pid}/fd")
    deadline = time.monotonic() + timeout_s
    while process.poll() is None and time.monotonic() < deadline:
        with suppress(OSError):
            for link in fd_dir.iterdir():
                with suppress(OSError):
                    if os.readlink(link) == wanted:
                        return True
        time.sleep(0.005)
    return process.poll() is None
