"""`pslab serve` as an operator runs it: subprocesses of `pslab emulator` and `pslab serve`.

Generated Engage traffic (duplicated, reordered, late) is posted from several
concurrent senders in every form Segment uses (docs/design/service.md), and the emulator's
state is scored against the traffic's ground truth. The kill tests stop the
server at its worst moments and check that every acknowledged event still lands.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from postscript_audience_lab.emulator.segment.workload import Workload, build_workload
from postscript_audience_lab.lab.comparison import score_world, seed_world
from tests.processes import read_line, running_emulator, stop, unwrapped

pytestmark = pytest.mark.slow

KEY = "sk_e2e_serve_Recognisable0Key"
WRITE_KEY, SHARED_SECRET = "wk_e2e_segment", "shh_e2e_webhook"
PSLAB = [sys.executable, "-m", "postscript_audience_lab"]
BASIC = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
URL = re.compile(r"http://127\.0\.0\.1:\d+")


@pytest.fixture
def emulator_url() -> Iterator[str]:
    """`pslab emulator` on a free loopback port, its rate limit off."""
    with running_emulator("--secret-key", KEY, "--rate-limit", "0") as (base_url, _):
        yield base_url


@dataclass
class Server:
    """One `pslab serve` process; its structured log goes to `log`."""

    process: subprocess.Popen[str]
    url: str
    log: Path

    def status(self) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/status", timeout=10)
        response.raise_for_status()
        return dict(response.json())

    def wait_for(
        self, holds: Callable[[dict[str, Any]], bool], timeout: float = 60
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while not holds(status := self.status()):
            assert time.monotonic() < deadline, f"/status never got there: {status}"
            time.sleep(0.05)
        return status

    def drained(self) -> dict[str, Any]:
        return self.wait_for(lambda status: status["pending"] == 0 and status["drain"] == "idle")


def start_server(state: Path, emulator_url: str, log: Path, *extra: str) -> Server:
    env = {
        **os.environ,
        "POSTSCRIPT_SECRET_KEY": KEY,
        "PSLAB_WRITE_KEY": WRITE_KEY,
        "PSLAB_SHARED_SECRET": SHARED_SECRET,
    }
    with log.open("a") as stderr:
        process = subprocess.Popen(  # noqa: S603 -- our own program
            [*PSLAB, "serve", "--port", "0", "--base-url", emulator_url, "--state", str(state),
             *extra],
            stdout=subprocess.PIPE, stderr=stderr, text=True, env=env,
        )  # fmt: skip
    match = URL.search(read_line(process, timeout=30))
    assert match, f"pslab serve did not announce its URL: {log.read_text()}"
    return Server(process, match.group(0), log)


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    """Every server a test starts, stopped at the end whatever happened."""
    started: list[Server] = []
    yield started
    for server in started:
        stop(server.process, signal.SIGKILL)


# -- sending as Segment does ---------------------------------------------------------


def signature(body: bytes) -> str:
    return hmac.new(SHARED_SECRET.encode(), body, hashlib.sha1).hexdigest()


def requests_for(chunk: list[str], form: int) -> Iterator[tuple[str, bytes, dict[str, str]]]:
    """The chunk's events as one of four senders: Segment's HTTP API one event at a time
    or as a batch, and the Webhooks destination batching (a JSON array, the write key in a
    header) or not (one event a request, signed)."""
    if form == 0:
        for line in chunk:
            yield "/v1/" + json.loads(line)["type"], line.encode(), {"Authorization": BASIC}
    elif form == 1:
        body = ('{"batch":[' + ",".join(chunk) + "]}").encode()
        yield "/v1/batch", body, {"Authorization": BASIC}
    elif form == 2:
        yield "/", ("[" + ",".join(chunk) + "]").encode(), {"Authorization": BASIC}
    else:
        for line in chunk:
            yield "/", line.encode(), {"X-Signature": signature(line.encode())}


def send(url: str, lines: list[str], *, senders: int = 4, chunk: int = 25) -> dict[str, int]:
    """Post `lines` from `senders` concurrent connections; every answer must be a 200."""
    chunks = [lines[start : start + chunk] for start in range(0, len(lines), chunk)]

    def post_chunk(index: int) -> dict[str, int]:
        totals = {"received": 0, "accepted": 0, "rejected": 0}
        with httpx.Client(base_url=url, timeout=30) as client:
            for route, body, headers in requests_for(chunks[index], form=index % 4):
                response = client.post(route, content=body, headers=headers)
                assert response.status_code == 200, response.text
                for name in totals:
                    totals[name] += response.json()[name]
        return totals

    with ThreadPoolExecutor(max_workers=senders) as pool:
        answers = list(pool.map(post_chunk, range(len(chunks))))
    return {name: sum(answer[name] for answer in answers) for name in answers[0]}


def workload(users: int) -> tuple[Workload, list[str]]:
    chosen = build_workload("quick", users=users, audiences=4, seed=11)
    return chosen, list(chosen.iter_lines())


def assert_no_secret_or_shopper_in(text: str, chosen: Workload) -> None:
    assert KEY not in text
    assert WRITE_KEY not in text
    assert SHARED_SECRET not in text
    for subscriber in chosen.subscribers:
        for identity in (subscriber.get("phone_number"), subscriber.get("email")):
            assert not identity or identity not in text


# -- the tests -----------------------------------------------------------------------


def test_concurrent_senders_in_every_form_converge_the_emulator(
    emulator_url: str, tmp_path: Path, servers: list[Server]
) -> None:
    chosen, lines = workload(users=150)
    seed_world(emulator_url, chosen)
    state = tmp_path / "state.sqlite"
    server = start_server(state, emulator_url, tmp_path / "serve.log", "--rate-limit", "0")
    servers.append(server)

    totals = send(server.url, lines)
    drained = server.drained()
    score = score_world(emulator_url, chosen)
    sync_meanwhile = subprocess.run(  # noqa: S603 -- our own program
        [*PSLAB, "sync", "--base-url", emulator_url, "--state", str(state)],
        input="", capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "POSTSCRIPT_SECRET_KEY": KEY},
    )  # fmt: skip
    stop(server.process)

    assert totals["received"] == len(lines)
    assert totals["rejected"] == 0
    assert drained["since_start"]["received"] == len(lines)
    assert drained["since_start"]["duplicates"] > 0  # the traffic re-delivers
    assert (score.converged_share, score.repeated_events) == (1.0, 0)
    assert sync_meanwhile.returncode == 1
    assert "in use by another" in sync_meanwhile.stderr
    assert server.process.returncode == 0
    log = server.log.read_text()
    assert all(json.loads(line) for line in log.splitlines() if line.startswith("{"))
    assert_no_secret_or_shopper_in(log, chosen)
    stored = b"".join(path.read_bytes() for path in tmp_path.glob("state.sqlite*"))
    assert all(secret.encode() not in stored for secret in (KEY, WRITE_KEY, SHARED_SECRET))


def test_refused_credentials_and_oversized_bodies_store_nothing(
    emulator_url: str, tmp_path: Path, servers: list[Server]
) -> None:
    server = start_server(
        tmp_path / "state.sqlite", emulator_url, tmp_path / "serve.log", "--max-body-bytes", "4096"
    )
    servers.append(server)
    _, lines = workload(users=20)
    batch = ('{"batch":[' + ",".join(lines[:3]) + "]}").encode()
    wrong_key = "Basic " + base64.b64encode(b"wk_wrong:").decode()
    big = ('{"batch":[' + ",".join(lines[:40]) + "]}").encode()
    assert len(big) > 4096

    answers = {
        "wrong key": httpx.post(f"{server.url}/v1/batch", content=batch,
                                headers={"Authorization": wrong_key}),
        "bad signature": httpx.post(f"{server.url}/", content=batch,
                                    headers={"X-Signature": signature(batch[:-1])}),
        "no credentials": httpx.post(f"{server.url}/", content=batch),
        "oversized": httpx.post(f"{server.url}/v1/batch", content=big,
                                headers={"Authorization": BASIC}),
    }  # fmt: skip
    status = server.status()

    assert {name: answer.status_code for name, answer in answers.items()} == {
        "wrong key": 401,
        "bad signature": 401,
        "no credentials": 401,
        "oversized": 413,
    }
    assert status["since_start"]["received"] == 0
    assert status["ledger"]["pending"] == 0


@dataclass
class MidDrain:
    """A slow `pslab serve` that answered every request and has started to PATCH."""

    chosen: Workload
    lines: list[str]
    state: Path
    log: Path
    server: Server
    totals: dict[str, int]
    status: dict[str, Any]


def serve_until_mid_drain(emulator_url: str, tmp_path: Path, servers: list[Server]) -> MidDrain:
    """60 shoppers' events sent to a server paced at 10 calls/s, until its first PATCH."""
    chosen, lines = workload(users=60)
    seed_world(emulator_url, chosen)
    state, log = tmp_path / "state.sqlite", tmp_path / "serve.log"
    slow = start_server(state, emulator_url, log, "--rate-limit", "10")
    servers.append(slow)
    totals = send(slow.url, lines, senders=2)
    status = slow.wait_for(lambda status: status["api_calls"].get("subscribers.patch", 0) > 0)
    return MidDrain(chosen, lines, state, log, slow, totals, status)


