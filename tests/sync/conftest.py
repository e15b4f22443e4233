"""Fixtures for the engine's tests: instant retries, hypothesis profiles, an emulator world."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import stamina
from hypothesis import HealthCheck, settings

from tests.sync.world import World

# Profiles for the engine's property tests. They are applied per test
# (`@CONVERGENCE`), not loaded globally, so other packages keep their own
# settings; PSLAB_HYPOTHESIS_PROFILE=thorough selects the long run.
settings.register_profile(
    "sync",
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("thorough", parent=settings.get_profile("sync"), max_examples=2000)
CONVERGENCE = settings.get_profile(os.environ.get("PSLAB_HYPOTHESIS_PROFILE", "sync"))


@pytest.fixture(autouse=True)
def instant_retries() -> Iterator[None]:
    """Retries happen (up to 30 attempts) but never sleep."""
    with stamina.set_testing(True, attempts=30):
        yield


@pytest.fixture
def world() -> World:
    """A fresh in-process emulator with the rate limit off."""
    return World()


@pytest.fixture
def state_path(tmp_path: Path) -> Path:
    return tmp_path / "state.sqlite"
