"""`pslab serve`'s structured logs (docs/design/service.md): one JSON object per line, no personal
data."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from postscript_audience_lab.sync.service.logs import JsonLines, redact


def record(message: str, **fields: object) -> logging.LogRecord:
    made = logging.LogRecord("pslab.serve", logging.WARNING, __file__, 1, message, None, None)
    made.fields = fields
    return made


def test_a_record_is_one_line_of_json_with_its_fields() -> None:
    line = JsonLines().format(record("intake_refused", route="/v1/batch", status=413))

    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed | {"event": "intake_refused", "route": "/v1/batch", "status": 413} == parsed
    assert parsed["level"] == "warning"


@pytest.mark.parametrize(
    "text",
    [
        "Could not find subscriber +15555550100",
        "phone (555) 555-0100 is not valid",
        "email Ada.Lovelace@Example.com is taken",
        "numbers 15555550100 and 555-555-0100",
    ],
)
def test_phones_and_emails_are_masked_in_what_is_logged(text: str) -> None:
    masked = redact(text)
    line = JsonLines().format(record(text))

    assert not any(char.isdigit() for char in masked.replace("<phone>", ""))
    assert "@" not in masked
    assert json.loads(line)["event"] == masked


def test_short_numbers_and_plain_words_are_kept() -> None:
    assert redact("HTTP 503 after 3 attempts on events.create") == (
        "HTTP 503 after 3 attempts on events.create"
    )


def test_an_exception_is_logged_as_one_masked_field() -> None:
    try:
        raise ValueError("no subscriber for shopper@example.com")
    except ValueError:
        made = logging.LogRecord(
            "pslab.serve", logging.ERROR, __file__, 1, "drain_failed", None, sys.exc_info()
        )

    parsed = json.loads(JsonLines().format(made))

    assert parsed["error"] == "ValueError: no subscriber for <email>"
