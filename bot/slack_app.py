"""The Slack app: ``/tune``, @mentions with text (and a melody clip), and 🔁 / ➕ / 🔂 on a result
(reactions, and the buttons under each take).

``textunes slack`` runs it (``run``), in Socket Mode (an app-level token, no public URL) or
HTTP mode (Slack posts to ``/slack/events``; ``bot.slack_http`` verifies each request's
signature before anything is parsed). ``SLACK_API_URL`` points the Web API client elsewhere
(a proxy, GovSlack's ``https://slack-gov.com/api/``, a test double).
Handlers turn Slack payloads into requests for ``bot.service.TuneService``; results come
back through ``SlackOutput``, which the shared ``EventPump`` drives from Redis.

Every request first gets a parent (status) message, and only then is the job queued, so the
job already knows where its results go: the parent's thread.

Buttons arrive as ``block_actions`` (interactivity: over the Socket Mode connection, or posted to
``/slack/events`` in HTTP mode, verified like every other request). With
``TEXTUNES_METRICS_PORT`` set, ``/metrics``, ``/healthz`` and ``/readyz`` are served on it.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import logging
import re
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.async_app import AsyncApp
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler

from bot import replies
from bot.followups import ACTIONS, Action, by_slack_reaction
from bot.links import Shown
from bot.runner import run_until_signalled, serving_health
from bot.seen import SeenEvents
from bot.service import EventPump, Refused, Submission, TuneService, preview_caption
from bot.slack_http import events_app
from bot.slack_output import (BUTTON_ACTION, SlackOutput, file_key, message_key, mrkdwn, shown_by_buttons,
                              slack_error)
from pipeline.inline import parse_inline
from pipeline.melody import MAX_UPLOAD_BYTES, BadMelody, check_size
from pipeline.models import TuneRequest
from pipeline.validation import InvalidRequest
from worker import metrics
from worker.queue import JobQueue, ReplyTo
from worker.settings import Settings

PLATFORM = "slack"
EVENTS_PATH = "/slack/events"
HELP_WORDS = {"", "help", "-h", "--help", "?", "도움말"}
CANT_POST = {"not_in_channel", "channel_not_found", "is_archived"}
AUDIO_EXTENSIONS = ("wav", "flac", "ogg", "oga", "mp3")
BUTTONS = re.compile("^" + BUTTON_ACTION.format(f"({'|'.join(ACTIONS)})") + "$")

log = logging.getLogger("textunes.slack")


def consumer_name() -> str:
    """Stable per host, so a restarted app re-reads the events it had not acknowledged."""
    return f"slack-{socket.gethostname()}"


# An emoji as Slack sends it, :fire: or :wave::skin-tone-3:, not inside a word or a time (10:30:00).
_EMOJI = re.compile(r"(?<![\w:]):(?!\d+:)[a-z0-9_+'-]+:(?::skin-tone-\d:)?(?![\w:])")


def mention_text(text: str, bot_user_id: str) -> str:
    """What a mention asks to analyse: Slack's markup turned back into plain text (the bot's
    own mention removed, links shown as their label, emoji codes dropped as the emoji they
    are, ``&amp;`` and friends unescaped)."""
    text = _EMOJI.sub(" ", text)
    if bot_user_id:
        text = re.sub(rf"<@{re.escape(bot_user_id)}(?:\|[^>]*)?>", " ", text)

    def plain(match: re.Match[str]) -> str:
        target, label = match.group(1), match.group(2)
        if label:
            return label
        return "" if target[:1] in ("@", "#", "!") else target

    text = re.sub(r"<([^<>|]+)(?:\|([^<>]*))?>", plain, text)
    return html.unescape(text).strip()


class SlackTunes:
    """The bolt ``AsyncApp`` with TexTuneS's handlers, plus the event pump that posts results."""

    def __init__(self, settings: Settings, queue: JobQueue, *, consumer: str | None = None,
                 pump_block_ms: int = 1000, health: metrics.Health | None = None) -> None:
        self.settings = settings
        self.queue = queue
        # Bolt makes the Web API client from the token (given a client of ours as well, it
        # warns that the SLACK_BOT_TOKEN it finds in the environment goes unused).
        self.app = AsyncApp(token=settings.slack_bot_token, signing_secret=settings.slack_signing_secret,
                            name="textunes.slack.bolt")
        self.client = self.app.client
        self.client.base_url = settings.slack_api_url.rstrip("/") + "/"
        self.client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=2))  # 429: wait, retry
        self.service = TuneService(queue, settings)
        self.output = SlackOutput(self.client)
        self.pump = EventPump(queue, PLATFORM, consumer or consumer_name(), self.output,
                              progress_interval_s=settings.progress_interval_s, block_ms=pump_block_ms,
                              lease_s=settings.post_lease_s, health=health)
        self.seen = SeenEvents(queue.redis, prefix=queue.prefix)
        self.connected: Callable[[], bool] = lambda: False  # readiness: set once Slack is reachable
        self.app.middleware(self.once)
        self.app.command("/tune")(self.handle_tune)
        self.app.event("app_mention")(self.handle_mention)
        self.app.event("reaction_added")(self.handle_reaction)
        self.app.action(BUTTONS)(self.handle_button)

    # ---- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        self.pump.start()

    async def stop(self) -> None:
        """Stop reading events; the uploads in hand get the shutdown grace period to finish."""
        await self.pump.stop(self.settings.shutdown_grace_s)

    def web_app(self) -> web.Application:
        """The HTTP-mode endpoint: Slack's requests go to ``/slack/events``."""
        return events_app(self.app, self.settings.slack_signing_secret, EVENTS_PATH)

    async def once(self, body: dict[str, Any], resp: BoltResponse,
                   next: Callable[[], Awaitable[None]]) -> BoltResponse:  # noqa: A002 (bolt's name)
        """Middleware: Slack redelivers an event it thinks was not acknowledged in time; act
        on each ``event_id`` once, and answer the repeats with a plain 200."""
        event_id = body.get("event_id")
        if event_id and not await asyncio.to_thread(self.seen.first, PLATFORM, str(event_id)):
            log.info("event %s delivered again; ignored", event_id)
            return BoltResponse(status=200, body="")
        await next()
        return resp

    # ---- /tune -------------------------------------------------------------------------
    async def handle_tune(self, ack: Any, command: dict[str, Any], respond: Any) -> None:
        text = (command.get("text") or "").strip()
        user_id, channel_id = command.get("user_id", ""), command.get("channel_id", "")
        if text.lower() in HELP_WORDS:
            await ack(text=mrkdwn(replies.SLACK_HELP))
            return
        try:
            limits = self.settings.limits
            request = self.service.check(
                parse_inline(text, default_duration=min(10.0, limits.max_duration), limits=limits))
        except InvalidRequest as error:
            self.service.refused(PLATFORM, "tags", user_id, "/tune", error)
            await ack(text=mrkdwn(f"⚠️ {error}"))  # shown to the user only
            return
        await ack()  # within Slack's 3 seconds; everything else follows
        try:
            await self._tune(request, command, respond)
        except Exception:
            log.exception("/tune by user %s in %s failed", user_id, channel_id)
            await respond(text=mrkdwn(replies.SLACK_TRY_AGAIN), response_type="ephemeral")

    async def _tune(self, request: TuneRequest, command: dict[str, Any], respond: Any) -> None:
        user_id, channel_id = command.get("user_id", ""), command.get("channel_id", "")
        try:
            await self.service.precheck(PLATFORM, user_id)
        except Refused as error:
            self.service.refused(PLATFORM, "tags", user_id, "/tune", error)
            await respond(text=mrkdwn(str(error)), response_type="ephemeral")
            return
        caption = preview_caption(request)
        try:
            posted = await self.client.chat_postMessage(
                channel=channel_id, text=mrkdwn(f"🎼 {replies.shown(caption)}", mention=user_id))
        except SlackApiError as error:
            if slack_error(error) not in CANT_POST:
                raise
            log.info("/tune by user %s: can't post in %s (%s)", user_id, channel_id, slack_error(error))
            await respond(text=mrkdwn(replies.SLACK_NOT_IN_CHANNEL), response_type="ephemeral")
            return
        ts = str(posted["ts"])
        reply_to = ReplyTo(platform=PLATFORM, channel_id=str(posted.get("channel") or channel_id), thread_id=ts,
                           message_id=ts, user_id=user_id, extra={"team_id": command.get("team_id", "")})
        await self._submit(request, reply_to, where=f"/tune in {channel_id}")

    # ---- mentions ----------------------------------------------------------------------
    async def handle_mention(self, event: dict[str, Any], body: dict[str, Any], context: Any) -> None:
        if event.get("bot_id"):
            return
        bot_user_id = str(getattr(context, "bot_user_id", None) or "")
        user_id, channel_id, ts = event.get("user", ""), event["channel"], event["ts"]
        in_thread = bool(event.get("thread_ts")) and event.get("thread_ts") != ts
        thread = event.get("thread_ts") or ts
        clip = _audio_file(event.get("files"))
        text = mention_text(event.get("text", ""), bot_user_id)
        if not text and in_thread:
            text = await self._thread_parent_text(channel_id, thread, bot_user_id)
        if not text:
            help_text = replies.MELODY_NEEDS_WORDS if clip else replies.SLACK_HELP
            await self.client.chat_postMessage(channel=channel_id, thread_ts=thread, text=mrkdwn(help_text))
            return
        private_thread = thread if in_thread else None
        try:
            request = self.service.check(TuneRequest(text=text, duration=min(10.0, self.settings.max_duration)))
            if clip is not None:
                await self.service.melody_ready()
                check_size(int(clip.get("size", -1)), filename=_name(clip))  # before downloading it
            await self.service.precheck(PLATFORM, user_id)
            melody = await self._melody(clip) if clip is not None else None
        except (InvalidRequest, Refused, BadMelody) as error:
            self.service.refused(PLATFORM, "text", user_id, "mention", error)
            await self._ephemeral(channel_id, user_id, str(error), private_thread)
            return
        status = await self.client.chat_postMessage(
            channel=channel_id, thread_ts=thread, text=mrkdwn(replies.analysing_line(), mention=user_id))
        reply_to = ReplyTo(platform=PLATFORM, channel_id=channel_id, thread_id=thread, message_id=str(status["ts"]),
                           user_id=user_id, extra={"team_id": body.get("team_id", "")})
        await self._submit(request, reply_to, where=f"mention in {channel_id}", melody=melody)

    async def _melody(self, shared: dict[str, Any]) -> bytes:
        """The clip from an audio file shared with a mention. Raises BadMelody."""
        name = _name(shared)
        try:
            data = await self._download(shared, limit=MAX_UPLOAD_BYTES)
        except (aiohttp.ClientError, asyncio.TimeoutError) as error:
            log.info("could not download %s from Slack (%s)", name, type(error).__name__)
            raise BadMelody(replies.melody_download_failed(name)) from None
        return await self.service.prepare_melody(data, name)

    async def _download(self, shared: dict[str, Any], *, limit: int) -> bytes:
        """A file shared in a message, read with the bot token (``url_private``; the app needs
        ``files:read``): at most ``limit`` + 1 bytes, enough to tell it is too large."""
        url = str(shared.get("url_private_download") or shared.get("url_private") or "")
        headers = {"Authorization": f"Bearer {self.settings.slack_bot_token}"}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            async with session.get(url, headers=headers, raise_for_status=True) as got:
                if got.content_type == "text/html":  # Slack's sign-in page: the token was not accepted
                    raise aiohttp.ContentTypeError(got.request_info, got.history, message="a sign-in page")
                data = bytearray()
                async for chunk in got.content.iter_chunked(256 * 1024):
                    data += chunk
                    if len(data) > limit:
                        break
                return bytes(data)

    async def _thread_parent_text(self, channel_id: str, thread_ts: str, bot_user_id: str) -> str:
        """A bare mention in a thread reads the thread's first post (unless it is the bot's)."""
        try:
            found = await self.client.conversations_replies(channel=channel_id, ts=thread_ts, limit=1)
        except SlackApiError as error:
            log.info("could not read thread %s in %s (%s)", thread_ts, channel_id, slack_error(error))
            return ""
        messages = found.get("messages") or []
        parent = next((m for m in messages if m.get("ts") == thread_ts), None)
        if parent is None or parent.get("user") == bot_user_id:  # (another bot's post, e.g. a feed, is fine)
            return ""
        return mention_text(parent.get("text", ""), bot_user_id)

    # ---- 🔁, ➕, 🔂: reactions and buttons ----------------------------------------------------
    async def handle_reaction(self, event: dict[str, Any], body: dict[str, Any], context: Any) -> None:
        item = event.get("item") or {}
        action = by_slack_reaction(str(event.get("reaction") or ""))
        if action is None or item.get("type") != "message":
            return
        user_id, channel_id, ts = event.get("user", ""), item.get("channel", ""), item.get("ts", "")
        bot_user_id = str(getattr(context, "bot_user_id", None) or "")
        shown, thread = await self._shown_by(channel_id, ts)
        if shown is None:
            if bot_user_id and event.get("item_user") == bot_user_id:
                await self._ephemeral(channel_id, user_id, replies.not_a_result(), None)
            return
        await self._follow_up(action, shown, user_id, channel_id, thread)

    async def handle_button(self, ack: Any, body: dict[str, Any], action: dict[str, Any]) -> None:
        """A click on a take's button: acknowledged at once (Slack's 3 seconds), then handled."""
        await ack()
        chosen = ACTIONS.get(str(action.get("action_id", "")).removeprefix(BUTTON_ACTION.format("")))
        shown = Shown.decode(str(action.get("value") or ""))
        user_id = str((body.get("user") or {}).get("id") or "")
        container = body.get("container") or {}
        channel_id = str((body.get("channel") or {}).get("id") or container.get("channel_id") or "")
        thread = container.get("thread_ts") or container.get("message_ts")
        if chosen is None or shown is None or not channel_id:
            log.info("a button payload without a take (%s); ignored", action.get("action_id"))
            return
        if await self.service.first_click(PLATFORM, user_id, chosen, shown):
            await self._follow_up(chosen, shown, user_id, channel_id, thread)

    async def _follow_up(self, action: Action, shown: Shown, user_id: str, channel_id: str,
                         thread: str | None) -> None:
        """Queue a new take, an extension or a loop of what a message shows, with its own status
        message in the same thread; or tell the user privately (in ``thread``) why not."""
        try:
            plan = await self.service.follow_up(PLATFORM, user_id, action, shown)
        except Refused as error:
            self.service.refused(PLATFORM, action.kind, user_id, f"{action.emoji} on job {shown.job_id}", error)
            await self._ephemeral(channel_id, user_id, str(error), thread)
            return
        old = plan.job.reply_to
        where = old.channel_id or channel_id
        thread = old.thread_id or thread
        line = replies.follow_up_line(action.name, preview_caption(plan.request), source=plan.source,
                                      seconds=plan.seconds)
        status = await self.client.chat_postMessage(channel=where, thread_ts=thread, text=mrkdwn(line, mention=user_id))
        reply_to = ReplyTo(platform=PLATFORM, channel_id=where, thread_id=thread, message_id=str(status["ts"]),
                           user_id=user_id, extra=dict(old.extra))
        try:
            submission = await self.service.submit_follow_up(PLATFORM, user_id, plan, reply_to)
        except (InvalidRequest, Refused) as error:
            await self.output.initial_status(reply_to, f"⚠️ {error}")
            return
        await self._queued(submission, reply_to, where=f"{action.emoji} in {where}")

    async def _shown_by(self, channel_id: str, ts: str) -> tuple[Shown | None, str | None]:
        """What a message shows, and its thread: a status message is linked by its ts; an
        uploaded take by its file id, read from the message (Slack's upload API doesn't return
        it); a take's buttons message names the take in its buttons."""
        shown = await self.service.shown(PLATFORM, message_key(channel_id, ts))
        if shown is not None:  # a status message: its job knows the thread
            job = await asyncio.to_thread(self.queue.get_job, shown.job_id)
            return shown, (job.reply_to.thread_id if job else None) or None
        try:
            found = await self.client.conversations_replies(
                channel=channel_id, ts=ts, oldest=ts, latest=ts, inclusive=True, limit=10)
        except SlackApiError as error:
            log.info("could not read message %s in %s (%s)", ts, channel_id, slack_error(error))
            return None, None
        message = next((m for m in found.get("messages") or [] if m.get("ts") == ts), None) or {}
        thread = message.get("thread_ts")
        for shared in message.get("files") or []:
            shown = await self.service.shown(PLATFORM, file_key(str(shared.get("id", ""))))
            if shown is not None:
                return shown, thread
        return shown_by_buttons(message), thread

    # ---- shared steps ------------------------------------------------------------------
    async def _submit(self, request: TuneRequest, reply_to: ReplyTo, *, where: str, melody: bytes | None = None) -> None:
        status_key = message_key(reply_to.channel_id, reply_to.message_id)
        await self.service.submit_and_show(self.output, request, reply_to, status_key=status_key, where=where,
                                           melody=melody)

    async def _queued(self, submission: Submission, reply_to: ReplyTo, *, where: str) -> None:
        status_key = message_key(reply_to.channel_id, reply_to.message_id)
        await self.service.show_queued(self.output, submission, status_key=status_key, where=where)

    async def _ephemeral(self, channel_id: str, user_id: str, text: str, thread_ts: str | None) -> None:
        try:
            await self.client.chat_postEphemeral(channel=channel_id, user=user_id, text=mrkdwn(text),
                                                 thread_ts=thread_ts)
        except SlackApiError as error:
            log.info("could not answer user %s privately in %s (%s)", user_id, channel_id, slack_error(error))


