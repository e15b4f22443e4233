"""Reading the fields of one JSON object, collecting every problem before refusing.

Unknown fields are ignored unless the reader is strict (`--strict`,
docs/design/emulator-choices.md#lenient-input), and so are property values outside the
documented types ("property-values"). A wrong JSON type for a known field is
a 400 either way.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from postscript_audience_lab.emulator.postscript import json_body
from postscript_audience_lab.emulator.postscript.errors import InvalidInput, problem
from postscript_audience_lab.emulator.postscript.model.phones import lookup_digits, to_e164
from postscript_audience_lab.emulator.postscript.model.subscriber import MAX_CUSTOM_PROPERTIES

__all__ = ["EMAIL", "FieldReader", "Loc"]

EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")

Loc = list[str | int]

_SUBSCRIBER_VALUES = "a string, an integer, a list of strings or an ISO 8601 date(time)"
_EVENT_VALUES = "a string, a boolean, an integer, a float or a datetime string"


def _is_subscriber_value(value: object) -> bool:
    """The reference's types for a subscriber property (update-subscriber-by-id)."""
    if isinstance(value, list):
        return all(isinstance(item, str) for item in value)
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def _is_event_value(value: object) -> bool:
    """The reference's types for an event property (create-custom-event)."""
    return isinstance(value, str | bool | int | float)


class FieldReader:
    def __init__(
        self, body: dict[str, Any], loc: Loc, allowed: tuple[str, ...], *, strict: bool
    ) -> None:
        self.body = body
        self.loc = loc
        self.strict = strict
        self.problems: list[dict[str, Any]] = []
        for key in body:
            if key not in allowed and strict:
                self.fail(
                    key,
                    f"unknown field; allowed fields are {', '.join(allowed)}",
                    "value_error.extra",
                )

    def fail(self, name: str, msg: str, type_: str) -> None:
        self.problems.append(problem([*self.loc, name], msg, type_))

    def given(self, name: str) -> bool:
        return self.body.get(name) is not None

    def string(self, name: str, *, required: bool = False) -> str | None:
        value = self.body.get(name)
        if value is None:
            if required:
                self.fail(name, f"{name} is required", "value_error.missing")
            return None
        if not isinstance(value, str):
            self.fail(name, "must be a string", "type_error.str")
            return None
        return value

    def number_or_string(self, name: str) -> int | str | None:
        """A Shopify customer id: the reference shows a number and declares a string."""
        value = self.body.get(name)
        if value is None or (isinstance(value, int | str) and not isinstance(value, bool)):
            return value
        self.fail(name, "must be a number or a string", "type_error")
        return None

    def obj(self, name: str) -> dict[str, Any]:
        value = self.body.get(name)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(name, "must be a JSON object", "type_error.dict")
            return {}
        return value

    def tags(self, name: str = "tags") -> list[str]:
        value = self.body.get(name)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(t, str) and t for t in value):
            self.fail(name, "must be a list of non-empty strings", "type_error.list")
            return []
        return value

    def email(self, name: str = "email") -> str | None:
        value = self.string(name)
        if value is not None and not EMAIL.fullmatch(value):
            self.fail(name, "must be an email address like name@example.com", "value_error.email")
            return None
        return value

    def phone(self, name: str, region: str, *, required: bool = False) -> str | None:
        """A phone number to store: E.164, or a problem."""
        value = self.string(name, required=required)
        if value is None:
            return None
        e164 = to_e164(value, region)
        if e164 is None:
            self.fail(
                name, "must be a complete phone number, e.g. +15555550100", "value_error.phone"
            )
        return e164

    def phone_digits(self, name: str, region: str) -> str | None:
        """A phone number to look a subscriber up by: its digits ("phone-matching").

        Any writing is accepted ("other formats will be accepted"); strict, it
        must read as a complete number.
        """
        if self.strict:
            e164 = self.phone(name, region)
            return e164[1:] if e164 else None
        value = self.string(name)
        return None if value is None else lookup_digits(value, region)

    def subscriber_properties(
        self, name: str = "properties", *, check_types: bool | None = None
    ) -> dict[str, Any]:
        """An object, or a string holding one (the reference declares a JSON string).

        Value types are checked when `check_types` (by default: when strict).
        """
        value = self.body.get(name)
        if isinstance(value, str):
            try:
                value = json_body.parse_object(value.encode())
            except InvalidInput:
                self.fail(name, "must be a JSON object, or a string holding one", "type_error.dict")
                return {}
        properties = self.obj(name) if not isinstance(value, dict) else value
        if len(properties) > MAX_CUSTOM_PROPERTIES:
            self.fail(
                name,
                f"a subscriber can have at most {MAX_CUSTOM_PROPERTIES} custom properties",
                "value_error.too_many_properties",
            )
        if self.strict if check_types is None else check_types:
            self._check_values(name, properties, _is_subscriber_value, _SUBSCRIBER_VALUES)
        return properties

    def event_properties(self, name: str = "properties") -> dict[str, Any]:
        properties = self.obj(name)
        if self.strict:
            self._check_values(name, properties, _is_event_value, _EVENT_VALUES)
        return properties

    def _check_values(
        self,
        name: str,
        properties: dict[str, Any],
        allowed: Callable[[object], bool],
        described: str,
    ) -> None:
        for key, value in properties.items():
            if not allowed(value):
                self.problems.append(
                    problem([*self.loc, name, key], f"must be {described}", "type_error.property")
                )

    def done(self) -> None:
        if self.problems:
            raise InvalidInput(self.problems)
