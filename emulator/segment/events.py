"""Engage audience events, shaped the way Segment sends them to a destination.

Segment Engage emits one event per user each time the user enters or leaves an
audience (or reaches a journey step). The destination sees either an
`identify` whose traits carry `{<audience_key>: bool}` or a `track` named
"Audience Entered"/"Audience Exited" whose properties carry
`{"audience_key": <key>, <key>: bool}` and whose identifiers sit in
`context.traits`. `context.personas` names the computation (docs/design/events.md).

The factory is pure: the caller decides every value (how the phone is typed,
whether the boolean is a string, the timestamps), so scenarios and hypothesis
strategies can both drive it.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal

__all__ = [
    "SPACE_ID",
    "Audience",
    "ComputationClass",
    "EventKind",
    "Shopper",
    "audience_event",
    "email_spellings",
    "format_timestamp",
    "new_message_id",
    "phone_spellings",
]

SPACE_ID = "spa_9Zq4Lx2bKc7RwHtVm3NfYd"

ComputationClass = Literal["audience", "journey_step"]
EventKind = Literal["identify", "track"]

_BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase


@dataclass(frozen=True)
class Audience:
    """One Engage computation: an audience, or one step of a journey."""

    key: str
    id: str
    computation_class: ComputationClass = "audience"
    send_as: EventKind = "identify"


@dataclass(frozen=True)
class Shopper:
    """One person in Engage, with the canonical (normalised) identifiers they have."""

    user_id: str
    phone: str | None
    email: str | None

    @property
    def identity(self) -> str:
        """The ground-truth name of the subscriber: E.164 phone, else lower-cased email."""
        if self.phone:
            return self.phone
        assert self.email is not None
        return self.email


def phone_spellings(e164: str) -> list[str]:
    """Ways people type a US number (+1 NXX NXX XXXX); all normalise back to `e164`."""
    if not (e164.startswith("+1") and len(e164) == 12):
        return [e164]
    area, exchange, line = e164[2:5], e164[5:8], e164[8:]
    return [
        e164,
        f"({area}) {exchange}-{line}",
        f"{area}-{exchange}-{line}",
        f"1 {area} {exchange} {line}",
        f"{area}.{exchange}.{line}",
        f"+1 ({area}) {exchange}-{line}",
        f"1{area}{exchange}{line}",
        f" {area}{exchange}{line} ",
    ]


def email_spellings(email: str) -> list[str]:
    """Ways an email arrives from forms and imports; all trim and lower-case back to `email`."""
    local, _, domain = email.partition("@")
    return [
        email,
        f"{local.capitalize()}@{domain.capitalize()}",
        f" {email}",
        f"{email} ",
        email.upper(),
        f"{local}@{domain.upper()}",
    ]


def format_timestamp(instant: datetime, offset_minutes: int = 0) -> str:
    """ISO-8601 with milliseconds, `Z` for UTC as Segment writes it, else an explicit offset."""
    if offset_minutes == 0:
        utc = instant.astimezone(UTC)
        return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
    local = instant.astimezone(timezone(timedelta(minutes=offset_minutes)))
    return local.isoformat(timespec="milliseconds")


def new_message_id(rng: random.Random) -> str:
    """A Personas message id: `personas_` and 27 base-62 characters (KSUID-like)."""
    return "personas_" + "".join(rng.choice(_BASE62) for _ in range(27))


def audience_event(
    *,
    kind: EventKind,
    audience: Audience,
    user_id: str,
    member_value: bool | str | None,
    entered: bool,
    phone: str | None,
    email: str | None,
    timestamp: str,
    received_at: str,
    message_id: str,
    space_id: str = SPACE_ID,
) -> dict[str, Any]:
    """One Segment event as delivered to the destination.

    `member_value` is what goes under the audience key: a bool, a string
    boolean, or None to leave it out (only meaningful for journey steps, where
    a missing value means "entered"). `entered` picks the `track` event name.
    `phone`/`email` are spelled as typed; None leaves them out.
    """
    key = audience.key
    identifiers: dict[str, Any] = {}
    if email is not None:
        identifiers["email"] = email
    if phone is not None:
        identifiers["phone"] = phone
    personas = {
        "computation_class": audience.computation_class,
        "computation_id": audience.id,
        "computation_key": key,
        "namespace": space_id,
        "space_id": space_id,
    }
    event: dict[str, Any] = {
        "type": kind,
        "messageId": message_id,
        "userId": user_id,
        "timestamp": timestamp,
        "originalTimestamp": timestamp,
        "receivedAt": received_at,
        "channel": "server",
    }
    membership = {} if member_value is None else {key: member_value}
    if kind == "identify":
        event["traits"] = {**membership, **identifiers}
        event["context"] = {"library": _LIBRARY, "personas": personas}
    else:
        event["event"] = "Audience Entered" if entered else "Audience Exited"
        properties: dict[str, Any] = {"audience_key": key, **membership}
        if audience.computation_class == "journey_step":
            properties["journey_metadata"] = {
                "journey_id": audience.id.replace("aud_", "jou_", 1),
                "journey_name": key.rsplit("__", 1)[0],
                "epoch_id": "epo_1",
            }
        event["properties"] = properties
        event["context"] = {"library": _LIBRARY, "personas": personas, "traits": identifiers}
    event["integrations"] = {"All": False, "Postscript": True}
    return event


_LIBRARY = {"name": "unknown", "version": "unknown"}
