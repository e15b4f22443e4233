"""What the HTTP intake lets in (docs/design/service.md): credentials, bodies, and its answer."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest

from postscript_audience_lab.sync.ledger import Outcome
from postscript_audience_lab.sync.parse import Rejection, parse_line
from postscript_audience_lab.sync.service.intake import (
    MAX_EVENTS_PER_BODY,
    BodyError,
    Credentials,
    decode_body,
    receipt,
)
from tests.sync.test_parse import POISON_LINES, track

BOTH = Credentials(write_key="wk_segment", shared_secret="shh")


def basic(user: str, password: str = "") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def signature(body: bytes, under: str = "shh") -> str:
    return hmac.new(under.encode(), body, hashlib.sha1).hexdigest()


def refusal(route: str, body: bytes) -> BodyError:
    with pytest.raises(BodyError) as refused:
        decode_body(route, body)
    return refused.value


# -- credentials -------------------------------------------------------------------


def test_the_write_key_is_the_basic_user_and_the_password_does_not_matter() -> None:
    assert BOTH.by_write_key(basic("wk_segment"))
    assert BOTH.by_write_key(basic("wk_segment", "anything"))
    assert BOTH.by_write_key("basic " + basic("wk_segment").split()[1])


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        basic("wk_other"),
        basic("wk_segmen"),
        basic("", "wk_segment"),
        "Bearer wk_segment",
        "Basic not*base64",
        "Basic",
    ],
)
def test_anything_but_the_write_key_as_basic_user_is_refused(authorization: str | None) -> None:
    assert not BOTH.by_write_key(authorization)


def test_a_signature_is_the_hex_hmac_sha1_of_the_raw_body() -> None:
    body = b'[{"type":"identify"}]'

    assert BOTH.by_signature(signature(body), body)
    assert BOTH.by_signature(signature(body).upper(), body)


@pytest.mark.parametrize(
    "given",
    [
        signature(b'[{"type":"track"}]'),  # another body's
        signature(b'[{"type":"identify"}]', "wrong secret"),
        "",
        "sha1=" + signature(b'[{"type":"identify"}]'),
        "é" * 40,
    ],
)
def test_a_signature_of_another_body_or_secret_is_refused(given: str) -> None:
    assert not BOTH.by_signature(given, b'[{"type":"identify"}]')


def test_a_credential_that_is_not_set_up_never_passes() -> None:
    only_secret = Credentials(shared_secret="shh")
    only_key = Credentials(write_key="wk_segment")

    assert not only_secret.by_write_key(basic("wk_segment"))
    assert not only_key.by_signature(signature(b"{}"), b"{}")
    assert not Credentials().required
    assert only_key.required
    assert only_secret.required


def test_credentials_never_show_in_their_repr() -> None:
    assert "wk_segment" not in repr(BOTH)
    assert "shh" not in repr(BOTH)


# -- bodies ------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["/v1/identify", "/v1/track"])
def test_an_event_route_gives_the_event_its_type(route: str) -> None:
    event = track()
    del event["type"]

    decoded = decode_body(route, json.dumps(event).encode())

    assert isinstance(decoded, dict)
    assert decoded["type"] == route.removeprefix("/v1/")


def test_an_event_sent_to_the_other_types_route_is_refused() -> None:
    refused = refusal("/v1/identify", json.dumps(track()).encode())

    assert (refused.status, refused.reason) == (
        400,
        "the event's type is 'track', but it was sent to /v1/identify",
    )


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("/v1/identify", b"[]"),
        ("/v1/batch", b'{"type": "track"}'),
        ("/v1/batch", b"[]"),
        ("/", b"42"),
        ("/", b'"an event"'),
        ("/", b"  "),
    ],
)
def test_a_body_of_the_wrong_shape_for_its_route_is_a_400(route: str, body: bytes) -> None:
    assert refusal(route, body).status == 400


@pytest.mark.parametrize("body", [b'{"batch": []}', b"[]", json.dumps(track()).encode()])
def test_the_root_route_takes_an_event_a_batch_or_a_list(body: bytes) -> None:
    assert decode_body("/", body) == json.loads(body)


@pytest.mark.parametrize("name", sorted(POISON_LINES))
def test_a_body_is_refused_by_the_same_rules_and_reason_as_a_sync_line(name: str) -> None:
    (line_rejection,) = parse_line(POISON_LINES[name])
    assert isinstance(line_rejection, Rejection)

    refused = refusal("/", POISON_LINES[name].encode())

    assert refused.status == 400
    assert refused.reason == line_rejection.reason.replace("the line", "the body")


def test_a_body_that_is_not_utf8_is_refused_like_such_a_line() -> None:
    refused = refusal("/", b'{"type": "track", "x": "\xff"}')

    assert refused.reason == "the body is not UTF-8 text; re-encode it as UTF-8 or drop it"


def test_a_body_with_more_events_than_any_segment_batch_is_a_413() -> None:
    body = json.dumps([{}] * (MAX_EVENTS_PER_BODY + 1)).encode()

    assert refusal("/", body).status == 413
    assert decode_body("/", json.dumps([{}] * MAX_EVENTS_PER_BODY).encode())


# -- the answer --------------------------------------------------------------------


def test_the_receipt_counts_outcomes_and_names_each_rejected_event() -> None:
    bad: dict[str, Any] = {"messageId": "m-bad", "type": "page"}
    stored = [
        (parse_line(json.dumps(track()))[0], Outcome.ACCEPTED),
        (Rejection("type is 'page'", bad), Outcome.REJECTED),
        (parse_line(json.dumps(track()))[0], Outcome.DUPLICATE),
        (Rejection("the event is not a JSON object", 7), Outcome.REJECTED),
    ]

    answer = receipt(stored)

    assert answer == {
        "success": True,
        "received": 4,
        "accepted": 1,
        "duplicates": 1,
        "stale": 0,
        "rejected": 2,
        "errors": [
            {"index": 1, "messageId": "m-bad", "reason": "type is 'page'"},
            {"index": 3, "reason": "the event is not a JSON object"},
        ],
    }


@pytest.mark.parametrize("route", ["/v1/batch", "/"])
def test_a_batch_that_is_not_a_list_is_a_400_not_one_rejection(route: str) -> None:
    with pytest.raises(BodyError) as refused:
        decode_body(route, b'{"batch": "x"}')
    assert refused.value.status == 400
    assert '"batch" must be a list of events' in refused.value.reason
