"""What the runs read: the workload's lines with two that must be rejected among them, and
a large input of older versions for kills during ingest.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = [
    "BAD_LINES",
    "PADDING_COPIES",
    "older_versions",
    "write_lines",
]

PADDING_COPIES = 40  # older versions per real line in the large input of `ingest` kills
BAD_LINES = (
    '{"type": "identify", "messageId": "reliability-not-closed"',
    json.dumps(
        {
            "type": "identify",
            "messageId": "reliability-no-audience",
            "timestamp": "2024-05-01T00:00:00Z",
            "traits": {"vip": True, "phone": "+15552000001"},
        }
    ),
)


def write_lines(path: Path, lines: Sequence[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def older_versions(lines: Sequence[str]) -> Iterator[str]:
    """`PADDING_COPIES` older versions of each valid line: a large input that changes nothing.

    Each copy names the same shopper and audience with a new messageId and a timestamp in
    2023, before any real event, so the real lines that follow supersede every one.
    """
    for copy in range(PADDING_COPIES):
        for number, line in enumerate(lines):
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if not isinstance(event, dict) or "context" not in event:
                continue
            event["messageId"] = f"older-{copy}-{number}-{event.get('messageId')}"
            instant = f"2023-{1 + copy % 12:02d}-{1 + number % 28:02d}T00:00:{copy % 60:02d}Z"
            for name in ("timestamp", "originalTimestamp", "receivedAt"):
                if name in event:
                    event[name] = instant
            yield json.dumps(event, separators=(",", ":"))
