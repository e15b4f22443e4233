"""The servers' listening sockets: Nagle's algorithm is off for every connection they accept.

With it on, asyncio's default loop (uvloop turns it off itself) held each answer until the
client's delayed ACK: about 40 ms a request against the emulator instead of under 1 ms.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable

import httpx
import pytest

from postscript_audience_lab.emulator.postscript.config import EmulatorConfig
from postscript_audience_lab.emulator.postscript.web.serve import listen as emulator_listen
from postscript_audience_lab.emulator.postscript.web.serve import serve_in_background
from postscript_audience_lab.sync.commands.serving import listen as serve_listen


@pytest.mark.parametrize("listen", [emulator_listen, serve_listen], ids=["emulator", "serve"])
def test_accepted_connections_send_without_waiting_for_acks(
    listen: Callable[[str, int], socket.socket],
) -> None:
    with listen("127.0.0.1", 0) as listener:
        with socket.create_connection(listener.getsockname()[:2], timeout=5):
            accepted, _ = listener.accept()
        with accepted:
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_a_request_head_without_end_is_cut_off_not_buffered() -> None:
    """A header that never ends (here 8 MiB of it) closes the connection after h11's 16 KiB."""
    with serve_in_background(EmulatorConfig(rate_limit_rps=0)) as base_url:
        port = int(base_url.rsplit(":", 1)[1])
        sent = 0
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            client.sendall(b"GET /api/v2/subscribers HTTP/1.1\r\nHost: x\r\nX-Big: ")
            with contextlib.suppress(OSError):  # the server hangs up: a reset or a broken pipe
                for _ in range(128):
                    client.sendall(b"a" * 65536)
                    sent += 65536
        assert sent < 8 * 1024 * 1024, "the server read a header of 8 MiB"
        assert httpx.get(f"{base_url}/_emulator/state", timeout=10).status_code == 200
