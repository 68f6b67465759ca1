"""The Discord bot: ``/tune``, mentions with text, and 🔁 / ➕ / 🔂 (reactions and buttons) on a result.

``textunes discord`` runs it (``run``). The bot turns Discord events into requests for
``bot.service.TuneService`` and posts results through ``DiscordOutput``, which the shared
``EventPump`` drives from the Discord event stream on Redis.

Every request first gets a status message (the deferred interaction's response, or a reply
to the mention), then a thread on it in guild text channels, and only then is the job
queued, so the job already knows where its results go.

With ``TEXTUNES_METRICS_PORT`` set, ``/metrics``, ``/healthz`` (the event pump's loop turns)
and ``/readyz`` (Redis answers, the gateway is connected) are served on it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import discord
from discord import app_commands

from bot import replies
from bot.discord_commands import KoreanOptions, TuneOptions, make_tune_command, request_from_options
from bot.discord_output import DEFAULT_UPLOAD_LIMIT, MAX_THREAD_NAME, DiscordOutput, DiscordTarget, fit
from bot.followups import Action, by_emoji, parse_button
from bot.links import Shown
from bot.runner import run_until_signalled, serving_health
from bot.service import EventPump, Refused, Submission, TuneService, preview_caption
from pipeline.melody import BadMelody, check_size
from pipeline.models import TuneRequest
from pipeline.validation import InvalidRequest
from worker import metrics
from worker.queue import JobQueue, ReplyTo
from worker.settings import Settings

PLATFORM = "discord"
MAX_TEXT_ATTACHMENT_BYTES = 256 * 1024
THREAD_CHANNELS = (discord.ChannelType.text, discord.ChannelType.news)

log = logging.getLogger("textunes.discord")


def consumer_name() -> str:
    """Stable per host, so a restarted bot re-reads the events it had not acknowledged."""
    return f"discord-{socket.gethostname()}"


def intents() -> discord.Intents:
    """No privileged intents: mentions carry their content without Message Content."""
    wanted = discord.Intents.none()
    wanted.guilds = True
    wanted.guild_messages = True
    wanted.dm_messages = True
    wanted.guild_reactions = True
    wanted.dm_reactions = True
    return wanted


class TexTunesBot(discord.Client):
    def __init__(self, settings: Settings, queue: JobQueue, *, guild_id: str = "", sync_commands: bool = True,
                 clock: Callable[[], float] = time.time, consumer: str | None = None,
                 pump_block_ms: int = 1000, health: metrics.Health | None = None, **options: Any) -> None:
        discord.VoiceClient.warn_nacl = False  # this bot never joins voice: no PyNaCl/davey warnings
        discord.VoiceClient.warn_dave = False
        super().__init__(intents=intents(), **options)
        self.settings = settings
        self.queue = queue
        self.guild_id = guild_id
        self.sync_commands = sync_commands
        self.service = TuneService(queue, settings)
        self.output = DiscordOutput(self, clock=clock)
        self.pump = EventPump(queue, PLATFORM, consumer or consumer_name(), self.output,
                              progress_interval_s=settings.progress_interval_s, block_ms=pump_block_ms,
                              lease_s=settings.post_lease_s, health=health)
        self.tree = app_commands.CommandTree(self)
        self.tree.add_command(make_tune_command(self.handle_tune, settings.max_duration))
        self.tree.on_error = self.on_app_command_error  # type: ignore[method-assign]

    # ---- lifecycle ---------------------------------------------------------------------
    async def setup_hook(self) -> None:
        await self.tree.set_translator(KoreanOptions())
        if self.sync_commands:
            if self.guild_id:
                guild = discord.Object(id=int(self.guild_id))
                self.tree.copy_global_to(guild=guild)
                synced = await self.tree.sync(guild=guild)
                log.info("synced %d command(s) to guild %s", len(synced), self.guild_id)
            else:
                synced = await self.tree.sync()
                log.info("synced %d global command(s) (Discord can take up to an hour to show them)", len(synced))
        self.pump.start()

    async def close(self) -> None:
        """Stop reading events, letting the uploads in hand finish (up to the shutdown grace
        period) while the connection is still open; then close it."""
        await self.pump.stop(self.settings.shutdown_grace_s)
        await super().close()

    async def on_ready(self) -> None:
        log.info("connected to Discord as %s (%s); reading events as %s", self.user, self.user.id if self.user else "?",
                 self.pump.consumer)

    def connected(self) -> bool:
        """Readiness: logged in, and the gateway connection is open."""
        return self.is_ready() and not self.is_closed() and self.ws is not None and self.ws.open

    # ---- /tune -------------------------------------------------------------------------
    async def on_app_command_error(self, interaction: discord.Interaction,
                                   error: app_commands.AppCommandError) -> None:
        """Any value Discord sends gets an answer: an option the command no longer accepts as
        registered (commands not re-synced after a setting changed) or a bug in a handler."""
        if isinstance(error, app_commands.TransformerError):
            log.info("/tune by user %s: option value %r not accepted", interaction.user.id, error.value)
            metrics.count_request(PLATFORM, "tags", "invalid")
            limits = self.settings.limits
            text = (f"I can't use {error.value!r} for that option. Allowed: a duration from {limits.min_duration:g} to "
                    f"{limits.max_duration:g} seconds, 1 to {limits.max_takes} takes, a seed from 0 to {2**32 - 1}.")
        else:
            log.error("/tune by user %s failed", interaction.user.id, exc_info=error)
            text = "⚠️ Something went wrong on my side while taking your request. Please try again."
        try:
            if interaction.response.is_done():
                await interaction.followup.send(fit(text), ephemeral=True)
            else:
                await interaction.response.send_message(fit(text), ephemeral=True)
        except discord.HTTPException as failure:
            log.info("could not answer interaction %s (%s)", interaction.id, failure.status)

    async def handle_tune(self, interaction: discord.Interaction, options: TuneOptions) -> None:
        user_id = str(interaction.user.id)
        melody_file = options.melody
        try:
            if not options.says_what_to_play():
                raise InvalidRequest(replies.NOTHING_TO_PLAY)
            request = self.service.check(request_from_options(options, self.settings.limits))
            if melody_file is not None:
                await self.service.melody_ready()
                check_size(melody_file.size, filename=melody_file.filename)  # before downloading it
            await self.service.precheck(PLATFORM, user_id)
        except (InvalidRequest, Refused, BadMelody) as error:
            self.service.refused(PLATFORM, "tags", user_id, "/tune", error)
            await interaction.response.send_message(fit(str(error)), ephemeral=True)
            return
        token_at = self.output.clock()
        await interaction.response.defer(thinking=True)  # answered: the 3-second deadline is met
        melody = None
        if melody_file is not None:
            try:
                melody = await self.service.prepare_melody(await melody_file.read(), melody_file.filename)
            except (BadMelody, discord.HTTPException) as error:
                if isinstance(error, discord.HTTPException):
                    error = BadMelody(replies.melody_download_failed(melody_file.filename))
                self.service.refused(PLATFORM, "tags", user_id, "/tune", error)
                await self._answer_privately_instead(interaction, str(error))
                return
        caption = preview_caption(request)
        status = await interaction.edit_original_response(content=fit(f"🎼 {replies.shown(caption)}"))
        thread_id = await self._open_thread(status, interaction.channel, caption)
        target = DiscordTarget(
            application_id=str(interaction.application_id), interaction_token=interaction.token,
            token_at=token_at, upload_limit=interaction.filesize_limit or DEFAULT_UPLOAD_LIMIT,
            guild_id=str(interaction.guild_id or ""),
        )
        reply_to = ReplyTo(platform=PLATFORM, channel_id=str(interaction.channel_id), thread_id=thread_id,
                           message_id=str(status.id), user_id=user_id, extra=target.to_extra())
        await self._submit(request, reply_to, where=f"/tune in {interaction.channel_id}", melody=melody)

    async def _answer_privately_instead(self, interaction: discord.Interaction, text: str) -> None:
        """After a public deferral: remove the "thinking…" message, answer only the user."""
        try:
            await interaction.delete_original_response()
        except discord.HTTPException as failure:
            log.info("could not remove the deferred answer to interaction %s (%s)", interaction.id, failure.status)
        await interaction.followup.send(fit(text), ephemeral=True)

    # ---- mentions ----------------------------------------------------------------------
    async def on_message(self, message: discord.Message) -> None:
        if self.user is None or message.author.bot or not self._addressed(message):
            return
        try:
            text = await self._mention_text(message)
        except InvalidRequest as error:
            self.service.refused(PLATFORM, "text", str(message.author.id), "mention", error)
            await message.reply(fit(str(error)), mention_author=False)
            return
        if not text:
            await message.reply(replies.HELP, mention_author=False)
            return
        try:
            request = self.service.check(TuneRequest(text=text, duration=min(10.0, self.settings.max_duration)))
            await self.service.precheck(PLATFORM, str(message.author.id))
        except (InvalidRequest, Refused) as error:
            self.service.refused(PLATFORM, "text", str(message.author.id), "mention", error)
            await message.reply(fit(str(error)), mention_author=False)
            return
        status = await message.reply(replies.analysing_line(), mention_author=False)
        thread_id = await self._open_thread(status, message.channel, _thread_title(text))
        reply_to = ReplyTo(platform=PLATFORM, channel_id=str(message.channel.id), thread_id=thread_id,
                           message_id=str(status.id), user_id=str(message.author.id),
                           extra=DiscordTarget(upload_limit=_upload_limit(message.guild),
                                               guild_id=str(message.guild.id if message.guild else "")).to_extra())
        await self._submit(request, reply_to, where=f"mention in {message.channel.id}")

    def _addressed(self, message: discord.Message) -> bool:
        """A message for the bot: one that @mentions it in its text (a reply that only pings
        the bot's own message doesn't count), or any message in a DM with it."""
        assert self.user is not None
        if message.type not in (discord.MessageType.default, discord.MessageType.reply):
            return False
        if isinstance(message.channel, discord.DMChannel):
            return True
        return re.search(rf"<@!?{self.user.id}>", message.content) is not None

    async def _mention_text(self, message: discord.Message) -> str:
        """The text to analyse: the message without the mention, plus any .txt attachment;
        in a reply, the replied-to message's text comes first."""
        assert self.user is not None
        parts = [re.sub(rf"<@!?{self.user.id}>", " ", message.content).strip()]
        for attachment in message.attachments:
            if _is_text_file(attachment):
                if attachment.size > MAX_TEXT_ATTACHMENT_BYTES:
                    raise InvalidRequest(f"{attachment.filename} is {attachment.size // 1024} KiB; I read text "
                                         f"files up to {MAX_TEXT_ATTACHMENT_BYTES // 1024} KiB.")
                data = await attachment.read()
                parts.append(data.decode("utf-8-sig", errors="replace").strip())
        if message.reference is not None and message.reference.message_id is not None:
            try:
                parts.insert(0, await self._referenced_text(message))
            except InvalidRequest:
                if not any(parts):  # nothing else to go on: say why
                    raise
        return "\n\n".join(p for p in parts if p)

    async def _referenced_text(self, message: discord.Message) -> str:
        reference = message.reference
        assert reference is not None and reference.message_id is not None
        quoted = reference.resolved if isinstance(reference.resolved, discord.Message) else None
        if quoted is None or not quoted.content.strip():
            # not in the event, or its text withheld from the gateway: REST has it when the
            # application has the Message Content intent enabled in the developer portal
            try:
                quoted = await message.channel.fetch_message(reference.message_id)
            except discord.HTTPException:
                raise InvalidRequest("I couldn't read the message you replied to. Paste its text, "
                                     "or attach it as a .txt file, and mention me again.") from None
        if self.user is not None and quoted.author.id == self.user.id:
            return ""
        if not quoted.content.strip():
            raise InvalidRequest("Discord doesn't show me the text of the message you replied to. "
                                 "Paste it, or attach it as a .txt file, and mention me again.")
        return quoted.content.strip()

    # ---- 🔁, ➕, 🔂: reactions and buttons ----------------------------------------------------
    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        action = by_emoji(str(payload.emoji))
        if self.user is None or payload.user_id == self.user.id or action is None:
            return
        if payload.member is not None and payload.member.bot:
            return
        shown = await self.service.shown(PLATFORM, str(payload.message_id))
        channel = self.get_partial_messageable(payload.channel_id)
        if shown is None:
            if payload.message_author_id == self.user.id:
                await channel.send(replies.not_a_result())
            return
        user_id = str(payload.user_id)

        async def refuse(text: str) -> None:  # no private replies to a reaction: in the channel, to the user
            await channel.send(fit(f"<@{user_id}> {text}"), allowed_mentions=discord.AllowedMentions(users=True))

        await self._follow_up(action, shown, user_id, str(payload.channel_id), refuse)

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        """A click on a take's button (``/tune`` goes to the command tree)."""
        if interaction.type is not discord.InteractionType.component:
            return
        clicked = parse_button(str((interaction.data or {}).get("custom_id", "")))
        if clicked is None:
            return
        action, shown = clicked
        user_id = str(interaction.user.id)
        await interaction.response.defer()  # answered at once (no message): what follows may take a moment
        if not await self.service.first_click(PLATFORM, user_id, action, shown):
            return  # a double click: the first one is being handled

        async def refuse(text: str) -> None:
            await interaction.followup.send(fit(text), ephemeral=True)

        await self._follow_up(action, shown, user_id, str(interaction.channel_id), refuse, interaction=interaction)

    async def _follow_up(self, action: Action, shown: Shown, user_id: str, channel_id: str,
                         refuse: Callable[[str], Awaitable[None]], *,
                         interaction: discord.Interaction | None = None) -> None:
        """Queue a new take, an extension or a loop of what a message shows, with its own status
        message in the same thread; or tell the user (``refuse``) why not."""
        try:
            plan = await self.service.follow_up(PLATFORM, user_id, action, shown)
        except Refused as error:
            self.service.refused(PLATFORM, action.kind, user_id, f"{action.emoji} on job {shown.job_id}", error)
            await refuse(str(error))
            return
        old = plan.job.reply_to
        where = old.thread_id or old.channel_id or channel_id
        line = replies.follow_up_line(action.name, preview_caption(plan.request), source=plan.source,
                                      seconds=plan.seconds)
        status = await self.get_partial_messageable(int(where)).send(
            fit(f"<@{user_id}> {line}"), allowed_mentions=discord.AllowedMentions.none())
        old_target = DiscordTarget.from_reply_to(old)
        limit = interaction.filesize_limit if interaction is not None else old_target.upload_limit  # a click says it
        reply_to = ReplyTo(platform=PLATFORM, channel_id=where, thread_id=old.thread_id, message_id=str(status.id),
                           user_id=user_id, extra=DiscordTarget(upload_limit=limit or DEFAULT_UPLOAD_LIMIT,
                                                                guild_id=old_target.guild_id).to_extra())
        try:
            submission = await self.service.submit_follow_up(PLATFORM, user_id, plan, reply_to)
        except (InvalidRequest, Refused) as error:
            await status.edit(content=fit(f"<@{user_id}> {error}"))
            return
        await self._queued(submission, reply_to, where=f"{action.emoji} in {where}")

    # ---- shared steps ------------------------------------------------------------------
    async def _submit(self, request: TuneRequest, reply_to: ReplyTo, *, where: str, melody: bytes | None = None) -> None:
        await self.service.submit_and_show(self.output, request, reply_to, status_key=reply_to.message_id, where=where,
                                           melody=melody)

    async def _queued(self, submission: Submission, reply_to: ReplyTo, *, where: str) -> None:
        await self.service.show_queued(self.output, submission, status_key=reply_to.message_id, where=where)

    async def _open_thread(self, status: discord.Message, channel: Any, title: str) -> str:
        """A thread on the status message in guild text channels; "" where there can't be one."""
        if status.guild is None or getattr(channel, "type", None) not in THREAD_CHANNELS:
            return ""
        try:
            thread = await status.create_thread(name=fit(f"🎵 {title}", MAX_THREAD_NAME), auto_archive_duration=1440)
        except discord.HTTPException as error:
            log.info("no thread in channel %s (%s); replying in place", getattr(channel, "id", "?"), error.status)
            return ""
        return str(thread.id)


