"""docs/design/convergence.md: what to write to one subscriber, given its pending changes.

Pure: a subscriber as Postscript returned it plus the changes in, a `Plan`
out. This is the only place that decides list contents, foreign entries,
ties and which events mirror a change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from postscript_audience_lab.sync.parse import AudienceChange, Version

__all__ = [
    "AUDIENCES_PROPERTY",
    "ENTERED",
    "EXITED",
    "Plan",
    "audience_list",
    "plan_subscriber",
]

AUDIENCES_PROPERTY = "Segment Audiences"
ENTERED = "Segment_Audience_Entered"
EXITED = "Segment_Audience_Exited"


@dataclass(frozen=True)
class Plan:
    """The one PATCH (or none) and the events to post for one subscriber."""

    subscriber_id: str
    patch_properties: dict[str, Any] | None
    events: list[dict[str, Any]]
    winners: dict[str, AudienceChange] = field(default_factory=dict)
    stale: list[AudienceChange] = field(default_factory=list)
    flips: list[str] = field(default_factory=list)  # audience keys added or removed

    @property
    def audiences(self) -> list[Any] | None:
        """The new `Segment Audiences` list, when it changes."""
        if self.patch_properties is None:
            return None
        return list(self.patch_properties[AUDIENCES_PROPERTY])


def audience_list(subscriber: Mapping[str, Any]) -> list[Any]:
    """The subscriber's `Segment Audiences`, read leniently (absent -> empty).

    Entries are kept exactly as read, whatever their type: a foreign entry
    goes back unchanged (docs/design/convergence.md#foreign-entries), not as its string.
    """
    properties = subscriber.get("properties") or {}
    value = properties.get(AUDIENCES_PROPERTY) if isinstance(properties, Mapping) else None
    if value is None:
        return []
    if isinstance(value, list):
        return list(value)
    return [value]  # a scalar someone else wrote stays, as one foreign entry


def plan_subscriber(
    subscriber: Mapping[str, Any],
    changes: Iterable[AudienceChange],
    *,
    applied: Mapping[str, Version] | None = None,
    post_events: bool = True,
) -> Plan:
    """Apply the greatest version per audience to the current list.

    `applied` holds, per audience key, the version the engine already wrote to
    this subscriber; a change not newer than it is stale and changes nothing.
    """
    subscriber_id = str(subscriber["id"])
    applied = applied or {}
    winners: dict[str, AudienceChange] = {}
    stale: list[AudienceChange] = []
    for change in changes:
        key = change.audience_key
        known = applied.get(key)
        if known is not None and change.version <= known:
            stale.append(change)
            continue
        current = winners.get(key)
        # (a full tie means one messageId with two contents: "member" wins, whatever the order)
        if current is None or (change.version, change.member) > (current.version, current.member):
            if current is not None:
                stale.append(current)
            winners[key] = change
        else:
            stale.append(change)

    before = audience_list(subscriber)
    after = list(before)
    events: list[dict[str, Any]] = []
    flips: list[str] = []
    for key, winner in sorted(winners.items(), key=lambda item: (item[1].version, item[0])):
        present = key in after
        if winner.member and not present:
            after.append(key)
        elif not winner.member and present:
            after = [entry for entry in after if entry != key]
        else:
            continue
        flips.append(key)
        if post_events:
            events.append(_event(subscriber_id, winner))
    patch = {AUDIENCES_PROPERTY: after} if after != before else None
    return Plan(subscriber_id, patch, events, winners, stale, flips)


def _event(subscriber_id: str, winner: AudienceChange) -> dict[str, Any]:
    properties: dict[str, Any] = {"Segment Audience Key": winner.audience_key}
    if winner.audience_id is not None:
        properties["Segment Audience ID"] = winner.audience_id
    return {
        "type": ENTERED if winner.member else EXITED,
        "subscriber_id": subscriber_id,
        "occurred_at": _occurred_at(winner.version.timestamp),
        "external_id": winner.version.message_id,
        "properties": properties,
    }


def _occurred_at(instant: datetime) -> str:
    """Postscript's `%Y-%m-%d %H:%M:%S.%f` in UTC, with the year padded to four digits."""
    return instant.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
