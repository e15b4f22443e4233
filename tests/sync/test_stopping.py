"""A batch command's SIGTERM handling (`sync.commands.stopping`) changes nothing else."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from postscript_audience_lab.sync.commands.stopping import GracefulStop
from postscript_audience_lab.sync.engine import Engine
from postscript_audience_lab.sync.errors import NotFoundError
from tests.sync.world import World


def test_a_failure_of_the_work_is_raised_as_itself_so_the_command_reports_it(
    world: World, state_path: Path
) -> None:
    """The command turns a SyncError into one line; one wrapped in an exception group would
    escape that and print a traceback (an injected 404 on a lookup did)."""

    async def failing() -> None:
        raise NotFoundError(404, "Could not find a resource", "subscribers.list")

    with Engine(world.settings(state_path)) as engine, pytest.raises(NotFoundError):
        anyio.run(GracefulStop(engine).run, failing)


def test_the_works_result_comes_back(world: World, state_path: Path) -> None:
    async def answer() -> int:
        return 42

    with Engine(world.settings(state_path)) as engine:
        assert anyio.run(GracefulStop(engine).run, answer) == 42
