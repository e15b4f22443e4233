"""The state file's schema version and migrations (sync/ledger/schema.py).

A file written by 0.1.0, which had no version, opens, migrates and converges; a file from a
newer release is refused and left byte for byte as it was; a migration killed half-way
leaves a file the next run migrates.
"""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
from collections import Counter
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from postscript_audience_lab.sync import ledger
from postscript_audience_lab.sync.errors import StateVersionError
from postscript_audience_lab.sync.ledger import (
    SCHEMA_VERSION,
    Ledger,
    Migration,
    Status,
    schema,
    schema_version,
)
from tests.processes import read_line, unwrapped
from tests.sync.test_ledger import counted, recount
from tests.sync.world import World, audiences_of, by_identity

pytestmark = pytest.mark.anyio

FIXTURES = Path(__file__).parent / "fixtures"
ENTERED, EXITED = "Segment_Audience_Entered", "Segment_Audience_Exited"


@pytest.fixture
def old_state(tmp_path: Path) -> Path:
    """A copy of the 0.1.0 state file with its backlog (fixtures/README.md)."""
    copy = tmp_path / "state.sqlite"
    shutil.copyfile(FIXTURES / "state-v0.sqlite", copy)
    return copy


def fixture_facts() -> dict[str, Any]:
    return dict(json.loads((FIXTURES / "state-v0.json").read_text(encoding="utf-8")))


async def seeded_like_the_fixture(world: World) -> dict[str, Any]:
    """The emulator as it was when 0.1.0 wrote the fixture (same subscribers, same ids)."""
    facts = fixture_facts()
    await world.seed(*facts["subscribers"])
    return facts


def tables(path: Path) -> set[str]:
    with closing(sqlite3.connect(path)) as db, db:
        return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}


async def assert_converges(world: World, state: Path, facts: dict[str, Any]) -> None:
    report = await world.sync(state, [])

    assert schema_version(state) == SCHEMA_VERSION
    # The journaled write is finished (bob's event), the pending changes applied, and the
    # identity with no subscriber parked, as 0.1.0 would have done.
    assert (report.resumed, report.parked_identities) == (1, 1)
    after = await world.state()
    found = {who: audiences_of(s) for who, s in by_identity(after).items()}
    assert {who: found[who] for who in facts["converged"]} == facts["converged"]
    new_events = [event["type"] for event in after["events"]]
    assert Counter(new_events) == Counter({EXITED: 2, ENTERED: 1})  # bob's vip, ada's and cy's

    again = await world.sync(state, [])
    assert (again.applied, again.events_posted, again.resumed) == (0, 0, 0)


async def test_a_state_file_from_0_1_0_migrates_and_converges(old_state: Path) -> None:
    assert schema_version(old_state) == 0
    world = World()
    facts = await seeded_like_the_fixture(world)

    await assert_converges(world, old_state, facts)


def test_a_new_state_file_starts_at_the_newest_schema(tmp_path: Path) -> None:
    state = tmp_path / "new.sqlite"
    with Ledger(state) as opened:
        opened.db.execute("INSERT INTO seen VALUES ('m1')")
        wal = state.with_name(state.name + "-wal")
        modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in (state, wal)}
    assert modes == {"new.sqlite": 0o600, "new.sqlite-wal": 0o600}  # it will name people
    assert schema_version(state) == SCHEMA_VERSION
    assert {"seen", "winners", "intents", "applied", "identities", "floors"} <= tables(state)


def newer_state(tmp_path: Path, journal_mode: str = "wal") -> Path:
    """A state file as a newer release might leave it: a greater version, either journal."""
    state = tmp_path / "newer.sqlite"
    with Ledger(state):
        pass
    with closing(sqlite3.connect(state)) as db, db:
        db.execute(f"PRAGMA journal_mode = {journal_mode}")
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    return state


@pytest.mark.parametrize("journal_mode", ["wal", "delete"])
def test_a_state_file_from_a_newer_release_is_refused_and_left_unchanged(
    tmp_path: Path, journal_mode: str
) -> None:
    state = newer_state(tmp_path, journal_mode)
    before = state.read_bytes()
    neighbours = sorted(path.name for path in tmp_path.iterdir())

    with pytest.raises(StateVersionError) as refused:
        Ledger(state).open()

    message = str(refused.value)
    assert f"schema version {SCHEMA_VERSION + 1}, newer than version {SCHEMA_VERSION}" in message
    assert "Upgrade postscript-audience-lab" in message
    assert state.read_bytes() == before
    assert sorted(path.name for path in tmp_path.iterdir()) == neighbours  # no -wal, no -shm
    with Ledger(tmp_path / "other.sqlite"):  # and the refusal let go of the lock
        pass
    with pytest.raises(StateVersionError):
        Ledger(state).open()


