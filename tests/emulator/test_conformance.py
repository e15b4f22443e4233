"""The emulator against Postscript's published reference (tests/emulator/published_api.py).

Its `/openapi.json`, in both modes, must declare every documented operation,
parameter, body field, requirement, status and answer field with a type the
reference allows; any difference must be one `published_api.ALLOWED` explains
by a choice of docs/design/emulator-choices.md. And every operation must answer a valid
call with its documented status and fields.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from postscript_audience_lab.emulator.postscript.config import EmulatorConfig
from postscript_audience_lab.emulator.postscript.fidelity import CHOICES
from postscript_audience_lab.emulator.postscript.web.app import create_app
from tests.emulator.conftest import SECRET, seed
from tests.emulator.published_api import (
    ALLOWED,
    DOCUMENTED_ELSEWHERE,
    PUBLISHED,
    Parameter,
    PublishedOperation,
    reference_page,
)

CHOICES_PAGE = Path(__file__).parents[2] / "docs" / "design" / "emulator-choices.md"
METHODS = ("get", "post", "put", "patch", "delete")


@dataclass(frozen=True)
class Difference:
    operation_id: str
    kind: str
    name: str
    detail: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.operation_id, self.kind, self.name)

    def __str__(self) -> str:
        detail = f": {self.detail}" if self.detail else ""
        page = reference_page(self.operation_id)
        return f"{self.operation_id} ({page}): {self.kind} {self.name}{detail}"


class Document:
    """An OpenAPI document, with `$ref`s followed."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            schema = self.doc["components"]["schemas"][name]
        return schema

    def admits(self, schema: dict[str, Any], json_type: str) -> bool:
        """Whether a value of `json_type` can satisfy `schema`'s type."""
        schema = self.resolve(schema)
        branches = schema.get("anyOf", []) + schema.get("oneOf", [])
        if branches:
            return any(self.admits(branch, json_type) for branch in branches)
        declared = schema.get("type")
        if declared is None:
            return True
        return declared == json_type or (declared == "number" and json_type == "integer")

    def at(self, schema: dict[str, Any], path: str) -> dict[str, Any] | None:
        """The schema of the value at a dotted path (`a.b`, `list[].c`), or None."""
        for step in path.split("."):
            found = self._property(self.resolve(schema), step.removesuffix("[]"))
            if found is None:
                return None
            schema = self.resolve(found).get("items", {}) if step.endswith("[]") else found
        return self.resolve(schema)

    def _property(self, schema: dict[str, Any], name: str) -> dict[str, Any] | None:
        found = schema.get("properties", {}).get(name)
        if found is not None:
            return dict(found)
        for branch in schema.get("anyOf", []) + schema.get("oneOf", []):
            found = self._property(self.resolve(branch), name)
            if found is not None:
                return found
        return None

    def api_operations(self) -> dict[tuple[str, str], dict[str, Any]]:
        return {
            (method.upper(), path): operation
            for path, item in self.doc["paths"].items()
            if path.startswith("/api/")
            for method, operation in item.items()
            if method in METHODS
        }


def _parameters(
    doc: Document, published: PublishedOperation, op: dict[str, Any]
) -> list[Difference]:
    found = []
    declared = {(p["name"].lower(), p["in"]): p for p in op.get("parameters", [])}
    documented = {(p.name.lower(), p.location) for p in published.parameters}
    for parameter in published.parameters:
        mine = declared.get((parameter.name.lower(), parameter.location))
        if mine is None:
            found.append(Difference(published.operation_id, "missing parameter", parameter.name))
        elif not doc.admits(mine.get("schema", {}), parameter.type):
            found.append(
                Difference(
                    published.operation_id,
                    "parameter type",
                    parameter.name,
                    f"documented {parameter.type}, declared {mine.get('schema')}",
                )
            )
    for name, location in sorted(set(declared) - documented):
        found.append(Difference(published.operation_id, "extra parameter", name, location))
    return found


