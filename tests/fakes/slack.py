"""A fake Slack on 127.0.0.1 for the Slack app's tests: the Web API methods the app calls,
the raw upload URL of ``files_upload_v2``, slash-command response URLs, and a Socket Mode
WebSocket. It also plays the users: it sends signed slash commands and events to the app
over HTTP, or as envelopes over the Socket Mode connection.

What it checks, as Slack does: the bot token on every Web API call (the app-level token on
``apps.connections.open``) and on ``url_private`` downloads (without it Slack serves its
sign-in page), membership before posting, the three upload steps in order with the declared
length, ``ts`` of messages it edits or reads, and Block Kit blocks (``invalid_blocks`` for
what Slack would refuse: unknown block types, buttons without a plain-text label of up to 75
characters, action_ids missing or repeated in a message, values over 2,000 characters…).
Every text the app sends is read as Slack reads mrkdwn: a ``<…>`` that is no mention or link,
or a bare ``&``, is noted in ``markup_problems`` (Slack would show a broken link or drop the
text). An acknowledgement that takes Slack more than 3 seconds to get (a slash command, a
button click) is noted in ``late_acks``: Slack would show the user an error.

A user can share files with a mention (``mention(..., files=...)``) and click a button
(``click``), over HTTP or Socket Mode, as Slack sends ``block_actions``.

``faults`` stalls, slows or rate-limits (429 with ``Retry-After``) chosen calls, including
the raw upload; ``calls`` records every call (the raw upload as ``upload``), and
``timeline`` orders every message stored and every edit.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.faults import Call, Faults

T = TypeVar("T")

# What Slack reads as markup in message text: mentions, channels, special mentions, links.
_MARKUP = re.compile(r"<(?:@[UW][A-Z0-9]+|#C[A-Z0-9]+|![a-z^][^<>]*|(?:https?://|mailto:)[^<>|\s]+)(?:\|[^<>]*)?>")
_ENTITY = re.compile(r"&(?!amp;|lt;|gt;)")
ACK_DEADLINE_S = 3.0
MIMETYPES = {"mp3": "audio/mpeg", "flac": "audio/flac", "wav": "audio/wav", "ogg": "audio/ogg", "png": "image/png",
             "txt": "text/plain"}


def mimetype(name: str) -> str:
    return MIMETYPES.get(name.rpartition(".")[2].lower(), "application/octet-stream")


def blocks_problem(blocks: Any) -> str | None:
    """Why Slack would refuse these blocks (``invalid_blocks``), or None."""
    if not isinstance(blocks, list) or not 1 <= len(blocks) <= 50:
        return "blocks must be a list of 1 to 50"
    action_ids: set[str] = set()
    block_ids: set[str] = set()
    for block in blocks:
        kind, block_id = block.get("type"), block.get("block_id")
        if block_id is not None:
            if not 1 <= len(block_id) <= 255 or block_id in block_ids:
                return f"block_id {block_id!r}: 1-255 characters, unique"
            block_ids.add(block_id)
        if kind == "actions":
            elements = block.get("elements") or []
            if not 1 <= len(elements) <= 25:
                return "actions: 1 to 25 elements"
            for element in elements:
                label = element.get("text") or {}
                action_id = element.get("action_id") or ""
                if element.get("type") != "button" or label.get("type") != "plain_text":
                    return f"actions: a button with a plain_text label expected, got {element}"
                if not 1 <= len(label.get("text") or "") <= 75:
                    return "button text: 1 to 75 characters"
                if not 1 <= len(action_id) <= 255 or action_id in action_ids:
                    return f"action_id {action_id!r}: 1-255 characters, unique in the message"
                action_ids.add(action_id)
                if len(element.get("value") or "") > 2000 or element.get("style") not in (None, "primary", "danger"):
                    return "button value over 2000 characters, or an unknown style"
        elif kind == "context":
            elements = block.get("elements") or []
            if not 1 <= len(elements) <= 10 or any(e.get("type") not in ("mrkdwn", "plain_text", "image")
                                                     for e in elements):
                return "context: 1 to 10 text or image elements"
        elif kind == "section":
            text = block.get("text") or {}
            if text.get("type") not in ("mrkdwn", "plain_text") or not 1 <= len(text.get("text") or "") <= 3000:
                return "section: a text object of 1 to 3000 characters"
        elif kind not in ("divider", "header", "image"):
            return f"unknown block type {kind!r}"
    return None


def block_texts(blocks: list[dict[str, Any]]) -> list[str]:
    """The mrkdwn texts in blocks (what Slack reads as markup)."""
    texts = [(block.get("text") or {}) for block in blocks]
    texts += [e for block in blocks if block.get("type") == "context" for e in block.get("elements") or []]
    return [str(t.get("text") or "") for t in texts if t.get("type") == "mrkdwn"]


def markup_problem(text: str) -> str | None:
    """What Slack would misread in ``text``: a ``<…>`` that is no mention or link, or a bare ``&``."""
    rest = _MARKUP.sub("", text)
    if "<" in rest or ">" in rest:
        return f"unescaped < or > in {text[:120]!r}"
    if _ENTITY.search(text):
        return f"unescaped & in {text[:120]!r}"
    return None


@dataclass
class Message:
    channel: str
    ts: str
    text: str
    user: str
    thread_ts: str | None = None
    bot_id: str | None = None
    files: list[dict[str, Any]] = field(default_factory=list)
    edits: list[str] = field(default_factory=list)  # every text it had, oldest first
    blocks: list[dict[str, Any]] = field(default_factory=list)

    def to_api(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": "message", "ts": self.ts, "text": self.text, "user": self.user}
        if self.thread_ts:
            data["thread_ts"] = self.thread_ts
        if self.bot_id:
            data["bot_id"] = self.bot_id
        if self.files:
            data["files"] = self.files
        if self.blocks:
            data["blocks"] = self.blocks
        return data

    def buttons(self) -> dict[str, dict[str, Any]]:
        """The message's buttons by their label's text."""
        return {e["text"]["text"]: e for block in self.blocks if block.get("type") == "actions"
                for e in block.get("elements") or []}


@dataclass
class Upload:
    file_id: str
    filename: str
    length: int
    data: bytes | None = None
    had_auth_header: bool = False
    title: str = ""
    channel: str = ""
    thread_ts: str | None = None
    comment: str = ""


class FakeSlack:
    bot_token = "xoxb-fake-bot-token"
    app_token = "xapp-fake-app-token"
    signing_secret = "fake-signing-secret"
    team_id = "T0FAKE"
    bot_user_id = "UBOT"
    bot_id = "BBOT"
    app_id = "A0FAKE"
    channel_id = "C0GENERAL"

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.ephemerals: list[dict[str, Any]] = []  # chat.postEphemeral calls
        self.responses: list[dict[str, Any]] = []  # what the app posted to response_url
        self.uploads: dict[str, Upload] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.unhandled: list[str] = []
        self.members: set[str] = {self.channel_id}  # channels the bot is in (DMs always work)
        self.app_url = ""  # where the app serves HTTP mode, set by the test
        self._failures: dict[str, list[str]] = {}
        self._ts = itertools.count(1)
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._sockets: list[web.WebSocketResponse] = []
        self._acks: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.socket_connections = 0
        self.port = 0
        self.faults = Faults()
        self.timeline: list[tuple[str, str, str]] = []  # ("message", ts, text) / ("edit", ts, text), in order
        self.markup_problems: list[str] = []
        self.late_acks: list[str] = []  # what the app acknowledged after Slack's 3 seconds
        self.user_files: dict[str, tuple[str, bytes]] = {}  # files users shared: id -> (name, data)
        self.downloads: list[tuple[str, bool]] = []  # (file id, whether the bot token came with it)

    # ---- server ------------------------------------------------------------------------
    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/api/{method}", self._api)  # some methods (conversations.replies) are GETs
        app.router.add_post("/upload/{file_id}", self._upload)
        app.router.add_post("/respond/{rid}", self._respond)
        app.router.add_get("/files-pri/{file_id}/{name}", self._private_file)
        app.router.add_get("/files-pri/{file_id}/download/{name}", self._private_file)
        app.router.add_get("/socket", self._socket)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def base_url(self) -> str:
        return self.root + "api/"  # the trailing slash matters to slack_sdk

    def client(self, token: str | None = None) -> AsyncWebClient:
        return AsyncWebClient(token=token or self.bot_token, base_url=self.base_url)

    def fail(self, method: str, error: str, times: int = 1) -> None:
        """The next ``times`` calls of ``method`` answer ``{"ok": false, "error": error}``."""
        self._failures.setdefault(method, []).extend([error] * times)

    # ---- what tests look at --------------------------------------------------------------
    def find(self, channel: str, ts: str) -> Message | None:
        return next((m for m in self.messages if m.channel == channel and m.ts == ts), None)

    def in_thread(self, channel: str, thread_ts: str) -> list[Message]:
        return [m for m in self.messages if m.channel == channel and m.thread_ts == thread_ts and m.ts != thread_ts]

    def by_bot(self) -> list[Message]:
        return [m for m in self.messages if m.user == self.bot_user_id]

    def with_files(self, channel: str, thread_ts: str) -> list[Message]:
        return [m for m in self.in_thread(channel, thread_ts) if m.files]

    def audio(self, message: Message) -> bytes:
        data = self.uploads[message.files[0]["id"]].data
        assert data is not None
        return data

    def buttons_for(self, take: Message) -> Message:
        """The message with a take's buttons: the bot's next message in the thread after it."""
        later = [m for m in self.in_thread(take.channel, take.thread_ts or take.ts) if m.ts > take.ts and m.blocks]
        assert later, f"no buttons after the take {take.ts}"
        return min(later, key=lambda m: m.ts)

    def called(self, method: str) -> list[dict[str, Any]]:
        return [params for name, params in self.calls if name == method]

    async def wait_for(self, condition: Callable[[], T], *, timeout: float = 10.0, what: str = "a condition") -> T:
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            await asyncio.sleep(0.01)

    # ---- users -------------------------------------------------------------------------
    def user_message(self, text: str, *, user: str = "U0ALICE", channel: str | None = None,
                     thread_ts: str | None = None) -> Message:
        message = Message(channel or self.channel_id, self._next_ts(), text, user, thread_ts=thread_ts)
        self.messages.append(message)
        return message

    async def command(self, text: str, *, user: str = "U0ALICE", channel: str | None = None,
                      socket: bool = False) -> dict[str, Any]:
        """Type ``/tune text``; returns the app's acknowledgement payload (``{}`` for a bare ack)."""
        payload = {
            "token": "legacy-verification-token", "team_id": self.team_id, "team_domain": "fake",
            "channel_id": channel or self.channel_id, "channel_name": "general", "user_id": user,
            "user_name": user.lower(), "command": "/tune", "text": text, "api_app_id": self.app_id,
            "is_enterprise_install": "false", "response_url": f"{self.root}respond/{next(self._ids)}",
            "trigger_id": f"trigger-{next(self._ids)}",
        }
        if socket:
            return self._read(await self.send_envelope("slash_commands", payload))
        status, body = await self.post_signed(urlencode(payload), "application/x-www-form-urlencoded", what="/tune")
        assert status == 200, (status, body)
        if not body.strip():
            return {}
        try:
            return self._read(json.loads(body))
        except json.JSONDecodeError:  # a plain-text answer: Slack shows it to the user only
            return self._read({"text": body})

    def _read(self, answer: dict[str, Any]) -> dict[str, Any]:
        """An answer the app gave Slack, checked the way Slack reads its text."""
        self._check_text(str(answer.get("text") or ""))
        return answer

    def _check_text(self, text: str) -> None:
        problem = markup_problem(text)
        if problem:
            self.markup_problems.append(problem)

    async def mention(self, text: str, *, user: str = "U0ALICE", channel: str | None = None,
                      thread_ts: str | None = None, socket: bool = False, event_id: str | None = None,
                      files: dict[str, bytes] | None = None, sizes: dict[str, int] | None = None) -> Message:
        """Post a message that @mentions the bot; Slack sends ``app_mention``. ``files`` are
        shared with it (``sizes`` overrides what Slack says a file's size is)."""
        message = self.user_message(f"<@{self.bot_user_id}> {text}".strip(), user=user, channel=channel,
                                    thread_ts=thread_ts)
        for name, data in (files or {}).items():
            file_id = f"F{next(self._ids):08d}"
            self.user_files[file_id] = (name, data)
            message.files.append({"id": file_id, "name": name, "title": name, "mimetype": mimetype(name),
                                  "filetype": name.rpartition(".")[2], "size": (sizes or {}).get(name, len(data)),
                                  "url_private": f"{self.root}files-pri/{file_id}/{name}",
                                  "url_private_download": f"{self.root}files-pri/{file_id}/download/{name}"})
        event: dict[str, Any] = {"type": "app_mention", "user": user, "text": message.text, "ts": message.ts,
                                 "channel": message.channel, "event_ts": message.ts, "team": self.team_id}
        if thread_ts:
            event["thread_ts"] = thread_ts
        if message.files:
            event["files"] = message.files
        await self.send_event(event, socket=socket, event_id=event_id)
        return message

    async def react(self, channel: str, ts: str, *, user: str = "U0ALICE", reaction: str = "repeat",
                    socket: bool = False, event_id: str | None = None) -> None:
        target = self.find(channel, ts)
        assert target is not None, f"no message {channel}:{ts}"
        await self.send_event({
            "type": "reaction_added", "user": user, "reaction": reaction, "item_user": target.user,
            "item": {"type": "message", "channel": channel, "ts": ts}, "event_ts": self._next_ts(),
        }, socket=socket, event_id=event_id)

    async def click(self, message: Message, label: str, *, user: str = "U0ALICE", socket: bool = False) -> None:
        """Click the button labelled ``label``; Slack sends ``block_actions``."""
        button = message.buttons().get(label)
        assert button is not None, f"no button {label!r} on {message.ts}: {list(message.buttons())}"
        payload = {
            "type": "block_actions", "token": "legacy-verification-token", "api_app_id": self.app_id,
            "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": self.team_id},
            "team": {"id": self.team_id, "domain": "fake"}, "is_enterprise_install": False, "enterprise": None,
            "container": {"type": "message", "message_ts": message.ts, "channel_id": message.channel,
                          "is_ephemeral": False, **({"thread_ts": message.thread_ts} if message.thread_ts else {})},
            "channel": {"id": message.channel, "name": "general"}, "message": message.to_api(),
            "trigger_id": f"trigger-{next(self._ids)}", "response_url": f"{self.root}respond/{next(self._ids)}",
            "state": {"values": {}},
            "actions": [{**button, "block_id": "b", "action_ts": str(time.time())}],
        }
        if socket:
            await self.send_envelope("interactive", payload)
            return
        status, body = await self.post_signed(urlencode({"payload": json.dumps(payload)}),
                                              "application/x-www-form-urlencoded", what="a button click")
        assert status == 200, (status, body)

    def event_body(self, event: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
        return {
            "token": "legacy-verification-token", "team_id": self.team_id, "api_app_id": self.app_id,
            "event": event, "type": "event_callback", "event_id": event_id or f"Ev{next(self._ids):08d}",
            "event_time": int(time.time()), "is_ext_shared_channel": False,
            "authorizations": [{"team_id": self.team_id, "user_id": self.bot_user_id, "is_bot": True}],
        }

    async def send_event(self, event: dict[str, Any], *, socket: bool = False, event_id: str | None = None) -> None:
        body = self.event_body(event, event_id)
        if socket:
            await self.send_envelope("events_api", body)
            return
        status, text = await self.post_signed(json.dumps(body), "application/json")
        assert status == 200, (status, text)

    # ---- HTTP mode -----------------------------------------------------------------------
    def sign(self, body: str, timestamp: int, secret: str | None = None) -> str:
        base = f"v0:{timestamp}:{body}".encode()
        return "v0=" + hmac.new((secret or self.signing_secret).encode(), base, hashlib.sha256).hexdigest()

    async def post_signed(self, body: str, content_type: str, *, headers: dict[str, str] | None = None,
                          what: str = "a request") -> tuple[int, str]:
        """POST to the app as Slack does; ``headers`` replaces the signature headers."""
        assert self.app_url, "set fake.app_url to the app's /slack/events URL"
        timestamp = int(time.time())
        sent = {"Content-Type": content_type}
        if headers is None:
            sent.update({"X-Slack-Request-Timestamp": str(timestamp), "X-Slack-Signature": self.sign(body, timestamp)})
        else:
            sent.update(headers)
        started = time.monotonic()
        async with aiohttp.ClientSession() as session:
            async with session.post(self.app_url, data=body.encode(), headers=sent) as response:
                answer = response.status, await response.text()
        self._timed(what, started)
        return answer

    def _timed(self, what: str, started: float) -> None:
        if time.monotonic() - started > ACK_DEADLINE_S:
            self.late_acks.append(what)

    # ---- Socket Mode ---------------------------------------------------------------------
    async def send_envelope(self, kind: str, payload: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
        """Send one envelope to the connected app and return its acknowledgement's payload."""
        await self.wait_for(lambda: self._sockets, what="the app's Socket Mode connection")
        envelope_id = str(uuid.uuid4())
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._acks[envelope_id] = future
        started = time.monotonic()
        await self._sockets[-1].send_str(json.dumps({
            "envelope_id": envelope_id, "type": kind, "payload": payload,
            "accepts_response_payload": kind != "events_api", "retry_attempt": 0, "retry_reason": "",
        }))
        acknowledged = await asyncio.wait_for(future, timeout)
        self._timed(kind, started)
        return acknowledged

    async def drop_socket(self) -> None:
        """Close the app's Socket Mode connection from Slack's side (as Slack does every few hours)."""
        for ws in list(self._sockets):
            await ws.close()

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self.socket_connections += 1
        await ws.send_str(json.dumps({"type": "hello", "num_connections": 1,
                                      "connection_info": {"app_id": self.app_id},
                                      "debug_info": {"host": "fake", "approximate_connection_time": 3600}}))
        self._sockets.append(ws)
        try:
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                data = json.loads(message.data)
                future = self._acks.pop(data.get("envelope_id", ""), None)
                if future is not None and not future.done():
                    future.set_result(data.get("payload") or {})
        finally:
            self._sockets.remove(ws)
        return ws

    # ---- Web API -------------------------------------------------------------------------
    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params: dict[str, Any] = dict(request.query)
        if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            params.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
        elif request.content_type == "application/json" and request.can_read_body:
            params.update(await request.json())
        self.calls.append((method, params))
        token = request.headers.get("Authorization", "").removeprefix("Bearer ") or params.get("token", "")
        wanted = self.app_token if method == "apps.connections.open" else self.bot_token
        if token != wanted:
            return _json({"ok": False, "error": "invalid_auth" if token else "not_authed"})
        if self._failures.get(method):
            return _json({"ok": False, "error": self._failures[method].pop(0)})
        handler = getattr(self, "_m_" + method.replace(".", "_"), None)
        if handler is None:
            self.unhandled.append(method)
            return _json({"ok": False, "error": "unknown_method"})
        call = Call(method, request.path, params)
        fault = self.faults.before(call)
        if fault is not None and fault.retry_after:
            return web.json_response({"ok": False, "error": "ratelimited"}, status=429,
                                     headers={"Retry-After": str(max(1, round(fault.retry_after)))})
        if fault is not None and not await self.faults.hold(fault, request):
            return _json({"ok": False, "error": "request_timeout"})  # the client left: nothing was done
        answer = _json(handler(params))
        fault = self.faults.after(call)
        if fault is not None:
            await self.faults.hold(fault, request)
        return answer

    def _m_auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "url": "https://fake.slack.com/", "team": "Fake Team", "user": "textunes",
                "team_id": self.team_id, "user_id": self.bot_user_id, "bot_id": self.bot_id,
                "is_enterprise_install": False}

    def _m_apps_connections_open(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "url": f"ws://127.0.0.1:{self.port}/socket"}

    def _can_post(self, channel: str) -> str | None:
        if not channel:
            return "channel_not_found"
        if channel.startswith("D") or channel in self.members:
            return None
        return "not_in_channel"

    def _m_chat_postMessage(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = str(params.get("channel", ""))
        error = self._can_post(channel)
        if error:
            return {"ok": False, "error": error}
        if not params.get("text") and not params.get("blocks"):
            return {"ok": False, "error": "no_text"}
        blocks = params.get("blocks")
        blocks = json.loads(blocks) if isinstance(blocks, str) else blocks or []
        if blocks and blocks_problem(blocks):
            self.markup_problems.append(f"invalid_blocks: {blocks_problem(blocks)}")
            return {"ok": False, "error": "invalid_blocks"}
        thread_ts = params.get("thread_ts") or None
        if thread_ts and self.find(channel, thread_ts) is None:
            return {"ok": False, "error": "thread_not_found"}  # (real Slack posts to the channel instead)
        message = Message(channel, self._next_ts(), str(params["text"]), self.bot_user_id, thread_ts=thread_ts,
                          bot_id=self.bot_id, edits=[str(params["text"])], blocks=blocks)
        for text in block_texts(blocks):
            self._check_text(text)
        self._store(message)
        return {"ok": True, "channel": channel, "ts": message.ts, "message": message.to_api()}

    def _store(self, message: Message) -> None:
        self._check_text(message.text)
        self.messages.append(message)
        self.timeline.append(("message", message.ts, message.text))

    def _m_chat_update(self, params: dict[str, Any]) -> dict[str, Any]:
        message = self.find(str(params.get("channel", "")), str(params.get("ts", "")))
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        if message.user != self.bot_user_id:
            return {"ok": False, "error": "cant_update_message"}
        message.text = str(params.get("text", ""))
        self._check_text(message.text)
        message.edits.append(message.text)
        self.timeline.append(("edit", message.ts, message.text))
        return {"ok": True, "channel": message.channel, "ts": message.ts, "text": message.text}

    def _m_chat_postEphemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        error = self._can_post(str(params.get("channel", "")))
        if error:
            return {"ok": False, "error": error}
        self._check_text(str(params.get("text") or ""))
        self.ephemerals.append({k: params.get(k) for k in ("channel", "user", "text", "thread_ts")})
        return {"ok": True, "message_ts": self._next_ts()}

    def _m_conversations_replies(self, params: dict[str, Any]) -> dict[str, Any]:
        channel, ts = str(params.get("channel", "")), str(params.get("ts", ""))
        message = self.find(channel, ts)
        if message is None:
            return {"ok": False, "error": "thread_not_found"}
        parent = self.find(channel, message.thread_ts) if message.thread_ts else message
        assert parent is not None
        replies = sorted(self.in_thread(channel, parent.ts), key=lambda m: m.ts)
        oldest, latest = params.get("oldest"), params.get("latest")
        if oldest or latest:
            replies = [m for m in replies if (not oldest or m.ts >= oldest) and (not latest or m.ts <= latest)]
        everything = [parent, *replies]
        limit, start = int(params.get("limit") or 1000), int(str(params.get("cursor") or "0").removeprefix("next:"))
        if not 1 <= limit <= 1000:
            return {"ok": False, "error": "invalid_limit"}
        found = everything[start : start + limit]
        more = start + limit < len(everything)
        return {"ok": True, "messages": [m.to_api() for m in found], "has_more": more,
                "response_metadata": {"next_cursor": f"next:{start + limit}" if more else ""}}

    def _m_files_getUploadURLExternal(self, params: dict[str, Any]) -> dict[str, Any]:
        filename, length = params.get("filename"), params.get("length")
        if not filename or not str(length or "").isdigit():
            return {"ok": False, "error": "invalid_arguments"}
        file_id = f"F{next(self._ids):08d}"
        self.uploads[file_id] = Upload(file_id, str(filename), int(length))  # type: ignore[arg-type]
        return {"ok": True, "upload_url": f"{self.root}upload/{file_id}", "file_id": file_id}

    async def _upload(self, request: web.Request) -> web.Response:
        upload = self.uploads.get(request.match_info["file_id"])
        if upload is None:
            return web.Response(status=404, text="no such upload")
        data = await request.read()
        call = Call("upload", request.path, {"file_id": upload.file_id, "filename": upload.filename, "length": len(data)})
        self.calls.append(("upload", call.body))
        fault = self.faults.before(call)
        if fault is not None and not await self.faults.hold(fault, request):
            return web.Response(status=408, text="client gone; nothing stored")
        upload.data = data
        upload.had_auth_header = "Authorization" in request.headers
        fault = self.faults.after(call)
        if fault is not None:
            await self.faults.hold(fault, request)
        return web.Response(text=f"OK - {len(upload.data)}")

    def _m_files_completeUploadExternal(self, params: dict[str, Any]) -> dict[str, Any]:
        files = params.get("files")
        entries = json.loads(files) if isinstance(files, str) else files or []
        channel = str(params.get("channel_id", ""))
        error = self._can_post(channel) if channel else None
        if error:
            return {"ok": False, "error": error}
        shared = []
        for entry in entries:
            upload = self.uploads.get(entry.get("id", ""))
            if upload is None or upload.data is None or len(upload.data) != upload.length:
                return {"ok": False, "error": "file_upload_size_mismatch" if upload else "file_not_found"}
            upload.title = entry.get("title") or upload.filename
            upload.channel, upload.thread_ts = channel, params.get("thread_ts") or None
            upload.comment = str(params.get("initial_comment") or "")
            shared.append({"id": upload.file_id, "name": upload.filename, "title": upload.title,
                           "mimetype": mimetype(upload.filename), "size": len(upload.data)})
        if channel:
            self._store(Message(channel, self._next_ts(), str(params.get("initial_comment") or ""),
                                self.bot_user_id, thread_ts=params.get("thread_ts") or None,
                                bot_id=self.bot_id, files=shared))
        return {"ok": True, "files": [{"id": f["id"], "title": f["title"]} for f in shared]}

    async def _private_file(self, request: web.Request) -> web.Response:
        """``url_private``: the file with the bot token; Slack's sign-in page (HTML) without it."""
        file_id = request.match_info["file_id"]
        authorised = request.headers.get("Authorization") == f"Bearer {self.bot_token}"
        self.downloads.append((file_id, authorised))
        if file_id not in self.user_files:
            return web.Response(status=404, text="file_not_found")
        if not authorised:
            return web.Response(text="<html><body>Sign in to Slack</body></html>", content_type="text/html")
        name, data = self.user_files[file_id]
        return web.Response(body=data, content_type=mimetype(name))

    async def _respond(self, request: web.Request) -> web.Response:
        self.responses.append(self._read(await request.json()))
        return web.Response(text="ok")

    def _next_ts(self) -> str:
        return f"1700000000.{next(self._ts):06d}"


def _json(data: dict[str, Any]) -> web.Response:
    return web.json_response(data)
