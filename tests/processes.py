"""Talking to a subprocess without letting a test hang when the subprocess does."""

from __future__ import annotations

import queue
import signal
import subprocess
import threading


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