def test_a_server_killed_after_its_200s_loses_nothing_once_restarted(
    emulator_url: str, tmp_path: Path, servers: list[Server]
) -> None:
    run = serve_until_mid_drain(emulator_url, tmp_path, servers)
    chosen, lines, state, log, slow = run.chosen, run.lines, run.state, run.log, run.server
    totals, mid_drain = run.totals, run.status
    stop(slow.process, signal.SIGKILL)
    again = start_server(state, emulator_url, log, "--rate-limit", "0")
    servers.append(again)
    drained = again.drained()
    score = score_world(emulator_url, chosen)

    assert totals["received"] == len(lines)
    assert mid_drain["pending"] > 0
    assert slow.process.returncode == -signal.SIGKILL
    assert drained["ledger"]["pending"] == 0
    assert score.converged_share == 1.0
    # at most the one event in flight (docs/design/convergence.md#nothing-lost)
    assert score.repeated_events <= 1


def test_sigterm_during_a_drain_exits_0_within_10_s_and_a_restart_finishes(
    emulator_url: str, tmp_path: Path, servers: list[Server]
) -> None:
    run = serve_until_mid_drain(emulator_url, tmp_path, servers)
    chosen, state, log, slow, mid_drain = run.chosen, run.state, run.log, run.server, run.status
    asked = time.monotonic()
    slow.process.send_signal(signal.SIGTERM)
    slow.process.wait(timeout=15)
    took = time.monotonic() - asked
    again = start_server(state, emulator_url, log, "--rate-limit", "0")
    servers.append(again)
    drained = again.drained()
    score = score_world(emulator_url, chosen)

    assert mid_drain["drain"] == "draining"
    assert (slow.process.returncode, took < 10) == (0, True)
    events = [json.loads(line)["event"] for line in log.read_text().splitlines() if "{" in line]
    assert events.count("stopping") == 1
    assert "stopped" in events
    assert drained["ledger"]["pending"] == 0
    assert score.converged_share == 1.0
    assert score.repeated_events == 0  # the calls in flight were answered before the exit


