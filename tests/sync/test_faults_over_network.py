"""Convergence over a real socket while the emulator times out, drops and fails requests."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx

from postscript_audience_lab.emulator.postscript.config import EmulatorConfig
from postscript_audience_lab.emulator.postscript.web.serve import serve_in_background
from postscript_audience_lab.emulator.segment.workload import build_workload
from postscript_audience_lab.sync.engine import Engine
from postscript_audience_lab.sync.settings import Settings
from tests.sync.world import SECRET, audiences_of, by_identity


def test_a_workload_converges_through_timeouts_drops_and_errors_on_a_real_server(
    state_path: Path,
) -> None:
    workload = build_workload("quick", users=40, seed=5)
    faults = {
        "error_rate": 0.2,
        "error_statuses": [429, 500, 503],
        "timeout_rate": 0.05,
        # longer than the client's timeout: the injected ones time out, none hang. The client
        # waits a whole second, so that no answer a loaded machine is merely slow to give times
        # out: a request that was stored and then retried would post its event twice.
        "timeout_ms": 1500,
        "seed": 11,
    }
    with serve_in_background(EmulatorConfig(secret_key=SECRET, rate_limit_rps=0)) as base_url:
        seed = {"subscribers": workload.subscribers}
        httpx.post(f"{base_url}/_emulator/subscribers", json=seed).raise_for_status()
        httpx.put(f"{base_url}/_emulator/faults", json=faults).raise_for_status()
        settings = Settings(
            base_url=base_url, secret_key=SECRET, state_path=state_path, rate_limit=0, timeout_s=1.0
        )
        with Engine(settings) as engine:
            engine.ingest(workload.iter_lines())
            report = anyio.run(engine.drain)
        state = httpx.get(f"{base_url}/_emulator/state").json()
        journal = httpx.get(f"{base_url}/_emulator/requests").json()["requests"]
    assert report.pending == 0
    # a timed-out request has no status (None) in the journal
    assert any((entry["status"] or 0) >= 500 for entry in journal)
    assert any(entry["fault"] == "timeout" for entry in journal)
    subscribers = by_identity(state)
    assert workload.expected
    for row in workload.expected:
        found = subscribers[row["phone_number"] or row["email"]]
        assert (row["audience_key"] in audiences_of(found)) is row["member"]
    entered = [event for event in state["events"] if event["type"] == "Segment_Audience_Entered"]
    assert len(entered) == workload.expected_event_count
