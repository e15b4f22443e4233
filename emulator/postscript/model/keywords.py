"""A shop's keywords: read through the API, set up as data through the admin surface.

The reference documents each keyword as `{"id","keyword","created_at",
"triggered_count","updated_at"}` (get-keywords, get-keyword) and has no call
that creates one. Every shop has JOIN and VIP; more come from the shops
setting (`PUT /_emulator/shops`, `pslab emulator --shops`) or from
`POST /_emulator/keywords` (docs/design/emulator-choices.md#keywords). The emulator's
`triggered_count` is how many of the shop's subscribers were created through
the keyword.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from postscript_audience_lab.emulator.postscript.errors import problem
from postscript_audience_lab.emulator.postscript.model.lifecycle import CONFIRM_WORDS, OPT_OUT_WORDS
from postscript_audience_lab.emulator.postscript.model.subscriber import format_time

__all__ = [
    "DEFAULT_KEYWORDS",
    "KEYWORD_FIELDS",
    "MAX_KEYWORD_LENGTH",
    "SET_UP",
    "Keyword",
    "find_keyword",
    "keyword_id",
    "read_keywords",
]

KEYWORD_FIELDS = ("keyword", "id")
MAX_KEYWORD_LENGTH = 50
_ID = re.compile(r"[A-Za-z0-9_-]{1,100}")


@dataclass(frozen=True)
class Keyword:
    id: str
    keyword: str
    created_at: datetime
    updated_at: datetime

    def to_json(self, triggered_count: int) -> dict[str, Any]:
        return {
            "id": self.id,
            "keyword": self.keyword,
            "created_at": format_time(self.created_at),
            "triggered_count": triggered_count,
            "updated_at": format_time(self.updated_at),
        }


SET_UP = datetime(2026, 1, 1, tzinfo=UTC)  # when the shops setting's keywords were set up

DEFAULT_KEYWORDS = (
    Keyword(id="kw_5f1c0e8a", keyword="JOIN", created_at=SET_UP, updated_at=SET_UP),
    Keyword(id="kw_9b2d47c3", keyword="VIP", created_at=SET_UP, updated_at=SET_UP),
)


def find_keyword(
    keywords: tuple[Keyword, ...], *, keyword_id: str | None = None, name: str | None = None
) -> Keyword | None:
    """The keyword with this id, or with this name in any case."""
    for keyword in keywords:
        if keyword.id == keyword_id or (name is not None and keyword.keyword == name.upper()):
            return keyword
    return None


def keyword_id(shop_id: str, word: str) -> str:
    """The id of a keyword given without one: the same shop and word give the same id,
    so a restart with the same setting keeps `--state` subscribers' `keyword_id` meaningful."""
    return "kw_" + hashlib.sha256(f"{shop_id}/{word}".encode()).hexdigest()[:12]


def _word_problem(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return "is required: a non-empty string, e.g. WELCOME"
    if len(value) > MAX_KEYWORD_LENGTH or any(c.isspace() or not c.isprintable() for c in value):
        return f"must be one word of at most {MAX_KEYWORD_LENGTH} printable characters, no spaces"
    if value.upper() in CONFIRM_WORDS | OPT_OUT_WORDS:
        return (
            f"{value.upper()} confirms or opts out a subscriber"
            " (docs/design/emulator-choices.md#inbound-texts)"
        )
    return None


def read_keywords(
    items: Any,
    loc: list[str | int],
    *,
    shop_id: str,
    current: tuple[Keyword, ...],
    created_at: datetime,
    adding: bool,
) -> tuple[tuple[Keyword, ...], list[dict[str, Any]]]:
    """`current` plus the keywords `items` gives (`[{"keyword": "WELCOME", "id": …}]`), and
    the problems found; with problems, the keywords are `current` unchanged.

    Adding (`POST /_emulator/keywords`), a word the shop has already is a problem.
    Setting (the shops setting), JOIN and VIP may be named (as `GET /_emulator/shops`
    lists them) and stay as they are.
    """
    problems: list[dict[str, Any]] = []
    if not isinstance(items, list) or (adding and not items):
        kind = "a non-empty list" if adding else "a list"
        example = '[{"keyword": "WELCOME"}]'
        return current, [problem(loc, f"must be {kind} of keywords, e.g. {example}", "value_error")]
    keywords = list(current)
    given: set[str] = set()
    for index, item in enumerate(items):
        where: list[str | int] = [*loc, index]
        if not isinstance(item, dict):
            problems.append(
                problem(where, 'each keyword is an object: {"keyword": …}', "value_error")
            )
            continue
        for name in sorted(set(item) - set(KEYWORD_FIELDS)):
            problems.append(
                problem(
                    [*where, name],
                    "unknown field; give keyword and, optionally, id",
                    "value_error.extra",
                )
            )
        word_problem = _word_problem(item.get("keyword"))
        wanted_id = item.get("id")
        if wanted_id is not None and not (isinstance(wanted_id, str) and _ID.fullmatch(wanted_id)):
            problems.append(
                problem([*where, "id"], "must be 1 to 100 letters, digits, _ or -", "value_error")
            )
            wanted_id = None
        if word_problem is not None:
            problems.append(problem([*where, "keyword"], word_problem, "value_error.keyword"))
            continue
        word = str(item["keyword"]).upper()
        if word in given:
            problems.append(
                problem([*where, "keyword"], f"{word} is given twice", "value_error.duplicate")
            )
            continue
        given.add(word)
        present = find_keyword(tuple(keywords), name=word)
        if present is not None:
            default = present in DEFAULT_KEYWORDS and wanted_id in (None, present.id)
            if adding or not default:
                problems.append(
                    problem(
                        [*where, "keyword"],
                        f"{word} is already a keyword of shop {shop_id} (id {present.id})",
                        "value_error.duplicate",
                    )
                )
            continue
        new_id = wanted_id or keyword_id(shop_id, word)
        taken = find_keyword(tuple(keywords), keyword_id=new_id)
        if taken is not None:
            problems.append(
                problem(
                    [*where, "id"],
                    f"{new_id} is already the id of {taken.keyword}",
                    "value_error.duplicate",
                )
            )
            continue
        keywords.append(Keyword(new_id, word, created_at, created_at))
    return (current if problems else tuple(keywords)), problems
