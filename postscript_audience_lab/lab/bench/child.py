"""One system in a spawned child process, so the peak memory it reports is its own."""

from __future__ import annotations

import itertools
import multiprocessing
import queue
import resource
import sys
import time
from pathlib import Path
from typing import Any

from postscript_audience_lab.lab.comparison import ProgressCallback, Run, run_baseline, run_engine

__all__ = ["peak_rss_mb", "run_in_child"]


def peak_rss_mb() -> float:
    """This process's own peak resident memory, in MB.

    On Linux this is `VmHWM`, not `ru_maxrss`: a spawned child's `ru_maxrss`
    starts at its parent's resident size (the kernel carries the high-water
    mark across fork and exec), which would charge the emulator's memory to
    the system under test.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _child(
    system: str,
    lines_path: str,
    base_url: str,
    state_dir: str,
    post_events: bool,
    messages: multiprocessing.Queue[tuple[str, Any]],
) -> None:
    """Run one system over the file; send progress, then the `Run` (or the error)."""
    last = 0.0

    def report(stage: str, done: int, total: int | None) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= 0.2 or done == total:
            last = now
            messages.put(("progress", (stage, done, total)))

    try:
        with open(lines_path, encoding="utf-8") as lines:
            if system == "engine":
                state = Path(state_dir) / "engine-state.sqlite"
                run = run_engine(lines, base_url, state, post_events=post_events, progress=report)
            else:
                seen = itertools.count(1)
                run = run_baseline(
                    lines, base_url, on_event=lambda: report("deliver", next(seen), None)
                )
        run.peak_rss_mb = peak_rss_mb()
        messages.put(("run", run.to_json()))
    except Exception as error:  # the parent reports it; a child has no one else to tell
        messages.put(("error", f"{type(error).__name__}: {error}"))


def run_in_child(
    system: str,
    lines_path: Path,
    base_url: str,
    state_dir: Path,
    *,
    post_events: bool = True,
    progress: ProgressCallback | None = None,
) -> Run:
    """Run `system` ("engine" or "baseline") in a fresh spawned process and return its `Run`."""
    context = multiprocessing.get_context("spawn")
    messages: multiprocessing.Queue[tuple[str, Any]] = context.Queue()
    args = (system, str(lines_path), base_url, str(state_dir), post_events, messages)
    child = context.Process(target=_child, args=args, name=f"pslab-bench-{system}")
    child.start()
    try:
        while True:
            try:
                kind, payload = messages.get(timeout=0.5)
            except queue.Empty:
                if not child.is_alive():
                    raise RuntimeError(
                        f"the {system} process died (exit code {child.exitcode}) without a result"
                    ) from None
                continue
            if kind == "progress":
                if progress is not None:
                    progress(*payload)
            elif kind == "error":
                raise RuntimeError(f"the {system} run failed: {payload}")
            else:
                return Run.from_json(payload)
    finally:
        child.join(timeout=30)
