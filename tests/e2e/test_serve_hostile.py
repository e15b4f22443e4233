"""`pslab serve` against clients that hold what they can: the bounds stated in the serve guide.

Sixty senders that start an 8 MB signed body and stall, and 1,100 connections that
never finish their request head, all at once: `/health` still answers, a good post
is still stored, and the process stays under the memory the serve guide states.
"""

from __future__ import annotations

import contextlib
import json
import resource
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_serve import Server, emulator_url, servers, signature, start_server

__all__ = ["emulator_url", "servers"]  # fixtures, shared with the other serve tests

pytestmark = pytest.mark.slow

STALLED_SENDERS = 60
HALF_OPEN = 1_100
RSS_BOUND_MB = 160  # the serve guide's figure for the default limits


def _rss_mb(pid: int, field: str = "VmHWM") -> float:
    """The process's resident memory (VmHWM: its peak so far) in MB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


@pytest.fixture
def many_sockets() -> Iterator[None]:
    """Room for this test's 1,200 sockets in this process (the server raises its own)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = STALLED_SENDERS + HALF_OPEN + 256
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"the hard limit on open files is {hard}; this test needs {needed}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, needed), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _stall(address: tuple[str, int]) -> socket.socket:
    """A signed 8 MB body announced, half of it sent, then nothing more."""
    client = socket.create_connection(address, timeout=3)
    head = (
        "POST / HTTP/1.1\r\nHost: pslab\r\nContent-Type: application/json\r\n"
        f"X-Signature: {'0' * 40}\r\nContent-Length: 8000000\r\n\r\n"
    )
    with contextlib.suppress(OSError):  # refused at once (503), or the buffers are full
        client.sendall(head.encode() + b"[" + b" " * (4 << 20))
    return client


def _half_open(address: tuple[str, int]) -> socket.socket:
    client = socket.create_connection(address, timeout=3)
    client.sendall(b"GET /health HTTP/1.1\r\nHost: pslab\r\n")  # the blank line never comes
    return client


def test_stalled_senders_and_half_open_connections_leave_it_answering_within_its_memory(
    tmp_path: Path, emulator_url: str, servers: list[Server], many_sockets: None
) -> None:
    server = start_server(tmp_path / "state.sqlite", emulator_url, tmp_path / "serve.log")
    servers.append(server)
    pid = server.process.pid
    host, port = server.url.removeprefix("http://").split(":")
    address = (host, int(port))
    started_mb = _rss_mb(pid, "VmRSS")

    with ThreadPoolExecutor(max_workers=STALLED_SENDERS) as pool:
        stalled = list(pool.map(_stall, [address] * STALLED_SENDERS))
    half_open = [_half_open(address) for _ in range(HALF_OPEN)]
    try:
        began = time.monotonic()
        health = httpx.get(f"{server.url}/health", timeout=5)
        answered_s = time.monotonic() - began
        event = {
            "type": "identify",
            "messageId": "hostile-good-1",
            "timestamp": "2026-12-01T00:00:00Z",
            "traits": {"vip": True, "email": "good@example.com"},
            "context": {"personas": {"computation_class": "audience", "computation_key": "vip"}},
        }
        body = json.dumps(event).encode()
        stored = httpx.post(
            f"{server.url}/", content=body, headers={"X-Signature": signature(body)}, timeout=5
        )
        status = server.status()
        peak_mb = _rss_mb(pid)
    finally:
        for client in (*stalled, *half_open):
            client.close()

    assert health.status_code == 200, health.text
    assert answered_s < 2, f"/health took {answered_s:.2f} s"
    assert stored.status_code == 200, stored.text
    assert stored.json()["accepted"] == 1
    print(f"RSS {started_mb:.0f} MB at start, {peak_mb:.0f} MB at peak; /health {answered_s:.3f} s")
    assert peak_mb < RSS_BOUND_MB, f"RSS peaked at {peak_mb:.0f} MB (bound {RSS_BOUND_MB} MB)"
    guard = status["intake"]
    assert guard["busy_refusals"] >= STALLED_SENDERS - 4  # 4 bodies of 8 MB fit the budget
    assert guard["connections"]["evicted"] >= HALF_OPEN + STALLED_SENDERS - 1000 - 4
