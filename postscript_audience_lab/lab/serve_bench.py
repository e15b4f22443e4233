"""How fast `pslab serve` takes events in (docs/design/service.md).

`python -m postscript_audience_lab.lab.serve_bench` starts an emulator (only for the start-up
`GET /me`) and `pslab serve --no-drain` as its own process, then posts distinct Engage events
in batches from several connections on loopback and prints how many events per second were durably
accepted: each counted event is in an answered 200, so committed and synced to
disk. The drain is off so that intake alone is measured. Not a test: the
figure depends on the machine; `--check` holds it to the target.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from postscript_audience_lab.emulator.postscript.config import EmulatorConfig
from postscript_audience_lab.emulator.postscript.web.serve import serve_in_background

__all__ = ["IntakeResult", "measure_intake", "serve_bench_command"]

TARGET_EVENTS_PER_S = 2000
BENCH_KEY = "sk_test_pslab"  # the emulator's default key: nothing real
WRITE_KEY = "wk_bench"
AUDIENCES = 8


@dataclass(frozen=True)
class IntakeResult:
    events: int
    batch: int
    connections: int
    seconds: float
    events_per_s: float
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    pending_after: int


def serve_bench_command(
    events: Annotated[int, typer.Option(min=100, help="Distinct events to post.")] = 50_000,
    batch: Annotated[int, typer.Option(min=1, max=4000, help="Events per request.")] = 100,
    connections: Annotated[int, typer.Option(min=1, help="Concurrent connections.")] = 4,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    check: Annotated[
        bool, typer.Option("--check", help=f"Exit 1 below {TARGET_EVENTS_PER_S:,} events/s.")
    ] = False,
) -> None:
    """Measure `pslab serve`'s intake throughput with the drain off."""
    result = measure_intake(events=events, batch=batch, connections=connections)
    if as_json:
        print(json.dumps(asdict(result)))
    else:
        print(
            f"pslab serve intake: {result.events:,} events in batches of {result.batch} over "
            f"{result.connections} connections: {result.events_per_s:,.0f} events/s durably "
            f"accepted ({result.requests_per_s:,.0f} requests/s, p50 {result.p50_ms:.1f} ms, "
            f"p99 {result.p99_ms:.1f} ms, {result.seconds:.2f} s); target "
            f"{TARGET_EVENTS_PER_S:,} events/s"
        )
    if check and result.events_per_s < TARGET_EVENTS_PER_S:
        raise typer.Exit(1)


def measure_intake(*, events: int, batch: int, connections: int) -> IntakeResult:
    bodies = [
        json.dumps({"batch": [_event(index) for index in range(start, min(start + batch, events))]})
        for start in range(0, events, batch)
    ]
    with (
        serve_in_background(EmulatorConfig(rate_limit_rps=0)) as emulator_url,
        tempfile.TemporaryDirectory(prefix="pslab-serve-bench-") as scratch,
    ):
        server = _start_server(emulator_url, Path(scratch) / "state.sqlite")
        try:
            match = re.search(r"http://127\.0\.0\.1:\d+", _first_line(server))
            if match is None:
                raise RuntimeError("pslab serve did not start; run it by hand to see why")
            url = match.group(0)
            seconds, latencies, received = asyncio.run(_post_all(url, bodies, connections))
            pending = int(httpx.get(f"{url}/status", timeout=30).json()["pending"])
        finally:
            server.terminate()
            server.wait(timeout=30)
    if received != events:
        raise RuntimeError(f"the server answered for {received:,} of {events:,} events")
    ordered = sorted(latencies)
    return IntakeResult(
        events=events,
        batch=batch,
        connections=connections,
        seconds=round(seconds, 3),
        events_per_s=round(events / seconds, 1),
        requests_per_s=round(len(bodies) / seconds, 1),
        p50_ms=round(statistics.median(ordered) * 1000, 2),
        p99_ms=round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 2),
        pending_after=pending,
    )


def _event(index: int) -> dict[str, Any]:
    phone = f"+1555{index // AUDIENCES:07d}"  # each shopper is in every audience
    audience = f"audience_{index % AUDIENCES}"
    return {
        "type": "identify",
        "messageId": f"bench-{index}",
        "timestamp": "2026-01-01T00:00:00Z",
        "traits": {"phone": phone, audience: index % 3 != 0},
        "context": {"personas": {"computation_class": "audience", "computation_key": audience}},
    }


def _start_server(emulator_url: str, state: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "POSTSCRIPT_SECRET_KEY": BENCH_KEY, "PSLAB_WRITE_KEY": WRITE_KEY}
    return subprocess.Popen(  # noqa: S603 -- our own program
        [sys.executable, "-m", "postscript_audience_lab", "serve", "--port", "0", "--no-drain",
         "--base-url", emulator_url, "--state", str(state)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
    )  # fmt: skip


def _first_line(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    return process.stdout.readline()


async def _post_all(
    url: str, bodies: list[str], connections: int
) -> tuple[float, list[float], int]:
    """Post every body, `connections` at a time; (seconds, latency of each, events received)."""
    auth = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    queue = iter(bodies)
    latencies: list[float] = []
    received = 0
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)

    async def sender(client: httpx.AsyncClient) -> None:
        nonlocal received
        for body in queue:  # the senders share one iterator: each body is sent once
            sent = time.perf_counter()
            response = await client.post("/v1/batch", content=body, headers={"Authorization": auth})
            latencies.append(time.perf_counter() - sent)
            response.raise_for_status()
            received += int(response.json()["received"])

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        await client.get("/health")  # open a connection before the clock starts
        started = time.perf_counter()
        async with asyncio.TaskGroup() as senders:
            for _ in range(connections):
                senders.create_task(sender(client))
        return time.perf_counter() - started, latencies, received


if __name__ == "__main__":
    typer.run(serve_bench_command)
