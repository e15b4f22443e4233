"""What the client's contract tests share: a client pointed at the replayed API."""

from __future__ import annotations

from typing import Any

from postscript_audience_lab.contracts import load_contracts
from postscript_audience_lab.contracts.contract import Contract, fill, select
from postscript_audience_lab.contracts.replay import DEFAULT_BASE_URL
from postscript_audience_lab.sync.client import PostscriptClient

RETRIES = 5  # the attempts stamina's testing switch allows (tests/contracts/conftest.py)


def postscript_client() -> PostscriptClient:
    """A client for the replayed API: no pacing, so tests never wait."""
    return PostscriptClient(DEFAULT_BASE_URL, "sk_test_replay", rate_limit=0)


def contract(name: str) -> Contract:
    return select(load_contracts(), [name])[0]


def request_body(name: str) -> Any:
    """The JSON body a contract's request carries, references filled in."""
    recorded = contract(name)
    return fill(recorded.request.json, recorded.refs)


def alice_id() -> str:
    return contract("subscribers.get").refs["subscriber.alice.id"]
