"""The Slack app end to end: the real slack-bolt AsyncApp, served over HTTP (signed requests)
or connected over a Socket Mode WebSocket, against a fake Slack on 127.0.0.1, with real
Redis and the fake worker (sine-tone MP3s in milliseconds)."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import os
import re
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from aiohttp import web

from bot import replies
from bot.slack_app import SlackTunes, _serve, configure_parser, mention_text, run, serve
from bot.slack_output import mrkdwn
from tests.fake_worker import FakeWorker
from tests.events import events_settled
from tests.logs import CollectedWarnings
from tests.fakes.slack import FakeSlack, Message
from worker.queue import JobQueue
from worker.settings import Settings

ALICE, BOB = "U0ALICE", "U0BOB"
NO_PERSISTENCE = "Redis keeps nothing on disk"
HELP = mrkdwn(replies.SLACK_HELP)  # as Slack gets it: `/tune &lt;words&gt;`


@dataclass
class Harness:
    fake: FakeSlack
    redis_url: str
    apps: list[tuple[SlackTunes, web.AppRunner, JobQueue]] = field(default_factory=list)
    socket_runs: list[tuple[asyncio.Task[int], asyncio.Event, JobQueue]] = field(default_factory=list)
    # warnings a test provokes on purpose; every start of ``serve`` says the test Redis keeps nothing on disk
    expected_logs: list[str] = field(default_factory=lambda: [NO_PERSISTENCE])

    def settings(self, **overrides: Any) -> Settings:
        options = {"redis_url": self.redis_url, "slack_bot_token": self.fake.bot_token,
                   "slack_signing_secret": self.fake.signing_secret, "slack_app_token": self.fake.app_token,
                   "slack_api_url": self.fake.base_url, "progress_interval_s": 0.0, **overrides}
        return Settings(**options)

    async def start_app(self, *, consumer: str = "slack-test", **overrides: Any) -> SlackTunes:
        """HTTP mode: the bolt app's aiohttp server on a free port; the fake posts to it."""
        queue = JobQueue.from_url(self.redis_url, visibility_timeout_s=30.0)
        app = SlackTunes(self.settings(**overrides), queue, consumer=consumer, pump_block_ms=50)
        runner = web.AppRunner(app.web_app())
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.fake.app_url = f"http://127.0.0.1:{port}/slack/events"
        await app.start()
        self.apps.append((app, runner, queue))
        return app

    async def stop_app(self, app: SlackTunes) -> None:
        for entry in list(self.apps):
            if entry[0] is app:
                self.apps.remove(entry)
                await app.stop()
                await entry[1].cleanup()
                entry[2].close()

    async def start_socket_mode(self, **overrides: Any) -> asyncio.Task[int]:
        """The production entry (``serve``) in Socket Mode, connected to the fake's WebSocket."""
        queue = JobQueue.from_url(self.redis_url, visibility_timeout_s=30.0)
        stop = asyncio.Event()
        task = asyncio.create_task(serve(self.settings(**overrides), queue, "socket", "127.0.0.1", 0, stop,
                                         consumer="slack-socket-test"))
        self.socket_runs.append((task, stop, queue))
        await self.fake.wait_for(lambda: self.fake.socket_connections or task.done(), what="a Socket Mode connection")
        if task.done():
            raise AssertionError(f"serve returned {task.result()}")
        return task

    async def stop_socket_mode(self) -> list[int]:
        codes = []
        for task, stop, queue in self.socket_runs:
            stop.set()
            codes.append(await asyncio.wait_for(task, 10))
            queue.close()
        self.socket_runs.clear()
        return codes

    def events_settled(self) -> bool:
        return events_settled(self.redis_url, "slack")

    def parents(self) -> list[Message]:
        """The bot's top-level (status) messages in the channel."""
        return [m for m in self.fake.by_bot() if m.thread_ts is None]


@pytest.fixture
async def harness(redis_url: str) -> AsyncIterator[Harness]:
    catcher = CollectedWarnings()
    loggers = [logging.getLogger(name) for name in ("slack_bolt", "slack_sdk", "textunes", "aiohttp")]
    for logger in loggers:
        logger.addHandler(catcher)
    fake = FakeSlack()
    await fake.start()
    h = Harness(fake, redis_url)
    try:
        yield h
    finally:
        await h.stop_socket_mode()
        for app, _, _ in list(h.apps):
            await h.stop_app(app)
        await fake.stop()
        for logger in loggers:
            logger.removeHandler(catcher)
    problems = [f"{r.name}: {r.getMessage()}" for r in catcher.records
                if not any(expected in r.getMessage() for expected in h.expected_logs)]
    assert not problems, "warnings or errors were logged:\n" + "\n".join(problems)
    assert not fake.unhandled, f"the app called Web API methods the fake doesn't know: {fake.unhandled}"
    assert not fake.markup_problems, f"texts Slack would misread: {fake.markup_problems}"
    assert not fake.late_acks, f"acknowledged after Slack's 3 seconds: {fake.late_acks}"


