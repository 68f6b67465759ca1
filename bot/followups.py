"""What a user can do with a posted take: a new take (🔁), extend it (➕), make a loop of it (🔂).

Each is a reaction and a button on the take (Discord message components, Slack Block Kit
actions). A button names its action and the take it acts on (``Shown.encode()``) in its
Discord ``custom_id`` (``textunes:<action>:<job>:<take>``, well under Discord's 100
characters) or its Slack ``action_id`` and ``value``, so a click needs nothing else to find
its request. ``TuneService.follow_up`` turns an action into the new job's request.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.links import Shown
from pipeline.models import TuneRequest
from worker.queue import Job, TakeRef

BUTTON_PREFIX = "textunes"


@dataclass(frozen=True)
class Action:
    name: str  # new | extend | loop
    emoji: str  # the Discord reaction, and the button's emoji
    label: str  # the button's label
    slack_reaction: str  # the same emoji as Slack names it

    @property
    def kind(self) -> str:
        """The request metrics' kind of a job this action makes."""
        return "extend" if self.name == "extend" else "regenerate"


NEW_TAKE = Action("new", "🔁", "New take", "repeat")
EXTEND = Action("extend", "➕", "Extend", "heavy_plus_sign")
LOOP = Action("loop", "🔂", "Loop", "repeat_one")
ACTIONS = {action.name: action for action in (NEW_TAKE, EXTEND, LOOP)}


def by_emoji(emoji: str) -> Action | None:
    return next((a for a in ACTIONS.values() if a.emoji == emoji), None)


def by_slack_reaction(name: str) -> Action | None:
    return next((a for a in ACTIONS.values() if a.slack_reaction == name), None)


def buttons(loop: bool) -> list[Action]:
    """The buttons a take carries: no Loop on a take that is a loop already."""
    return [NEW_TAKE, EXTEND] if loop else [NEW_TAKE, EXTEND, LOOP]


def button_id(action: Action, shown: Shown) -> str:
    return f"{BUTTON_PREFIX}:{action.name}:{shown.encode()}"


def parse_button(custom_id: str) -> tuple[Action, Shown] | None:
    """``button_id``'s inverse; None for an id that isn't one of ours."""
    prefix, _, rest = custom_id.partition(":")
    name, _, code = rest.partition(":")
    action = ACTIONS.get(name) if prefix == BUTTON_PREFIX else None
    shown = Shown.decode(code) if action else None
    return (action, shown) if action and shown else None


@dataclass
class FollowUp:
    """A new job to make from a posted one: its request, and what it continues."""

    action: Action
    job: Job  # the job whose message was clicked
    request: TuneRequest
    extend: TakeRef | None = None
    melody: bytes | None = None
    source: int = 0  # the thread number of the take it extends or loops (its status line says so)
    extends: int = 0  # the thread number of the take whose tokens it continues (its take line says so)

    @property
    def seconds(self) -> float:
        return self.request.duration


