"""While the emulator is on, the real Postscript is out of reach by any client, at once."""

from __future__ import annotations

import contextlib
import http.client
import socket
import time
import urllib.request
from typing import Any

import pytest

from postscript_audience_lab.emulator.testing import (
    RealPostscriptBlocked,
    UnroutedRequest,
    mock_postscript,
)

ME = "https://api.postscript.io/api/v2/me"


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every DNS lookup that gets past the guard (none may reach the network here)."""
    seen: list[str] = []

    def refuse(host: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(str(host))
        raise socket.gaierror(socket.EAI_NONAME, "no DNS in this test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return seen


def test_urllib_fails_at_once_with_the_guards_error_and_no_dns_lookup(lookups: list[str]) -> None:
    with mock_postscript(expect_unrouted=True):
        started = time.perf_counter()
        with pytest.raises(RealPostscriptBlocked) as blocked:
            urllib.request.urlopen(ME)
        took = time.perf_counter() - started
    assert took < 1.0
    assert lookups == []
    message = str(blocked.value)
    assert "mock_postscript() is active" in message
    assert "postscript-audience-lab[requests]" in message
    assert "postscript_server" in message


def test_http_client_and_raw_sockets_are_blocked_too(lookups: list[str]) -> None:
    with mock_postscript(expect_unrouted=True):
        connection = http.client.HTTPSConnection("api.postscript.io", timeout=5)
        with pytest.raises(RealPostscriptBlocked):
            connection.request("GET", "/api/v2/me")
        with socket.socket() as raw, pytest.raises(RealPostscriptBlocked, match=r"socket\.connect"):
            raw.connect(("api.postscript.io", 443))
        with socket.socket() as raw, pytest.raises(RealPostscriptBlocked):
            raw.connect_ex(("API.Postscript.IO.", 443))
    assert lookups == []


def swallowing_call() -> None:
    """Code under test that logs and carries on whatever the error."""
    with contextlib.suppress(Exception):
        urllib.request.urlopen(ME)


def test_a_blocked_connection_the_code_swallowed_fails_the_block() -> None:
    block = mock_postscript()
    block.start()
    swallowing_call()
    with pytest.raises(UnroutedRequest, match=r"carried on: .*api\.postscript\.io"):
        block.stop()


def test_the_guard_leaves_other_hosts_alone_and_ends_with_the_block() -> None:
    original = socket.getaddrinfo
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with mock_postscript(), socket.socket() as client:
            client.connect(server.getsockname())
            assert socket.getaddrinfo is not original
    assert socket.getaddrinfo is original
    assert "connect" not in vars(socket.socket)