def decodes(mp3: bytes) -> float:
    """Seconds of audio in ``mp3`` (fails if it isn't audio)."""
    samples, rate = sf.read(io.BytesIO(mp3))
    assert len(samples) > 0 and np.isfinite(samples).all()
    return len(samples) / rate


def seed_of(message: Message) -> int:
    match = re.search(r"seed (\d+)", message.text)
    assert match, message.text
    return int(match.group(1))


# ---- /tune ---------------------------------------------------------------------------------
async def test_tune_posts_a_parent_and_uploads_each_take_into_its_thread(harness: Harness) -> None:
    fake = harness.fake
    await harness.start_app()
    with FakeWorker(harness.redis_url):
        ack = await fake.command("rainy night genre:jazz mood:calm bpm:80 20s takes:2")
        assert ack == {}  # a bare acknowledgement: nothing shown to the user yet
        parent = (await fake.wait_for(harness.parents, what="the parent message"))[0]
        takes = await fake.wait_for(lambda: len(fake.with_files(fake.channel_id, parent.ts)) == 2
                                    and fake.with_files(fake.channel_id, parent.ts), what="two takes")
        await fake.wait_for(lambda: "2 takes ready" in parent.text, what="the final status")
    assert parent.text.startswith(f"<@{ALICE}> ✅") and "jazz" in parent.text.lower()
    assert any("generating 50 %" in text for text in parent.edits)
    names = sorted(fake.uploads[t.files[0]["id"]].filename for t in takes)
    assert all(re.fullmatch(r"textunes-[a-z0-9-]+-[12]\.mp3", n) for n in names) and names[0].endswith("-1.mp3")
    assert sorted(t.text.split(" · ")[0] for t in takes) == ["Take 1", "Take 2"]
    assert len({seed_of(t) for t in takes}) == 2
    for take in takes:
        assert decodes(fake.audio(take)) > 1.0
        assert "20.0 s" in take.text
    # files_upload_v2's three steps, the raw upload without the bot token; each take's audio and picture
    assert sorted(c["filename"].rpartition(".")[2] for c in fake.called("files.getUploadURLExternal")) == [
        "mp3", "mp3", "png", "png"]
    assert not any(u.had_auth_header for u in fake.uploads.values())
    completes = fake.called("files.completeUploadExternal")
    assert {c["thread_ts"] for c in completes} == {parent.ts} and {c["channel_id"] for c in completes} == {fake.channel_id}


async def test_korean_option_names_and_catalog_labels_work(harness: Harness) -> None:
    fake = harness.fake
    app = await harness.start_app()
    assert await fake.command("비 오는 밤 장르:재즈 분위기:차분한 템포:느린 15초") == {}
    parent = (await fake.wait_for(harness.parents, what="the parent message"))[0]
    job = await fake.wait_for(lambda: app.service.links.job_for_message("slack", f"{fake.channel_id}:{parent.ts}"),
                              what="the job")
    assert job.request.genres == ["Jazz"] and job.request.moods == ["Calm"] and job.request.duration == 15.0 and job.request.tempo == "slow"
    await fake.wait_for(lambda: "— #1 in line" in parent.text, what="the queue position")


@pytest.mark.parametrize("text", ["", "help", "  HELP "])
async def test_tune_help_explains_the_syntax_privately(harness: Harness, text: str) -> None:
    fake = harness.fake
    app = await harness.start_app()
    ack = await fake.command(text)
    assert ack["text"] == HELP and "genre:" in ack["text"] and "takes:" in ack["text"]
    assert ack.get("response_type", "ephemeral") == "ephemeral"
    assert fake.messages == [] and app.queue.depth() == 0


@pytest.mark.parametrize("text, expected", [
    ("genre:Jazzz mood:Calm", "Unknown genre 'Jazzz'. Did you mean Jazz"),
    ("rain takes:9", "Takes must be between 1 and 4"),
    ("rain genre:", "`genre:` needs a value"),
    ("20s", "Tell me what to play"),
])
async def test_bad_options_get_a_private_error_and_nothing_is_queued(harness: Harness, text: str,
                                                                     expected: str) -> None:
    fake = harness.fake
    app = await harness.start_app()
    ack = await fake.command(text)
    assert expected in ack["text"] and ack.get("response_type", "ephemeral") == "ephemeral"
    assert fake.messages == [] and app.queue.depth() == 0


