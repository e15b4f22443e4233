"""Reading a full audience snapshot for `pslab reconcile` (docs/design/reconcile.md).

A snapshot says who is in one or more audiences at one moment. Two layouts:

- CSV with a header row: `audience_key` (or none, and `--audience` names the one
  audience), `phone` and/or `email`; or Engage's audience CSV export, unformatted
  (`key,external_ids`, the second a JSON object of identifier lists) or formatted
  (the same plus a column per identifier type, repeated ones indexed: `email`,
  `email_1`, …). Other columns (`anonymous_id`, `user_id`, …) are ignored.
- NDJSON: one object a line with the same fields (`external_ids` as an object).

Every phone and email a row carries names the member: the first phone with the
first email is one identity (found by phone, then by email, as events are), each
further one an identity of its own. A row that names nobody usable is rejected
with its line and the reason, and the others still count. What makes the file as
a whole unusable (no identifier column, an audience nobody named) is a
`SnapshotError`.

Memory does not grow with the file: the rows are read as a stream, the members go to a
private temporary SQLite database (SQLite's own, made for an empty file name: on disk past a
page cache, deleted when closed; `sync.scratch`), and of the rejected rows only the count
and the first `SAMPLE_REJECTIONS` are kept; `on_rejection` sees every one as it is met
(`--rejects-out`).
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TextIO

from postscript_audience_lab.sync.errors import SnapshotError
from postscript_audience_lab.sync.ledger import Identity
from postscript_audience_lab.sync.parse import Rejection, decode_json, normal_email, normal_phone
from postscript_audience_lab.sync.scratch import ScratchDatabase, ScratchHolder

__all__ = ["SAMPLE_REJECTIONS", "Snapshot", "read_snapshot"]

AUDIENCE_COLUMNS = ("audience_key", "audience")
PHONE_TYPES = ("phone", "phone_number")
EMAIL_TYPES = ("email",)
_INDEXED = re.compile(r"^(?P<kind>[a-z_]+?)_(?P<index>[0-9]+)$")
_HASHED = re.compile(r"^[0-9a-f]{64}$")


SAMPLE_REJECTIONS = 100  # rejected rows kept in memory (and reported); all are counted
MEMBER_BATCH = 5000  # members written to the scratch database per transaction

OnRejection = Callable[[Rejection], None]


class Snapshot(ScratchHolder):
    """Members per audience (identities, in the order first met), held in a temporary SQLite
    database; the rows read, how many were rejected and the first of those.

    Close it (or use it as a context manager) to delete the database at once.
    """

    def __init__(self, audiences: Iterable[str] = ()) -> None:
        self._db = ScratchDatabase(
            [
                "CREATE TABLE members (audience_key TEXT NOT NULL, phone TEXT NOT NULL, "
                "email TEXT NOT NULL, UNIQUE (audience_key, phone, email))"
            ]
        )
        self._audiences = dict.fromkeys(audiences)
        self._waiting: list[tuple[str, str, str]] = []
        self.rows = 0
        self.rejected = 0
        self.rejections: list[Rejection] = []  # the first SAMPLE_REJECTIONS of them

    def add(self, audience_key: str, identities: Iterable[Identity]) -> None:
        self._audiences.setdefault(audience_key)
        self._waiting.extend((audience_key, *identity.key) for identity in identities)
        if len(self._waiting) >= MEMBER_BATCH:
            self.flush()

    def reject(self, rejection: Rejection) -> None:
        self.rejected += 1
        if len(self.rejections) < SAMPLE_REJECTIONS:
            self.rejections.append(rejection)

    def flush(self) -> None:
        """Write the members added since the last flush (a member met again stays first)."""
        if not self._waiting:
            return
        self._db.run_many(
            "INSERT OR IGNORE INTO members (audience_key, phone, email) VALUES (?, ?, ?)",
            self._waiting,
        )
        self._waiting = []

    @property
    def audiences(self) -> list[str]:
        return sorted(self._audiences)

    def members(self, audience_key: str) -> Iterator[Identity]:
        """The audience's members, in the order first met, read as they are iterated."""
        self.flush()
        cursor = self._db.rows(
            "SELECT phone, email FROM members WHERE audience_key = ? ORDER BY rowid",
            (audience_key,),
        )
        for phone, email in cursor:
            yield Identity(phone or None, email or None)

    def count(self, audience_key: str) -> int:
        self.flush()
        return int(
            self._db.one("SELECT COUNT(*) FROM members WHERE audience_key = ?", (audience_key,))
        )

    def digest(self, audience_key: str) -> str:
        """What the audience's snapshot holds, as a short hash (the same members, the same
        digest, whatever their order or spelling)."""
        self.flush()
        digest = hashlib.sha256(f"{audience_key}\n".encode())
        cursor = self._db.rows(  # BINARY order is code point order, as Python sorts str
            "SELECT phone, email FROM members WHERE audience_key = ? ORDER BY phone, email",
            (audience_key,),
        )
        for number, (phone, email) in enumerate(cursor):
            digest.update(f"{chr(10) if number else ''}{phone}\t{email}".encode())
        return digest.hexdigest()[:32]