# ---- command line ----------------------------------------------------------------------
def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mode", choices=("socket", "http"), default=None,
                        help="socket: connect out with SLACK_APP_TOKEN (no public URL needed); http: serve "
                             f"{EVENTS_PATH} for Slack, verified with SLACK_SIGNING_SECRET. "
                             "Default: socket when SLACK_APP_TOKEN is set, else http")
    parser.add_argument("--host", default="0.0.0.0", help="HTTP mode: address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=None,
                        help="HTTP mode: port to listen on (env TEXTUNES_SLACK_PORT, default 3000)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    mode = getattr(args, "mode", None) or ("socket" if settings.slack_app_token else "http")
    problem = _missing_secret(mode, settings)
    if problem:
        print(f"textunes slack: {problem}", file=sys.stderr)
        return 2
    port = getattr(args, "port", None) or settings.slack_port
    queue = JobQueue.from_settings(settings)
    try:
        return asyncio.run(_serve(settings, queue, mode, getattr(args, "host", "0.0.0.0"), port))
    finally:
        queue.close()


def _missing_secret(mode: str, settings: Settings) -> str:
    if not settings.slack_bot_token:
        return "SLACK_BOT_TOKEN is not set (the Bot User OAuth Token, xoxb-…, from OAuth & Permissions)."
    if mode == "socket" and not settings.slack_app_token:
        return ("Socket Mode needs SLACK_APP_TOKEN (an app-level token, xapp-…, with connections:write, "
                "from Basic Information → App-Level Tokens). Or run with --mode http.")
    if mode == "http" and not settings.slack_signing_secret:
        return ("HTTP mode needs SLACK_SIGNING_SECRET (Basic Information → App Credentials) to verify "
                "Slack's requests. Or set SLACK_APP_TOKEN and run with --mode socket.")
    return ""


async def _serve(settings: Settings, queue: JobQueue, mode: str, host: str, port: int) -> int:
    """Run until SIGINT/SIGTERM: returns 0 after a clean stop, 2 when Slack rejects a token,
    1 when Slack can't be reached."""
    return await run_until_signalled(lambda stop: serve(settings, queue, mode, host, port, stop),
                                     grace_s=settings.shutdown_grace_s)


async def serve(settings: Settings, queue: JobQueue, mode: str, host: str, port: int, stop: asyncio.Event,
                *, consumer: str | None = None) -> int:
    health = metrics.Health()
    app = SlackTunes(settings, queue, consumer=consumer, health=health)
    with serving_health(settings, queue, health, "slack connected", lambda: app.connected(), log):
        return await _serve_app(app, settings, mode, host, port, stop)


async def _serve_app(app: SlackTunes, settings: Settings, mode: str, host: str, port: int, stop: asyncio.Event) -> int:
    try:
        who = await app.client.auth_test()
    except SlackApiError as error:
        print(f"textunes slack: Slack rejected SLACK_BOT_TOKEN ({slack_error(error)}); copy the Bot User OAuth Token "
              "again from OAuth & Permissions (and reinstall the app if its scopes changed).", file=sys.stderr)
        return 2
    except Exception as error:  # network: DNS, TLS, proxy
        print(f"textunes slack: can't reach Slack at {app.client.base_url} ({type(error).__name__}: {error}).",
              file=sys.stderr)
        return 1
    log.info("Slack app %s in workspace %s (%s); reading events as %s", who.get("user"), who.get("team"),
             mode, app.pump.consumer)
    await app.start()
    try:
        if mode == "socket":
            return await _socket_mode(app, settings, stop)
        return await _http_mode(app, host, port, stop)
    finally:
        await app.stop()


async def _http_mode(app: SlackTunes, host: str, port: int, stop: asyncio.Event) -> int:
    runner = web.AppRunner(app.web_app())
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        app.connected = lambda: True  # Slack was reached (auth.test) and its requests can come in
        log.info("listening for Slack on http://%s:%d%s", host, port, EVENTS_PATH)
        await stop.wait()
        log.info("stopping: closing the HTTP server")
    finally:
        await runner.cleanup()
    return 0


async def _socket_mode(app: SlackTunes, settings: Settings, stop: asyncio.Event) -> int:
    from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

    try:  # ask for the WebSocket URL ourselves: a bad app token is reported, not retried forever
        opened = await app.client.apps_connections_open(app_token=settings.slack_app_token)
    except SlackApiError as error:
        print(f"textunes slack: Slack rejected SLACK_APP_TOKEN ({slack_error(error)}); it must be an app-level token "
              "(xapp-…) with the connections:write scope, and Socket Mode must be on.", file=sys.stderr)
        return 2
    handler = AsyncSocketModeHandler(app.app, settings.slack_app_token, web_client=app.client)
    handler.client.wss_uri = str(opened["url"])
    await handler.connect_async()
    app.connected = lambda: _socket_open(handler.client)
    log.info("connected to Slack in Socket Mode")
    try:
        await stop.wait()
        log.info("stopping: closing the Socket Mode connection")
    finally:
        await handler.close_async()
    return 0


def _socket_open(client: Any) -> bool:
    """Whether the Socket Mode connection is up now (it reconnects by itself when Slack drops it)."""
    session = client.current_session
    return not client.closed and session is not None and not session.closed


def _audio_file(files: Any) -> dict[str, Any] | None:
    """The first audio file shared with a message: a melody clip."""
    for shared in files or []:
        extension = str(shared.get("name") or "").rpartition(".")[2].lower()
        if str(shared.get("mimetype") or "").startswith("audio/") or extension in AUDIO_EXTENSIONS:
            return shared
    return None


def _name(shared: dict[str, Any]) -> str:
    return str(shared.get("name") or shared.get("title") or "the file")