async def test_rate_limit_answers_privately_with_when_to_retry(harness: Harness) -> None:
    fake = harness.fake
    app = await harness.start_app(rate_limit_requests=1, rate_limit_window_s=600)
    await fake.command("jazz piano")
    parent = (await fake.wait_for(harness.parents, what="the first parent message"))[0]
    await fake.wait_for(lambda: "#1 in line" in parent.text, what="the first job queued")
    assert await fake.command("jazz piano again") == {}
    response = (await fake.wait_for(lambda: fake.responses, what="the private refusal"))[0]
    assert response["response_type"] == "ephemeral" and "Try again in" in response["text"]
    assert len(harness.parents()) == 1 and app.queue.depth() == 1
    assert (await fake.command("rain", user=BOB)) == {}  # limits are per user
    await fake.wait_for(lambda: len(harness.parents()) == 2, what="Bob's parent message")


async def test_full_queue_is_refused_privately(harness: Harness) -> None:
    fake = harness.fake
    app = await harness.start_app(queue_cap=1)
    await fake.command("jazz piano")
    await fake.wait_for(harness.parents, what="the first parent message")
    await fake.wait_for(lambda: app.queue.depth() == 1, what="the first job in line")  # queued after its parent
    await fake.command("calm cello", user=BOB)
    response = (await fake.wait_for(lambda: fake.responses, what="the refusal"))[0]
    assert "queue is full" in response["text"] and len(harness.parents()) == 1


async def test_tune_where_the_bot_is_not_a_member_says_to_invite_it(harness: Harness) -> None:
    fake = harness.fake
    app = await harness.start_app(rate_limit_requests=1)
    await fake.command("jazz piano", channel="C0ELSEWHERE")
    response = (await fake.wait_for(lambda: fake.responses, what="the private hint"))[0]
    assert response["text"] == replies.SLACK_NOT_IN_CHANNEL and response["response_type"] == "ephemeral"
    assert app.queue.depth() == 0
    assert app.service.limiter.peek(f"slack:{ALICE}") is None  # the attempt used none of the user's limit


async def test_an_unexpected_slack_error_after_the_ack_is_explained_privately(harness: Harness) -> None:
    fake = harness.fake
    app = await harness.start_app()
    harness.expected_logs.append("failed")
    fake.fail("chat.postMessage", "internal_error")
    assert await fake.command("jazz piano") == {}
    response = (await fake.wait_for(lambda: fake.responses, what="the private notice"))[0]
    assert response["text"] == replies.SLACK_TRY_AGAIN and response["response_type"] == "ephemeral"
    assert app.queue.depth() == 0


async def test_a_failed_job_says_so_in_the_thread_with_its_job_id(harness: Harness) -> None:
    fake = harness.fake
    app = await harness.start_app()
    with FakeWorker(harness.redis_url, fail_prompts=("doomed",)):
        await fake.command("doomed jazz")
        parent = (await fake.wait_for(harness.parents, what="the parent message"))[0]
        job = await fake.wait_for(lambda: app.service.links.job_for_message("slack", f"{fake.channel_id}:{parent.ts}"),
                                  what="the job")
        failure = (await fake.wait_for(lambda: fake.in_thread(fake.channel_id, parent.ts), what="the failure"))[0]
        await fake.wait_for(harness.events_settled, what="events acknowledged")
    assert "⚠️ This track could not be made" in parent.text and job.job_id in parent.text  # no stale progress
    assert failure.text.startswith("⚠️") and job.job_id in failure.text
    assert not fake.with_files(fake.channel_id, parent.ts)


# ---- mentions --------------------------------------------------------------------------------
STORY = ("The old lighthouse keeper climbed the stairs one last time. The lamp had guided ships for "
         "forty years, and tonight it would go dark forever, replaced by a machine.")


