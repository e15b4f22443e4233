from __future__ import annotations

from dataclasses import asdict

import pytest

from postscript_audience_lab.emulator.segment.identity import normalise_phone
from postscript_audience_lab.emulator.segment.workload import build_workload


def test_an_unknown_preset_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="quick, standard"):
        build_workload("huge")


def test_an_unknown_setting_is_refused_with_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="flip_rat"):
        build_workload("quick", flip_rat=0.2)


def test_overrides_replace_preset_values_and_none_keeps_them() -> None:
    workload = build_workload("quick", users=40, rounds=None)
    assert (workload.config.users, workload.config.rounds) == (40, 3)


def test_every_shopper_is_seeded_with_normalised_identifiers() -> None:
    workload = build_workload("quick")
    subscribers = workload.subscribers
    assert len(subscribers) == 500
    phones = [s["phone_number"] for s in subscribers if "phone_number" in s]
    emails = [s["email"] for s in subscribers if "email" in s]
    assert (len(phones), len(emails)) == (375, 375)
    assert all(normalise_phone(p) == p for p in phones)
    assert all(e == e.strip().lower() for e in emails)
    assert all("created_at" in s for s in subscribers)


def test_expected_rows_name_seeded_subscribers_in_normalised_form() -> None:
    workload = build_workload("quick")
    phones = {s.get("phone_number") for s in workload.subscribers}
    emails = {s.get("email") for s in workload.subscribers}
    assert workload.expected
    for row in workload.expected:
        assert set(row) == {"phone_number", "email", "audience_key", "member"}
        assert row["phone_number"] in phones
        assert row["email"] in emails
    assert workload.expected_event_count == sum(row["member"] for row in workload.expected)


def test_unseeded_shoppers_leave_the_seed_list_and_the_expected_file() -> None:
    workload = build_workload("quick", unseeded_rate=0.2)
    assert 300 < len(workload.subscribers) < 500
    seeded = {(s.get("phone_number"), s.get("email")) for s in workload.subscribers}
    assert workload.expected
    assert all((r["phone_number"], r["email"]) in seeded for r in workload.expected)
    assert all((r["phone_number"], r["email"]) not in seeded for r in workload.unseeded_expected)
    assert workload.unseeded_expected


def test_iter_lines_can_be_read_twice_with_the_same_result() -> None:
    workload = build_workload("quick", users=60)
    assert list(workload.iter_lines()) == list(workload.iter_lines())


def test_every_workload_setting_reaches_the_scenario_or_the_delivery() -> None:
    workload = build_workload("quick", users=7, flip_rate=0.2, shuffle_window=9, seed=5)
    passed_on = {**asdict(workload.scenario.config), **asdict(workload.delivery)}
    own = {"unseeded_rate"}  # read by the workload itself (who is seeded)
    for name, value in asdict(workload.config).items():
        assert name in own or passed_on.get(name) == value, name