def _thread_title(text: str) -> str:
    return replies.clip(" ".join(text.split()[:8]), 60)


def _upload_limit(guild: discord.Guild | None) -> int:
    return guild.filesize_limit if guild is not None else DEFAULT_UPLOAD_LIMIT


def _is_text_file(attachment: discord.Attachment) -> bool:
    return attachment.filename.lower().endswith(".txt") or (attachment.content_type or "").startswith("text/plain")


# ---- command line ----------------------------------------------------------------------
def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--guild-id", default=None,
                        help="sync /tune to this guild only, instantly (env DISCORD_GUILD_ID); "
                             "without it the command is registered globally")
    parser.add_argument("--no-sync", action="store_true",
                        help="don't register the /tune command at start-up (it is already registered)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    if not settings.discord_token:
        print("textunes discord: DISCORD_TOKEN is not set (the bot token from the Discord developer portal).",
              file=sys.stderr)
        return 2
    guild_id = getattr(args, "guild_id", None) or settings.discord_guild_id
    if guild_id and not str(guild_id).isdigit():
        print(f"textunes discord: the guild id must be a number (got {guild_id!r}).", file=sys.stderr)
        return 2
    queue = JobQueue.from_settings(settings)
    try:
        return asyncio.run(_serve(settings, queue, str(guild_id or ""), not getattr(args, "no_sync", False)))
    finally:
        queue.close()


async def _serve(settings: Settings, queue: JobQueue, guild_id: str, sync: bool) -> int:
    """Run until SIGINT/SIGTERM: close the gateway connection after the uploads in hand, return 0."""
    return await run_until_signalled(lambda stop: _run_bot(settings, queue, guild_id, sync, stop),
                                     grace_s=settings.shutdown_grace_s)


async def _run_bot(settings: Settings, queue: JobQueue, guild_id: str, sync: bool, stop: asyncio.Event) -> int:
    health = metrics.Health()
    bot = TexTunesBot(settings, queue, guild_id=guild_id, sync_commands=sync, health=health)
    with serving_health(settings, queue, health, "discord connected", bot.connected, log):
        return await _run_connected(bot, settings, stop)


async def _run_connected(bot: TexTunesBot, settings: Settings, stop: asyncio.Event) -> int:
    async with bot:
        running = asyncio.create_task(bot.start(settings.discord_token))
        stopping = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if running in done:
            try:
                running.result()
            except discord.LoginFailure:
                print("textunes discord: Discord rejected DISCORD_TOKEN; copy the bot token again from the "
                      "developer portal (Bot → Reset Token).", file=sys.stderr)
                return 2
            except discord.PrivilegedIntentsRequired:
                print("textunes discord: Discord refused the intents this bot asked for.", file=sys.stderr)
                return 2
            return 1
        log.info("stopping: closing the Discord connection")
        await bot.close()
        running.cancel()
    return 0
