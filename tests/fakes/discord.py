"""A fake Discord for tests: REST v10 and the gateway websocket on 127.0.0.1, served by aiohttp.

Point the real discord.py client at it with ``FakeDiscord.patch(monkeypatch)`` (sets
``discord.http.Route.BASE`` and ``DiscordWebSocket.DEFAULT_GATEWAY``). It keeps one guild
with a text channel that allows threads, one where threads are refused (403), and a DM
channel; it records every request and message, and lets a test send interactions,
mentions and reactions as a user would.

It is as strict as Discord where the bot could go wrong: content over 2,000 characters, a
thread name over 100, too many or too long embeds, choices or command fields, localised
option names Discord would refuse, and message components that break Discord's rules (action
rows of 1 to 5 buttons, at most 5 rows, a custom_id of 1 to 100 characters unique in the
message, a label of 80) get Discord's 400 (code 50035). An interaction not answered within 3
seconds is gone (404, code 10062), as on Discord. ``faults`` stalls, slows or rate-limits (429
with ``retry_after``) chosen requests, and ``timeline`` orders every message stored and every edit.

A user can click a message's button (``click``) and attach a file to a slash command option
(``slash(..., {"melody": FakeFile(...)})``); files are served from ``/attachments/…`` (as
Discord's CDN) with a content type from their extension, and ``downloads`` lists what was read.

Facts about Discord that discord.py depends on (found the hard way):
- JSON responses need the content type exactly ``application/json`` (no charset).
- The interaction callback must answer with a JSON body (a 204 makes ``defer()`` raise).
- READY needs ``session_id``, ``resume_gateway_url`` and ``application {id, flags}``;
  dispatches need a rising ``s``; heartbeats are answered with op 11.
- INTERACTION_CREATE needs ``attachment_size_limit`` and, in guilds, ``member``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import yarl
from aiohttp import web

from tests.fakes.faults import Call, Faults

DISCORD_EPOCH_MS = 1_420_070_400_000
EPHEMERAL = 64
RESPONSE_DEADLINE_S = 3.0  # an interaction must be answered within this long
CONTENT_TYPES = {"mp3": "audio/mpeg", "flac": "audio/flac", "wav": "audio/wav", "ogg": "audio/ogg",
                 "png": "image/png", "txt": "text/plain; charset=utf-8"}
LOCALES = {"id", "da", "de", "en-GB", "en-US", "es-ES", "es-419", "fr", "hr", "it", "lt", "hu", "nl", "no", "pl",
           "pt-BR", "ro", "fi", "sv-SE", "vi", "tr", "cs", "el", "bg", "ru", "uk", "hi", "th", "zh-CN", "ja",
           "zh-TW", "ko"}


def content_type(filename: str) -> str:
    """What Discord says a file is, from its extension."""
    return CONTENT_TYPES.get(filename.rpartition(".")[2].lower(), "application/octet-stream")


@dataclass
class FakeFile:
    """A file a user attaches (to a slash command option); ``size`` overrides the declared size."""

    name: str
    data: bytes
    size: int | None = None


@dataclass
class Recorded:
    method: str
    path: str
    auth: str  # "bot" (the bot token), "none", or "bad"
    status: int = 200
    at: float = field(default_factory=time.monotonic)


@dataclass
class Posted:
    """A message as the fake stores it."""

    id: str
    channel_id: str
    content: str
    author_id: str
    via: str  # "bot" (bot token), "interaction" (callback or webhook token), "user"
    files: dict[str, bytes] = field(default_factory=dict)
    ephemeral: bool = False
    interaction_id: str = ""
    reference_id: str = ""
    attachments: list[dict[str, Any]] = field(default_factory=list)
    edits: list[tuple[str, str]] = field(default_factory=list)  # (content, via) of each edit
    reactions: list[tuple[str, str]] = field(default_factory=list)  # (emoji, user id)
    components: list[dict[str, Any]] = field(default_factory=list)  # action rows, as sent
    posted_as: str = ""  # the content it was posted with (``content`` is what it says now)

    def audio(self) -> tuple[str, bytes]:
        """The take's audio file: (name, bytes)."""
        (found,) = [(name, data) for name, data in self.files.items() if not name.endswith(".png")]
        return found

    def button(self, label: str) -> dict[str, Any]:
        """The button labelled ``label`` (fails the test if there is none)."""
        found = [c for row in self.components for c in row.get("components") or [] if c.get("label") == label]
        assert found, f"no button {label!r} on message {self.id}: {self.components}"
        return found[0]


@dataclass
class FakeInteraction:
    id: str
    token: str
    channel_id: str
    user_id: str
    callback_type: int | None = None
    callback_data: dict[str, Any] = field(default_factory=dict)
    original_id: str = ""
    expired: bool = False
    kind: int = 2  # 2: a slash command, 3: a button click, 4: autocomplete
    created: float = field(default_factory=time.monotonic)


