"""The world of one seed: its emulator, in process or as a `pslab emulator --state FILE`
process that can be SIGKILLed and restarted, reached through its admin surface; and the
faults each kind of seed sets on it.
"""

from __future__ import annotations

import logging
import random
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TextIO

import httpx

from postscript_audience_lab.emulator.postscript.config import EmulatorConfig
from postscript_audience_lab.emulator.postscript.emulator import Emulator
from postscript_audience_lab.emulator.postscript.web.app import create_app
from postscript_audience_lab.emulator.postscript.web.faults import ConnectionDropped
from postscript_audience_lab.emulator.postscript.web.serve import serve_app_in_background
from postscript_audience_lab.lab.reliability.plans import SeedPlan

__all__ = [
    "POLL_S",
    "PSLAB",
    "ClientHangUps",
    "EmulatorProcess",
    "World",
    "emulator_in_process",
    "faults_for",
    "quiet_hang_ups",
    "world_for",
]

PSLAB = (sys.executable, "-m", "postscript_audience_lab")
POLL_S = 0.003


class World:
    """The emulator of one seed, through its admin surface; the journal survives restarts.

    With `tee` (an in-process emulator's journal entries, as it appends them) the journal
    is read from memory: `GET /_emulator/requests` takes ~10 ms with a few hundred entries,
    and polling it every few milliseconds would starve the emulator it shares a GIL with.
    """

    def __init__(self, base_url: str, tee: list[dict[str, Any]] | None = None) -> None:
        self.base_url = base_url
        self.admin = httpx.Client(base_url=base_url, timeout=60)
        self.faults: dict[str, Any] = {}
        self.earlier: list[dict[str, Any]] = []  # journal of emulator lives before a restart
        self.tee = tee
        self.poll_s = POLL_S if tee is not None else 0.01

    def close(self) -> None:
        self.admin.close()

    def reconnect(self, base_url: str) -> None:
        """A restarted emulator: new connections (the old ones died with it)."""
        self.admin.close()
        self.base_url = base_url
        self.admin = httpx.Client(base_url=base_url, timeout=60)

    def journal(self) -> list[dict[str, Any]]:
        """Every API call the emulator answered since `seed`, oldest first."""
        if self.tee is not None:
            return list(self.tee)
        response = self.admin.get("/_emulator/requests")
        response.raise_for_status()
        return [*self.earlier, *response.json()["requests"]]

    def state(self) -> dict[str, Any]:
        response = self.admin.get("/_emulator/state")
        response.raise_for_status()
        state: dict[str, Any] = response.json()
        return state

    def seed(self, subscribers: list[dict[str, Any]]) -> None:
        self.admin.post("/_emulator/reset").raise_for_status()
        if self.tee is not None:
            self.tee.clear()
        body = {"subscribers": subscribers}
        self.admin.post("/_emulator/subscribers", json=body).raise_for_status()

    def set_faults(self, faults: Mapping[str, Any]) -> None:
        self.faults = dict(faults)
        self.admin.put("/_emulator/faults", json=self.faults).raise_for_status()