def _requirements(doc: Document, schema: dict[str, Any]) -> tuple[set[str], list[str]]:
    """Fields always required, and each `anyOf`/`oneOf` that requires one of several."""
    schema = doc.resolve(schema)
    groups = []
    for combinator in ("anyOf", "oneOf"):
        branches = [doc.resolve(b) for b in schema.get(combinator, [])]
        names = [name for b in branches for name in b.get("required", [])]
        if names:
            exactly = "exactly " if combinator == "oneOf" else ""
            groups.append(f"{exactly}one of {', '.join(names)}")
    return set(schema.get("required", [])), groups


def _body(doc: Document, published: PublishedOperation, op: dict[str, Any]) -> list[Difference]:
    operation_id = published.operation_id
    content = op.get("requestBody", {}).get("content", {}).get("application/json")
    if content is None:
        return [Difference(operation_id, "missing body", "")] if published.body else []
    schema = doc.resolve(content["schema"])
    found = []
    for name, json_type in published.body.items():
        mine = schema.get("properties", {}).get(name)
        if mine is None:
            found.append(Difference(operation_id, "missing field", name))
        elif not doc.admits(mine, json_type):
            found.append(Difference(operation_id, "field type", name, f"documented {json_type}"))
    for name in sorted(set(schema.get("properties", {})) - set(published.body)):
        found.append(Difference(operation_id, "extra field", name))
    required, groups = _requirements(doc, schema)
    for name in sorted(required - published.required):
        found.append(Difference(operation_id, "extra requirement", name))
    for name in sorted(published.required - required):
        found.append(Difference(operation_id, "missing requirement", name))
    found += [Difference(operation_id, "extra requirement", group) for group in groups]
    return found


def _statuses(published: PublishedOperation, op: dict[str, Any]) -> list[Difference]:
    declared = set(op.get("responses", {}))
    found = [
        Difference(published.operation_id, "missing status", status)
        for status in sorted(published.statuses - declared)
    ]
    extra = declared - published.statuses - set(DOCUMENTED_ELSEWHERE)
    found += [Difference(published.operation_id, "extra status", s) for s in sorted(extra)]
    return found


def _answer(doc: Document, published: PublishedOperation, op: dict[str, Any]) -> list[Difference]:
    answer = op.get("responses", {}).get(published.success, {})
    schema = answer.get("content", {}).get("application/json", {}).get("schema", {})
    found = []
    for path, json_type in published.answer.items():
        mine = doc.at(schema, path)
        if mine is None:
            found.append(Difference(published.operation_id, "missing answer field", path))
        elif not doc.admits(mine, json_type):
            found.append(
                Difference(
                    published.operation_id, "answer field type", path, f"documented {json_type}"
                )
            )
    return found


def differences(raw: dict[str, Any]) -> list[Difference]:
    """Every way the document differs from the published reference."""
    doc = Document(raw)
    mine = doc.api_operations()
    found: list[Difference] = []
    for published in PUBLISHED:
        op = mine.pop((published.method, published.path), None)
        if op is None:
            found.append(Difference(published.operation_id, "missing operation", published.path))
            continue
        if op.get("operationId") != published.operation_id:
            found.append(
                Difference(published.operation_id, "operation id", op.get("operationId", ""))
            )
        found += _parameters(doc, published, op)
        found += _body(doc, published, op)
        found += _statuses(published, op)
        found += _answer(doc, published, op)
    for (method, path), op in sorted(mine.items()):
        found.append(Difference(op.get("operationId", path), "extra operation", f"{method} {path}"))
    return found


async def served_document(strict: bool) -> dict[str, Any]:
    app = create_app(EmulatorConfig(strict=strict))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://e") as c:
        document: dict[str, Any] = (await c.get("/openapi.json")).json()
    return document


@pytest.mark.anyio
@pytest.mark.parametrize("strict", [False, True], ids=["lenient", "strict"])
async def test_the_emulator_declares_the_published_reference_or_a_written_choice(
    strict: bool,
) -> None:
    unexplained = [d for d in differences(await served_document(strict)) if d.key not in ALLOWED]
    report = "\n".join(f"  {d}" for d in unexplained)
    assert not unexplained, (
        f"differences from the published reference no choice explains:\n{report}"
    )


@pytest.mark.anyio
async def test_every_allowed_difference_still_occurs() -> None:
    occurring = {
        d.key for strict in (False, True) for d in differences(await served_document(strict))
    }
    assert sorted(set(ALLOWED) - occurring) == []