async def test_mention_with_text_analyses_it_and_replies_in_a_thread_on_the_mention(harness: Harness) -> None:
    fake = harness.fake
    app = await harness.start_app()
    with FakeWorker(harness.redis_url):
        mention = await fake.mention(f"{STORY} &amp; <https://example.com/post|my blog>")
        take = (await fake.wait_for(lambda: fake.with_files(fake.channel_id, mention.ts), what="the take"))[0]
        status = fake.in_thread(fake.channel_id, mention.ts)[0]
        await fake.wait_for(lambda: "1 take ready" in status.text, what="the final status")
    analysis = next(m for m in fake.in_thread(fake.channel_id, mention.ts) if m.text.startswith("🧠 "))
    assert status.user == fake.bot_user_id and status.edits[0] == f"<@{ALICE}> {replies.analysing_line()}"
    assert "melancholic" in analysis.text and "70 bpm" in analysis.text
    assert decodes(fake.audio(take)) > 1.0
    job = app.service.links.job_for_message("slack", f"{fake.channel_id}:{status.ts}")
    assert job.request.mode == "text" and job.request.text == STORY + " & my blog"
    assert harness.parents() == []  # nothing new at the channel's top level


async def test_mention_inside_a_thread_replies_in_that_thread(harness: Harness) -> None:
    fake = harness.fake
    await harness.start_app()
    post = fake.user_message("Planning the video for Friday", user=BOB)
    with FakeWorker(harness.redis_url):
        mention = await fake.mention(STORY, thread_ts=post.ts)
        await fake.wait_for(lambda: fake.with_files(fake.channel_id, post.ts), what="the take in the thread")
    assert fake.in_thread(fake.channel_id, mention.ts) == []


async def test_bare_mention_gets_help_in_its_thread(harness: Harness) -> None:
    fake = harness.fake
    app = await harness.start_app()
    mention = await fake.mention("")
    reply = (await fake.wait_for(lambda: fake.in_thread(fake.channel_id, mention.ts), what="help"))[0]
    assert reply.text == HELP and app.queue.depth() == 0


async def test_bare_mention_in_a_thread_reads_the_post_it_replies_to(harness: Harness) -> None:
    fake = harness.fake
    app = await harness.start_app()
    post = fake.user_message(STORY, user=BOB)
    await fake.mention("", thread_ts=post.ts)
    status = (await fake.wait_for(lambda: fake.in_thread(fake.channel_id, post.ts)[1:], what="a status"))[0]
    job = await fake.wait_for(lambda: app.service.links.job_for_message("slack", f"{fake.channel_id}:{status.ts}"),
                              what="the job")
    assert job.request.text == STORY and job.reply_to.thread_id == post.ts


async def test_redelivered_event_makes_one_job(harness: Harness) -> None:
    fake = harness.fake
    app = await harness.start_app()
    await fake.mention(STORY, event_id="Ev0SAME")
    message = fake.messages[-1]
    await fake.send_event({"type": "app_mention", "user": ALICE, "text": message.text, "ts": message.ts,
                           "channel": fake.channel_id, "event_ts": message.ts}, event_id="Ev0SAME")
    await fake.wait_for(lambda: app.queue.depth() == 1, what="the job")
    await asyncio.sleep(0)  # give a (wrong) second handler its turn before looking
    await fake.wait_for(lambda: len(fake.in_thread(fake.channel_id, message.ts)) >= 1, what="the status")
    assert len(fake.in_thread(fake.channel_id, message.ts)) == 1 and app.queue.depth() == 1


async def test_mention_that_is_refused_answers_privately(harness: Harness) -> None:
    fake = harness.fake
    app = await harness.start_app(rate_limit_requests=1)
    await fake.command("jazz")
    await fake.wait_for(harness.parents, what="the first parent message")
    mention = await fake.mention(STORY)
    notice = (await fake.wait_for(lambda: fake.ephemerals, what="the private refusal"))[0]
    assert notice["user"] == ALICE and "Try again in" in notice["text"]
    assert fake.in_thread(fake.channel_id, mention.ts) == [] and app.queue.depth() == 1


