"""Comparing an answer with a contract's recorded response, matcher by matcher.

A matcher is keyed by a JSON path: `$` is the body, `.key` a field (`["a key"]`
when the key is not an identifier), `[0]` an item, `[*]` any item. Kinds:

    {"type": "string"}                 only the JSON type counts (also integer,
                                       number, boolean, null, object, array,
                                       datetime, any; or a list of them)
    {"ref": "subscriber.alice.id"}     equal to the reference's value: the first
                                       sighting binds it, every other must agree
    {"regex": "^s_"}                   a string matching the pattern
    {"subset": true}                   object: extra keys allowed; array: every
                                       recorded item appears somewhere
    {"each_like": {"min": 1}}          array of any length >= min, each item
                                       compared with the first recorded one
    {"same_type": true}                the recorded value's JSON type (drift uses
                                       it to compare two live answers)

Everything without a matcher must be equal, and objects must have exactly the
recorded keys.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["Difference", "child", "compare", "json_type", "matcher_for", "project"]

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_INDEX = re.compile(r"\[\d+\]")


@dataclass(frozen=True)
class Difference:
    """One way an answer differs from its contract."""

    path: str
    kind: str  # status, missing field, unexpected field, wrong type, unexpected value, ...
    expected: Any
    actual: Any

    def __str__(self) -> str:
        if self.kind == "missing field":
            return f"{self.path}: missing field (expected {describe(self.expected)})"
        if self.kind == "unexpected field":
            return f"{self.path}: unexpected field (got {describe(self.actual)})"
        expected, actual = describe(self.expected), describe(self.actual)
        return f"{self.path}: {self.kind} (expected {expected}, got {actual})"


def describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def child(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    if _IDENTIFIER.match(key):
        return f"{path}.{key}"
    return f'{path}["{key}"]'


def matcher_for(matchers: Mapping[str, dict[str, Any]], path: str) -> dict[str, Any] | None:
    """The matcher for a concrete path: exact first, then with every index as `[*]`."""
    if path in matchers:
        return matchers[path]
    return matchers.get(_INDEX.sub("[*]", path))


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def is_datetime(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def has_type(value: Any, wanted: str) -> bool:
    actual = json_type(value)
    if wanted == "any":
        return True
    if wanted == "datetime":
        return is_datetime(value)
    if wanted == "number":
        return actual in ("integer", "number")
    return actual == wanted


def compare(
    expected: Any,
    actual: Any,
    matchers: Mapping[str, dict[str, Any]] | None = None,
    bindings: MutableMapping[str, Any] | None = None,
    path: str = "$",
) -> list[Difference]:
    """Every difference between `actual` and the recorded `expected`, under `matchers`.

    `bindings` holds reference values; refs seen for the first time are bound in it.
    """
    matchers = matchers or {}
    bindings = {} if bindings is None else bindings
    return list(_compare(expected, actual, matchers, bindings, path))


def _compare(
    expected: Any,
    actual: Any,
    matchers: Mapping[str, dict[str, Any]],
    bindings: MutableMapping[str, Any],
    path: str,
) -> list[Difference]:
    rule = matcher_for(matchers, path) or {}
    differences: list[Difference] = []
    if rule.get("same_type"):
        if json_type(expected) != json_type(actual):
            return [Difference(path, "wrong type", json_type(expected), json_type(actual))]
        return []
    if "type" in rule:
        wanted = rule["type"] if isinstance(rule["type"], list) else [rule["type"]]
        if not any(has_type(actual, w) for w in wanted):
            return [Difference(path, "wrong type", " or ".join(wanted), json_type(actual))]
        if not ({"subset", "each_like"} & rule.keys()):
            return []
    if "ref" in rule:
        name = rule["ref"]
        if name not in bindings:
            bindings[name] = actual
        elif bindings[name] != actual:
            return [Difference(path, f"reference {name} mismatch", bindings[name], actual)]
        return []
    if "regex" in rule:
        if not isinstance(actual, str) or not re.search(rule["regex"], actual):
            return [Difference(path, "unexpected value", f"/{rule['regex']}/", actual)]
        return []
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [Difference(path, "wrong type", "object", json_type(actual))]
        for key, value in expected.items():
            if key not in actual:
                differences.append(Difference(child(path, key), "missing field", value, None))
            else:
                differences += _compare(value, actual[key], matchers, bindings, child(path, key))
        if not rule.get("subset"):
            for key in actual.keys() - expected.keys():
                differences.append(
                    Difference(child(path, key), "unexpected field", None, actual[key])
                )
        return differences
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return [Difference(path, "wrong type", "array", json_type(actual))]
        if "each_like" in rule:
            return _compare_each_like(expected, actual, rule, matchers, bindings, path)
        if rule.get("subset"):
            return [
                Difference(path, "missing item", item, actual)
                for item in expected
                if item not in actual
            ]
        if len(expected) != len(actual):
            return [Difference(path, "wrong length", len(expected), len(actual))]
        for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
            differences += _compare(want, got, matchers, bindings, child(path, index))
        return differences
    if json_type(expected) != json_type(actual) and not (
        json_type(expected) in ("integer", "number") and json_type(actual) in ("integer", "number")
    ):
        return [Difference(path, "wrong type", json_type(expected), json_type(actual))]
    if expected != actual:
        return [Difference(path, "unexpected value", expected, actual)]
    return []


def _compare_each_like(
    expected: list[Any],
    actual: list[Any],
    rule: dict[str, Any],
    matchers: Mapping[str, dict[str, Any]],
    bindings: MutableMapping[str, Any],
    path: str,
) -> list[Difference]:
    minimum = int((rule["each_like"] or {}).get("min", 1))
    if len(actual) < minimum:
        return [Difference(path, "too few items", f">= {minimum}", len(actual))]
    if not expected:
        return []
    differences: list[Difference] = []
    for index, item in enumerate(actual):
        differences += _compare(expected[0], item, matchers, bindings, child(path, index))
    return differences


def project(
    recorded: Any, answer: Any, matchers: Mapping[str, dict[str, Any]], path: str = "$"
) -> Any:
    """`answer` cut down to what the contract pins: where the matchers allow extra keys
    (`subset`), only the recorded keys are kept — a live test subscriber's other
    properties are neither drift nor anything to write into a file."""
    rule = matcher_for(matchers, path) or {}
    if isinstance(answer, dict):
        known = recorded if isinstance(recorded, dict) else {}
        keys = [k for k in known if k in answer] if rule.get("subset") else list(answer)
        return {k: project(known.get(k), answer[k], matchers, child(path, k)) for k in keys}
    if isinstance(answer, list):
        known_items = recorded if isinstance(recorded, list) else []

        def recorded_item(index: int) -> Any:
            if "each_like" in rule:  # the first recorded item stands for all
                index = 0
            return known_items[index] if index < len(known_items) else None

        return [
            project(recorded_item(i), item, matchers, child(path, i))
            for i, item in enumerate(answer)
        ]
    return answer
