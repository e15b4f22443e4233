"""Talking to a subprocess without letting a test hang when the subprocess does."""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

PSLAB = [sys.executable, "-m", "postscript_audience_lab"]
LOOPBACK_URL = re.compile(r"http://127\.0\.0\.1:\d+")
_PANEL_BORDER = re.compile(r"[\u2500-\u257f]+")


def unwrapped(text: str) -> str:
    """`text` as one line: the borders of a rich error panel removed, line breaks and runs of
    spaces made single spaces.

    A command's usage error is drawn in a panel as wide as the terminal, so where its sentence
    breaks depends on the width and on the length of any path in it (a tmp_path differs from
    run to run); a test looks for the sentence in this form, never in the raw text.
    """
    return " ".join(_PANEL_BORDER.sub(" ", text).split())


def read_line(process: subprocess.Popen[str], timeout: float = 30) -> str:
    """The next line `process` writes to its stdout (a pipe).

    A process that writes nothing for `timeout` seconds is killed, and the
    test fails saying so, instead of waiting for the line forever.
    """
    stdout = process.stdout
    assert stdout is not None, "start the process with stdout=subprocess.PIPE"
    lines: queue.Queue[str] = queue.Queue(maxsize=1)
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        stop(process, signal.SIGKILL)
        raise AssertionError(f"{process.args!r} wrote no line in {timeout} s") from None


def stop(
    process: subprocess.Popen[str], how: signal.Signals = signal.SIGTERM, timeout: float = 15
) -> None:
    """Send `how` to `process` and reap it; kill it when it is still running after `timeout` s."""
    if process.poll() is None:
        process.send_signal(how)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)


@contextmanager
def running_emulator(
    *args: str, env: Mapping[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`pslab emulator --port 0 *args` as a subprocess: its base URL and the process.

    The test fails (it does not hang) when the emulator announces no URL within 30 s; the
    process is stopped when the block ends.
    """
    process = subprocess.Popen(  # noqa: S603 -- our own program
        [*PSLAB, "emulator", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=None if env is None else dict(env),
    )
    try:
        line = read_line(process, timeout=30)
        match = LOOPBACK_URL.search(line)
        assert match, f"the emulator did not announce its URL: {line!r}"
        yield match.group(0), process
    finally:
        stop(process, timeout=10)
