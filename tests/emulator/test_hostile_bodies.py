"""Hostile bodies: larger than the documented limits (a 413, read no further than the limit)
or declared as another media type (a 415), changing nothing; and the emulator's error names
kept apart from the engine's.
"""

from __future__ import annotations

import inspect
import json
import pkgutil
from collections.abc import AsyncIterator
from importlib import import_module
from types import ModuleType
from typing import Any

import httpx
import pytest

import postscript_audience_lab.emulator.postscript
import postscript_audience_lab.sync.errors
from tests.emulator.conftest import SECRET, seed
from tests.emulator.hostile import SUBSCRIBER, SUBSCRIBER_ID, held

pytestmark = pytest.mark.anyio

# The documented limits (docs/guides/emulator.md, "Errors and auth").
API_BODY_LIMIT = 1024 * 1024
ADMIN_BODY_LIMIT = 64 * 1024 * 1024

# A body each endpoint accepts, for the content-type tests.
GOOD_BODIES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "patch-subscriber": ("PATCH", f"/api/v2/subscribers/{SUBSCRIBER_ID}", {"tags": ["t"]}),
    "create-subscriber": ("POST", "/api/v2/subscribers", {"phone_number": "+15555550199"}),
    "create-event": ("POST", "/api/v2/events", {"type": "t", "subscriber_id": SUBSCRIBER_ID}),
    "unsubscribe": (
        "PATCH",
        "/api/v2/compliance/unsubscribe",
        {"postscript_subscriber_id": SUBSCRIBER_ID},
    ),
    "redact": ("PATCH", "/api/v2/compliance/redact", {"postscript_subscriber_id": SUBSCRIBER_ID}),
    "seed": ("POST", "/_emulator/subscribers", {"subscribers": [{"phone_number": "+15555550199"}]}),
    "put-faults": ("PUT", "/_emulator/faults", {"error_rate": 0.5}),
    "put-shops": (
        "PUT",
        "/_emulator/shops",
        {"shops": [{"id": "shop_pslab0emulator", "secret_key": SECRET}]},
    ),
}


@pytest.fixture
async def seeded(api: httpx.AsyncClient) -> httpx.AsyncClient:
    await seed(api, SUBSCRIBER)
    return api


def _valid_patch_of(size: int) -> bytes:
    """A PATCH body of exactly `size` bytes that would be stored if it were read."""
    head, tail = b'{"properties": {"x": "', b'"}}'
    return head + b"a" * (size - len(head) - len(tail)) + tail


class CountingBody:
    """A request body sent in chunks (no Content-Length unless given) that counts what is read."""

    def __init__(self, data: bytes, chunk: int = 64 * 1024) -> None:
        self.data = data
        self.chunk = chunk
        self.read = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self.data), self.chunk):
            piece = self.data[start : start + self.chunk]
            self.read += len(piece)
            yield piece


def assert_too_large(response: httpx.Response) -> None:
    assert response.status_code == 413, response.text
    body = response.json()
    assert body["error_code"] == 413  # no published code: the status stands in
    assert body["success"] is False
    assert "bytes" in body["error_message"]


async def test_an_api_body_over_1_mib_is_a_413_and_changes_nothing(
    seeded: httpx.AsyncClient,
) -> None:
    before = await held(seeded)
    url = f"/api/v2/subscribers/{SUBSCRIBER_ID}"
    assert (await seeded.patch(url, content=_valid_patch_of(API_BODY_LIMIT))).status_code == 200
    after_ok = await held(seeded)
    assert_too_large(await seeded.patch(url, content=_valid_patch_of(API_BODY_LIMIT + 1)))
    assert after_ok != before
    assert await held(seeded) == after_ok


