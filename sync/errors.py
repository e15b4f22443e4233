"""Errors the engine raises, drawn as a tree (like `httpx/_exceptions.py`).

```
SyncError                     anything the engine reports to its caller
├── StateLockedError          another process holds the --state file
├── StateMismatchError        the --state file belongs to another shop
├── StateVersionError         the --state file was written by a newer schema (left unchanged)
├── SnapshotError             a reconcile snapshot cannot be read as a whole
├── ReconcileRefusedError     a reconcile guard refused the snapshot (nothing written)
└── PostscriptError           a Postscript call failed for good
    ├── UnreachableError      timeouts / connection errors, after retries
    └── ApiError              Postscript answered with an error status
        ├── AuthenticationError   401/403: wrong or missing key (fatal)
        ├── BadRequestError       any other 4xx (400, 413, 422…): can never succeed
        ├── NotFoundError         404: carries the API's message
        ├── RateLimitedError      429 (retried; raised when retries run out)
        └── ServerError           5xx (retried; raised when retries run out)
```
"""

from __future__ import annotations

__all__ = [
    "ApiError",
    "AuthenticationError",
    "BadRequestError",
    "NotFoundError",
    "PostscriptError",
    "RateLimitedError",
    "ReconcileRefusedError",
    "ServerError",
    "SnapshotError",
    "StateLockedError",
    "StateMismatchError",
    "StateVersionError",
    "SyncError",
    "UnreachableError",
]


class SyncError(Exception):
    """Base of everything the engine raises on purpose."""


class StateLockedError(SyncError):
    """A second process tried to use a state file that is in use."""


class StateMismatchError(SyncError):
    """The state file was filled against another shop than the key's."""


class StateVersionError(SyncError):
    """The state file's schema is newer than this release reads; it is left as it was."""


class SnapshotError(SyncError):
    """The snapshot file as a whole is unusable (a bad row is a rejection, not this)."""


class ReconcileRefusedError(SyncError):
    """A guard of `pslab reconcile` refused the snapshot; nothing was written."""


class PostscriptError(SyncError):
    """A call to the Postscript API failed and will not be retried further."""


class UnreachableError(PostscriptError):
    """The API could not be reached (timeouts, refused or dropped connections)."""


class ApiError(PostscriptError):
    """Postscript answered with an error status; `message` is the API's own words."""

    def __init__(self, status: int, message: str, endpoint: str) -> None:
        super().__init__(f"{endpoint}: HTTP {status}: {message}")
        self.status = status
        self.message = message
        self.endpoint = endpoint


class AuthenticationError(ApiError):
    """The secret key was refused; nothing else can succeed, so the run stops."""


class BadRequestError(ApiError):
    """Postscript refused the request body or query."""


class NotFoundError(ApiError):
    """The subscriber (or path) does not exist."""


class RateLimitedError(ApiError):
    """429; `retry_after` is the server's hint in seconds, when it gave one."""

    def __init__(
        self, status: int, message: str, endpoint: str, retry_after: float | None = None
    ) -> None:
        super().__init__(status, message, endpoint)
        self.retry_after = retry_after


class ServerError(ApiError):
    """5xx from Postscript."""