# ---- 🔁 ---------------------------------------------------------------------------------------
async def test_repeat_reaction_on_a_take_makes_another_take_in_the_same_thread(harness: Harness) -> None:
    fake = harness.fake
    app = await harness.start_app()
    with FakeWorker(harness.redis_url):
        await fake.command("jazz piano 5s seed:42")
        parent = (await fake.wait_for(harness.parents, what="the parent message"))[0]
        first = (await fake.wait_for(lambda: fake.with_files(fake.channel_id, parent.ts), what="the take"))[0]
        await fake.react(fake.channel_id, first.ts, user=BOB)
        takes = await fake.wait_for(lambda: len(fake.with_files(fake.channel_id, parent.ts)) == 2
                                    and fake.with_files(fake.channel_id, parent.ts), what="a second take")
        # 🔁 on the parent (status) message works too
        await fake.react(fake.channel_id, parent.ts)
        takes = await fake.wait_for(lambda: len(fake.with_files(fake.channel_id, parent.ts)) == 3
                                    and fake.with_files(fake.channel_id, parent.ts), what="a third take")
        await fake.wait_for(harness.events_settled, what="events acknowledged")
    seeds = [seed_of(t) for t in takes]
    assert seeds[0] == 42 and len(set(seeds)) == 3
    # 🔁 takes continue the thread's numbering: Take 1, 2, 3 and …-1/2/3.mp3, no repeats
    assert [t.text.split(" · ")[0] for t in takes] == ["Take 1", "Take 2", "Take 3"]
    assert [fake.uploads[t.files[0]["id"]].filename.rsplit("-", 1)[1] for t in takes] == ["1.mp3", "2.mp3", "3.mp3"]
    assert all(decodes(fake.audio(t)) > 1.0 for t in takes)
    notes = [m for m in fake.in_thread(fake.channel_id, parent.ts) if m.text.startswith(("🔁", f"<@{BOB}>"))]
    assert any(f"<@{BOB}>" in m.text for m in notes)
    second_job = app.service.links.job_for_message("slack", f"file:{takes[1].files[0]['id']}")
    first_job = app.service.links.job_for_message("slack", f"file:{takes[0].files[0]['id']}")
    assert (second_job.request.prompt, second_job.request.duration) == (first_job.request.prompt, 5.0)  # same request…
    assert second_job.parent_job_id == first_job.job_id and second_job.request.seed is None  # …a new seed
    assert len(harness.parents()) == 1


async def test_repeat_over_the_rate_limit_is_refused_privately_in_the_thread(harness: Harness) -> None:
    fake = harness.fake
    app = await harness.start_app(rate_limit_requests=1)
    with FakeWorker(harness.redis_url):
        await fake.command("jazz piano")
        parent = (await fake.wait_for(harness.parents, what="the parent message"))[0]
        take = (await fake.wait_for(lambda: fake.with_files(fake.channel_id, parent.ts), what="the take"))[0]
        await fake.react(fake.channel_id, take.ts)
        notice = (await fake.wait_for(lambda: fake.ephemerals, what="the refusal"))[0]
    assert notice["user"] == ALICE and notice["thread_ts"] == parent.ts and "Try again in" in notice["text"]
    assert len(fake.with_files(fake.channel_id, parent.ts)) == 1 and app.queue.depth() == 0


async def test_repeat_on_a_bot_message_that_is_no_result_explains_privately(harness: Harness) -> None:
    fake = harness.fake
    app = await harness.start_app()
    mention = await fake.mention("")
    help_reply = (await fake.wait_for(lambda: fake.in_thread(fake.channel_id, mention.ts), what="help"))[0]
    await fake.react(fake.channel_id, help_reply.ts)
    await fake.react(fake.channel_id, mention.ts)  # someone's own message: not the bot's business
    await fake.react(fake.channel_id, help_reply.ts, reaction="thumbsup")
    notice = (await fake.wait_for(lambda: fake.ephemerals, what="the notice"))[0]
    assert notice == {"channel": fake.channel_id, "user": ALICE, "text": replies.not_a_result(), "thread_ts": None}
    await fake.react(fake.channel_id, help_reply.ts, user=fake.bot_user_id)  # bolt drops the bot's own
    await asyncio.sleep(0.2)
    assert len(fake.ephemerals) == 1 and app.queue.depth() == 0


# ---- HTTP mode: request verification -----------------------------------------------------------
@pytest.mark.parametrize("case", ["bad signature", "old timestamp", "missing headers"])
async def test_unverified_requests_get_401_and_run_nothing(harness: Harness, case: str) -> None:
    fake = harness.fake
    app = await harness.start_app()
    body = json.dumps(fake.event_body({"type": "app_mention", "user": ALICE, "text": f"<@{fake.bot_user_id}> {STORY}",
                                        "ts": "1700000000.999999", "channel": fake.channel_id}))
    now = int(time.time())
    headers = {
        "bad signature": {"X-Slack-Request-Timestamp": str(now), "X-Slack-Signature": fake.sign(body, now, "wrong")},
        "old timestamp": {"X-Slack-Request-Timestamp": str(now - 6 * 60),
                          "X-Slack-Signature": fake.sign(body, now - 6 * 60)},
        "missing headers": {},
    }[case]
    status, _ = await fake.post_signed(body, "application/json", headers=headers)
    assert status == 401
    await asyncio.sleep(0.1)
    assert fake.calls == [] and app.queue.depth() == 0


