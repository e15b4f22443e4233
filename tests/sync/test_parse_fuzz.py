"""Fuzzing what the engine parses: no line, however hostile, raises or stores unbounded data.

Arbitrary text (as undecodable bytes are read: `surrogateescape`), and arbitrary
JSON with what Python's `json` lets through and nothing else can store: NaN and
Infinity, lone surrogates, integers of thousands of digits, deep nesting.
"""

from __future__ import annotations

import json
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postscript_audience_lab.sync.ledger import MAX_STORED_EVENT_CHARS, stored_event
from postscript_audience_lab.sync.parse import AudienceChange, Rejection, parse_line

EXAMPLES = int(os.environ.get("PSLAB_FUZZ_EXAMPLES", "200"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

scalars = (
    st.none()
    | st.booleans()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.integers()
    | st.integers(min_value=10**4000, max_value=10**5000)
    | st.text()
    | st.sampled_from(["\ud800", "a\udfffb", "true", "FALSE", "audience", "identify", "track"])
)
KEYS = ["type", "traits", "context", "personas", "computation_key", "timestamp", "batch"]
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(max_size=8) | st.sampled_from(["type", "traits"]), children, max_size=4
        )
    ),
    max_leaves=30,
)


def _dumps(value: object) -> str:
    """JSON text as a sender could write it: NaN/Infinity allowed, lone surrogates escaped."""
    try:
        return json.dumps(value, allow_nan=True)
    except ValueError:  # an integer too long for str(); send it as raw digits
        return "9" * 5000


def _checked(line: str) -> None:
    for result in parse_line(line, 1):
        assert isinstance(result, AudienceChange | Rejection)
        if isinstance(result, Rejection):
            assert result.reason
            assert len(stored_event(result.event)) <= MAX_STORED_EVENT_CHARS


@FUZZ
@given(st.binary(max_size=300))
def test_any_bytes_give_changes_or_rejections_and_never_raise(data: bytes) -> None:
    _checked(data.decode("utf-8", errors="surrogateescape"))


@FUZZ
@given(json_values)
def test_any_json_value_gives_changes_or_rejections_and_never_raises(value: object) -> None:
    _checked(_dumps(value))


@FUZZ
@given(json_values, st.integers(min_value=1, max_value=3000))
def test_any_nesting_depth_gives_a_rejection_and_never_raises(value: object, depth: int) -> None:
    _checked('{"type":"track","traits":' + "[" * depth + _dumps(value) + "]" * depth + "}")
    _checked('{"batch":[' + '{"a":' * depth + "1" + "}" * depth + "]}")


@FUZZ
@given(json_values)
def test_any_event_inside_a_batch_gives_one_result_per_event(value: object) -> None:
    try:
        line = json.dumps({"batch": [value, value]}, allow_nan=False)
    except ValueError:  # NaN, Infinity or a huge integer reject the whole line (tested above)
        return
    assert len(parse_line(line, 1)) == 2


@given(
    st.text(alphabet=st.sampled_from('"\\\n\x00é\U0001f600a'), min_size=1, max_size=40),
    st.integers(min_value=2_000, max_value=8_000),
)
def test_a_long_rejected_event_is_stored_within_the_limit_however_it_escapes(
    unit: str, length: int
) -> None:
    # Quotes, backslashes and non-ASCII characters grow when the kept beginning is
    # escaped again inside the "truncated" wrapper.
    value = (unit * length)[:length]
    stored = stored_event({"properties": {"value": value}})
    assert len(stored) <= MAX_STORED_EVENT_CHARS
    assert json.loads(stored)["characters"] > MAX_STORED_EVENT_CHARS
