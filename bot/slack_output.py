"""Where Slack results go: the ``ChatOutput`` the event pump calls for the Slack platform.

Every job has a parent (status) message, ``ReplyTo.message_id`` (its ``ts``), which is
edited with ``chat.update``; texts and takes go into the job's thread, ``ReplyTo.thread_id``
(a ``ts`` too), with ``chat.postMessage`` and ``files_upload_v2``.

Message ids handed to ``TuneService.link`` (for 🔁) are ``<channel>:<ts>`` for messages whose
``ts`` we know, and ``file:<file id>`` for uploaded takes: Slack's upload API returns the file,
not the message that shares it, so a 🔁 on a take is traced back through the file id.
"""

from __future__ import annotations

import logging

from slack_sdk.web.async_client import AsyncWebClient

from bot.status import StatusMessages
from worker.queue import Event, ReplyTo, Take

log = logging.getLogger("textunes.slack")

REGENERATE_REACTION = "repeat"  # :repeat: is 🔁


def message_key(channel: str, ts: str) -> str:
    return f"{channel}:{ts}"


def file_key(file_id: str) -> str:
    return f"file:{file_id}"


def with_requester(reply_to: ReplyTo, text: str) -> str:
    """Status texts name who asked: in Slack nobody else sees the slash command itself."""
    return f"<@{reply_to.user_id}> {text}" if reply_to.user_id else text


class SlackOutput(StatusMessages):
    """Posts a job's status, texts and takes for the event pump (see ``bot.service.ChatOutput``)."""

    def __init__(self, client: AsyncWebClient) -> None:
        super().__init__()
        self.client = client

    # ---- ChatOutput --------------------------------------------------------------------
    async def post_text(self, event: Event, text: str) -> str | None:
        reply_to = event.reply_to
        response = await self.client.chat_postMessage(
            channel=reply_to.channel_id, thread_ts=reply_to.thread_id or None, text=text)
        return message_key(reply_to.channel_id, str(response["ts"]))

    async def post_take(self, event: Event, take: Take, audio: bytes, filename: str, text: str) -> str | None:
        reply_to = event.reply_to
        response = await self.client.files_upload_v2(
            channel=reply_to.channel_id, thread_ts=reply_to.thread_id or None,
            content=audio, filename=filename, title=filename, initial_comment=text,
        )
        files = response.get("files") or []
        log.info("job %s: take %d uploaded to %s (%d bytes)", event.job_id, take.index, reply_to.channel_id, len(audio))
        return file_key(str(files[0]["id"])) if files else None

    # ---- used by the app's handlers ----------------------------------------------------
    # ---- plumbing ----------------------------------------------------------------------
    async def _edit(self, reply_to: ReplyTo, text: str) -> None:
        await self.client.chat_update(channel=reply_to.channel_id, ts=reply_to.message_id,
                                      text=with_requester(reply_to, text))