STOPS = int(os.environ.get("PSLAB_STOPS", "4"))  # `nox -s reliability` stops it 15 times


def test_graceful_stops_during_busy_drains_repeat_no_event(
    emulator_url: str, tmp_path: Path, servers: list[Server]
) -> None:
    """A deploy stops the service mid-drain again and again: each stop lets the calls in
    flight be answered and journaled, so no SMS flow is triggered twice."""
    run = serve_until_mid_drain(emulator_url, tmp_path, servers)
    chosen, state, log, server = run.chosen, run.state, run.log, run.server
    mid_drain: list[str] = []
    for stop_number in range(STOPS):
        if stop_number:
            server = start_server(state, emulator_url, log, "--rate-limit", "10")
            servers.append(server)
            server.wait_for(  # this process has posted an event: a drain is under way
                lambda status: status["since_start"]["events_posted"] > 0 or status["pending"] == 0
            )
        mid_drain.append(server.status()["drain"])
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=20) == 0
    again = start_server(state, emulator_url, log, "--rate-limit", "0")
    servers.append(again)
    drained = again.drained()
    score = score_world(emulator_url, chosen)

    assert mid_drain.count("draining") >= STOPS // 2, mid_drain
    assert drained["ledger"]["pending"] == 0
    assert score.converged_share == 1.0
    assert score.repeated_events == 0, f"{score.repeated_events} events repeated in {STOPS} stops"


def test_serve_will_not_start_without_credentials_unless_told_to(tmp_path: Path) -> None:
    state = tmp_path / "state.sqlite"
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("PSLAB_WRITE_KEY", "PSLAB_SHARED_SECRET")
    }
    result = subprocess.run(  # noqa: S603 -- our own program
        [*PSLAB, "serve", "--port", "0", "--state", str(state)],
        capture_output=True, text=True, timeout=60, check=False,
        env={**env, "POSTSCRIPT_SECRET_KEY": KEY},
    )  # fmt: skip

    assert result.returncode == 2
    assert "--insecure-no-auth" in unwrapped(result.stderr)
    assert not state.exists()


def test_a_refused_key_stops_the_start_with_one_line_before_anything_is_served(
    emulator_url: str, tmp_path: Path
) -> None:
    state = tmp_path / "state.sqlite"
    result = subprocess.run(  # noqa: S603 -- our own program
        [*PSLAB, "serve", "--port", "0", "--state", str(state), "--base-url", emulator_url,
         "--write-key", WRITE_KEY],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "POSTSCRIPT_SECRET_KEY": "sk_not_the_shops_key"},
    )  # fmt: skip

    assert result.returncode == 1
    assert result.stdout == ""  # never announced it was listening
    assert "pslab serve: Postscript refused the secret key (HTTP 401)" in unwrapped(result.stderr)
    assert "--write-key is visible to every user" in unwrapped(result.stderr)
    assert WRITE_KEY not in result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == []  # a refused start leaves no files
