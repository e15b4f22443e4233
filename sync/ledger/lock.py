"""One process at a time: an exclusive `flock` on the state file itself, taken on open, so
a symlink or a hard link to the same file meets the same lock; and a copy of the file that
leaves nothing beside it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import sys
from contextlib import closing
from pathlib import Path
from typing import IO

from postscript_audience_lab.sync.errors import StateLockedError
from postscript_audience_lab.sync.ledger.schema import _refuse_newer, schema_version

__all__ = ["PRIVATE_FILE_MODE", "copy_state", "hold_lock", "remove_state"]

PRIVATE_FILE_MODE = 0o600  # files that hold phones and emails are created for their owner only


def hold_lock(path: Path, *, create: bool = True) -> IO[bytes] | None:
    """Take the state file's process lock: an exclusive `flock` on the database file itself.

    The lock belongs to the file, not to its name, so a second run that reaches the
    same file through a symlink or a hard link is refused too. (`flock` locks are
    apart from the byte-range locks SQLite takes, so the two never meet.) The holder's
    pid goes to `<resolved state path>.lock`, for the refusal message only. With
    `create=False` (a dry run) a missing state file is not created, nor the pid noted:
    there is nothing to lock, and None comes back.
    """
    handle: IO[bytes]
    try:
        if create:  # a new state file holds phones and emails: its owner's alone (SQLite's
            # -wal and -shm files take the same mode)
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, PRIVATE_FILE_MODE)
            handle = os.fdopen(descriptor, "a+b")
        else:
            handle = open(path, "rb")  # noqa: SIM115 -- held for the run
    except FileNotFoundError:
        if create:
            raise
        return None
    pid_note = path.resolve().with_name(path.resolve().name + ".lock")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        pid, command = _read_holder(pid_note)
        raise StateLockedError(
            f"the state file {path} is in use by another {command} (pid {pid}); "
            "wait for it to finish or pass a different --state"
        ) from None
    if create:
        with contextlib.suppress(OSError):  # the note is a courtesy; the lock is the flock
            pid_note.write_text(f"{os.getpid()}\n{_this_command()}\n", encoding="ascii")
    return handle


def _this_command() -> str:
    """What holds the lock, for the refusal another process shows: `pslab serve` and the like."""
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    return f"pslab {command}" if command in ("sync", "serve", "reconcile") else "pslab process"


def _read_holder(note: Path) -> tuple[str, str]:
    """The pid and the command in a lock note (a note of 0.1.0 holds the pid alone)."""
    try:
        lines = note.read_text(encoding="ascii").split("\n")
    except (OSError, UnicodeDecodeError):
        return "unknown", "pslab process"
    pid = lines[0].strip()[:20] or "unknown"
    command = lines[1].strip()[:40] if len(lines) > 1 and lines[1].strip() else "pslab process"
    return pid, command


def copy_state(path: Path, copy: Path) -> None:
    """Copy the state file at `path`, if there is one, to `copy`, leaving no trace beside it.

    Reading a WAL database creates its `-wal` and `-shm` files when they are missing;
    those this copy created are removed again (the caller holds the state lock, so no
    other connection uses them).
    """
    if not path.exists():
        return
    _refuse_newer(path, schema_version(path) or 0)  # naming the user's file, not the copy
    companions = [path.with_name(path.name + suffix) for suffix in ("-wal", "-shm")]
    existed = {companion: companion.exists() for companion in companions}
    read_only = f"{path.resolve().as_uri()}?mode=ro"
    with (
        closing(sqlite3.connect(read_only, uri=True)) as source,
        closing(sqlite3.connect(copy)) as target,
    ):
        source.backup(target)
    for companion, was_there in existed.items():
        if not was_there:
            companion.unlink(missing_ok=True)


def remove_state(path: Path) -> None:
    """Delete a state file this process created and stored nothing in, with its companions
    (`-wal`, `-shm`) and its lock note: a start refused before anything was stored (a wrong
    key, say) then leaves the folder as it found it. Call it once the file is closed."""
    note = path.resolve().with_name(path.resolve().name + ".lock")
    for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), note):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()