def design_choices() -> list[str]:
    """The choices docs/design/emulator-choices.md explains: one section each, titled with the
    choice's id and anchored by it."""
    page = CHOICES_PAGE.read_text(encoding="utf-8")
    return re.findall(r"^## `([a-z0-9-]+)` \{#\1\}$", page, re.MULTILINE)


def test_the_design_table_holds_exactly_the_emulator_choices() -> None:
    table = design_choices()
    assert len(table) == len(set(table)), "a choice is listed twice"
    assert sorted(table) == sorted(CHOICES)


def test_every_allowed_difference_names_a_choice_of_the_design_table() -> None:
    assert sorted(set(ALLOWED.values()) - set(design_choices())) == []


def test_the_checker_reports_a_documented_parameter_the_emulator_lacks() -> None:
    document: dict[str, Any] = {
        "paths": {
            "/api/v2/me": {
                "get": {
                    "operationId": "verify-identity",
                    "parameters": [],
                    "responses": {"200": {}, "400": {}},
                }
            }
        },
        "components": {"schemas": {}},
    }
    kinds = {(d.operation_id, d.kind, d.name) for d in differences(document)}
    assert ("verify-identity", "missing parameter", "X-Postscript-Shop-Token") in kinds
    assert ("verify-identity", "missing answer field", "resource_id") in kinds
    assert ("get-subscribers", "missing operation", "/api/v2/subscribers") in kinds


# -- the emulator answers as documented -------------------------------------------

ADA = {"id": "s_ada", "phone_number": "+15555550100", "email": "ada@example.com"}
MESSAGE = {
    "subscriber_id": "s_ada",
    "phone": "+15555550100",
    "country": "US",
    "body": "Your order has shipped",
    "category": "transactional",
    "scheduled_at": "2026-01-01T00:00:00Z",
    "media_url": "https://example.com/parcel.png",
}
# Deliveries in these tests go to the `api` fixture's stand-in transport, never the network.
WEBHOOK = {
    "callback_url": "https://hooks.example.com/postscript",
    "event": "shop.test",
    "headers": {"X-Receiver": "a"},
}
VALID_CALLS: dict[str, tuple[str, str, dict[str, Any], Any]] = {
    "verify-identity": ("GET", "/api/v2/me", {}, None),
    "get-subscribers": ("GET", "/api/v2/subscribers", {"email__eq": ADA["email"]}, None),
    "get-subscriber": ("GET", "/api/v2/subscribers/{id}", {}, None),
    "update-subscriber-by-id": ("PATCH", "/api/v2/subscribers/{id}", {}, {"tags": ["vip"]}),
    "create-custom-event": ("POST", "/api/v2/events", {}, {"type": "Ok", "subscriber_id": "s_ada"}),
    "get-keywords": ("GET", "/api/v2/keywords", {}, None),
    "get-keyword": ("GET", "/api/v2/keywords/{id}", {}, None),
    "unsubscribe": (
        "PATCH",
        "/api/v2/compliance/unsubscribe",
        {},
        {"postscript_subscriber_id": "s_ada"},
    ),
    "redact": ("PATCH", "/api/v2/compliance/redact", {}, {"postscript_subscriber_id": "s_ada"}),
    # due at once (so sent, with its sent_message), yet with every documented field given
    "create-message": ("POST", "/api/v2/message_requests", {}, MESSAGE),
    "get-message-request": ("GET", "/api/v2/message_requests/{id}", {}, None),
    "get-sent-message": ("GET", "/api/v2/sent_messages/{id}", {}, None),
    "create-webhook-subscription": ("POST", "/api/v2/webhooks", {}, WEBHOOK),
    "list-webhook-subscriptions": ("GET", "/api/v2/webhooks", {}, None),
    "get-webhook-subscription": ("GET", "/api/v2/webhooks/{id}", {}, None),
    "update-webhook-subscription": (
        "PATCH",
        "/api/v2/webhooks/{id}",
        {},
        {"headers": {"X-Receiver": "b"}},
    ),
    "delete-webhook-subscription": ("DELETE", "/api/v2/webhooks/{id}", {}, None),
    "get-webhook-signing-token": ("GET", "/api/v2/webhooks/token", {}, None),
    "example-event": ("GET", "/api/v2/webhooks/example", {"event": "shop.incoming_message"}, None),
    "test-shop-webhook": ("POST", "/api/v2/webhooks/test", {}, {"event": "shop.test"}),
}
# What an unknown id answers: documented for keywords,
# docs/design/emulator-choices.md#not-found-3001 otherwise.
UNKNOWN_ID_STATUS = {
    "get-keyword": 404,
    "get-subscriber": 404,
    "update-subscriber-by-id": 404,
    "get-message-request": 404,
    "get-sent-message": 404,
    "get-webhook-subscription": 404,
    "update-webhook-subscription": 404,
    "delete-webhook-subscription": 404,
}


