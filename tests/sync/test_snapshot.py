"""Reading reconcile input: CSV, Engage's audience exports, NDJSON, rejections, options."""

from __future__ import annotations

import hashlib
import io
from datetime import UTC, datetime

import pytest

from postscript_audience_lab.sync.commands.reconcile import parse_as_of, parse_share
from postscript_audience_lab.sync.errors import SnapshotError
from postscript_audience_lab.sync.ledger import Identity
from postscript_audience_lab.sync.snapshot import SAMPLE_REJECTIONS, Snapshot, read_snapshot


def read(text: str, *audiences: str) -> Snapshot:
    return read_snapshot(io.StringIO(text), audiences=audiences)


def members(snapshot: Snapshot, audience: str) -> list[Identity]:
    return list(snapshot.members(audience))


def test_a_csv_names_members_per_audience_as_events_key_them() -> None:
    snapshot = read(
        "audience_key,phone,email\n"
        "vip,(555) 555-0100,\n"
        "vip,, Ada@Example.COM \n"
        "winback,+44 20 7946 0958,bob@example.com\n"
    )
    assert snapshot.audiences == ["vip", "winback"]
    assert members(snapshot, "vip") == [
        Identity("+15555550100", None),
        Identity(None, "ada@example.com"),
    ]
    assert members(snapshot, "winback") == [Identity("+442079460958", "bob@example.com")]
    assert (snapshot.rows, snapshot.rejections) == (3, [])


def test_the_same_member_twice_counts_once() -> None:
    snapshot = read("audience_key,phone\nvip,+15555550100\nvip,555-555-0100\n")
    assert members(snapshot, "vip") == [Identity("+15555550100", None)]


def test_engage_unformatted_export_reads_the_external_ids_of_the_named_audience() -> None:
    snapshot = read(
        "key,external_ids\n"
        'seg_1,"{""anonymous_id"":[""anon_1""],""email"":[""luke@force.com"",""old@force.com""]}"\n'
        'seg_2,"{""phone"":[""+15555550100""],""user_id"":[""u2""]}"\n',
        "vip",
    )
    assert members(snapshot, "vip") == [
        Identity(None, "luke@force.com"),
        Identity(None, "old@force.com"),
        Identity("+15555550100", None),
    ]


def test_engage_formatted_export_reads_the_indexed_columns() -> None:
    snapshot = read(
        "key,external_ids,anonymous_id,email,email_1,phone\n"
        'seg_1,"{}",anon_1,luke@force.com,chosen_one@force.com,+15555550100\n',
        "vip",
    )
    assert members(snapshot, "vip") == [
        Identity("+15555550100", "luke@force.com"),
        Identity(None, "chosen_one@force.com"),
    ]


def test_typographic_quotes_in_external_ids_reject_the_row_and_say_so() -> None:
    # as in Segment's own example file: the JSON there has curly quotes
    snapshot = read('key,external_ids\nseg_1,"{""email"": [“luke@force.com”]}"\n', "vip")
    assert members(snapshot, "vip") == []
    [rejection] = snapshot.rejections
    assert rejection.line == 2
    assert "typographic quotes" in rejection.reason


def test_a_row_that_names_nobody_is_rejected_with_its_line_and_the_rest_count() -> None:
    snapshot = read(
        "audience_key,phone,email,user_id\n"
        "vip,12,,u1\n"
        "vip,,,u2\n"
        "vip,+15555550100,,u3\n"
        ",+15555550101,,u4\n"
        f"vip,,{'a' * 64},u5\n"
    )
    reasons = {rejection.line or 0: rejection.reason for rejection in snapshot.rejections}
    assert sorted(reasons) == [2, 3, 5, 6]
    assert "names no member" in reasons[2]
    assert "'12'" in reasons[2]
    assert "no audience_key" in reasons[5]
    assert "SHA-256 hash" in reasons[6]
    assert members(snapshot, "vip") == [Identity("+15555550100", None)]


def test_rows_of_an_audience_no_audience_option_names_are_rejected() -> None:
    snapshot = read("audience_key,phone\nvip,+15555550100\nother,+15555550101\n", "vip")
    assert snapshot.audiences == ["vip"]
    [rejection] = snapshot.rejections
    assert "'other', which no --audience names" in rejection.reason


def test_a_named_audience_without_rows_is_in_the_snapshot_empty() -> None:
    snapshot = read("audience_key,phone\n", "vip")
    assert (snapshot.audiences, snapshot.count("vip")) == (["vip"], 0)


