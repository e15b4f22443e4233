"""verify against the emulator in-process: every contract holds; a changed answer is reported."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from postscript_audience_lab.contracts import load_contracts
from postscript_audience_lab.contracts.verify import ContractResult, verify_emulator
from postscript_audience_lab.emulator.postscript.config import EmulatorConfig
from postscript_audience_lab.emulator.postscript.web.app import create_app

pytestmark = pytest.mark.anyio

Rewrite = Callable[[str, str, int, Any], tuple[int, Any]]


def rewriting_answers(app: ASGIApp, rewrite: Rewrite) -> ASGIApp:
    """`app`, with each JSON answer passed through `rewrite(method, path, status, body)`."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_emulator"):
            await app(scope, receive, send)
            return
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            status, body = rewrite(
                scope["method"], scope["path"], start["status"], json.loads(b"".join(chunks))
            )
            data = json.dumps(body).encode()
            headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(data)).encode()))
            await send({**start, "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": data})

        await app(scope, receive, capture)

    return wrapped


def by_name(results: list[ContractResult]) -> dict[str, ContractResult]:
    return {r.name: r for r in results}


async def test_every_contract_verifies_against_the_emulator() -> None:
    results = await verify_emulator(load_contracts())
    failures = [line for r in results if r.failed for line in r.lines()]
    assert failures == []
    assert {r.outcome for r in results} == {"ok"}


async def test_a_renamed_field_is_reported_as_missing_and_unexpected_naming_the_contract() -> None:
    def rename_phone(method: str, path: str, status: int, body: Any) -> tuple[int, Any]:
        if method == "GET" and path.startswith("/api/v2/subscribers/") and "phone_number" in body:
            body["phone"] = body.pop("phone_number")
        return status, body

    app = rewriting_answers(create_app(EmulatorConfig(rate_limit_rps=0)), rename_phone)
    results = by_name(await verify_emulator(load_contracts(), app=app))

    report = results["subscribers.get"].lines()
    assert results["subscribers.get"].failed
    assert "     subscribers.get: $.phone_number: missing field (expected '+15555550100')" in report
    assert any(
        line.startswith("     subscribers.get: $.phone: unexpected field") for line in report
    )
    assert not results["subscribers.list.phone_in"].failed


async def test_a_changed_status_is_reported_naming_the_contract() -> None:
    def accept_events_with_200(method: str, path: str, status: int, body: Any) -> tuple[int, Any]:
        return (200 if path == "/api/v2/events" and status == 202 else status), body

    app = rewriting_answers(create_app(EmulatorConfig(rate_limit_rps=0)), accept_events_with_200)
    results = by_name(await verify_emulator(load_contracts(), app=app))

    assert results["events.create"].lines() == [
        "FAIL events.create",
        "     events.create: status: wrong status (expected 202, got 200)",
    ]
    untouched = by_name(await verify_emulator(load_contracts()))
    newly_failing = [n for n, r in results.items() if r.failed and not untouched[n].failed]
    # only the contracts of an accepted event (202) see the changed status
    assert newly_failing == ["events.create", "events.create.several_identifiers"]


async def test_a_value_of_the_wrong_type_is_reported() -> None:
    def text_ps_id(method: str, path: str, status: int, body: Any) -> tuple[int, Any]:
        if isinstance(body, dict) and "ps_id" in body:
            body["ps_id"] = str(body["ps_id"])
        return status, body

    app = rewriting_answers(create_app(EmulatorConfig(rate_limit_rps=0)), text_ps_id)
    results = by_name(await verify_emulator(load_contracts(), app=app))

    assert (
        "     subscribers.patch: $.ps_id: wrong type (expected 'integer', got 'string')"
        in results["subscribers.patch"].lines()
    )
