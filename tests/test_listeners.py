"""The servers' listening sockets: Nagle's algorithm is off for every connection they accept.

With it on, asyncio's default loop (uvloop turns it off itself) held each answer until the
client's delayed ACK: about 40 ms a request against the emulator instead of under 1 ms.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest

from postscript_audience_lab.emulator.postscript.serve import listen as emulator_listen
from postscript_audience_lab.sync.serve_command import _listen as serve_listen


@pytest.mark.parametrize("listen", [emulator_listen, serve_listen], ids=["emulator", "serve"])
def test_accepted_connections_send_without_waiting_for_acks(
    listen: Callable[[str, int], socket.socket],
) -> None:
    with listen("127.0.0.1", 0) as listener:
        with socket.create_connection(listener.getsockname()[:2], timeout=5):
            accepted, _ = listener.accept()
        with accepted:
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
