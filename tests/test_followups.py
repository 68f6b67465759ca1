"""What a button names, and how far Extend goes: the pieces the platform tests build on."""

from __future__ import annotations

import pytest

from bot.followups import ACTIONS, EXTEND, LOOP, NEW_TAKE, button_id, buttons, parse_button
from worker.extend import extension_seconds
from bot.links import Shown
from pipeline.validation import Limits


def test_a_button_names_its_action_and_take_within_discords_100_characters() -> None:
    longest = Shown("f" * 12, 4)  # a job id is 12 hex digits, a take at most 4
    for action in ACTIONS.values():
        custom_id = button_id(action, longest)
        assert len(custom_id) <= 100 and parse_button(custom_id) == (action, longest)
    assert parse_button("someone-else:extend:abc:1:30") is None and parse_button("textunes:dance:abc:1:3") is None
    assert parse_button("textunes:extend:not a job!:1:3") is None


def test_a_link_from_an_older_release_reads_as_the_jobs_status() -> None:
    assert Shown.decode("3f9c2a1b7d4e") == Shown("3f9c2a1b7d4e")  # links used to hold the job id alone
    assert Shown.decode(Shown("3f9c2a1b7d4e", 2).encode()) == Shown("3f9c2a1b7d4e", 2)
    assert Shown.decode("") is None and Shown.decode("a:b") is None and Shown.decode("a:1:2") is None


def test_extend_adds_30_seconds_or_what_the_maximum_leaves_and_nothing_under_the_minimum() -> None:
    limits = Limits(max_duration=180)
    assert extension_seconds(10.0, limits) == 30.0
    assert extension_seconds(160.0, limits) == 20.0
    assert extension_seconds(174.96, limits) == 5.0
    assert extension_seconds(176.0, limits) is None and extension_seconds(180.0, limits) is None


@pytest.mark.parametrize("loop, expected", [(False, [NEW_TAKE, EXTEND, LOOP]), (True, [NEW_TAKE, EXTEND])])
def test_a_loop_has_no_loop_button(loop: bool, expected: list) -> None:  # type: ignore[type-arg]
    assert buttons(loop) == expected
