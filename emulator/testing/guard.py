"""No test reaches the real Postscript: connections to its API host fail at once.

While a fixture (`postscript`, `mock_postscript`, `postscript_server`) or a
`mock_postscript()` block is active, resolving or connecting to
`api.postscript.io` by any means that is not routed to the emulator
(urllib, http.client, a raw socket, a client whose mocking library is not
installed) raises `RealPostscriptBlocked` before any DNS lookup or packet,
naming what is active and how to route that client. The error is no
`OSError`, so no library mistakes it for a network failure to retry or wrap.

The guard patches `socket.getaddrinfo` and `socket.socket.connect` /
`connect_ex` for as long as at least one owner holds it; the patches check
the host name only, so everything else passes through untouched.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["POSTSCRIPT_HOSTS", "RealPostscriptBlocked", "blocking_real_postscript"]

POSTSCRIPT_HOSTS = frozenset({"api.postscript.io"})


class RealPostscriptBlocked(AssertionError):
    """The code under test tried to reach the real Postscript API while the emulator was on."""


_lock = threading.Lock()
_owners: list[tuple[str, list[str]]] = []  # who holds the guard, and what it blocked since
_originals: dict[str, Any] = {}


def _host_of(address: Any) -> str | None:
    if isinstance(address, tuple) and address and isinstance(address[0], str | bytes):
        host = address[0]
        return (host.decode() if isinstance(host, bytes) else host).rstrip(".").lower()
    return None


def _blocked(host: str | None, how: str) -> RealPostscriptBlocked | None:
    if host is None or host not in POSTSCRIPT_HOSTS:
        return None
    with _lock:
        owner = _owners[-1][0] if _owners else "the Postscript emulator"
        for _, seen in _owners:
            seen.append(f"{how} {host}")
    return RealPostscriptBlocked(
        f"{owner} is active, so the real Postscript ({host}) is out of reach: a connection "
        f"was attempted through {how}, which mock_postscript does not route. It routes httpx, "
        "requests (with postscript-audience-lab[requests]) and aiohttp (with "
        "postscript-audience-lab[aiohttp]); point any other client at the emulator's "
        "base_url instead: the postscript_server fixture serves one on a loopback port."
    )


def _getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    problem = _blocked(_host_of((host,)), "a DNS lookup (socket.getaddrinfo)")
    if problem is not None:
        raise problem
    return _originals["getaddrinfo"](host, *args, **kwargs)


def _connecting(name: str) -> Callable[..., Any]:
    original = getattr(socket.socket, name)

    def connect(self: socket.socket, address: Any) -> Any:
        problem = _blocked(_host_of(address), f"socket.{name}")
        if problem is not None:
            raise problem
        return original(self, address)

    _originals[name] = original
    return connect


def _patch() -> None:
    _originals["getaddrinfo"] = socket.getaddrinfo
    socket.getaddrinfo = _getaddrinfo
    for name in ("connect", "connect_ex"):
        setattr(socket.socket, name, _connecting(name))


def _unpatch() -> None:
    socket.getaddrinfo = _originals.pop("getaddrinfo")
    for name in ("connect", "connect_ex"):
        original = _originals.pop(name)
        if original is getattr(socket.socket.__mro__[1], name):  # inherited: was not set here
            delattr(socket.socket, name)
        else:
            setattr(socket.socket, name, original)


@contextmanager
def blocking_real_postscript(owner: str) -> Iterator[list[str]]:
    """Block the real API for the block's length; yields the list of what it blocks
    meanwhile ("socket.connect api.postscript.io"), filled as it happens."""
    held: tuple[str, list[str]] = (owner, [])
    with _lock:
        if not _owners:
            _patch()
        _owners.append(held)
    try:
        yield held[1]
    finally:
        with _lock:
            del _owners[next(i for i, o in enumerate(_owners) if o is held)]
            if not _owners:
                _unpatch()