def test_ndjson_rows_take_the_same_fields_and_a_bad_line_is_rejected_alone() -> None:
    snapshot = read(
        '\n{"audience_key": "vip", "phone": "+15555550100"}\n'
        "{not json\n"
        '{"audience_key": "vip", "external_ids": {"email": ["ADA@example.com"]}}\n'
        "[1, 2]\n"
    )
    assert members(snapshot, "vip") == [
        Identity("+15555550100", None),
        Identity(None, "ada@example.com"),
    ]
    assert [rejection.line for rejection in snapshot.rejections] == [3, 5]
    assert "not valid JSON" in snapshot.rejections[0].reason


@pytest.mark.parametrize(
    ("text", "audiences", "says"),
    [
        ("audience_key,user_id\nvip,u1\n", (), "no phone, email or external_ids column"),
        ("phone\n+15555550100\n", (), "exactly one --audience"),
        ("phone\n+15555550100\n", ("vip", "winback"), "exactly one --audience"),
        ('audience_key,phone\nvip,"+1555\n', (), "not valid CSV"),
    ],
)
def test_a_file_that_cannot_be_read_as_a_whole_is_a_snapshot_error(
    text: str, audiences: tuple[str, ...], says: str
) -> None:
    with pytest.raises(SnapshotError, match=says):
        read(text, *audiences)


def test_the_digest_depends_on_the_members_not_their_order_or_spelling() -> None:
    one = read("audience_key,phone\nvip,+15555550100\nvip,+15555550101\n")
    two = read("audience_key,phone\nvip,555 555 0101\nvip,(555) 555-0100\n")
    three = read("audience_key,phone\nvip,+15555550100\n")
    assert one.digest("vip") == two.digest("vip") != three.digest("vip")


def test_as_of_is_an_instant_in_utc_and_never_in_the_future() -> None:
    now = datetime(2026, 11, 28, 9, tzinfo=UTC)
    assert parse_as_of("2026-11-28T08:00:00", now) == datetime(2026, 11, 28, 8, tzinfo=UTC)
    assert parse_as_of("2026-11-28T10:00:00+02:00", now) == datetime(2026, 11, 28, 8, tzinfo=UTC)
    with pytest.raises(ValueError, match="in the future"):
        parse_as_of("2026-11-28T10:00:00Z", now)
    with pytest.raises(ValueError, match="not an ISO 8601 time"):
        parse_as_of("yesterday", now)


@pytest.mark.parametrize(("text", "share"), [("20%", 0.2), ("0.6", 0.6), ("100%", 1.0), ("0", 0.0)])
def test_the_removal_share_reads_as_a_percentage_or_a_fraction(text: str, share: float) -> None:
    assert parse_share(text) == pytest.approx(share)


@pytest.mark.parametrize("text", ["20", "120%", "-1%", "a lot"])
def test_a_removal_share_outside_0_to_100_percent_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a share from 0% to 100%"):
        parse_share(text)


def test_the_digest_of_a_state_file_written_before_the_members_moved_to_disk_still_matches() -> (
    None
):
    snapshot = read(
        "audience_key,phone,email\nvip,+15555550101,\nvip,,b@example.com\n"
        "vip,+15555550100,a@example.com\n"
    )
    rows = sorted([("+15555550101", ""), ("", "b@example.com"), ("+15555550100", "a@example.com")])
    text = "\n".join(f"{phone}\t{email}" for phone, email in rows)  # 0.2.0's formula
    assert snapshot.digest("vip") == hashlib.sha256(f"vip\n{text}".encode()).hexdigest()[:32]


def test_rejected_rows_are_all_counted_and_passed_on_but_only_the_first_are_kept() -> None:
    bad_rows = SAMPLE_REJECTIONS + 150
    text = "audience_key,phone\nvip,+15555550100\n" + "vip,not-a-phone\n" * bad_rows
    passed_on: list[int | None] = []

    snapshot = read_snapshot(
        io.StringIO(text), on_rejection=lambda rejection: passed_on.append(rejection.line)
    )

    assert (snapshot.rows, snapshot.rejected) == (bad_rows + 1, bad_rows)
    assert passed_on == list(range(3, bad_rows + 3))  # every one, in order, with its line
    assert [item.line for item in snapshot.rejections] == passed_on[:SAMPLE_REJECTIONS]
    assert members(snapshot, "vip") == [Identity("+15555550100", None)]
