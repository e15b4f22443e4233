"""A shop's keywords: read-only through the API; the emulator's shop has two."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_KEYWORDS", "Keyword"]


@dataclass(frozen=True)
class Keyword:
    id: str
    keyword: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "keyword": self.keyword}


DEFAULT_KEYWORDS = (
    Keyword(id="kw_5f1c0e8a", keyword="JOIN"),
    Keyword(id="kw_9b2d47c3", keyword="VIP"),
)
