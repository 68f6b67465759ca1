"""Where Slack results go: the ``ChatOutput`` the event pump calls for the Slack platform.

Every job has a parent (status) message, ``ReplyTo.message_id`` (its ``ts``), which is
edited with ``chat.update``; texts and takes go into the job's thread, ``ReplyTo.thread_id``
(a ``ts`` too), with ``chat.postMessage`` and ``files_upload_v2``.

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
from bot.status import StatusMessages
from worker.queue import Event, ReplyTo, Take

log = logging.getLogger("textunes.slack")

REGENERATE_REACTION = "repeat"  # :repeat: is 🔁


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

    async def post_take(self, event: Event, take: Take, audio: bytes, filename: str, text: str) -> str | None:
        reply_to = event.reply_to
        response = await self.client.files_upload_v2(
            channel=reply_to.channel_id, thread_ts=reply_to.thread_id or None,
            content=audio, filename=filename, title=filename, initial_comment=mrkdwn(text),
        )
        files = response.get("files") or []
        log.info("job %s: take %d uploaded to %s (%d bytes)", event.job_id, take.index, reply_to.channel_id, len(audio))
        return file_key(str(files[0]["id"])) if files else None

    async def find_take(self, event: Event, take: Take, filename: str) -> str | None:
        """A file named ``filename`` already shared with the take's line in the job's thread
        (``conversations.replies``): what an earlier attempt uploaded although its answer never came."""
        reply_to = event.reply_to
        if not reply_to.thread_id:
            return None
        for message in await self._thread(reply_to.channel_id, reply_to.thread_id):
            if not replies.shows_take(str(message.get("text") or ""), take):
                continue
            for shared in message.get("files") or []:
                if shared.get("name") == filename and shared.get("id"):
                    return file_key(str(shared["id"]))
        return None

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
