"""The error bodies the emulated API answers, and the exceptions that carry them.

Postscript's docs show three envelopes; the emulator uses two of them:
`{"errors":[{"loc","msg","type"}]}` for bad input (400) and
`{"error_code","error_message","success":false}` for everything else.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

__all__ = [
    "RATE_LIMIT_BODY",
    "ApiProblem",
    "BodyTooLarge",
    "InvalidInput",
    "ResourceNotFound",
    "UnsupportedMediaType",
    "error_body",
    "error_code_for",
    "invalid",
    "problem",
]

RATE_LIMIT_BODY: dict[str, Any] = {
    "error_code": 3002,
    "error_message": "Rate limit exceeded",
    "success": False,
}


def error_code_for(status: int) -> int:
    """The emulator's `error_code` for a status: 404 -> 4004, 503 -> 5003, 429 -> 3002."""
    if status == HTTPStatus.TOO_MANY_REQUESTS:
        return int(RATE_LIMIT_BODY["error_code"])
    return status // 100 * 1000 + status % 100


def error_body(status: int, message: str | None = None) -> dict[str, Any]:
    """The `error_code` envelope for `status`; Postscript's exact 429 body (design §2.4)."""
    if status == HTTPStatus.TOO_MANY_REQUESTS:
        return dict(RATE_LIMIT_BODY)
    text = message if message is not None else _phrase(status)
    return {"error_code": error_code_for(status), "error_message": text, "success": False}


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

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body


class ResourceNotFound(ApiProblem):
    def __init__(self, message: str) -> None:
        super().__init__(HTTPStatus.NOT_FOUND, error_body(HTTPStatus.NOT_FOUND, message))


class InvalidInput(ApiProblem):
    """Bad input: 400 with one `{"loc","msg","type"}` item per problem."""

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        super().__init__(HTTPStatus.BAD_REQUEST, {"errors": problems})
        self.problems = problems


class BodyTooLarge(ApiProblem):
    def __init__(self, limit: int) -> None:
        status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
        message = f"the body is over {limit:,} bytes, the most this endpoint reads"
        super().__init__(status, error_body(status, message))


class UnsupportedMediaType(ApiProblem):
    def __init__(self, content_type: str) -> None:
        status = HTTPStatus.UNSUPPORTED_MEDIA_TYPE
        message = f"the body must be application/json, not {content_type[:100]}"
        super().__init__(status, error_body(status, message))


def problem(loc: list[str | int], msg: str, type_: str) -> dict[str, Any]:
    """One item of the `errors` list, shaped like pydantic's."""
    return {"loc": loc, "msg": msg, "type": type_}


def invalid(loc: list[str | int], msg: str, type_: str) -> InvalidInput:
    return InvalidInput([problem(loc, msg, type_)])