async def _ids(api: httpx.AsyncClient) -> dict[str, str]:
    """Ada (seeded), a message to her and a webhook subscription: the ids calls are made on."""
    await seed(api, {**ADA, "shopify_customer_id": 4401, "properties": {"tier": "gold"}})
    message = (await api.post("/api/v2/message_requests", json=MESSAGE)).json()
    webhook = (await api.post("/api/v2/webhooks", json=WEBHOOK)).json()
    return {
        "subscribers": "s_ada",
        "keywords": "kw_5f1c0e8a",
        "message_requests": message["id"],
        "sent_messages": message["sent_message"]["id"],
        "webhooks": webhook["id"],
    }


def _value_at(value: Any, path: str) -> list[Any]:
    values = [value]
    for step in path.split("."):
        name = step.removesuffix("[]")
        values = [v[name] for v in values if isinstance(v, dict) and name in v]
        if step.endswith("[]"):
            values = [item for v in values for item in v]
    return values


JSON_TYPES = {"string": str, "integer": int, "boolean": bool, "object": dict, "array": list}


@pytest.mark.anyio
@pytest.mark.parametrize("published", PUBLISHED, ids=lambda op: op.operation_id)
async def test_a_valid_call_answers_the_documented_status_and_fields(
    api: httpx.AsyncClient, published: PublishedOperation
) -> None:
    ids = await _ids(api)
    method, path, query, body = VALID_CALLS[published.operation_id]
    if "{id}" in path:
        path = path.replace("{id}", ids[path.split("/")[3]])
    response = await api.request(method, path, params=query, json=body)
    assert str(response.status_code) == published.success, response.text
    for field, json_type in published.answer.items():
        values = _value_at(response.json(), field)
        assert values, f"{field} is missing ({published.page})"
        assert all(isinstance(v, JSON_TYPES[json_type]) for v in values), field


@pytest.mark.anyio
@pytest.mark.parametrize("operation_id", UNKNOWN_ID_STATUS)
async def test_an_unknown_id_answers_the_documented_or_chosen_status(
    api: httpx.AsyncClient, operation_id: str
) -> None:
    method, path, query, body = VALID_CALLS[operation_id]
    response = await api.request(method, path.replace("{id}", "nobody"), params=query, json=body)
    assert response.status_code == UNKNOWN_ID_STATUS[operation_id]
    assert response.json()["error_code"] == 3001


def test_the_valid_calls_cover_every_published_operation() -> None:
    assert sorted(VALID_CALLS) == sorted(op.operation_id for op in PUBLISHED)
    assert SECRET  # the `api` fixture's key


def _a_value_for(name: str) -> str:
    if name.startswith(("created_at", "updated_at")):
        return "2024-01-01T00:00:00Z"
    return {"page": "1", "sort": "created_at__asc", "ps_id__eq": "1", "event": "shop.test"}.get(
        name, "1"
    )


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("path", "parameter"),
    [(op.path, p) for op in PUBLISHED for p in op.parameters if p.location == "query"],
    ids=lambda value: value.name if isinstance(value, Parameter) else "",
)
async def test_the_strict_emulator_takes_every_documented_query_parameter(
    path: str, parameter: Parameter
) -> None:
    # strict, a parameter the emulator does not serve would be a 400, not ignored
    app = create_app(EmulatorConfig(rate_limit_rps=0, strict=True))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://emulator",
        headers={"Authorization": f"Bearer {SECRET}"},
    ) as api:
        response = await api.get(path, params={parameter.name: _a_value_for(parameter.name)})
    assert response.status_code == 200, response.text
