"""The error bodies the emulated API answers, and the exceptions that carry them.

Postscript documents few error bodies (docs/design/postscript-api.md#error-envelopes):

- the `{"error_code","error_message","success":false}` envelope, with two
  published codes: 3001 (get-keyword's 404) and 3002 (the rate limit);
- `{"errors":[{"loc","msg","type"}]}` (the compliance 403, `v2.access_denied`)
  and `{"errors":[{"ctx","log","msg","type"}]}` (the /me 400);
- `{"error": "…"}` (the keywords 403).

The emulator answers those where they are documented. Elsewhere it picks the
nearest documented shape and says so in the `X-Pslab-Emulator-Choice` header
(`emulator.postscript.fidelity`): a missing subscriber is a 3001 like a
missing keyword, bad input lists every problem in `errors`, and an error with
no published code carries its HTTP status as the code.
"""

from __future__ import annotations

import copy
from http import HTTPStatus
from typing import Any

from postscript_audience_lab.emulator.postscript.fidelity import choice_header

__all__ = [
    "NOT_FOUND_CODE",
    "RATE_LIMIT_BODY",
    "ApiProblem",
    "BodyTooLarge",
    "Forbidden",
    "InvalidInput",
    "ResourceNotFound",
    "UnsupportedMediaType",
    "error_body",
    "error_headers",
    "forbidden_body",
    "invalid",
    "problem",
]

RATE_LIMIT_BODY: dict[str, Any] = {
    "error_code": 3002,
    "error_message": "Rate limit exceeded",
    "success": False,
}
NOT_FOUND_CODE = 3001  # get-keyword's 404: "Could not find keyword matching that information"

_ACCESS_DENIED: dict[str, Any] = {
    "errors": [
        {
            "loc": [],
            "msg": "Access denied. You do not have permissions to access the requested resource.",
            "type": "v2.access_denied",
        }
    ]
}
_KEYWORDS_DENIED = {"error": "You do not have permission to do that."}
# Operation groups whose 403 body the reference shows (get-keywords, unsubscribe, redact).
_DOCUMENTED_403: dict[str, dict[str, Any]] = {
    "keywords": _KEYWORDS_DENIED,
    "compliance": _ACCESS_DENIED,
}


def error_body(status: int, message: str | None = None) -> dict[str, Any]:
    """The `error_code` envelope: 3002's exact body for 429, 3001 for 404, else the status."""
    if status == HTTPStatus.TOO_MANY_REQUESTS:
        return dict(RATE_LIMIT_BODY)
    if status == HTTPStatus.NOT_FOUND:
        text = message or "Could not find a resource matching that information"
        return {"error_code": NOT_FOUND_CODE, "error_message": text, "success": False}
    text = message if message is not None else _phrase(status)
    return {"error_code": status, "error_message": text, "success": False}


def error_headers(status: int) -> dict[str, str]:
    """The choice header for an `error_body(status)`; none for the documented 429."""
    if status == HTTPStatus.TOO_MANY_REQUESTS:
        return {}
    if status == HTTPStatus.NOT_FOUND:
        return choice_header("not-found-3001")
    return choice_header("error-code-stand-in")


def forbidden_body(group: str | None) -> dict[str, Any]:
    """The 403 body of an operation group: documented for keywords and compliance."""
    return copy.deepcopy(_DOCUMENTED_403.get(group or "", _ACCESS_DENIED))


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class ApiProblem(Exception):
    """An answer other than success; the handler's caller turns it into a response.

    Named apart from the engine's client-side errors (sync/errors.py), which
    describe the same answers as seen from the other end.
    """

    def __init__(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body
        self.headers = headers or {}


class ResourceNotFound(ApiProblem):
    """A 404 with error_code 3001, worded like get-keyword's documented answer."""

    def __init__(self, resource: str, *, documented: bool = False) -> None:
        message = f"Could not find {resource} matching that information"
        headers = {} if documented else choice_header("not-found-3001")
        super().__init__(HTTPStatus.NOT_FOUND, error_body(HTTPStatus.NOT_FOUND, message), headers)


class Forbidden(ApiProblem):
    """A 403 with the body the reference shows for the operation's group."""

    def __init__(self, group: str | None) -> None:
        headers = {} if group in _DOCUMENTED_403 else choice_header("forbidden-body")
        super().__init__(HTTPStatus.FORBIDDEN, forbidden_body(group), headers)


class InvalidInput(ApiProblem):
    """Bad input: 400 with one `{"loc","msg","type"}` item per problem."""

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        super().__init__(
            HTTPStatus.BAD_REQUEST, {"errors": problems}, choice_header("bad-input-body")
        )
        self.problems = problems

    def as_context_items(self) -> dict[str, Any]:
        """The /me 400's documented item shape, `{"ctx","log","msg","type"}`."""
        items = [
            {"ctx": {"loc": p["loc"]}, "log": [], "msg": p["msg"], "type": p["type"]}
            for p in self.problems
        ]
        return {"errors": items}


class BodyTooLarge(ApiProblem):
    def __init__(self, limit: int) -> None:
        status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
        message = f"the body is over {limit:,} bytes, the most this endpoint reads"
        super().__init__(status, error_body(status, message), error_headers(status))


class UnsupportedMediaType(ApiProblem):
    def __init__(self, content_type: str) -> None:
        status = HTTPStatus.UNSUPPORTED_MEDIA_TYPE
        message = f"the body must be application/json, not {content_type[:100]}"
        super().__init__(status, error_body(status, message), error_headers(status))


def problem(loc: list[str | int], msg: str, type_: str) -> dict[str, Any]:
    """One item of the `errors` list, shaped like pydantic's."""
    return {"loc": loc, "msg": msg, "type": type_}


def invalid(loc: list[str | int], msg: str, type_: str) -> InvalidInput:
    return InvalidInput([problem(loc, msg, type_)])
