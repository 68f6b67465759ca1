"""Where Discord results go: the ``ChatOutput`` the event pump calls for the Discord platform.

A job's ``ReplyTo`` says where to post (``extra`` holds the Discord-only parts, see
``DiscordTarget``). Takes go into the job's thread when it has one, with the bot token.
Without a thread (DMs, channels where threads aren't allowed) they go in place: as
interaction follow-ups while the interaction token is alive (15 minutes), then with the
bot token. The status message is edited the same way. The clock is injectable so the
15-minute switch can be tested.

Every text goes out through ``fit``: Discord refuses a message over 2,000 characters (and a
thread name over 100) with a 400, which would leave the user on "thinking…".

A take is one message: its line, the audio file, the waveform picture (a second attachment,
shown inline), and one row of buttons (New take, Extend, Loop) whose ``custom_id`` names the
take (``bot.followups``). The buttons go out as a stopped ``discord.ui.View``: discord.py only
serialises it, and keeps nothing per message; the bot handles clicks in ``on_interaction``.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import discord

from bot import replies
from bot.followups import NEW_TAKE, button_id
from bot.status import StatusMessages
from bot.uploads import TakePost
from worker.queue import Event, ReplyTo, Take

log = logging.getLogger("textunes.discord")

INTERACTION_TOKEN_LIFETIME_S = 15 * 60
TOKEN_SAFETY_MARGIN_S = 60  # stop using a token a minute before Discord stops taking it
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024  # what Discord allows a bot in an unboosted guild or a DM
REGENERATE_EMOJI = NEW_TAKE.emoji  # the bot puts it under each take
MAX_CONTENT = 2000  # characters (code points) in a message
MAX_THREAD_NAME = 100
HISTORY_LOOKED_AT = 100  # recent messages searched for a take an earlier attempt may have posted


def fit(text: str, limit: int = MAX_CONTENT) -> str:
    """``text`` within one of Discord's limits (a message by default)."""
    return replies.clip(text, limit)


@dataclass
class DiscordTarget:
    """The Discord-only part of a ReplyTo, kept in ``ReplyTo.extra`` (JSON)."""

    application_id: str = ""
    interaction_token: str = ""  # only for /tune; lives 15 minutes
    token_at: float = 0.0  # clock time the interaction arrived
    upload_limit: int = DEFAULT_UPLOAD_LIMIT
    guild_id: str = ""

    def to_extra(self) -> dict[str, Any]:
        return {
            "application_id": self.application_id, "interaction_token": self.interaction_token,
            "token_at": self.token_at, "upload_limit": self.upload_limit, "guild_id": self.guild_id,
        }

    @classmethod
    def from_reply_to(cls, reply_to: ReplyTo) -> "DiscordTarget":
        extra = reply_to.extra or {}
        return cls(
            application_id=str(extra.get("application_id", "")),
            interaction_token=str(extra.get("interaction_token", "")),
            token_at=float(extra.get("token_at", 0.0)),
            upload_limit=int(extra.get("upload_limit", DEFAULT_UPLOAD_LIMIT)),
            guild_id=str(extra.get("guild_id", "")),
        )


class DiscordOutput(StatusMessages):
    """Posts a job's status, texts and takes for the event pump (see ``bot.service.ChatOutput``)."""

    def __init__(self, client: discord.Client, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.client = client
        self.clock = clock

    # ---- ChatOutput --------------------------------------------------------------------
    async def post_text(self, event: Event, text: str) -> str | None:
        message = await self._send(event.reply_to, content=text)
        return str(message.id) if message else None

    def upload_limit(self, event: Event) -> int:
        return DiscordTarget.from_reply_to(event.reply_to).upload_limit

    async def post_take(self, event: Event, post: TakePost) -> str | None:
        files = [discord.File(io.BytesIO(upload.data), filename=upload.name) for upload in post.files]
        message = await self._send(event.reply_to, content=post.text, files=files, view=take_buttons(post))
        if message is None:
            return None
        await self._offer_regenerate(event, message)
        return str(message.id)

    async def find_take(self, event: Event, take: Take, filename: str) -> str | None:
        """A recent message of the bot's in the take's thread (or channel) that carries the
        take ``filename`` names and the take's line: what an earlier attempt posted although
        its answer never came."""
        channel = self.client.get_partial_messageable(int(self._where(event.reply_to)))
        me = self.client.user.id if self.client.user else None
        async for message in channel.history(limit=HISTORY_LOOKED_AT):
            if (message.author.id == me and replies.shows_take(message.content, take)
                    and any(replies.is_take_file(a.filename, filename) for a in message.attachments)):
                await self._offer_regenerate(event, message)  # in case the attempt ended before it
                return str(message.id)
        return None

    # ---- used by the bot's handlers ----------------------------------------------------
    def token_alive(self, reply_to: ReplyTo) -> bool:
        target = DiscordTarget.from_reply_to(reply_to)
        if not (target.interaction_token and target.application_id):
            return False
        age = self.clock() - target.token_at
        return age < INTERACTION_TOKEN_LIFETIME_S - TOKEN_SAFETY_MARGIN_S

    async def _offer_regenerate(self, event: Event, message: discord.Message) -> None:
        """React 🔁 on the take so users see it and can click it. Never fails the post: the
        take is already up, and failing here would post it again."""
        try:
            channel = self.client.get_partial_messageable(message.channel.id)
            await channel.get_partial_message(message.id).add_reaction(REGENERATE_EMOJI)
        except discord.HTTPException as error:
            log.info("job %s: could not add %s to the take (%s)", event.job_id, REGENERATE_EMOJI, error.status)

    # ---- plumbing ----------------------------------------------------------------------
    def _webhook(self, reply_to: ReplyTo) -> discord.Webhook:
        target = DiscordTarget.from_reply_to(reply_to)
        return discord.Webhook.partial(int(target.application_id), target.interaction_token, client=self.client)

    async def _edit(self, reply_to: ReplyTo, text: str) -> None:
        if self.token_alive(reply_to):
            await self._webhook(reply_to).edit_message(int(reply_to.message_id), content=fit(text))
            return
        channel = self.client.get_partial_messageable(int(reply_to.channel_id))
        await channel.get_partial_message(int(reply_to.message_id)).edit(content=fit(text))

    @staticmethod
    def _where(reply_to: ReplyTo) -> str:
        """The channel results land in: the job's thread, else where it was asked."""
        return reply_to.thread_id or reply_to.channel_id

    async def _send(self, reply_to: ReplyTo, *, content: str, **kwargs: Any) -> discord.Message | None:
        if not reply_to.thread_id and self.token_alive(reply_to):
            return await self._webhook(reply_to).send(content=fit(content), wait=True, **kwargs)
        return await self.client.get_partial_messageable(int(self._where(reply_to))).send(content=fit(content), **kwargs)


def take_buttons(post: TakePost) -> discord.ui.View:
    """One row: New take, Extend, Loop (none on a loop), each naming the take it acts on."""
    view = discord.ui.View(timeout=None)
    for action in post.buttons:
        view.add_item(discord.ui.Button(style=discord.ButtonStyle.secondary, label=action.label, emoji=action.emoji,
                                        custom_id=button_id(action, post.shown)))
    view.stop()  # sent for its components only: discord.py keeps no state for a stopped view
    return view