class EmulatorProcess:
    """`pslab emulator --state FILE` as its own process, so it can be SIGKILLed and restarted."""

    def __init__(self, state_path: Path, log_path: Path) -> None:
        self.state_path = state_path
        self.log_path = log_path
        self.port = 0
        self.process: subprocess.Popen[str] | None = None
        self._log: TextIO | None = None

    def start(self) -> str:
        self._log = self.log_path.open("a", encoding="utf-8")
        for _ in range(50):  # the port of a killed emulator can take a moment to be free
            command = [
                *PSLAB,
                "emulator",
                "--port",
                str(self.port),
                "--state",
                str(self.state_path),
                "--rate-limit",
                "0",
            ]
            process = subprocess.Popen(  # noqa: S603 -- our own program
                command, stdout=subprocess.PIPE, stderr=self._log, text=True
            )
            assert process.stdout is not None
            line = process.stdout.readline()
            if "listening on" in line:
                self.process = process
                url = line.split("listening on ", 1)[1].split()[0]
                self.port = int(url.rsplit(":", 1)[1])
                return url
            process.wait(timeout=30)
            time.sleep(0.1)
        raise RuntimeError(f"the emulator would not start on port {self.port}")

    def kill(self) -> None:
        """SIGKILL: the emulator dies wherever it is (mid-write, for the state file's test)."""
        self._end(graceful=False)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it is still running after 30 s."""
        self._end(graceful=True)

    def _end(self, *, graceful: bool) -> None:
        if self.process is not None:
            if graceful:
                self.process.terminate()
                with suppress(subprocess.TimeoutExpired):
                    self.process.wait(timeout=30)
            self.process.kill()  # no-op on a process that has exited
            self.process.wait(timeout=30)
            self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8") if self.log_path.exists() else ""


class ClientHangUps(logging.Filter):
    """Counts (and keeps off the console) what uvicorn logs when a killed client hangs up.

    A timeout fault's dropped connection is kept off the console too, uncounted: the
    emulator's own server does the same (`emulator.postscript.web.serve`).
    """

    count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, ConnectionDropped):
            return False
        if error is not None and type(error).__name__ == "ClientDisconnect":
            ClientHangUps.count += 1
            return False
        return True


def quiet_hang_ups() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(existing, ClientHangUps) for existing in logger.filters):
        logger.addFilter(ClientHangUps())


def faults_for(
    kind: str, rng: random.Random, seed: int, error_rate: float | None = None
) -> dict[str, Any]:
    """The emulator's fault setting for a seed of this kind (`PUT /_emulator/faults`)."""
    window: dict[str, Any] = {"latency_ms": [20, 60], "seed": seed}
    statuses = [500, 502, 503, 429]
    if kind == "errors":
        rate = rng.choice((0.1, 0.2, 0.3, 0.5)) if error_rate is None else error_rate
        return {"error_rate": rate, "error_statuses": statuses, "latency_ms": [5, 30], "seed": seed}
    if kind == "timeouts":
        timeout = {"timeout_rate": round(rng.uniform(0.03, 0.1), 3), "timeout_ms": 150}
        return {**timeout, "latency_ms": [5, 30], "seed": seed}
    if kind == "rate_limit":
        return {"rate_limit_rps": rng.choice((8, 10, 15)), "latency_ms": [0, 10], "seed": seed}
    if kind == "mixed":
        errors = {"error_rate": 0.2, "error_statuses": statuses}
        return {**errors, "timeout_rate": 0.05, "timeout_ms": 150, **window}
    if kind == "injected_404":
        return {"error_rate": 0.2, "error_statuses": [404], "latency_ms": [5, 20], "seed": seed}
    if kind == "emulator_kill":
        return {}
    return window


@contextmanager
def world_for(plan: SeedPlan, workdir: Path) -> Iterator[tuple[World, EmulatorProcess | None]]:
    if plan.kind != "emulator_kill":
        with emulator_in_process(EmulatorConfig(rate_limit_rps=0)) as (base_url, journal):
            world = World(base_url, tee=journal)
            try:
                yield world, None
            finally:
                world.close()
        return
    emulator = EmulatorProcess(workdir / "emulator-state.sqlite", workdir / "emulator.log")
    world = World(emulator.start())
    try:
        yield world, emulator
    finally:
        world.close()
        emulator.stop()


@contextmanager
def emulator_in_process(config: EmulatorConfig) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """Like `serve_in_background`, and also a live copy of the request journal.

    The copy is taken through `Journal.append`, so each entry is seen as it is journaled.
    """
    app = create_app(config)
    emulator: Emulator = app.state.emulator
    journal = emulator.journal
    copied: list[dict[str, Any]] = []
    append = journal.append

    def tee(entry: dict[str, Any]) -> None:
        append(entry)
        copied.append(entry)

    journal.append = tee  # type: ignore[method-assign]
    with serve_app_in_background(app) as base_url:
        yield base_url, copied