@pytest.mark.parametrize("body, content_type", [
    ("this is not json", "application/json"), ("[1, 2, 3]", "application/json"), ('"a string"', "application/json"),
    ("{\"type\": ", "application/json"), ("payload=%7Bnot-json", "application/x-www-form-urlencoded"), ("", "text/plain"),
])
async def test_a_body_that_is_no_slack_payload_gets_400_when_signed_and_401_when_not(
        harness: Harness, body: str, content_type: str) -> None:
    fake = harness.fake
    app = await harness.start_app()
    status, _ = await fake.post_signed(body, content_type)
    assert status == 400
    status, _ = await fake.post_signed(body, content_type, headers={})
    assert status == 401
    assert fake.calls == [] and app.queue.depth() == 0  # (and no traceback: the harness fails on ERROR logs)


@pytest.mark.parametrize("text", ["jazz piano 9999s", "jazz piano duration:9999", "jazz piano 길이:9999",
                                  "jazz piano length:2s", "jazz piano duration:forever"])
async def test_a_length_outside_the_limits_is_refused_with_the_range(harness: Harness, text: str) -> None:
    fake = harness.fake
    app = await harness.start_app()
    ack = await fake.command(text)
    assert "between 5 and 180 seconds" in ack["text"] and ack.get("response_type", "ephemeral") == "ephemeral"
    assert fake.messages == [] and app.queue.depth() == 0


async def test_user_text_is_escaped_so_slack_shows_it_as_typed(harness: Harness) -> None:
    fake = harness.fake
    await harness.start_app()
    await fake.command("rain <b> & <!channel> jazz")
    parent = (await fake.wait_for(harness.parents, what="the parent message"))[0]
    assert parent.text.startswith(f"<@{ALICE}> ") and "rain &lt;b&gt; &amp; &lt;!channel&gt; jazz" in parent.text
    ack = await fake.command("genre:<https://evil.example|Jazz>")
    assert "&lt;https://evil.example|Jazz&gt;" in ack["text"]  # not a link
    # (every text the app sent is checked the way Slack reads it: see the harness)


async def test_a_mention_with_only_emoji_is_refused_privately_and_costs_no_request(harness: Harness) -> None:
    fake = harness.fake
    app = await harness.start_app(rate_limit_requests=1)
    mention = await fake.mention(":musical_note: 🎶🔥")
    notice = (await fake.wait_for(lambda: fake.ephemerals, what="the private refusal"))[0]
    assert notice["user"] == ALICE and "no words to analyse" in notice["text"]
    assert fake.in_thread(fake.channel_id, mention.ts) == [] and app.queue.depth() == 0
    assert app.service.limiter.peek(f"slack:{ALICE}") is None


