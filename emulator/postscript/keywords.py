"""A shop's keywords: read-only through the API; every emulated shop has the same two.

The reference documents each keyword as `{"id","keyword","created_at",
"triggered_count","updated_at"}` (get-keywords, get-keyword). The emulator's
`triggered_count` is how many of the shop's subscribers were created through
the keyword (docs/design.md §2.8, "keywords").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from postscript_audience_lab.emulator.postscript.subscriber import format_time

__all__ = ["DEFAULT_KEYWORDS", "Keyword", "find_keyword"]


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


_SET_UP = datetime(2026, 1, 1, tzinfo=UTC)

DEFAULT_KEYWORDS = (
    Keyword(id="kw_5f1c0e8a", keyword="JOIN", created_at=_SET_UP, updated_at=_SET_UP),
    Keyword(id="kw_9b2d47c3", keyword="VIP", created_at=_SET_UP, updated_at=_SET_UP),
)


def find_keyword(
    keywords: tuple[Keyword, ...], *, keyword_id: str | None = None, name: str | None = None
) -> Keyword | None:
    """The keyword with this id, or with this name in any case."""
    for keyword in keywords:
        if keyword.id == keyword_id or (name is not None and keyword.keyword == name.upper()):
            return keyword
    return None