def read_snapshot(
    stream: TextIO,
    *,
    audiences: Sequence[str] = (),
    default_region: str = "US",
    on_rejection: OnRejection | None = None,
) -> Snapshot:
    """Read a CSV or NDJSON snapshot (told apart by its first character).

    `audiences` (from `--audience`) names the audiences the snapshot covers: each of
    them starts empty, a file without an `audience_key` column must name exactly one,
    and a row of an audience not named is rejected. Without it, the audiences are those
    the rows name. `on_rejection` is called with each rejected row, in order.
    """
    named = [key.strip() for key in audiences if key.strip()]
    snapshot = Snapshot(named)
    try:
        _read_into(snapshot, stream, named, default_region, on_rejection)
    except BaseException:
        snapshot.close()
        raise
    return snapshot


def _read_into(
    snapshot: Snapshot,
    stream: TextIO,
    named: Sequence[str],
    default_region: str,
    on_rejection: OnRejection | None,
) -> None:
    lines = iter(stream)
    leading: list[str] = []
    for text_line in lines:
        leading.append(text_line)
        if text_line.strip():
            break
    text = itertools.chain(leading, lines)
    is_ndjson = bool(leading) and leading[-1].lstrip().startswith("{")
    rows = _ndjson_rows(text) if is_ndjson else _csv_rows(text, named)
    for line_no, row in rows:
        snapshot.rows += 1
        result = _row(row, line_no, named, default_region)
        if isinstance(result, Rejection):
            snapshot.reject(result)
            if on_rejection is not None:
                on_rejection(result)
            continue
        snapshot.add(*result)
    snapshot.flush()


def _ndjson_rows(lines: Iterable[str]) -> Iterator[tuple[int, Mapping[str, Any] | Rejection]]:
    for line_no, line in enumerate(lines, start=1):
        text = line.strip()
        if not text:
            continue
        value = decode_json(text, f"line {line_no}")
        if isinstance(value, Rejection):
            yield line_no, Rejection(value.reason, value.event, line_no)
        elif not isinstance(value, dict):
            yield line_no, Rejection(f"line {line_no} is not a JSON object", value, line_no)
        else:
            yield line_no, value


def _csv_rows(
    lines: Iterable[str], named: Sequence[str]
) -> Iterator[tuple[int, Mapping[str, Any] | Rejection]]:
    reader = csv.reader(lines, strict=True)  # an unclosed quote is an error, not a huge field
    try:
        header = next((row for row in reader if any(cell.strip() for cell in row)), None)
        if header is None:
            return
        columns = [name.strip().lstrip("\ufeff").lower() for name in header]
        _check_header(columns, named)
        for cells in reader:
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) > len(columns):
                reason = (
                    f"line {reader.line_num} has {len(cells)} fields but the header names "
                    f"{len(columns)}; quote values that contain commas"
                )
                yield reader.line_num, Rejection(reason, cells, reader.line_num)
                continue
            yield reader.line_num, _csv_record(columns, cells)
    except csv.Error as exc:
        raise SnapshotError(f"line {reader.line_num} is not valid CSV ({exc})") from None


def _check_header(columns: list[str], named: Sequence[str]) -> None:
    kinds = {_column_kind(name) for name in columns}
    if not kinds & {"phone", "email", "external_ids"}:
        raise SnapshotError(
            f"the CSV header ({', '.join(columns)}) has no phone, email or external_ids "
            "column; a snapshot names its members by phone and/or email"
        )
    if "audience" not in kinds and len(named) != 1:
        raise SnapshotError(
            "the CSV has no audience_key column (as an Engage export has not): "
            "name its audience with exactly one --audience KEY"
        )


def _column_kind(name: str) -> str:
    if name in AUDIENCE_COLUMNS:
        return "audience"
    if name == "external_ids":
        return "external_ids"
    indexed = _INDEXED.match(name)  # Engage's formatted export: email, email_1, email_2, …
    base = indexed.group("kind") if indexed else name
    if base in PHONE_TYPES:
        return "phone"
    if base in EMAIL_TYPES:
        return "email"
    return "other"


