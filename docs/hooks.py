"""mkdocs hooks: the home page is the README (docs/index.md only stands in for it), its links
made relative to the site.

The README links into `docs/` as GitHub shows it; on the site the same pages sit at the
root, and the changelog is a page of its own.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

README_LINK = re.compile(r"\]\((?:docs/)?([^)#]+)(#[^)]*)?\)")
OUTSIDE = {"CHANGELOG.md": "changelog.md", "LICENSE": "changelog.md#license"}


def on_page_markdown(markdown: str, page: Any, config: Any, **_: Any) -> str:
    if page.file.src_uri != "index.md":
        return markdown
    readme = Path(config["config_file_path"]).parent / "README.md"
    markdown = readme.read_text(encoding="utf-8")

    def relink(match: re.Match[str]) -> str:
        target, anchor = match.group(1), match.group(2) or ""
        if target in OUTSIDE:
            return f"]({OUTSIDE[target]})"
        return f"]({target}{anchor})"

    return README_LINK.sub(relink, markdown)
