"""Request bodies read strictly: only JSON the emulator can store and serve back.

Python's json module reads more than JSON: NaN and Infinity, numbers that
overflow to infinity, and lone surrogates (`"\\ud800"`); none of them can be
written back out, so a subscriber holding one could never be read again. Deep
nesting overflows the parser's recursion. Each is refused with a 400 before
anything is stored; a body over the size limit is a 413 and one declared as
another media type is a 415 (README, "Errors and auth").
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from postscript_audience_lab.emulator.postscript.errors import (
    BodyTooLarge,
    UnsupportedMediaType,
    invalid,
)
from postscript_audience_lab.jsontext import (
    MAX_INTEGER_DIGITS,
    MAX_NESTING,
    JSONTextError,
    read_json,
)

__all__ = [
    "ADMIN_BODY_LIMIT",
    "API_BODY_LIMIT",
    "MAX_INTEGER_DIGITS",
    "MAX_NESTING",
    "parse_object",
]

API_BODY_LIMIT = 1024 * 1024  # bytes; Postscript's own limit is undocumented
ADMIN_BODY_LIMIT = 64 * 1024 * 1024  # a seed of a few hundred thousand subscribers


async def read_object(request: Request, max_bytes: int) -> dict[str, Any]:
    """The request's body as a JSON object, or a 415, 413 or 400."""
    _check_media_type(request.headers.get("content-type"))
    return parse_object(await _read(request, max_bytes))


def parse_object(raw: bytes) -> dict[str, Any]:
    """`raw` as a JSON object the emulator can store and serve back, or a 400 (the reading
    rules are the project's one JSON reader's, `jsontext`)."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise invalid(["body"], "the body must be UTF-8 text", "value_error.unicode") from None
    try:
        body = read_json(text, max_nesting=MAX_NESTING)
    except JSONTextError as error:
        raise invalid(["body", *error.location], f"the body {error}", error.kind) from None
    if not isinstance(body, dict):
        raise invalid(["body"], "the body must be a JSON object", "type_error.dict")
    return body


def _check_media_type(content_type: str | None) -> None:
    """JSON, declared or not: curl `--data-binary` and httpx `content=` send no Content-Type."""
    if content_type is None or not content_type.strip():
        return
    media_type = content_type.partition(";")[0].strip().lower()
    if media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    ):
        return
    raise UnsupportedMediaType(content_type)


async def _read(request: Request, max_bytes: int) -> bytes:
    """The whole body, refused as soon as it is known to be over `max_bytes`."""
    try:
        declared = int(request.headers.get("content-length", "0"))
    except ValueError:
        declared = 0  # the server rejects a malformed length; count what arrives instead
    if declared > max_bytes:
        raise BodyTooLarge(max_bytes)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise BodyTooLarge(max_bytes)
    return bytes(body)