def test_a_dry_runs_copy_of_a_newer_state_file_is_refused_naming_the_file(
    tmp_path: Path,
) -> None:
    state = newer_state(tmp_path)
    with pytest.raises(StateVersionError, match=f"the state file {state} has schema version"):
        ledger.copy_state(state, tmp_path / "copy.sqlite")
    assert not (tmp_path / "copy.sqlite").exists()


def test_pslab_sync_refuses_a_newer_state_file_in_one_line(tmp_path: Path) -> None:
    state = newer_state(tmp_path)
    before = state.read_bytes()
    result = subprocess.run(  # noqa: S603 -- our own program
        [sys.executable, "-m", "postscript_audience_lab", "sync", "--state", str(state)],
        input="",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"POSTSCRIPT_SECRET_KEY": "sk_test_not_used", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode != 0
    assert f"schema version {SCHEMA_VERSION + 1}" in unwrapped(result.stderr)
    assert "Traceback" not in result.stderr
    assert state.read_bytes() == before


# Run in a child: migration 1 with a step after it that stops half-way, inside the
# migration's transaction, until the parent kills the child with SIGKILL.
STALLED_MIGRATION = """
import sys, time
from pathlib import Path
from postscript_audience_lab.sync import ledger
from postscript_audience_lab.sync.ledger import schema

real = schema.MIGRATIONS[-1]

def stall(db):
    real.apply(db)
    db.execute("CREATE TABLE half_done (x INTEGER)")
    print("migrating", flush=True)
    time.sleep(120)

schema.MIGRATIONS = (*schema.MIGRATIONS[:-1], schema.Migration(real.version, "stalled", stall))
ledger.Ledger(Path(sys.argv[1])).open()
"""


def kill_during_migration(state: Path) -> None:
    """SIGKILL a child that is half-way through migrating `state`."""
    child = subprocess.Popen(  # noqa: S603 -- our own interpreter and script
        [sys.executable, "-c", STALLED_MIGRATION, str(state)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert read_line(child, timeout=60) == "migrating\n"
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        child.kill()
        child.wait()


async def test_a_migration_killed_half_way_leaves_a_file_the_next_run_migrates(
    old_state: Path,
) -> None:
    kill_during_migration(old_state)

    assert (schema_version(old_state) or 0) < SCHEMA_VERSION  # the header (may lag the log)
    with closing(sqlite3.connect(old_state)) as db, db:  # the steps before the killed one stay
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION - 1
    assert "half_done" not in tables(old_state)  # the half-done migration left nothing
    world = World()
    facts = await seeded_like_the_fixture(world)
    await assert_converges(world, old_state, facts)


def test_migrations_run_in_order_once_each(
    old_state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def step(version: int) -> Migration:
        def apply(db: sqlite3.Connection) -> None:
            db.execute("CREATE TABLE IF NOT EXISTS steps (version INTEGER)")
            db.execute("INSERT INTO steps VALUES (?)", (version,))

        return Migration(version, f"step {version}", apply)

    newest = SCHEMA_VERSION + 2
    extended = (*ledger.MIGRATIONS, step(SCHEMA_VERSION + 1), step(newest))
    # Where `_migrate` reads them: the names the package re-exports are copies.
    monkeypatch.setattr(schema, "MIGRATIONS", extended)
    monkeypatch.setattr(schema, "SCHEMA_VERSION", newest)

    for _ in range(2):
        with Ledger(old_state):
            pass

    assert schema_version(old_state) == newest
    with closing(sqlite3.connect(old_state)) as db, db:
        ran = [row[0] for row in db.execute("SELECT version FROM steps ORDER BY rowid")]
    assert ran == [SCHEMA_VERSION + 1, newest]


def test_the_counters_of_a_migrated_0_1_0_file_start_from_what_it_holds(
    old_state: Path,
) -> None:
    with Ledger(old_state) as opened:
        counts = opened.counts()
        assert counted(counts) == recount(opened.db)
    assert (counts.by_status[Status.PENDING], counts.intents) == (4, 1)  # the fixture's backlog
    assert (counts.rejections, counts.rejections_dropped) == (1, 0)


def test_a_file_that_is_not_sqlite_has_no_schema_version(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n" * 10, encoding="utf-8")
    assert schema_version(text) is None
    assert schema_version(tmp_path / "missing.sqlite") is None
