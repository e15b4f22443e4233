"""The connection guard both servers run behind (`httpguard`): deadlines and a connection limit.

A real uvicorn server on loopback with short deadlines; raw sockets play the slow or
hostile client, so that what is measured is what the server does to a connection.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from postscript_audience_lab.emulator.postscript.web.serve import serve_app_in_background
from postscript_audience_lab.httpguard import ConnectionLimits

QUICK = ConnectionLimits(max_connections=20, head_timeout_s=0.5, body_timeout_s=0.5)


async def _echo(request: Request) -> Response:
    return JSONResponse({"bytes": len(await request.body())})


async def _health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


@contextmanager
def _server(limits: ConnectionLimits = QUICK) -> Iterator[tuple[str, int]]:
    routes = [Route("/echo", _echo, methods=["POST"]), Route("/health", _health)]
    with serve_app_in_background(Starlette(routes=routes), limits=limits) as base_url:
        yield "127.0.0.1", int(base_url.rsplit(":", 1)[1])


def _closed_within(client: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closed `client` (EOF or reset), or None if it kept it."""
    started = time.monotonic()
    client.settimeout(seconds)
    try:
        while client.recv(4096):
            pass
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return time.monotonic() - started


def test_a_head_that_never_ends_is_closed_at_the_head_deadline() -> None:
    with _server() as address, socket.create_connection(address, timeout=5) as client:
        client.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # no blank line: never finished
        waited = _closed_within(client, 5)
    assert waited is not None, "the server kept a connection whose head never ended"
    assert waited < 2


def test_a_body_that_stops_coming_is_closed_at_the_body_deadline() -> None:
    with _server() as address, socket.create_connection(address, timeout=5) as client:
        client.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        waited = _closed_within(client, 5)
    assert waited is not None, "the server waited for ever for the rest of a body"
    assert waited < 2


def test_a_prompt_client_keeps_its_connection_across_requests() -> None:
    """The deadlines cover a request's arrival, not the time between requests (keep-alive's)."""
    with _server() as (host, port), httpx.Client(base_url=f"http://{host}:{port}") as client:
        for _ in range(3):
            assert client.post("/echo", content=b"x" * 1000).json() == {"bytes": 1000}
            time.sleep(0.3)  # under the keep-alive timeout, so the connection is reused


def test_held_connections_make_room_for_a_client_that_sends_its_request() -> None:
    """Past the limit, the oldest connection still waiting for its head is closed first."""
    limits = ConnectionLimits(max_connections=20, head_timeout_s=30, body_timeout_s=30)
    with _server(limits) as address, ExitStack() as held:
        idle = [held.enter_context(socket.create_connection(address)) for _ in range(40)]
        time.sleep(0.3)
        answer = httpx.get(f"http://{address[0]}:{address[1]}/health", timeout=5)
        assert answer.json() == {"status": "ok"}
        closed = sum(_closed_within(sock, 0.05) is not None for sock in idle)
    assert 20 <= closed <= 21, f"{closed} of 40 idle connections were closed to stay at 20"


@pytest.mark.parametrize(
    "wrong",
    [
        {"max_connections": 0},
        {"head_timeout_s": 0},
        {"body_timeout_s": -1},
    ],
)
def test_limits_that_could_not_hold_are_refused(wrong: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        ConnectionLimits(**wrong)  # type: ignore[arg-type]


def test_the_head_deadline_after_a_slow_body_is_the_heads_not_the_bodys() -> None:
    """A deadline that comes earlier than the one before it is kept (the timer is re-armed)."""
    limits = ConnectionLimits(max_connections=20, head_timeout_s=0.5, body_timeout_s=5.0)
    with _server(limits) as address, socket.create_connection(address, timeout=5) as client:
        client.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n")
        time.sleep(0.2)  # the body deadline (5 s) is armed meanwhile
        client.sendall(b"abc")
        answer = b""
        while not answer.endswith(b'{"bytes":3}'):
            answer += client.recv(4096)
        client.sendall(b"GET /health HTTP/1.1\r\n")  # the next head, never finished
        waited = _closed_within(client, 4)
    assert waited is not None, "the server kept a connection whose next head never ended"
    assert waited < 2, f"closed after {waited} s, not at the head deadline"
