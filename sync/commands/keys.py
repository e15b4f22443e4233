"""Where a command's Postscript key comes from: a file, the environment, or the command line.

`pslab sync` and `pslab serve` read it the same way (docs/design/commands.md): the
first line of `--secret-key-file`, else `POSTSCRIPT_SECRET_KEY`, else
`--secret-key`, which works but is visible to every user of the machine.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["COMMAND_LINE_WARNING", "KeySourceError", "secret_key"]

COMMAND_LINE_WARNING = (
    "a key given with --secret-key is visible to every user of this machine (process list,"
    " shell history); prefer POSTSCRIPT_SECRET_KEY or --secret-key-file"
)


class KeySourceError(Exception):
    """No usable key in what the user gave; the message says what to do."""


def secret_key(given: str | None, key_file: Path | None) -> str:
    """The key from `key_file` (its first line) if given, else `given` (environment or flag)."""
    if key_file is not None:
        try:
            lines = key_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise KeySourceError(f"cannot read --secret-key-file {key_file}: {exc}") from None
        key = lines[0].strip() if lines else ""
        if not key:
            raise KeySourceError(f"--secret-key-file {key_file} is empty")
        return key
    if not given:
        raise KeySourceError(
            "no secret key: set POSTSCRIPT_SECRET_KEY or pass --secret-key-file (or --secret-key)"
        )
    return given
