"""Fixtures and collection order shared by every test package."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio (the engine and the emulator both use it)."""
    return "asyncio"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked slow run first, each module's order kept.

    Under xdist the long ones (a 30-s paced run, the crash suite) then start while
    the short ones are still queued and fill in around them, instead of starting
    last and leaving one worker alone with them at the end.
    """
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
