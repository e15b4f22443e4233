"""JSON text read strictly: the one reader of the engine's input, `pslab serve`'s bodies and the
emulator's requests (docs/design/layout.md, "One JSON reader").

Python's json module reads more than JSON can carry back out: NaN and Infinity, numbers that
overflow to infinity, integers of thousands of digits, lone surrogates (`"\\ud800"`), and
nesting deep enough to overflow the parser's recursion. `read_json` refuses each with a
`JSONTextError` saying what and where, before anything downstream stores it. Nesting is
counted on the structure: a `[` or `{` inside a string is text, not a level.

A leaf module: it imports nothing of the project's, so every part may use it.
"""

from __future__ import annotations

import json
import math
import re
from itertools import accumulate

__all__ = [
    "MAX_INTEGER_DIGITS",
    "MAX_NESTING",
    "JSONTextError",
    "Location",
    "location_text",
    "lone_surrogate",
    "nests_deeper_than",
    "read_json",
]

MAX_NESTING = 64  # levels of objects and lists, the outermost being the first
MAX_INTEGER_DIGITS = 4300  # Python's default limit for turning an int to text and back

Location = list[str | int]

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_BRACKET_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


class JSONTextError(ValueError):
    """Why a JSON text was refused: `message` says what it holds and `advice` what to send
    instead (both for people, to follow "the body" or "line 3"), `kind` is for programs (the
    emulator's error `type`), and `location` (keys and indexes) where a value is to blame."""

    def __init__(
        self, message: str, kind: str, location: Location | None = None, advice: str = ""
    ) -> None:
        super().__init__(f"{message}; {advice}" if advice else message)
        self.message = message
        self.kind = kind
        self.location = location or []
        self.advice = advice


def read_json(
    text: str, *, max_nesting: int = MAX_NESTING, refuse_lone_surrogates: bool = True
) -> object:
    """The JSON value `text` holds, or a `JSONTextError`.

    A reader that takes a text apart into items of its own (the engine: the events of a batch)
    may let lone surrogates through (`refuse_lone_surrogates=False`) and refuse the one item
    that holds them, instead of the whole text.
    """
    if nests_deeper_than(text, max_nesting):
        raise JSONTextError(
            f"nests objects or lists more than {max_nesting} levels deep",
            "value_error.nesting",
        )
    try:
        value = json.loads(
            text, parse_constant=_no_constant, parse_float=_finite, parse_int=_integer
        )
    except JSONTextError:
        raise
    except json.JSONDecodeError as error:
        raise JSONTextError(
            f"is not valid JSON ({error.msg} at line {error.lineno} column {error.colno})",
            "value_error.jsondecode",
        ) from None
    # Escapes are the only way in for a surrogate in text that is valid Unicode: most texts
    # skip the walk.
    if refuse_lone_surrogates and _SURROGATE_ESCAPE.search(text):
        where = lone_surrogate(value, [])
        if where is not None:
            raise JSONTextError(
                "holds a lone surrogate like \\ud800, which is not Unicode text",
                "value_error.unicode.surrogate",
                where,
            )
    return value


def nests_deeper_than(text: str, limit: int) -> bool:
    """Whether objects and lists nest deeper than `limit`, brackets inside strings aside.

    Scanned before parsing: a text nested thousands deep would otherwise stop the parser
    with a RecursionError. Most texts hold fewer brackets than the limit and are not scanned.
    """
    if text.count("[") + text.count("{") <= limit:
        return False
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(accumulate(map(_BRACKET_STEP.__getitem__, brackets)), default=0) > limit


def lone_surrogate(value: object, location: Location) -> Location | None:
    """Where the first string or key holding a lone surrogate is, if any (a key is given
    escaped, so that the location can be written back out)."""
    if isinstance(value, str):
        return location if _SURROGATE.search(value) else None
    items: list[tuple[str | int, object]] = []
    if isinstance(value, dict):
        for key in value:
            if _SURROGATE.search(key):
                return [*location, _SURROGATE.sub(lambda m: f"\\u{ord(m[0]):04x}", key)]
        items = list(value.items())
    elif isinstance(value, list):
        items = list(enumerate(value))
    for name, item in items:
        found = lone_surrogate(item, [*location, name])
        if found is not None:
            return found
    return None


def location_text(location: Location) -> str:
    """A location as a reason shows it: `['batch'][3]['messageId']`."""
    return "".join(f"[{step!r}]" for step in location)


def _no_constant(name: str) -> float:
    raise JSONTextError(
        f"holds {name}, which is not a JSON number",
        "value_error.number.not_finite",
        advice="send a finite number or null",
    )


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise JSONTextError(
            f"holds {text}, beyond the largest number a double holds (about 1.8e308)",
            "value_error.number.not_finite",
            advice="send a finite number or null",
        )
    return number


def _integer(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise JSONTextError(
            f"holds an integer of more than {MAX_INTEGER_DIGITS} digits",
            "value_error.number.too_long",
        )
    return int(text)
