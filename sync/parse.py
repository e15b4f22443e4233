"""docs/design/events.md: one Segment Engage event -> one audience membership change, or a
rejection.

Pure: values in, values out; no clock, no I/O. Every rejection carries a
reason a person can act on, and never stops the rest of the input.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import phonenumbers

from postscript_audience_lab.jsontext import JSONTextError, location_text, read_json

__all__ = [
    "AudienceChange",
    "Rejection",
    "Version",
    "decode_json",
    "format_instant",
    "normal_email",
    "normal_phone",
    "parse_event",
    "parse_line",
    "parse_payload",
]

AUDIENCE_CLASSES = ("audience", "journey_step")
MAX_NESTING = 64  # Segment events nest a handful of levels; this is far beyond any real one
MAX_EMAIL_CHARS = 254  # RFC 5321's longest path (256) less its angle brackets
TIMESTAMP_FIELDS = ("timestamp", "originalTimestamp", "receivedAt")


@dataclass(frozen=True, order=True)
class Version:
    """The order of events for one (subscriber, audience): instant first, then messageId."""

    timestamp: datetime
    message_id: str


@dataclass(frozen=True)
class AudienceChange:
    """One valid event: `member` is whether the identity is in `audience_key` as of `version`."""

    phone: str | None
    email: str | None
    audience_key: str
    audience_id: str | None
    member: bool
    version: Version


@dataclass(frozen=True)
class Rejection:
    """An event the engine will not apply, and why."""

    reason: str
    event: object
    line: int | None = None


def format_instant(instant: datetime) -> str:
    """UTC with fixed width, so that string order is time order (the ledger compares these).

    `isoformat` pads the year to four digits where `strftime("%Y")` does not:
    year 999 would sort after 2024 and not parse back.
    """
    utc = instant.astimezone(UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="microseconds") + "Z"


def parse_line(
    line: str,
    line_no: int | None = None,
    *,
    default_region: str = "US",
    not_after: datetime | None = None,
) -> list[AudienceChange | Rejection]:
    """One NDJSON line: an event or a `{"batch":[…]}`; bad JSON rejects the line alone."""
    text = line.strip()
    if not text:
        return []
    where = f"line {line_no}" if line_no is not None else "the line"
    payload = decode_json(text, where)
    if isinstance(payload, Rejection):
        return [Rejection(payload.reason, payload.event, line_no)]
    return list(parse_payload(payload, line_no, default_region=default_region, not_after=not_after))


def decode_json(text: str, where: str) -> object:
    """The JSON value `text` holds, or a `Rejection` of the whole text saying why not.

    The rules every input follows, whether a line of a file or an HTTP body (`where` names
    it in the reason) are those of the project's one JSON reader (`jsontext`): UTF-8 (a str
    read with errors="surrogateescape" shows undecodable bytes as lone surrogates), nested at
    most MAX_NESTING deep counting structure only (a bracket inside a string is text), no
    NaN, Infinity or overflowing number, no integer of thousands of digits. An escaped lone
    surrogate rejects the event that holds it, not the whole text.
    """
    if not _is_unicode(text):
        reason = f"{where} is not UTF-8 text; re-encode it as UTF-8 or drop it"
        return Rejection(reason, text[:200])
    try:
        # A lone surrogate rejects its own event (`parse_event`), not the batch around it.
        return read_json(text, max_nesting=MAX_NESTING, refuse_lone_surrogates=False)
    except JSONTextError as error:
        at = location_text(error.location)
        reason = f"{where}{' at ' + at if at else ''} {error.message}; {error.advice or 'fix it'}"
        reason += " or drop it"
        return Rejection(reason, text[:200])


def parse_payload(
    payload: object,
    line_no: int | None = None,
    *,
    default_region: str = "US",
    not_after: datetime | None = None,
) -> Iterator[AudienceChange | Rejection]:
    """A single event or a Segment batch, one result per event."""
    if isinstance(payload, Mapping) and "batch" in payload and "type" not in payload:
        batch = payload["batch"]
        if not isinstance(batch, list):
            yield Rejection('"batch" must be a list of events', payload, line_no)
            return
        for event in batch:
            yield _located(
                parse_event(event, default_region=default_region, not_after=not_after), line_no
            )
    else:
        yield _located(
            parse_event(payload, default_region=default_region, not_after=not_after), line_no
        )


def _located(result: AudienceChange | Rejection, line_no: int | None) -> AudienceChange | Rejection:
    if isinstance(result, Rejection) and line_no is not None:
        return Rejection(result.reason, result.event, line_no)
    return result


def parse_event(
    event: object, *, default_region: str = "US", not_after: datetime | None = None
) -> AudienceChange | Rejection:
    """docs/design/events.md, in order; the first step that fails is the reason."""
    if not isinstance(event, Mapping):
        return Rejection("the event is not a JSON object", event)
    try:
        return _parse(event, default_region, not_after)
    except _Rejected as rejected:
        return Rejection(str(rejected), event)


class _Rejected(Exception):
    pass


def _parse(
    event: Mapping[str, Any], default_region: str, not_after: datetime | None
) -> AudienceChange:
    kind = event.get("type")
    if kind not in ("identify", "track"):
        raise _Rejected(
            f"type is {kind!r}; only identify and track events carry audience membership"
        )
    context = _object(event.get("context"))
    personas = _object(context.get("personas"))
    computation_class = personas.get("computation_class")
    if computation_class not in AUDIENCE_CLASSES:
        raise _Rejected(
            f"context.personas.computation_class is {computation_class!r}; "
            "expected 'audience' or 'journey_step' (is this an Engage audience event?)"
        )
    audience_key = personas.get("computation_key")
    if audience_key is not None and not isinstance(audience_key, str):
        raise _Rejected(
            f"context.personas.computation_key is {_shown(audience_key)}; "
            "expected the audience key as a string"
        )
    if not audience_key or not audience_key.strip():
        raise _Rejected("context.personas.computation_key (the audience key) is missing or empty")
    audience_id = personas.get("computation_id")
    if audience_id is not None and (
        not isinstance(audience_id, str | int) or isinstance(audience_id, bool)
    ):
        raise _Rejected(
            f"context.personas.computation_id is {_shown(audience_id)}; "
            "expected the audience id as a string"
        )
    member = _membership(event, kind, audience_key, computation_class)
    traits = _object(event.get("traits"))
    context_traits = _object(context.get("traits"))
    email = _email(traits.get("email")) or _email(context_traits.get("email"))
    if email is not None and len(email) > MAX_EMAIL_CHARS:
        raise _Rejected(
            f"the email has {len(email):,} characters; an address has at most "
            f"{MAX_EMAIL_CHARS} (RFC 5321), so no subscriber can have it"
        )
    phone = _phone(traits.get("phone"), default_region) or _phone(
        context_traits.get("phone"), default_region
    )
    for field, text in (
        ("context.personas.computation_key", audience_key),
        ("context.personas.computation_id", audience_id),
        ("the email", email),
        ("messageId", event.get("messageId")),
    ):
        if isinstance(text, str) and not _is_unicode(text):
            raise _Rejected(f"{field} holds an unpaired surrogate (like \\ud800), not Unicode text")
    if email is None and phone is None:
        raise _Rejected(
            "either email or phone is required (traits or context.traits; "
            "a phone must be a possible number)"
        )
    return AudienceChange(
        phone=phone,
        email=email,
        audience_key=audience_key,
        audience_id=str(audience_id) if audience_id not in (None, "") else None,
        member=member,
        version=Version(_instant(event, not_after), _message_id(event)),
    )


def _shown(value: object) -> str:
    """A value as a reason quotes it: its JSON type, and the value itself when it is short."""
    kind = {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        list: "a list",
        dict: "an object",
    }
    text = repr(value)
    name = kind.get(type(value), type(value).__name__)
    return f"{text} ({name})" if len(text) <= 40 else name


def _is_unicode(text: str) -> bool:
    """False for a str holding lone surrogates, which no store or wire format accepts."""
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _object(value: object) -> Mapping[str, Any]:
    # JSON objects are dicts; the dict check is much cheaper than the Mapping ABC's
    if type(value) is dict or isinstance(value, Mapping):
        return value
    return {}


def _membership(
    event: Mapping[str, Any], kind: str, audience_key: str, computation_class: str
) -> bool:
    primary, fallback = ("properties", "traits") if kind == "track" else ("traits", "properties")
    values = _object(event.get(primary)) or _object(event.get(fallback))
    value = values.get(audience_key)
    if value is None and computation_class == "journey_step":
        return True
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if value is None:
        raise _Rejected(
            f"{primary} has no value for the audience key {audience_key!r}; "
            "an audience event must say true or false"
        )
    raise _Rejected(
        f"the value of {audience_key!r} is {value!r}; expected true/false or 'true'/'false'"
    )


def normal_email(value: object) -> str | None:
    """An email as the engine keys it (docs/design/events.md#email): trimmed and lower-cased; None
    when empty."""
    return _email(value)


def normal_phone(value: object, default_region: str = "US") -> str | None:
    """A phone as the engine keys it (docs/design/events.md#phone): E.164; None when it is not a
    possible number."""
    return _phone(value, default_region)


def _email(value: object) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip().lower()


def _phone(value: object, default_region: str) -> str | None:
    if not isinstance(value, str | int) or isinstance(value, bool):
        return None
    return _e164(str(value), default_region)


@functools.lru_cache(maxsize=65536)  # a shopper's number recurs once per audience and flip
def _e164(value: str, default_region: str) -> str | None:
    try:
        number = phonenumbers.parse(value, default_region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def _instant(event: Mapping[str, Any], not_after: datetime | None) -> datetime:
    for field in TIMESTAMP_FIELDS:
        raw = event.get(field)
        if raw is None or raw == "":
            continue
        if not isinstance(raw, str):
            raise _Rejected(f"{field} is {raw!r}; expected an ISO-8601 timestamp string")
        try:
            instant = datetime.fromisoformat(raw.strip())
        except ValueError:
            raise _Rejected(f"{field} is {raw!r}, which is not an ISO-8601 timestamp") from None
        if instant.tzinfo is None:  # Segment timestamps are UTC when no offset is given
            instant = instant.replace(tzinfo=UTC)
        try:
            instant = instant.astimezone(UTC)
        except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is before year 1 in UTC
            raise _Rejected(f"{field} is {raw!r}, which is out of range in UTC") from None
        if not_after is not None and instant > not_after:
            # A clock error would make this the newest version for ever
            # (docs/design/events.md#version).
            raise _Rejected(
                f"{field} is {raw!r}, later than {format_instant(not_after)}, the latest"
                " this run accepts; fix the sender's clock or drop the event"
            )
        return instant
    raise _Rejected("the event has no timestamp, originalTimestamp or receivedAt")


def _message_id(event: Mapping[str, Any]) -> str:
    message_id = event.get("messageId")
    if isinstance(message_id, str | int) and not isinstance(message_id, bool) and message_id != "":
        return str(message_id)
    canonical = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(canonical.encode("utf-8", "surrogatepass"))  # any str hashes
    return "sha256:" + digest.hexdigest()
