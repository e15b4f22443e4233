"""Request bodies read strictly: only JSON the emulator can store and serve back.

Python's json module reads more than JSON: NaN and Infinity, numbers that
overflow to infinity, and lone surrogates (`"\\ud800"`); none of them can be
written back out, so a subscriber holding one could never be read again. Deep
nesting overflows the parser's recursion. Each is refused with a 400 before
anything is stored; a body over the size limit is a 413 and one declared as
another media type is a 415 (README, "Errors and auth").
"""

from __future__ import annotations

import json
import math
import re
from itertools import accumulate
from typing import Any

from starlette.requests import Request

from postscript_audience_lab.emulator.postscript.errors import (
    BodyTooLarge,
    UnsupportedMediaType,
    invalid,
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
MAX_NESTING = 64  # levels of objects and lists, the body itself being the first
MAX_INTEGER_DIGITS = 4300  # Python's default limit for turning an int to text and back

Loc = list[str | int]

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_BRACKET_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


class _Unstorable(ValueError):
    def __init__(self, message: str, type_: str) -> None:
        super().__init__(message)
        self.type_ = type_


async def read_object(request: Request, max_bytes: int) -> dict[str, Any]:
    """The request's body as a JSON object, or a 415, 413 or 400."""
    _check_media_type(request.headers.get("content-type"))
    return parse_object(await _read(request, max_bytes))


def parse_object(raw: bytes) -> dict[str, Any]:
    """`raw` as a JSON object the emulator can store and serve back, or a 400."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise invalid(["body"], "the body must be UTF-8 text", "value_error.unicode") from None
    if _nests_deeper_than(text, MAX_NESTING):
        raise invalid(
            ["body"],
            f"the body nests objects or lists more than {MAX_NESTING} levels deep",
            "value_error.nesting",
        )
    try:
        body = json.loads(
            text, parse_constant=_no_constant, parse_float=_finite, parse_int=_integer
        )
    except _Unstorable as error:
        raise invalid(["body"], str(error), error.type_) from None
    except ValueError:
        raise invalid(["body"], "the body must be valid JSON", "value_error.jsondecode") from None
    if not isinstance(body, dict):
        raise invalid(["body"], "the body must be a JSON object", "type_error.dict")
    # Escapes are the only way in for a surrogate (raw ones fail UTF-8): most bodies skip the walk.
    where = _lone_surrogate(body, ["body"]) if _SURROGATE_ESCAPE.search(text) else None
    if where is not None:
        raise invalid(
            where,
            "must be Unicode text, not a lone surrogate like \\ud800",
            "value_error.unicode.surrogate",
        )
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


def _nests_deeper_than(text: str, limit: int) -> bool:
    """Whether objects and lists nest deeper than `limit`, brackets inside strings aside.

    Scanned before parsing: a body nested thousands deep would otherwise stop
    the parser with a RecursionError.
    """
    if text.count("[") + text.count("{") <= limit:
        return False
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(accumulate(map(_BRACKET_STEP.__getitem__, brackets)), default=0) > limit


def _no_constant(name: str) -> float:
    raise _Unstorable(
        f"{name} is not a JSON number; send a finite number or null",
        "value_error.number.not_finite",
    )


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise _Unstorable(
            f"{text} is beyond the largest number a double holds (about 1.8e308)",
            "value_error.number.not_finite",
        )
    return number


def _integer(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise _Unstorable(
            f"an integer may have at most {MAX_INTEGER_DIGITS} digits",
            "value_error.number.too_long",
        )
    return int(text)


def _lone_surrogate(value: object, loc: Loc) -> Loc | None:
    """Where the first string or key holding a lone surrogate is, if any."""
    if isinstance(value, str):
        return loc if _SURROGATE.search(value) else None
    items: list[tuple[str | int, object]] = []
    if isinstance(value, dict):
        for key in value:
            if _SURROGATE.search(key):  # the key itself goes in `loc`, escaped so it can be sent
                return [*loc, _SURROGATE.sub(lambda m: f"\\u{ord(m[0]):04x}", key)]
        items = list(value.items())
    elif isinstance(value, list):
        items = list(enumerate(value))
    for name, item in items:
        found = _lone_surrogate(item, [*loc, name])
        if found is not None:
            return found
    return None