async def test_a_declared_content_length_over_the_limit_is_refused_unread(
    seeded: httpx.AsyncClient,
) -> None:
    body = CountingBody(_valid_patch_of(API_BODY_LIMIT + 1))
    response = await seeded.patch(
        f"/api/v2/subscribers/{SUBSCRIBER_ID}",
        content=body,
        headers={"Content-Length": str(API_BODY_LIMIT + 1)},
    )
    assert_too_large(response)
    assert body.read == 0


async def test_a_chunked_body_is_cut_off_at_the_limit(seeded: httpx.AsyncClient) -> None:
    before = await held(seeded)
    body = CountingBody(_valid_patch_of(4 * API_BODY_LIMIT))
    response = await seeded.patch(f"/api/v2/subscribers/{SUBSCRIBER_ID}", content=body)
    assert "content-length" not in response.request.headers
    assert_too_large(response)
    assert body.read <= API_BODY_LIMIT + body.chunk
    assert await held(seeded) == before


async def test_an_admin_seed_may_be_larger_than_an_api_body(api: httpx.AsyncClient) -> None:
    people = [{"phone_number": f"+1555555{i:04d}", "tags": ["x" * 300]} for i in range(4000)]
    body = json.dumps({"subscribers": people}).encode()
    assert len(body) > API_BODY_LIMIT
    response = await api.post("/_emulator/subscribers", content=body)
    assert response.status_code == 200
    assert len(response.json()["subscribers"]) == 4000


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_an_admin_body_over_64_mib_is_a_413_and_stores_nothing(
    api: httpx.AsyncClient, chunked: bool
) -> None:
    filler = b'{"subscribers": [], "x": "' + b"a" * ADMIN_BODY_LIMIT + b'"}'
    body = CountingBody(filler, chunk=1024 * 1024)
    headers = {} if chunked else {"Content-Length": str(len(filler))}
    response = await api.post("/_emulator/subscribers", content=body, headers=headers)
    assert_too_large(response)
    assert body.read <= (ADMIN_BODY_LIMIT + body.chunk if chunked else 0)
    assert (await api.get("/_emulator/state")).json()["subscribers"] == []


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "json"],
)
@pytest.mark.parametrize("endpoint", GOOD_BODIES.keys())
async def test_a_body_declared_as_another_media_type_is_a_415(
    seeded: httpx.AsyncClient, endpoint: str, content_type: str
) -> None:
    method, path, body = GOOD_BODIES[endpoint]
    before = await held(seeded)
    response = await seeded.request(
        method, path, content=json.dumps(body).encode(), headers={"Content-Type": content_type}
    )
    assert response.status_code == 415, response.text
    assert response.json()["error_code"] == 415  # no published code: the status stands in
    assert "application/json" in response.json()["error_message"]
    assert await held(seeded) == before


@pytest.mark.parametrize(
    "content_type",
    [None, "application/json", "Application/JSON; charset=UTF-8", "application/merge-patch+json"],
)
@pytest.mark.parametrize("endpoint", GOOD_BODIES.keys())
async def test_a_json_body_with_or_without_a_json_media_type_is_read(
    seeded: httpx.AsyncClient, endpoint: str, content_type: str | None
) -> None:
    method, path, body = GOOD_BODIES[endpoint]
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = await seeded.request(
        method, path, content=json.dumps(body).encode(), headers=headers
    )
    assert response.status_code < 300, response.text


def test_emulator_errors_do_not_reuse_the_engine_error_names() -> None:
    def exception_names(module: ModuleType) -> set[str]:
        return {
            name
            for name, value in inspect.getmembers(module, inspect.isclass)
            if issubclass(value, Exception) and value.__module__ == module.__name__
        }

    engine = exception_names(postscript_audience_lab.sync.errors)
    emulator_modules = [
        import_module(f"postscript_audience_lab.emulator.postscript.{info.name}")
        for info in pkgutil.iter_modules(postscript_audience_lab.emulator.postscript.__path__)
    ]
    emulator_names = set().union(*(exception_names(m) for m in emulator_modules))
    assert engine
    assert "ResourceNotFound" in emulator_names
    assert not emulator_names & engine
