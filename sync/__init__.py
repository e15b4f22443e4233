"""The sync engine: parse -> ledger -> plan -> client."""

from sync.engine import Engine
from sync.errors import PostscriptError, SyncError
from sync.report import Report
from sync.settings import Settings

__all__ = ["Engine", "PostscriptError", "Report", "Settings", "SyncError"]