def _csv_record(columns: list[str], cells: list[str]) -> dict[str, Any]:
    """A CSV row as the NDJSON form: audience key, lists of phones and emails, external_ids."""
    record: dict[str, Any] = {"phone": [], "email": []}
    for name, cell in zip(columns, cells, strict=False):
        value = cell.strip()
        if not value:
            continue
        kind = _column_kind(name)
        if kind == "audience":
            record["audience_key"] = value
        elif kind in ("phone", "email"):
            record[kind].append(value)
        elif kind == "external_ids":
            record["external_ids"] = value
    return record


def _row(
    row: Mapping[str, Any] | Rejection, line: int, named: Sequence[str], region: str
) -> tuple[str, list[Identity]] | Rejection:
    if isinstance(row, Rejection):
        return row
    audience = row.get("audience_key", row.get("audience"))
    if audience is None or (isinstance(audience, str) and not audience.strip()):
        if len(named) != 1:
            return Rejection(
                f"line {line} has no audience_key; give one, or name the audience with "
                "--audience when the file holds one audience",
                dict(row),
                line,
            )
        audience = named[0]
    if not isinstance(audience, str):
        return Rejection(f"line {line}: audience_key is not text", dict(row), line)
    audience = audience.strip()
    if named and audience not in named:
        return Rejection(
            f"line {line} is for audience {audience!r}, which no --audience names; "
            "it is left alone",
            dict(row),
            line,
        )
    found = _identifiers(row, line)
    if isinstance(found, Rejection):
        return found
    phones, emails = found
    hashed = [value for value in [*phones, *emails] if _HASHED.match(value.strip().lower())]
    if hashed:
        return Rejection(
            f"line {line} holds a SHA-256 hash ({hashed[0][:12]}…), not a phone or email; "
            "export the audience unhashed",
            dict(row),
            line,
        )
    good_phones = _unique(normal_phone(value, region) for value in phones)
    good_emails = _unique(normal_email(value) for value in emails)
    if not good_phones and not good_emails:
        what = ", ".join(repr(value) for value in [*phones, *emails][:3]) or "nothing"
        return Rejection(
            f"line {line} names no member: it needs a possible phone number or an email "
            f"(it has {what})",
            dict(row),
            line,
        )
    return audience, _identities(good_phones, good_emails)


def _identifiers(row: Mapping[str, Any], line: int) -> tuple[list[str], list[str]] | Rejection:
    """The row's phones and emails, as written: its own fields, then its external_ids."""
    phones = _texts(row.get("phone")) + _texts(row.get("phone_number"))
    emails = _texts(row.get("email"))
    external = row.get("external_ids")
    if isinstance(external, str):
        decoded = _external_ids(external)
        if isinstance(decoded, str):
            if phones or emails:  # a formatted export repeats them in columns: those do
                return phones, emails
            return Rejection(f"line {line}: external_ids {decoded}", dict(row), line)
        external = decoded
    if isinstance(external, Mapping):
        for kind, values in external.items():
            kind_name = str(kind).lower()
            if kind_name in PHONE_TYPES:
                phones.extend(_texts(values))
            elif kind_name in EMAIL_TYPES:
                emails.extend(_texts(values))
    elif external is not None:
        return Rejection(f"line {line}: external_ids is not an object", dict(row), line)
    return phones, emails


def _external_ids(text: str) -> Mapping[str, Any] | str:
    """Engage's external_ids cell decoded, or why it cannot be."""
    if any(quote in text for quote in "“”"):
        return 'uses typographic quotes (“ ”) where JSON needs straight ones (")'
    value = decode_json(text, "external_ids")
    if isinstance(value, Rejection):
        return "is not a JSON object of identifier lists"
    if not isinstance(value, dict):
        return "is not a JSON object of identifier lists"
    return value


def _texts(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value.strip() else []
    if isinstance(value, int) and not isinstance(value, bool):
        return [str(value)]
    if isinstance(value, list):
        return [text for item in value for text in _texts(item) if not isinstance(item, list)]
    return []


def _unique(values: Iterable[str | None]) -> list[str]:
    seen: dict[str, None] = {}
    for value in values:
        if value:
            seen.setdefault(value, None)
    return list(seen)


def _identities(phones: list[str], emails: list[str]) -> list[Identity]:
    first = Identity(phones[0] if phones else None, emails[0] if emails else None)
    more = [Identity(phone, None) for phone in phones[1:]]
    more += [Identity(None, email) for email in emails[1:]]
    return [first, *more]
