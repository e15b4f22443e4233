"""The inbox's form posts: read without python-multipart (they are url-encoded), bounded, and
refused from another site's page, so a page elsewhere cannot reset the emulator."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from starlette.exceptions import HTTPException
from starlette.requests import Request

__all__ = ["MAX_FORM_BYTES", "read_form"]

MAX_FORM_BYTES = 64 * 1024


async def read_form(request: Request) -> dict[str, str]:
    """The posted fields (the last of a repeated name wins); a 403 for another origin's post,
    a 413 past MAX_FORM_BYTES."""
    origin = request.headers.get("origin")
    if origin is not None and origin != "null" and urlsplit(origin).netloc != request.url.netloc:
        raise HTTPException(403, "the inbox takes forms from its own pages only")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise HTTPException(413, f"a form is at most {MAX_FORM_BYTES:,} bytes")
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