async def test_starts_without_bolts_token_warning_when_the_token_is_in_the_environment(
        harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", harness.fake.bot_token)  # as in every deployment
    app = await harness.start_app()
    assert (await harness.fake.command("help"))["text"] == HELP
    assert app.client.base_url == harness.fake.base_url  # SLACK_API_URL
    # (the harness fails on bolt's "As you gave `client` as well, `token` will be unused")


async def test_a_web_api_call_answered_429_is_retried_after_retry_after(harness: Harness) -> None:
    fake = harness.fake
    await harness.start_app()
    limited = fake.faults.rate_limit(lambda call: call.method == "chat.postMessage", retry_after=1)
    await fake.command("jazz piano")
    await fake.wait_for(harness.parents, what="the parent message, posted on the second try")
    assert len(limited.calls) == 1 and len(fake.called("chat.postMessage")) == 2


def test_the_api_url_is_a_setting_with_slacks_default() -> None:
    assert Settings.from_env({}, dotenv=False).slack_api_url == "https://slack.com/api/"
    assert Settings.from_env({"SLACK_API_URL": "https://slack-gov.com/api"}, dotenv=False).slack_api_url == \
        "https://slack-gov.com/api"


# ---- restarts -------------------------------------------------------------------------------
async def test_restart_mid_job_still_delivers_once(harness: Harness) -> None:
    fake = harness.fake
    hold = threading.Event()
    hold.set()
    app = await harness.start_app(consumer="slack-host-a")
    with FakeWorker(harness.redis_url, hold=hold) as worker:
        await fake.command("jazz piano takes:2")
        parent = (await fake.wait_for(harness.parents, what="the parent message"))[0]
        await fake.wait_for(lambda: app.queue.depth() == 1 and len(parent.edits) == 2, what="the job queued")
        await harness.stop_app(app)
        hold.clear()  # the worker finishes while the app is down
        await fake.wait_for(lambda: worker.handled, what="the worker to finish")
        await harness.start_app(consumer="slack-host-a")
        await fake.wait_for(lambda: len(fake.with_files(fake.channel_id, parent.ts)) == 2, what="two takes")
        await fake.wait_for(harness.events_settled, what="events acknowledged")
    audio = [u for u in fake.uploads.values() if u.filename.endswith(".mp3")]
    assert len(audio) == 2 and len(fake.with_files(fake.channel_id, parent.ts)) == 2


async def test_events_read_but_not_acknowledged_are_posted_once_after_a_restart(harness: Harness) -> None:
    fake = harness.fake
    app = await harness.start_app(consumer="slack-host-b")
    harness.expected_logs.append("delivering done event failed")
    fake.fail("files.completeUploadExternal", "internal_error", times=1)  # the first upload attempt fails…
    with FakeWorker(harness.redis_url):
        await fake.command("jazz piano")
        parent = (await fake.wait_for(harness.parents, what="the parent message"))[0]
        await fake.wait_for(lambda: fake.called("files.completeUploadExternal"), what="an upload attempt")
        await harness.stop_app(app)  # …and the app stops before it retried: the event is pending
        await harness.start_app(consumer="slack-host-b")
        await fake.wait_for(lambda: fake.with_files(fake.channel_id, parent.ts), what="the take")
        await fake.wait_for(harness.events_settled, what="events acknowledged")
    assert len(fake.with_files(fake.channel_id, parent.ts)) == 1


# ---- Socket Mode ---------------------------------------------------------------------------
async def test_socket_mode_runs_the_same_handlers_over_the_websocket(harness: Harness) -> None:
    fake = harness.fake
    await harness.start_socket_mode()
    with FakeWorker(harness.redis_url):
        assert (await fake.command("jazz piano", socket=True)) == {}
        parent = (await fake.wait_for(harness.parents, what="the parent message"))[0]
        take = (await fake.wait_for(lambda: fake.with_files(fake.channel_id, parent.ts), what="the take"))[0]
        bad = await fake.command("genre:Jazzz", socket=True)
        assert "Unknown genre" in bad["text"]
        mention = await fake.mention(STORY, socket=True)
        await fake.wait_for(lambda: fake.with_files(fake.channel_id, mention.ts), what="the mention's take")
        await fake.react(fake.channel_id, take.ts, socket=True)
        await fake.wait_for(lambda: len(fake.with_files(fake.channel_id, parent.ts)) == 2, what="another take")
    assert len(fake.called("apps.connections.open")) == 1 and fake.socket_connections == 1
    assert await harness.stop_socket_mode() == [0]


async def test_socket_mode_reconnects_when_slack_closes_the_connection(harness: Harness) -> None:
    fake = harness.fake
    await harness.start_socket_mode()
    await fake.drop_socket()
    await fake.wait_for(lambda: fake.socket_connections == 2, what="a new connection")
    assert len(fake.called("apps.connections.open")) == 2  # a fresh URL for the new connection
    assert (await fake.command("help", socket=True))["text"] == HELP


async def test_http_mode_serves_slack_events_and_answers_the_url_check(harness: Harness) -> None:
    fake = harness.fake
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    queue = JobQueue.from_url(harness.redis_url)
    stop = asyncio.Event()
    task = asyncio.create_task(serve(harness.settings(), queue, "http", "127.0.0.1", port, stop,
                                     consumer="slack-http-test"))
    fake.app_url = f"http://127.0.0.1:{port}/slack/events"
    challenge = json.dumps({"token": "legacy", "challenge": "c-123", "type": "url_verification"})
    await fake.wait_for(lambda: fake.called("auth.test"), what="start-up")
    status, body = await _retry_connect(lambda: fake.post_signed(challenge, "application/json"))
    assert status == 200 and "c-123" in body
    assert (await fake.command("help"))["text"] == HELP
    stop.set()
    assert await asyncio.wait_for(task, 10) == 0
    queue.close()


async def _retry_connect(call: Any) -> Any:
    """The server starts listening a moment after auth.test: retry a refused connection."""
    for _ in range(200):
        try:
            return await call()
        except OSError:
            await asyncio.sleep(0.02)
    return await call()


async def test_sigterm_stops_the_app_cleanly(harness: Harness) -> None:
    queue = JobQueue.from_url(harness.redis_url)
    task = asyncio.create_task(_serve(harness.settings(), queue, "socket", "127.0.0.1", 0))
    await harness.fake.wait_for(lambda: harness.fake.socket_connections, what="the connection")
    # only send the signal once the app's handler is installed (else it would stop pytest)
    assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN, None)
    os.kill(os.getpid(), signal.SIGTERM)
    assert await asyncio.wait_for(task, 10) == 0
    queue.close()


