"""HTTP mode's endpoint: Slack POSTs commands and events to ``/slack/events``.

The signature is checked on the raw bytes before anything is parsed: a request without a
valid signature (or with a timestamp more than 5 minutes off) gets 401, and a signed body
that is not a Slack payload (not JSON, a JSON array, a form without a command) gets 400.
Both are a client's mistake: one INFO line, no traceback. Only then does bolt see the request.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.request.internals import parse_body
from slack_sdk.signature import SignatureVerifier

log = logging.getLogger("textunes.slack")


def events_app(app: AsyncApp, signing_secret: str, path: str) -> web.Application:
    """An aiohttp application serving ``path`` for ``app``, verified with ``signing_secret``."""
    verifier = SignatureVerifier(signing_secret)

    async def handle(request: web.Request) -> web.Response:
        raw = await request.read()
        if not _signed(verifier, raw, request):
            log.info("refused a request to %s from %s: missing or bad Slack signature", path, request.remote)
            return web.Response(status=401, text="invalid signature")
        body = _payload(raw, request.content_type)
        if body is None:
            log.info("refused a signed request to %s: its body is not a Slack payload", path)
            return web.Response(status=400, text="not a Slack payload")
        response = await app.async_dispatch(AsyncBoltRequest(
            body=body, query=request.query_string, headers=request.headers))  # type: ignore[arg-type]
        return await to_aiohttp_response(response)

    web_app = web.Application()
    web_app.router.add_post(path, handle)
    return web_app


def _signed(verifier: SignatureVerifier, raw: bytes, request: web.Request) -> bool:
    try:
        return verifier.is_valid(raw, request.headers.get("X-Slack-Request-Timestamp"),
                                 request.headers.get("X-Slack-Signature"))
    except ValueError:  # a timestamp that is not a number
        return False


def _payload(raw: bytes, content_type: str) -> str | None:
    """The body as text when it parses the way bolt will parse it into a JSON object; else None."""
    try:
        body = raw.decode("utf-8")
        parsed: Any = parse_body(body, content_type)
        if isinstance(parsed, dict) and isinstance(parsed.get("payload"), str):
            parsed = json.loads(parsed["payload"])
    except (UnicodeDecodeError, ValueError):
        return None
    return body if isinstance(parsed, dict) and parsed else None
