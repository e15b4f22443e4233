"""What `pslab serve` takes over HTTP (docs/design/service.md): who may post, and what a body holds.

Pure: header values and body bytes in, a verdict or a decoded body out; the
web app (`sync.service.app`) only moves bytes. A sender proves itself the way
Segment does:

- a write key as the user name of HTTP Basic (Segment's HTTP tracking API);
- `X-Signature`, the hex HMAC-SHA1 of the raw body under a shared secret
  (Segment's Webhooks (Actions) destination).

A body is read by the rules `pslab sync` applies to a line (`sync.parse.decode_json`),
so the same bytes are refused the same way, with the same reason.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from postscript_audience_lab.jsontext import location_text, lone_surrogate
from postscript_audience_lab.sync.ledger import Outcome
from postscript_audience_lab.sync.parse import AudienceChange, Rejection, decode_json

__all__ = [
    "BATCH_ROUTE",
    "EVENT_ROUTES",
    "MAX_BODY_BYTES",
    "MAX_EVENTS_PER_BODY",
    "MAX_INFLIGHT_BYTES",
    "BodyError",
    "Credentials",
    "decode_body",
    "receipt",
]

EVENT_ROUTES = {"/v1/identify": "identify", "/v1/track": "track"}  # the route names the type
BATCH_ROUTE = "/v1/batch"
# Segment's webhook batches hold up to 4,000 events of about 1 KiB each (Engage's size).
MAX_BODY_BYTES = 8 << 20
MAX_EVENTS_PER_BODY = 10_000  # beyond any Segment batch; bounds one request's write
# Bodies being read at once, all requests together: four of the largest.
MAX_INFLIGHT_BYTES = 4 * MAX_BODY_BYTES
SIGNATURE = re.compile(r"[0-9a-f]{40}")  # a hex HMAC-SHA1


@dataclass(frozen=True)
class Credentials:
    """What a request must carry: a write key, a signature under a shared secret, or either."""

    write_key: str | None = field(default=None, repr=False)
    shared_secret: str | None = field(default=None, repr=False)

    @property
    def required(self) -> bool:
        """False only when the service runs without authentication (--insecure-no-auth)."""
        return self.write_key is not None or self.shared_secret is not None

    def by_write_key(self, authorization: str | None) -> bool:
        """Whether `Authorization: Basic …` names the write key as its user."""
        if self.write_key is None or not authorization:
            return False
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        user = decoded.partition(b":")[0]
        return hmac.compare_digest(user, self.write_key.encode())

    def could_sign(self, signature: str | None) -> bool:
        """Whether `signature` has the form of an HMAC-SHA1 and a shared secret is set up:
        the body is read to check it only then (anything else is refused before the body)."""
        if self.shared_secret is None or signature is None:
            return False
        return SIGNATURE.fullmatch(signature.strip().lower()) is not None

    def by_signature(self, signature: str | None, body: bytes) -> bool:
        """Whether `X-Signature` is the hex HMAC-SHA1 of `body` under the shared secret."""
        if self.shared_secret is None or not signature:
            return False
        expected = hmac.new(self.shared_secret.encode(), body, hashlib.sha1).hexdigest()
        # header values arrive as latin-1 text, so this round trip never fails
        given = signature.strip().lower().encode("latin-1")
        return hmac.compare_digest(given, expected.encode())


class BodyError(Exception):
    """A body answered with an error status, nothing of it stored; `reason` says why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def decode_body(route: str, body: bytes) -> object:
    """The events `body` holds, as `Engine.ingest_body` takes them, or a `BodyError`.

    `/v1/identify` and `/v1/track` take one event (its type is the route's, as in
    Segment's HTTP API), `/v1/batch` a `{"batch": […]}`, and `/` any of an event,
    a `{"batch": […]}` or a JSON array of events (a batching webhook). A lone
    surrogate refuses a single event's body (400); in a batch it rejects its own event only.
    """
    if not body.strip():
        raise BodyError(400, "the body is empty; send an event, a batch or a list of events")
    text = body.decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")
    payload = decode_json(text, "the body")
    if isinstance(payload, Rejection):
        raise BodyError(400, payload.reason)
    single = route in EVENT_ROUTES or (isinstance(payload, dict) and "batch" not in payload)
    where = lone_surrogate(payload, []) if single else None
    if where is not None:  # one event that cannot be stored as text: the body is malformed
        at = location_text(where)
        raise BodyError(
            400, f"the event at {at} holds a lone surrogate like \\ud800, which is not Unicode text"
        )
    if route in EVENT_ROUTES:
        payload = _typed_event(payload, route)
    elif route == BATCH_ROUTE and not (isinstance(payload, dict) and "batch" in payload):
        raise BodyError(400, 'the body must be a batch: {"batch": [events]}')
    if isinstance(payload, dict) and "batch" in payload and not isinstance(payload["batch"], list):
        raise BodyError(400, 'a batch\'s "batch" must be a list of events: {"batch": [events]}')
    elif not isinstance(payload, dict | list):
        raise BodyError(400, "the body must be an event, a batch or a list of events")
    if _count_events(payload) > MAX_EVENTS_PER_BODY:
        raise BodyError(
            413, f"the body holds more than {MAX_EVENTS_PER_BODY:,} events; send smaller batches"
        )
    return payload


def _typed_event(payload: object, route: str) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise BodyError(400, f"the body of {route} must be one event (a JSON object)")
    kind = EVENT_ROUTES[route]
    if payload.get("type", kind) != kind:
        raise BodyError(400, f"the event's type is {payload['type']!r}, but it was sent to {route}")
    return {**payload, "type": kind}


def _count_events(payload: object) -> int:
    if isinstance(payload, list):
        return len(payload)
    if isinstance(payload, dict) and isinstance(payload.get("batch"), list):
        return len(payload["batch"])
    return 1


def receipt(stored: Sequence[tuple[AudienceChange | Rejection, Outcome]]) -> dict[str, Any]:
    """The answer to a stored body: counts per outcome, and each rejected event's reason."""
    counts = Counter(outcome for _, outcome in stored)
    errors = [
        {"index": index, **_message_id(result.event), "reason": result.reason}
        for index, (result, _) in enumerate(stored)
        if isinstance(result, Rejection)
    ]
    return {
        "success": True,
        "received": len(stored),
        "accepted": counts[Outcome.ACCEPTED],
        "duplicates": counts[Outcome.DUPLICATE],
        "stale": counts[Outcome.STALE],
        "rejected": counts[Outcome.REJECTED],
        "errors": errors,
    }


def _message_id(event: object) -> dict[str, str]:
    if isinstance(event, Mapping) and isinstance(event.get("messageId"), str):
        return {"messageId": event["messageId"][:200]}
    return {}
