"""docs/design/economy.md pacing: --rate-limit 15 against an emulator enforcing 15/s, no 429s."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import httpx
import pytest

from postscript_audience_lab.emulator.postscript.config import EmulatorConfig
from postscript_audience_lab.emulator.postscript.web.serve import serve_in_background
from postscript_audience_lab.emulator.segment.workload import build_workload
from postscript_audience_lab.sync.engine import Engine
from postscript_audience_lab.sync.settings import Settings
from tests.sync.world import SECRET


@pytest.mark.slow
def test_a_paced_run_of_thirty_seconds_at_the_limit_gets_no_429(state_path: Path) -> None:
    workload = build_workload("quick", users=150)  # about 500 calls: 33 s at 15/s
    config = EmulatorConfig(secret_key=SECRET, rate_limit_rps=15)
    with serve_in_background(config) as base_url:
        seed = {"subscribers": workload.subscribers}
        httpx.post(f"{base_url}/_emulator/subscribers", json=seed).raise_for_status()
        settings = Settings(
            base_url=base_url, secret_key=SECRET, state_path=state_path, rate_limit=15
        )
        started = time.monotonic()
        with Engine(settings) as engine:
            engine.ingest(workload.iter_lines())
            report = anyio.run(engine.drain)
        elapsed = time.monotonic() - started
        journal = httpx.get(f"{base_url}/_emulator/requests").json()["requests"]
    statuses = [entry["status"] for entry in journal]
    total = sum(report.api_calls.values())
    print(f"paced run: {total} calls in {elapsed:.1f} s, {statuses.count(429)} answered 429")
    assert report.pending == 0
    assert elapsed >= 30
    assert total == len(statuses)
    assert statuses.count(429) == 0