class FakeDiscord:
    def __init__(self, *, bot_token: str = "fake-bot-token", attachment_size_limit: int = 10 * 1024 * 1024) -> None:
        self.bot_token = bot_token
        self.attachment_size_limit = attachment_size_limit
        self._ids = itertools.count(1)
        self.app_id = self.snowflake()
        self.bot_id = self.app_id
        self.guild_id = self.snowflake()
        self.channel_id = self.snowflake()  # guild text channel, threads allowed
        self.no_threads_channel_id = self.snowflake()  # guild text channel, thread creation refused
        self.dm_channel_id = self.snowflake()
        self.user_id = self.snowflake()
        self.other_user_id = self.snowflake()
        self.channels: dict[str, dict[str, Any]] = {
            self.channel_id: {"type": 0, "guild_id": self.guild_id, "name": "music", "threads": True},
            self.no_threads_channel_id: {"type": 0, "guild_id": self.guild_id, "name": "no-threads", "threads": False},
            self.dm_channel_id: {"type": 1, "guild_id": None, "name": None, "threads": False},
        }
        self.requests: list[Recorded] = []
        self.unhandled: list[str] = []
        self.messages: dict[str, Posted] = {}
        self.interactions: dict[str, FakeInteraction] = {}
        self.commands: list[dict[str, Any]] = []
        self.command_scope: str = ""
        self.attachments: dict[str, bytes] = {}
        self.downloads: list[str] = []  # attachment ids read from the CDN
        self.withhold_content = False  # gateway hides other messages' text (REST still has it)
        self.faults = Faults()
        self.timeline: list[tuple[str, str, str]] = []  # ("message", id, channel) / ("edit", id, content), in order
        self.identified = asyncio.Event()
        self._sockets: list[web.WebSocketResponse] = []
        self._seq = 0
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    # ---- ids and payloads --------------------------------------------------------------
    def snowflake(self) -> str:
        return str(((int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22) + next(self._ids))

    def user(self, user_id: str, *, bot: bool = False) -> dict[str, Any]:
        name = "TexTuneS" if user_id == self.bot_id else f"user{user_id[-4:]}"
        return {"id": user_id, "username": name, "discriminator": "0", "global_name": name,
                "avatar": None, "bot": bot or user_id == self.bot_id, "public_flags": 0}

    def member(self, user_id: str) -> dict[str, Any]:
        return {"user": self.user(user_id), "roles": [], "joined_at": "2024-01-01T00:00:00+00:00",
                "deaf": False, "mute": False, "flags": 0, "permissions": "2251799813685247"}

    def channel_payload(self, channel_id: str) -> dict[str, Any]:
        info = self.channels[channel_id]
        data: dict[str, Any] = {"id": channel_id, "type": info["type"]}
        if info["type"] == 1:
            data["recipients"] = [self.user(self.user_id)]
            data["last_message_id"] = None
            return data
        data.update(guild_id=info["guild_id"], name=info["name"], position=0, permission_overwrites=[],
                    nsfw=False, parent_id=info.get("parent_id"), rate_limit_per_user=0, topic=None,
                    last_message_id=None, flags=0)
        if info["type"] == 11:
            data.update(owner_id=self.bot_id, message_count=0, member_count=1, total_message_sent=0,
                        thread_metadata={"archived": False, "auto_archive_duration": 1440,
                                         "archive_timestamp": "2024-01-01T00:00:00+00:00", "locked": False})
        return data

    def message_payload(self, message: Posted) -> dict[str, Any]:
        info = self.channels.get(message.channel_id, {})
        data: dict[str, Any] = {
            "id": message.id, "channel_id": message.channel_id, "type": 19 if message.reference_id else 0,
            "content": message.content, "author": self.user(message.author_id), "attachments": message.attachments,
            "embeds": [], "mentions": [], "mention_roles": [], "mention_everyone": False, "pinned": False,
            "tts": False, "timestamp": "2024-01-01T00:00:00+00:00", "edited_timestamp": None,
            "flags": EPHEMERAL if message.ephemeral else 0, "components": message.components,
        }
        if info.get("guild_id"):
            data["guild_id"] = info["guild_id"]
        if message.reference_id:
            data["message_reference"] = {"message_id": message.reference_id, "channel_id": message.channel_id,
                                         **({"guild_id": info["guild_id"]} if info.get("guild_id") else {})}
        if message.author_id != self.bot_id and message.author_id != self.app_id:
            data["member"] = {k: v for k, v in self.member(message.author_id).items() if k != "user"}
        return data

    def interaction_payload(self, interaction: FakeInteraction, data: dict[str, Any], *, kind: int = 2) -> dict[str, Any]:
        channel = self.channels[interaction.channel_id]
        payload: dict[str, Any] = {
            "id": interaction.id, "application_id": self.app_id, "type": kind, "data": data,
            "channel_id": interaction.channel_id, "channel": self.channel_payload(interaction.channel_id),
            "token": interaction.token, "version": 1, "locale": "en-US", "app_permissions": "2251799813685247",
            "attachment_size_limit": self.attachment_size_limit, "entitlements": [],
            "authorizing_integration_owners": {"0": self.guild_id} if channel.get("guild_id") else {"1": interaction.user_id},
            "context": 0 if channel.get("guild_id") else 1,
        }
        if channel.get("guild_id"):
            payload["guild_id"] = channel["guild_id"]
            payload["guild_locale"] = "en-US"
            payload["member"] = self.member(interaction.user_id)
        else:
            payload["user"] = self.user(interaction.user_id)
        return payload

    def guild_payload(self) -> dict[str, Any]:
        return {
            "id": self.guild_id, "name": "Test guild", "icon": None, "owner_id": self.user_id, "unavailable": False,
            "member_count": 2, "large": False, "premium_tier": 0, "features": [], "roles": [
                {"id": self.guild_id, "name": "@everyone", "permissions": "2251799813685247", "position": 0,
                 "color": 0, "hoist": False, "managed": False, "mentionable": False, "flags": 0}],
            "emojis": [], "stickers": [], "members": [], "voice_states": [], "presences": [], "threads": [],
            "stage_instances": [], "guild_scheduled_events": [], "soundboard_sounds": [],
            "channels": [self.channel_payload(c) for c, info in self.channels.items()
                         if info["guild_id"] == self.guild_id and info["type"] == 0],
            "joined_at": "2024-01-01T00:00:00+00:00", "verification_level": 0, "default_message_notifications": 0,
            "explicit_content_filter": 0, "mfa_level": 0, "nsfw_level": 0, "system_channel_flags": 0,
            "preferred_locale": "en-US", "afk_timeout": 300, "premium_subscription_count": 0,
        }

    # ---- server ------------------------------------------------------------------------
    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/attachments/{id}/{name}", self._attachment)
        app.router.add_route("*", "/api/v10/{path:.*}", self._rest)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def patch(self, monkeypatch: Any) -> None:
        import discord.gateway
        import discord.http

        monkeypatch.setattr(discord.http.Route, "BASE", f"{self.base_url}/api/v10")
        monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(f"ws://{self.base_url[7:]}/gateway"))

    # ---- gateway -----------------------------------------------------------------------
    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.append(ws)
        await ws.send_json({"op": 10, "d": {"heartbeat_interval": 41250}, "s": None, "t": None})
        try:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                if data["op"] == 1:
                    await ws.send_json({"op": 11, "d": None, "s": None, "t": None})
                elif data["op"] == 2:
                    await self._send(ws, "READY", {
                        "v": 10, "user": self.user(self.bot_id, bot=True), "guilds": [{"id": self.guild_id, "unavailable": True}],
                        "session_id": "fake-session", "resume_gateway_url": f"ws://{self.base_url[7:]}/gateway",
                        "application": {"id": self.app_id, "flags": 0}, "private_channels": [], "relationships": [],
                    })
                    await self._send(ws, "GUILD_CREATE", self.guild_payload())
                    self.identified.set()
                elif data["op"] == 6:  # resume: say it is done
                    await self._send(ws, "RESUMED", {})
        finally:
            self._sockets.remove(ws)
        return ws

    async def _send(self, ws: web.WebSocketResponse, event: str, data: dict[str, Any]) -> None:
        self._seq += 1
        await ws.send_json({"op": 0, "t": event, "s": self._seq, "d": data})

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        assert self._sockets, "no bot connected to the fake gateway"
        for ws in list(self._sockets):
            await self._send(ws, event, data)

    # ---- what a user does --------------------------------------------------------------
    async def slash(self, name: str, options: dict[str, Any], *, channel_id: str | None = None,
                    user_id: str | None = None, autocomplete: str | None = None) -> FakeInteraction:
        """Run ``/name`` with ``options``; with ``autocomplete=option`` it asks for choices instead."""
        command = next((c for c in self.commands if c["name"] == name), None)
        assert command is not None, f"/{name} was not registered (have {[c['name'] for c in self.commands]})"
        interaction = FakeInteraction(id=self.snowflake(), token=f"itoken-{next(self._ids)}",
                                      channel_id=channel_id or self.channel_id, user_id=user_id or self.user_id)
        self.interactions[interaction.id] = interaction
        interaction.kind = 4 if autocomplete else 2
        types = {o["name"]: o["type"] for o in command.get("options", [])}
        option_list = []
        resolved: dict[str, dict[str, Any]] = {}
        for key, value in options.items():
            if isinstance(value, FakeFile):  # an attachment option: its id, the file in "resolved"
                attachment = self._upload_by_user(value)
                resolved[attachment["id"]] = attachment
                value = attachment["id"]
            item: dict[str, Any] = {"name": key, "type": types[key], "value": value}
            if key == autocomplete:
                item["focused"] = True
            option_list.append(item)
        data: dict[str, Any] = {"id": command["id"], "name": name, "type": 1, "options": option_list}
        if resolved:
            data["resolved"] = {"attachments": resolved}
        if command.get("guild_id"):
            data["guild_id"] = command["guild_id"]
        await self.dispatch("INTERACTION_CREATE", self.interaction_payload(interaction, data, kind=interaction.kind))
        return interaction

    async def click(self, message_id: str, label: str, *, user_id: str | None = None) -> FakeInteraction:
        """Click the button labelled ``label`` on a message."""
        message = self.messages[message_id]
        button = message.button(label)
        interaction = FakeInteraction(id=self.snowflake(), token=f"itoken-{next(self._ids)}",
                                      channel_id=message.channel_id, user_id=user_id or self.user_id, kind=3)
        self.interactions[interaction.id] = interaction
        payload = self.interaction_payload(interaction, {"custom_id": button["custom_id"], "component_type": 2},
                                           kind=3)
        payload["message"] = self.message_payload(message)
        await self.dispatch("INTERACTION_CREATE", payload)
        return interaction

    def _upload_by_user(self, file: FakeFile) -> dict[str, Any]:
        attachment_id = self.snowflake()
        self.attachments[attachment_id] = file.data
        url = f"{self.base_url}/attachments/{attachment_id}/{file.name}"
        return {"id": attachment_id, "filename": file.name, "size": len(file.data) if file.size is None else file.size,
                "url": url, "proxy_url": url, "content_type": content_type(file.name)}

    async def mention(self, text: str, *, channel_id: str | None = None, user_id: str | None = None,
                      reply_to: str | None = None, files: dict[str, bytes] | None = None) -> Posted:
        """A user message mentioning the bot (``text`` may hold ``{bot}`` where the mention goes)."""
        content = text.format(bot=f"<@{self.bot_id}>") if "{bot}" in text else f"<@{self.bot_id}> {text}".strip()
        return await self.say(content, channel_id=channel_id, user_id=user_id, reply_to=reply_to, files=files,
                              pings_bot=True)

    async def say(self, content: str, *, channel_id: str | None = None, user_id: str | None = None,
                  reply_to: str | None = None, files: dict[str, bytes] | None = None,
                  pings_bot: bool = False) -> Posted:
        """A user message; ``pings_bot`` puts the bot in ``mentions`` (as a reply to it does)."""
        channel_id = channel_id or self.channel_id
        user_id = user_id or self.user_id
        message = Posted(id=self.snowflake(), channel_id=channel_id, content=content, author_id=user_id, via="user",
                         reference_id=reply_to or "")
        for name, data in (files or {}).items():
            message.attachments.append(self._upload_by_user(FakeFile(name, data)))
        self.messages[message.id] = message
        payload = self.message_payload(message)
        payload["mentions"] = [self.user(self.bot_id)] if pings_bot else []
        if reply_to:
            payload["referenced_message"] = self.message_payload(self.messages[reply_to])
            if self.withhold_content:  # a bot without the Message Content intent gets no text
                payload["referenced_message"]["content"] = ""
        await self.dispatch("MESSAGE_CREATE", payload)
        return message

    def user_message(self, content: str, *, channel_id: str | None = None, user_id: str | None = None) -> Posted:
        """A message that exists in a channel (something to reply to); no event is sent."""
        message = Posted(id=self.snowflake(), channel_id=channel_id or self.channel_id, content=content,
                         author_id=user_id or self.other_user_id, via="user")
        self.messages[message.id] = message
        return message

    async def react(self, message_id: str, emoji: str = "🔁", *, user_id: str | None = None) -> None:
        """A reaction and its MESSAGE_REACTION_ADD (the bot's own reactions are dispatched too)."""
        message = self.messages[message_id]
        user_id = user_id or self.user_id
        if user_id != self.bot_id:
            message.reactions.append((emoji, user_id))
        data: dict[str, Any] = {"user_id": user_id, "channel_id": message.channel_id, "message_id": message_id,
                                "emoji": {"id": None, "name": emoji}, "message_author_id": message.author_id,
                                "burst": False, "type": 0}
        guild_id = self.channels[message.channel_id].get("guild_id")
        if guild_id:
            data["guild_id"] = guild_id
            data["member"] = self.member(user_id) if user_id != self.bot_id else {
                **self.member(user_id), "user": self.user(self.bot_id, bot=True)}
        await self.dispatch("MESSAGE_REACTION_ADD", data)

    def expire(self, interaction: FakeInteraction) -> None:
        """Discord stops taking the interaction's token (15 minutes after it was created)."""
        interaction.expired = True

    # ---- looking at what happened ------------------------------------------------------
    def in_channel(self, channel_id: str) -> list[Posted]:
        return [m for m in self.messages.values() if m.channel_id == channel_id]

    def with_files(self, channel_id: str | None = None) -> list[Posted]:
        return [m for m in self.messages.values() if m.files and (channel_id is None or m.channel_id == channel_id)]

    def threads(self) -> list[str]:
        return [c for c, info in self.channels.items() if info["type"] == 11]

    async def wait_for(self, condition: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = condition()
            if result:
                return result
            await asyncio.sleep(0.02)
        raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")

    # ---- REST --------------------------------------------------------------------------
    async def _attachment(self, request: web.Request) -> web.Response:
        data = self.attachments.get(request.match_info["id"])
        if data is None:
            return web.Response(status=404)
        self.downloads.append(request.match_info["id"])
        kind = content_type(request.match_info["name"])
        return web.Response(body=data, content_type=kind.split(";")[0])

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        header = request.headers.get("Authorization", "")
        auth = "none" if not header else ("bot" if header == f"Bot {self.bot_token}" else "bad")
        record = Recorded(request.method, "/" + request.match_info["path"], auth)
        self.requests.append(record)
        if auth == "bad":
            return self._error(record, 401, 0, "401: Unauthorized")
        parts = record.path.strip("/").split("/")
        body, files = await _read_body(request)
        call = Call(request.method, record.path, body if isinstance(body, dict) else {}, [name for name, _ in files])
        fault = self.faults.before(call)
        if fault is not None and fault.retry_after:
            return self._rate_limited(record, fault.retry_after)
        if fault is not None and not await self.faults.hold(fault, request):
            return self._error(record, 499, 0, "client gone; nothing stored")  # never read by anyone
        try:
            response = await self._route(request, record, parts, body, files)
        except _Fail as failure:
            return self._error(record, failure.status, failure.code, failure.message)
        if response is None:
            self.unhandled.append(f"{record.method} {record.path}")
            return self._error(record, 404, 0, "404: Not Found (fake)")
        fault = self.faults.after(call)
        if fault is not None:
            await self.faults.hold(fault, request)
        return response

    async def _route(self, request: web.Request, record: Recorded, parts: list[str], body: dict[str, Any],
                     files: list[tuple[str, bytes]]) -> web.StreamResponse | None:
        method = request.method
        if parts == ["users", "@me"] and method == "GET":
            self._need_bot(record)
            return _json(self.user(self.bot_id, bot=True))
        if parts == ["oauth2", "applications", "@me"] and method == "GET":
            self._need_bot(record)
            return _json({"id": self.app_id, "name": "TexTuneS", "description": "", "icon": None,
                          "bot_public": True, "bot_require_code_grant": False, "owner": self.user(self.user_id),
                          "verify_key": "00", "flags": 0, "team": None, "summary": ""})
        if len(parts) >= 3 and parts[0] == "applications" and parts[-1] == "commands" and method == "PUT":
            self._need_bot(record)
            _check_commands(body)  # type: ignore[arg-type]
            guild_id = parts[3] if len(parts) == 5 else None
            self.command_scope = f"guild:{guild_id}" if guild_id else "global"
            self.commands = [{**c, "id": self.snowflake(), "application_id": self.app_id, "version": "1",
                              **({"guild_id": guild_id} if guild_id else {}), "default_member_permissions": None,
                              "type": c.get("type", 1)} for c in body]  # type: ignore[union-attr]
            return _json(self.commands)
        if parts[0] == "interactions" and len(parts) == 4 and parts[3] == "callback" and method == "POST":
            return await self._callback(parts[1], parts[2], body, files)
        if parts[0] == "webhooks" and len(parts) >= 3:
            return await self._webhook(request, parts, body, files)
        if parts[0] == "channels" and len(parts) >= 3 and parts[2] == "messages":
            self._need_bot(record)
            return await self._channel_messages(request, parts, body, files)
        return None

    async def _callback(self, interaction_id: str, token: str, body: dict[str, Any],
                        files: list[tuple[str, bytes]]) -> web.Response:
        interaction = self.interactions.get(interaction_id)
        if interaction is None or interaction.token != token:
            raise _Fail(404, 10062, "Unknown interaction")
        if time.monotonic() - interaction.created > RESPONSE_DEADLINE_S:
            raise _Fail(404, 10062, "Unknown interaction")  # not answered within 3 s: Discord dropped it
        if interaction.callback_type is not None:
            raise _Fail(400, 40060, "Interaction has already been acknowledged.")
        kind = int(body["type"])
        allowed = {2: (4, 5, 9), 3: (4, 5, 6, 7, 9), 4: (8,)}[interaction.kind]
        if kind not in allowed:
            raise _invalid(f"type: response type {kind} is not valid for interaction type {interaction.kind}")
        data = body.get("data") or {}
        if kind in (4, 7):
            _check_message(data, files)
        if kind == 8:
            _check_choices(data.get("choices") or [])
        interaction.callback_type, interaction.callback_data = kind, data
        result: dict[str, Any] = {"interaction": {"id": interaction_id, "type": 2}}
        if kind in (4, 5):
            ephemeral = bool(int(data.get("flags") or 0) & EPHEMERAL)
            message = Posted(id=self.snowflake(), channel_id=interaction.channel_id, content=data.get("content", "") or "",
                             author_id=self.bot_id, via="interaction", ephemeral=ephemeral, interaction_id=interaction_id)
            self._store(message, files)
            interaction.original_id = message.id
            result["interaction"].update(response_message_id=message.id, response_message_loading=kind == 5,
                                         response_message_ephemeral=ephemeral)
            result["resource"] = {"type": kind, "message": self.message_payload(message)}
        else:
            result["resource"] = {"type": kind}
        return _json(result)

    async def _webhook(self, request: web.Request, parts: list[str], body: dict[str, Any],
                       files: list[tuple[str, bytes]]) -> web.Response | None:
        _, app_id, token, *rest = parts
        interaction = next((i for i in self.interactions.values() if i.token == token), None)
        if app_id != self.app_id or interaction is None:
            raise _Fail(404, 10015, "Unknown Webhook")
        if interaction.expired:
            raise _Fail(401, 50027, "Invalid Webhook Token")
        if not rest and request.method == "POST":  # follow-up
            _check_message(body, files)
            message = Posted(id=self.snowflake(), channel_id=interaction.channel_id, content=body.get("content") or "",
                             author_id=self.bot_id, via="interaction", interaction_id=interaction.id,
                             ephemeral=bool(int(body.get("flags") or 0) & EPHEMERAL),
                             components=body.get("components") or [])
            self._store(message, files)
            if request.query.get("wait") not in ("true", "1", "True"):
                return web.Response(status=204)
            return _json(self.message_payload(message))
        if len(rest) == 2 and rest[0] == "messages":
            message_id = interaction.original_id if rest[1] == "@original" else rest[1]
            message = self.messages.get(message_id)
            if message is None or message.interaction_id != interaction.id:
                raise _Fail(404, 10008, "Unknown Message")
            if request.method == "GET":
                return _json(self.message_payload(message))
            if request.method == "PATCH":
                self._edit(message, body, files, "interaction")
                return _json(self.message_payload(message))
            if request.method == "DELETE":
                del self.messages[message.id]
                return web.Response(status=204)
        return None

    async def _channel_messages(self, request: web.Request, parts: list[str], body: dict[str, Any],
                                files: list[tuple[str, bytes]]) -> web.Response | None:
        channel_id = parts[1]
        if channel_id not in self.channels:
            raise _Fail(404, 10003, "Unknown Channel")
        if len(parts) == 3 and request.method == "POST":
            _check_message(body, files)
            reference = (body.get("message_reference") or {}).get("message_id") or ""
            message = Posted(id=self.snowflake(), channel_id=channel_id, content=body.get("content") or "",
                             author_id=self.bot_id, via="bot", reference_id=str(reference),
                             components=body.get("components") or [])
            self._store(message, files)
            return _json(self.message_payload(message))
        if len(parts) == 3 and request.method == "GET":  # recent messages, newest first
            limit = request.query.get("limit", "50")
            if not limit.isdigit() or not 1 <= int(limit) <= 100:
                raise _Fail(400, 50035, "Invalid Form Body (limit: must be 1 to 100)")
            before = request.query.get("before")
            found = sorted((m for m in self.in_channel(channel_id)
                            if not m.ephemeral and (before is None or int(m.id) < int(before))),
                           key=lambda m: int(m.id), reverse=True)
            return _json([self.message_payload(m) for m in found[: int(limit)]])
        message = self.messages.get(parts[3]) if len(parts) >= 4 else None
        if message is None or message.channel_id != channel_id:
            raise _Fail(404, 10008, "Unknown Message")
        if len(parts) == 4 and request.method == "GET":
            return _json(self.message_payload(message))
        if len(parts) == 4 and request.method == "PATCH":
            if message.author_id != self.bot_id:
                raise _Fail(403, 50005, "Cannot edit a message authored by another user")
            self._edit(message, body, files, "bot")
            return _json(self.message_payload(message))
        if len(parts) == 7 and parts[4] == "reactions" and parts[6] == "@me" and request.method == "PUT":
            emoji = urllib.parse.unquote(parts[5])
            message.reactions.append((emoji, self.bot_id))
            asyncio.get_running_loop().create_task(self.react(message.id, emoji, user_id=self.bot_id))
            return web.Response(status=204)
        if len(parts) == 5 and parts[4] == "threads" and request.method == "POST":
            name = str(body.get("name") or "")
            if not 1 <= len(name) <= 100:
                raise _Fail(400, 50035, f"Invalid Form Body (name: must be 1 to 100 characters, got {len(name)})")
            if not self.channels[channel_id]["threads"]:
                raise _Fail(403, 50013, "Missing Permissions")
            if message.id in self.channels:
                raise _Fail(400, 160004, "A thread has already been created for this message")
            self.channels[message.id] = {"type": 11, "guild_id": self.channels[channel_id]["guild_id"],
                                         "name": body["name"], "threads": False, "parent_id": channel_id}
            return _json(self.channel_payload(message.id))
        return None

    def _store(self, message: Posted, files: list[tuple[str, bytes]]) -> None:
        message.posted_as = message.content
        self._attach(message, files)
        self.messages[message.id] = message
        self.timeline.append(("message", message.id, message.channel_id))

    def _attach(self, message: Posted, files: list[tuple[str, bytes]]) -> None:
        limit = self.attachment_size_limit
        for name, data in files:
            if len(data) > limit:
                raise _Fail(413, 40005, "Request entity too large")
            attachment_id = self.snowflake()
            message.files[name] = data
            url = f"{self.base_url}/attachments/{attachment_id}/{name}"
            message.attachments.append({"id": attachment_id, "filename": name, "size": len(data), "url": url,
                                        "proxy_url": url, "content_type": content_type(name)})

    def _edit(self, message: Posted, body: dict[str, Any], files: list[tuple[str, bytes]], via: str) -> None:
        _check_message(body, files)
        if "content" in body:
            message.content = body["content"] or ""
        if "components" in body:
            message.components = body["components"] or []
        self._attach(message, files)
        message.edits.append((message.content, via))
        self.timeline.append(("edit", message.id, message.content))

    def _need_bot(self, record: Recorded) -> None:
        if record.auth != "bot":
            raise _Fail(401, 0, "401: Unauthorized")

    def _error(self, record: Recorded, status: int, code: int, message: str) -> web.Response:
        record.status = status
        return _json({"code": code, "message": message}, status=status)

    def _rate_limited(self, record: Recorded, retry_after: float) -> web.Response:
        """Discord's 429: discord.py only waits it out when ``Via`` is there (else: Cloudflare)."""
        record.status = 429
        return web.Response(
            body=json.dumps({"message": "You are being rate limited.", "retry_after": retry_after, "global": False,
                             "code": 0}).encode(), status=429, content_type="application/json",
            headers={"Via": "1.1 google", "Retry-After": str(max(1, round(retry_after))), "X-RateLimit-Scope": "user"})

    def status_codes(self) -> list[int]:
        """Every status the fake answered other than 2xx and 429 (a test's "nothing refused")."""
        return [r.status for r in self.requests if not 200 <= r.status < 300 and r.status != 429]


def _invalid(what: str) -> "_Fail":
    return _Fail(400, 50035, f"Invalid Form Body ({what})")


def _check_message(body: dict[str, Any], files: list[tuple[str, bytes]]) -> None:
    """Discord's limits on a message: what the bot sends must fit them."""
    content = body.get("content") or ""
    if len(content) > 2000:
        raise _invalid(f"content: must be 2000 or fewer in length, got {len(content)}")
    embeds = body.get("embeds") or []
    if len(embeds) > 10:
        raise _invalid("embeds: at most 10")
    total = 0
    for embed in embeds:
        for key, limit in (("title", 256), ("description", 4096)):
            if len(embed.get(key) or "") > limit:
                raise _invalid(f"embeds.{key}: at most {limit}")
        fields = embed.get("fields") or []
        if len(fields) > 25 or any(len(f.get("name", "")) > 256 or len(f.get("value", "")) > 1024 for f in fields):
            raise _invalid("embeds.fields: at most 25, names 256, values 1024")
        if len((embed.get("footer") or {}).get("text", "")) > 2048 or len((embed.get("author") or {}).get("name", "")) > 256:
            raise _invalid("embeds.footer/author: too long")
        total += sum(len(embed.get(k) or "") for k in ("title", "description"))
        total += sum(len(f.get("name", "")) + len(f.get("value", "")) for f in fields)
    if total > 6000:
        raise _invalid("embeds: 6000 characters in all")
    _check_components(body.get("components") or [])
    if len(files) > 10:
        raise _invalid("files: at most 10")


def _check_components(rows: list[dict[str, Any]]) -> None:
    """Discord's rules for message components: up to 5 action rows; a row holds 1 to 5 buttons
    (or one select menu); a button has a style, a label or an emoji, and either a custom_id
    (1-100 characters, unique in the message) or, as a link button, a URL."""
    if len(rows) > 5:
        raise _invalid("components: at most 5 action rows")
    custom_ids: set[str] = set()
    for row in rows:
        items = row.get("components") or []
        if row.get("type") != 1 or not 1 <= len(items) <= 5:
            raise _invalid("components: each must be an action row (type 1) of 1 to 5 components")
        for item in items:
            if item.get("type") in (3, 5, 6, 7, 8):  # select menus: alone in their row
                if len(items) != 1:
                    raise _invalid("components: a select menu fills its action row")
                continue
            if item.get("type") != 2 or item.get("style") not in (1, 2, 3, 4, 5, 6):
                raise _invalid(f"components: not a button: {item}")
            if not (item.get("label") or item.get("emoji")) or len(item.get("label") or "") > 80:
                raise _invalid("components: a button needs a label (up to 80 characters) or an emoji")
            if item["style"] == 5:
                if not item.get("url") or "custom_id" in item:
                    raise _invalid("components: a link button has a url and no custom_id")
                continue
            custom_id = item.get("custom_id") or ""
            if not 1 <= len(custom_id) <= 100 or custom_id in custom_ids:
                raise _invalid("components: custom_id must be 1 to 100 characters, unique in the message")
            custom_ids.add(custom_id)


def _check_choices(choices: list[dict[str, Any]]) -> None:
    if len(choices) > 25:
        raise _invalid("choices: at most 25")
    for choice in choices:
        if not 1 <= len(str(choice.get("name", ""))) <= 100 or len(str(choice.get("value", ""))) > 100:
            raise _invalid("choices: name 1-100, value up to 100")


def _check_commands(commands: list[dict[str, Any]]) -> None:
    for command in commands:
        if not 1 <= len(command.get("name", "")) <= 32 or not 1 <= len(command.get("description", "")) <= 100:
            raise _invalid("command name 1-32, description 1-100")
        options = command.get("options") or []
        if len(options) > 25:
            raise _invalid("options: at most 25")
        for option in options:
            if not 1 <= len(option.get("description", "")) <= 100:
                raise _invalid(f"options.{option.get('name')}.description: 1-100")
            _check_choices(option.get("choices") or [])
            _check_localised(option)
        for locale in {locale for option in options for locale in option.get("name_localizations") or {}}:
            shown = [(option.get("name_localizations") or {}).get(locale, option["name"]) for option in options]
            if len(set(shown)) != len(shown):
                raise _invalid(f"options: two options share the name {locale} users see")


def _check_localised(option: dict[str, Any]) -> None:
    """Localised option names follow the name rules (1-32 lowercase letters, digits, - or _);
    descriptions 1-100 characters; every key is a locale Discord knows."""
    names = option.get("name_localizations") or {}
    descriptions = option.get("description_localizations") or {}
    for locale in [*names, *descriptions]:
        if locale not in LOCALES:
            raise _invalid(f"options.{option['name']}: unknown locale {locale!r}")
    for locale, name in names.items():
        if not (1 <= len(name) <= 32 and name == name.lower() and all(c.isalnum() or c in "-_'" for c in name)):
            raise _invalid(f"options.{option['name']}.name_localizations.{locale}: {name!r}")
    for locale, text in descriptions.items():
        if not 1 <= len(text) <= 100:
            raise _invalid(f"options.{option['name']}.description_localizations.{locale}: 1-100")


class _Fail(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _json(data: Any, status: int = 200) -> web.Response:
    # exactly "application/json": discord.py rejects "application/json; charset=utf-8" at login
    return web.Response(body=json.dumps(data).encode(), status=status, content_type="application/json")


async def _read_body(request: web.Request) -> tuple[dict[str, Any], list[tuple[str, bytes]]]:
    """JSON, or multipart ``payload_json`` + ``files[n]`` (how discord.py uploads)."""
    if not request.body_exists:
        return {}, []
    if request.content_type.startswith("multipart/"):
        body: dict[str, Any] = {}
        files: list[tuple[str, bytes]] = []
        reader = await request.multipart()
        while True:
            part = await reader.next()
            if part is None:
                break
            if part.name == "payload_json":
                body = json.loads(await part.text())
            elif part.name and part.name.startswith("files["):
                files.append((part.filename or "file", bytes(await part.read())))
        return body, files
    return await request.json(), []
