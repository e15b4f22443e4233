"""Reading NDJSON input a line at a time, with a limit on how long one line may be.

A line longer than the limit is never held whole: it is read in pieces of at
most the limit, dropped, and becomes one `Rejection`, so one oversized line
costs bounded memory and stops nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TextIO

from postscript_audience_lab.sync.parse import Rejection

__all__ = ["MAX_LINE_CHARS", "bounded_lines"]

# Segment accepts at most 500 KB in one batch request; twice that leaves room for
# batches written by hand while still bounding what one line can cost.
MAX_LINE_CHARS = 1 << 20


def bounded_lines(stream: TextIO, max_chars: int = MAX_LINE_CHARS) -> Iterator[str | Rejection]:
    """Each line of `stream` (without its newline), or a `Rejection` for one that is too long."""
    line_no = 0
    while True:
        piece = stream.readline(max_chars + 1)
        if not piece:
            return
        line_no += 1
        if len(piece) <= max_chars or piece.endswith("\n"):
            yield piece.rstrip("\r\n")
            continue
        size = len(piece)
        while not piece.endswith("\n"):
            piece = stream.readline(max_chars + 1)
            if not piece:
                break
            size += len(piece)
        reason = (
            f"line {line_no} has {size:,} characters, more than the limit of {max_chars:,};"
            " split its batch into smaller ones"
        )
        yield Rejection(reason, {"line_characters": size}, line_no)
