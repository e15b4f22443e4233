"""The sync engine: parse -> ledger -> plan -> client."""

from postscript_audience_lab.sync.engine import Engine
from postscript_audience_lab.sync.errors import PostscriptError, SyncError
from postscript_audience_lab.sync.report import Report
from postscript_audience_lab.sync.settings import Settings

__all__ = ["Engine", "PostscriptError", "Report", "Settings", "SyncError"]
