"""Where Slack results go: the ``ChatOutput`` the event pump calls for the Slack platform.

Every job has a parent (status) message, ``ReplyTo.message_id`` (its ``ts``), which is
edited with ``chat.update``; texts and takes go into the job's thread, ``ReplyTo.thread_id``
(a ``ts`` too), with ``chat.postMessage`` and ``files_upload_v2``.

A take is one ``files_upload_v2`` call (its audio and its waveform picture, with the take's
line as the comment), followed by a small message with its buttons (New take, Extend, Loop:
Block Kit actions whose ``value`` names the take). A file share can't carry buttons itself.
The buttons are best effort: a take whose buttons message failed still counts as posted (its
reactions work), and an attempt that finds the take already in the thread adds them if missing.

Message ids handed to ``TuneService.link`` (for 🔁) are ``<channel>:<ts>`` for messages whose
``ts`` we know, and ``file:<file id>`` for uploaded takes: Slack's upload API returns the file,
not the message that shares it, so a 🔁 on a take is traced back through the file id.

Every text goes out through ``mrkdwn``: Slack reads ``<…>`` as a link or mention and ``&`` as
the start of an entity, so ``<``, ``>`` and ``&`` in user input and templates are escaped;
only the mentions the app adds itself stay markup.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import replies
from bot.followups import Action, buttons
from bot.links import Shown
from bot.posting import take_number
from bot.status import StatusMessages
from bot.uploads import TakePost
from worker.queue import Event, ReplyTo, Take

log = logging.getLogger("textunes.slack")

UPLOAD_LIMIT = 1024 * 1024 * 1024  # Slack takes files up to 1 GB
BUTTON_ACTION = "textunes_{}"  # a button's action_id: textunes_new, textunes_extend, textunes_loop


def message_key(channel: str, ts: str) -> str:
    return f"{channel}:{ts}"


def file_key(file_id: str) -> str:
    return f"file:{file_id}"


def mrkdwn(text: str, *, mention: str = "") -> str:
    """Plain ``text`` as Slack message text, escaped; ``mention``: a user id to @mention first."""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return f"<@{mention}> {escaped}" if mention else escaped


def with_requester(reply_to: ReplyTo, text: str) -> str:
    """Status texts name who asked: in Slack nobody else sees the slash command itself."""
    return mrkdwn(text, mention=reply_to.user_id)


def slack_error(error: SlackApiError) -> str:
    """The ``error`` code of a failed Web API call (``not_in_channel``, …)."""
    try:
        return str(error.response.get("error", ""))
    except AttributeError:
        return ""


class SlackOutput(StatusMessages):
    """Posts a job's status, texts and takes for the event pump (see ``bot.service.ChatOutput``)."""

    def __init__(self, client: AsyncWebClient) -> None:
        super().__init__()
        self.client = client

    # ---- ChatOutput --------------------------------------------------------------------
    async def post_text(self, event: Event, text: str) -> str | None:
        reply_to = event.reply_to
        response = await self.client.chat_postMessage(
            channel=reply_to.channel_id, thread_ts=reply_to.thread_id or None, text=mrkdwn(text))
        return message_key(reply_to.channel_id, str(response["ts"]))

    def upload_limit(self, event: Event) -> int:
        return UPLOAD_LIMIT

    async def post_take(self, event: Event, post: TakePost) -> str | None:
        reply_to = event.reply_to
        response = await self.client.files_upload_v2(
            channel=reply_to.channel_id, thread_ts=reply_to.thread_id or None, initial_comment=mrkdwn(post.text),
            file_uploads=[{"content": f.data, "filename": f.name, "title": f.name} for f in post.files],
        )
        audio = next((f for f in response.get("files") or [] if f.get("title") == post.audio.name), None)
        log.info("job %s: take %d uploaded to %s (%d bytes of %s)", event.job_id, post.shown.take,
                 reply_to.channel_id, len(post.audio.data), post.audio.content_type)
        await self._offer_buttons(event, post.number, post.shown, buttons(post.loop))
        return file_key(str(audio["id"])) if audio else None

    async def find_take(self, event: Event, take: Take, filename: str) -> str | None:
        """The take ``filename`` names already shared with the take's line in the job's thread
        (``conversations.replies``): what an earlier attempt uploaded although its answer never
        came. Its buttons are added if that attempt ended before it posted them."""
        reply_to = event.reply_to
        if not reply_to.thread_id:
            return None
        thread = await self._thread(reply_to.channel_id, reply_to.thread_id)
        found = next((str(shared["id"]) for message in thread
                      if replies.shows_take(str(message.get("text") or ""), take)
                      for shared in message.get("files") or []
                      if replies.is_take_file(str(shared.get("name") or ""), filename) and shared.get("id")), None)
        if found is None:
            return None
        shown = Shown(event.job_id, take.index)
        if not any(shown_by_buttons(message) == shown for message in thread):
            await self._offer_buttons(event, take_number(reply_to, take.index), shown, buttons(take.loop))
        return file_key(found)

    async def _offer_buttons(self, event: Event, number: int, shown: Shown, actions: list[Action]) -> None:
        """The take's buttons, in a message right under it. Never fails the post: the take is
        up (and its reactions work); failing here would post it again."""
        reply_to = event.reply_to
        try:
            await self.client.chat_postMessage(
                channel=reply_to.channel_id, thread_ts=reply_to.thread_id or None,
                text=mrkdwn(f"Take {number}: " + ", ".join(f"{a.emoji} {a.label}" for a in actions)),
                blocks=button_blocks(number, shown, actions))
        except SlackApiError as error:
            log.info("job %s: could not add the buttons under take %d (%s)", event.job_id, shown.take,
                     slack_error(error))

    async def _thread(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        cursor = None
        for _ in range(20):  # up to 4,000 replies
            page = await self.client.conversations_replies(channel=channel, ts=thread_ts, limit=200, cursor=cursor)
            messages.extend(page.get("messages") or [])
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                break
        return messages

    # ---- plumbing ----------------------------------------------------------------------
    async def _edit(self, reply_to: ReplyTo, text: str) -> None:
        await self.client.chat_update(channel=reply_to.channel_id, ts=reply_to.message_id,
                                      text=with_requester(reply_to, text))


def button_blocks(number: int, shown: Shown, actions: list[Action]) -> list[dict[str, Any]]:
    """Block Kit: "Take n", then one button per action, each naming the take in its ``value``."""
    return [
        {"type": "context", "elements": [{"type": "mrkdwn", "text": f"Take {number}"}]},
        {"type": "actions", "elements": [
            {"type": "button", "action_id": BUTTON_ACTION.format(action.name), "value": shown.encode(),
             "text": {"type": "plain_text", "text": f"{action.emoji} {action.label}", "emoji": True}}
            for action in actions]},
    ]


def shown_by_buttons(message: dict[str, Any]) -> Shown | None:
    """The take a message's buttons act on (None for a message without ours)."""
    for block in message.get("blocks") or []:
        if block.get("type") != "actions":
            continue
        for element in block.get("elements") or []:
            if str(element.get("action_id", "")).startswith(BUTTON_ACTION.format("")):
                return Shown.decode(str(element.get("value") or ""))
    return None