async def test_socket_mode_with_a_rejected_app_token_exits_2(harness: Harness,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    fake = harness.fake
    queue = JobQueue.from_url(harness.redis_url)
    settings = harness.settings(slack_app_token="xapp-revoked")
    code = await serve(settings, queue, "socket", "127.0.0.1", 0, asyncio.Event())
    queue.close()
    err = capsys.readouterr().err
    assert code == 2 and "SLACK_APP_TOKEN" in err and "xapp-revoked" not in err


async def test_a_rejected_bot_token_exits_2_without_printing_it(harness: Harness,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    fake = harness.fake
    queue = JobQueue.from_url(harness.redis_url)
    code = await serve(harness.settings(slack_bot_token="xoxb-revoked"), queue, "http", "127.0.0.1", 0,
                       asyncio.Event())
    queue.close()
    err = capsys.readouterr().err
    assert code == 2 and "SLACK_BOT_TOKEN" in err and "xoxb-revoked" not in err


# ---- command line ---------------------------------------------------------------------------
@pytest.mark.parametrize("mode, env, needs", [
    ("socket", {"SLACK_APP_TOKEN": "xapp-secret-1"}, "SLACK_BOT_TOKEN"),
    ("socket", {"SLACK_BOT_TOKEN": "xoxb-secret-2", "SLACK_SIGNING_SECRET": "s3cret"}, "SLACK_APP_TOKEN"),
    ("http", {"SLACK_BOT_TOKEN": "xoxb-secret-2", "SLACK_APP_TOKEN": "xapp-secret-1"}, "SLACK_SIGNING_SECRET"),
])
def test_run_without_the_tokens_its_mode_needs_exits_2_with_one_line(
        mode: str, env: dict[str, str], needs: str, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    code = run(parser.parse_args(["--mode", mode]), Settings.from_env(env))
    err = capsys.readouterr().err
    assert code == 2 and needs in err and len(err.strip().splitlines()) == 1
    assert not any(secret in err for secret in env.values())


def test_mention_text_turns_slack_markup_into_plain_text() -> None:
    text = "<@UBOT> Tom &amp; Jerry &lt;3 <#C1|general> <@U2> <!here> see <https://a.b/c|this post> <https://x.y>"
    assert mention_text(text, "UBOT") == "Tom & Jerry <3 general   see this post https://x.y"
    assert mention_text("<@UBOT|textunes>   ", "UBOT") == ""
    assert mention_text("<@UBOT> :musical_note: :wave::skin-tone-3: :+1:", "UBOT") == ""
    assert mention_text("<@UBOT> calm at 10:30:00, ratio 3:4 :fire:", "UBOT") == "calm at 10:30:00, ratio 3:4"


# ---- the real worker ---------------------------------------------------------------------
@pytest.mark.slow
async def test_end_to_end_with_the_real_worker(harness: Harness, real_worker: Any) -> None:
    fake = harness.fake
    await harness.start_app()
    await fake.command("jazz piano 5s")
    parent = (await fake.wait_for(harness.parents, what="the parent message"))[0]
    take = (await fake.wait_for(lambda: fake.with_files(fake.channel_id, parent.ts), timeout=240,
                                what="the take"))[0]
    assert decodes(fake.audio(take)) > 4.0


def test_manifest_subscribes_to_what_the_app_handles_with_the_scopes_it_uses() -> None:
    yaml = pytest.importorskip("yaml")
    from pathlib import Path

    manifest = yaml.safe_load((Path(__file__).parents[1] / "deploy" / "slack-manifest.yml").read_text())
    assert [c["command"] for c in manifest["features"]["slash_commands"]] == ["/tune"]
    assert set(manifest["settings"]["event_subscriptions"]["bot_events"]) == {"app_mention", "reaction_added"}
    assert set(manifest["oauth_config"]["scopes"]["bot"]) == {
        "commands", "chat:write", "files:write", "files:read", "app_mentions:read", "reactions:read",
        "channels:history", "groups:history", "im:history", "mpim:history"}
    assert manifest["settings"]["socket_mode_enabled"] is True
