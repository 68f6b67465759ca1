"""Creators' features on Slack, end to end (the real slack-bolt app, over signed HTTP and Socket
Mode, against the fake Slack, real Redis and the fake worker): loops and file formats, the
waveform picture, a melody clip shared with a mention, the buttons under each take (New take,
Extend, Loop) and the :heavy_plus_sign: reaction, metrics and health."""

from __future__ import annotations

import asyncio
import io
import json
import re
from pathlib import Path

import pytest
import soundfile as sf

from bot import replies
from bot.slack_output import mrkdwn
from tests.fake_worker import FakeWorker, tiny_png
from tests.fakes.slack import Message, blocks_problem
from tests.endpoints import check_bot_served, get
from tests.test_discord_creators import wav_clip
from tests.test_slack import ALICE, BOB, STORY, Harness, decodes, harness  # noqa: F401 (the fixture)
from worker.local_redis import free_port
from worker.queue import JobQueue


async def tune(harness: Harness, text: str, *, socket: bool = False) -> tuple[Message, Message]:
    """``/tune text`` and its first take: (the parent message, the take's message)."""
    fake = harness.fake
    known = len(harness.parents())
    assert await fake.command(text, socket=socket) == {}
    parent = (await fake.wait_for(lambda: harness.parents()[known:], what="the parent message"))[0]
    take = (await fake.wait_for(lambda: fake.with_files(fake.channel_id, parent.ts), what="the take"))[0]
    return parent, take


def takes(harness: Harness, parent: Message) -> list[Message]:
    return sorted(harness.fake.with_files(harness.fake.channel_id, parent.ts), key=lambda m: m.ts)


def posted_as(message: Message) -> str:
    """The text a message was posted with."""
    return message.edits[0] if message.edits else message.text


def names(harness: Harness, message: Message) -> list[str]:
    return [harness.fake.uploads[f["id"]].filename for f in message.files]


async def buttons_of(harness: Harness, take: Message) -> Message:
    return await harness.fake.wait_for(lambda: _buttons(harness, take), what="the take's buttons")


def _buttons(harness: Harness, take: Message) -> Message | None:
    try:
        return harness.fake.buttons_for(take)
    except AssertionError:
        return None


# ---- loop, format, picture ------------------------------------------------------------------------
async def test_a_loop_is_a_flac_named_loop_uploaded_with_its_picture_and_followed_by_its_buttons(
        harness: Harness) -> None:
    fake = harness.fake
    await harness.start_app()
    with FakeWorker(harness.redis_url, note="ℹ️ A note from the worker."):
        parent, take = await tune(harness, "jazz piano loop:yes")
        buttons = await buttons_of(harness, take)
        await fake.wait_for(harness.events_settled, what="events acknowledged")
    audio, picture = names(harness, take)
    assert re.fullmatch(r"textunes-[a-z0-9-]+-1-loop\.flac", audio) and picture == audio.replace(".flac", ".png")
    assert [f["mimetype"] for f in take.files] == ["audio/flac", "image/png"]  # one upload call, one message
    assert fake.uploads[take.files[1]["id"]].data == tiny_png() and decodes(fake.audio(take)) > 1.5
    assert re.match(r"Take 1 · loop · seed \d+ · 10\.0 s\nℹ️ A note from the worker\.$", take.text)
    assert list(buttons.buttons()) == ["🔁 New take", "➕ Extend"]  # no Loop on a loop
    assert buttons.thread_ts == parent.ts and buttons.text.startswith("Take 1: ")
    queue = JobQueue.from_url(harness.redis_url)
    assert not queue.redis.keys("textunes:preview:*") and not queue.redis.keys("textunes:audio:*")  # posted: gone
    queue.close()


@pytest.mark.parametrize("text, extension, mimetype", [("format:wav", "wav", "audio/wav"),
                                                       ("형식:flac", "flac", "audio/flac"), ("", "mp3", "audio/mpeg")])
async def test_the_format_option_picks_the_file_type(harness: Harness, text: str, extension: str,
                                                     mimetype: str) -> None:
    await harness.start_app()
    with FakeWorker(harness.redis_url):
        _, take = await tune(harness, f"calm cello {text}")
    assert names(harness, take)[0].endswith(f"-1.{extension}") and take.files[0]["mimetype"] == mimetype
    assert list((await buttons_of(harness, take)).buttons()) == ["🔁 New take", "➕ Extend", "🔂 Loop"]


# ---- buttons ------------------------------------------------------------------------------------
@pytest.mark.parametrize("socket", [False, True])
async def test_extend_button_continues_the_take_in_the_same_thread(harness: Harness, socket: bool) -> None:
    fake = harness.fake
    app = await (harness.start_socket_mode() if socket else harness.start_app())
    with FakeWorker(harness.redis_url):
        parent, take = await tune(harness, "jazz piano 20s", socket=socket)
        await fake.click(await buttons_of(harness, take), "➕ Extend", user=BOB, socket=socket)
        longer = (await fake.wait_for(lambda: takes(harness, parent)[1:], what="the longer take"))[0]
        await fake.wait_for(harness.events_settled, what="events acknowledged")
    assert re.match(r"Take 2 · extended from take 1 · seed \d+ · 0:50$", longer.text)
    status = next(m for m in fake.in_thread(fake.channel_id, parent.ts) if "Extending" in posted_as(m))
    assert status.edits[0].startswith(f"<@{BOB}> ➕ Extending take 1 by 30 s: 🎼 jazz") and "✅" in status.text
    assert list((await buttons_of(harness, longer)).buttons()) == ["🔁 New take", "➕ Extend", "🔂 Loop"]
    assert len(harness.parents()) == 1  # all in the thread
    if not socket:
        job = app.service.links.job_for_message("slack", f"file:{longer.files[0]['id']}")
        assert job is not None and job.extend is not None and job.request.duration == 30.0


async def test_the_plus_reaction_extends_and_new_take_and_loop_buttons_work(harness: Harness) -> None:
    fake = harness.fake
    app = await harness.start_app()
    with FakeWorker(harness.redis_url):
        parent, take = await tune(harness, "jazz piano seed:42")
        buttons = await buttons_of(harness, take)
        await fake.react(fake.channel_id, take.ts, reaction="heavy_plus_sign")
        await fake.wait_for(lambda: len(takes(harness, parent)) == 2, what="the extension")
        await fake.click(buttons, "🔂 Loop")
        await fake.wait_for(lambda: len(takes(harness, parent)) == 3, what="the loop")
        await fake.react(fake.channel_id, buttons.ts)  # 🔁 on the buttons message: the take it shows
        await fake.wait_for(lambda: len(takes(harness, parent)) == 4, what="a new take")
        await fake.wait_for(harness.events_settled, what="events acknowledged")
    extension, loop, new = takes(harness, parent)[1:]
    assert extension.text.startswith("Take 2 · extended from take 1 · seed ")
    assert re.match(r"Take 3 · loop · seed 42 · ", loop.text) and names(harness, loop)[0].endswith("-3-loop.flac")
    assert new.text.startswith("Take 4 · seed ") and "seed 42 " not in new.text
    loop_job = app.service.links.job_for_message("slack", f"file:{loop.files[0]['id']}")
    assert loop_job is not None and loop_job.request.loop and loop_job.request.seed == 42


async def test_a_click_on_an_expired_job_or_at_the_maximum_is_answered_privately(harness: Harness) -> None:
    fake = harness.fake
    app = await harness.start_app(max_duration=30)
    with FakeWorker(harness.redis_url):
        parent, take = await tune(harness, "jazz piano 30s")
        buttons = await buttons_of(harness, take)
        await fake.wait_for(harness.events_settled, what="events acknowledged")
    await fake.click(buttons, "➕ Extend")
    at_most = (await fake.wait_for(lambda: fake.ephemerals, what="the private answer"))[0]
    await fake.react(fake.channel_id, parent.ts, reaction="heavy_plus_sign")  # ➕ on the status: which take?
    not_a_take = (await fake.wait_for(lambda: fake.ephemerals[1:], what="the second answer"))[0]
    job = app.service.links.job_for_message("slack", f"file:{take.files[0]['id']}")
    assert job is not None
    app.queue.redis.delete(f"textunes:job:{job.job_id}")
    await fake.click(buttons, "🔁 New take")
    expired = (await fake.wait_for(lambda: fake.ephemerals[2:], what="the third answer"))[0]
    assert not_a_take["text"] == mrkdwn(replies.needs_a_take("➕", "Extend"))
    assert at_most["user"] == ALICE and at_most["thread_ts"] == parent.ts
    assert "Take 1 is already 0:30 long" in at_most["text"] and "at most 0:30 (30 s)" in at_most["text"]
    assert expired["text"] == mrkdwn(replies.request_expired()) and expired["thread_ts"] == parent.ts
    assert app.queue.depth() == 0 and len(takes(harness, parent)) == 1


async def test_a_double_click_makes_one_job(harness: Harness) -> None:
    fake = harness.fake
    app = await harness.start_app()
    with FakeWorker(harness.redis_url):
        _, take = await tune(harness, "jazz piano")
        buttons = await buttons_of(harness, take)
        await fake.wait_for(harness.events_settled, what="events acknowledged")
    await asyncio.gather(fake.click(buttons, "🔁 New take"), fake.click(buttons, "🔁 New take"))
    await fake.wait_for(lambda: app.queue.depth() == 1, what="the new job")
    await fake.wait_for(lambda: [m for m in fake.by_bot() if "Another take" in posted_as(m)], what="its status")
    assert app.queue.depth() == 1 and len([m for m in fake.by_bot() if "Another take" in posted_as(m)]) == 1


def test_the_fake_slack_refuses_blocks_slack_would_refuse() -> None:
    button = {"type": "button", "action_id": "a", "text": {"type": "plain_text", "text": "Go"}}
    assert blocks_problem([{"type": "actions", "elements": [button]}]) is None
    assert blocks_problem([{"type": "actions", "elements": [button, button]}])  # action_id twice
    assert blocks_problem([{"type": "actions", "elements": [{**button, "text": {"type": "mrkdwn", "text": "Go"}}]}])
    assert blocks_problem([{"type": "actions", "elements": [{**button, "text": {"type": "plain_text",
                                                                                  "text": "x" * 76}}]}])
    assert blocks_problem([{"type": "fancy"}]) and blocks_problem([])


# ---- melody --------------------------------------------------------------------------------------
async def test_a_mention_with_an_audio_file_follows_its_melody(harness: Harness) -> None:
    fake = harness.fake
    app = await harness.start_app()
    with FakeWorker(harness.redis_url, melody=True) as worker:
        mention = await fake.mention(STORY, files={"hum.wav": wav_clip(4.0)})
        take = (await fake.wait_for(lambda: fake.with_files(fake.channel_id, mention.ts), what="the take"))[0]
        status = fake.in_thread(fake.channel_id, mention.ts)[0]
        job = app.service.links.job_for_message("slack", f"{fake.channel_id}:{status.ts}")
        assert job is not None and job.melody_key and job.request.text == STORY
        clip = worker.melodies[job.job_id]
    samples, rate = sf.read(io.BytesIO(clip))
    assert rate == 32_000 and samples.ndim == 1 and abs(len(samples) / rate - 4.0) < 0.05
    assert fake.downloads and all(authorised for _, authorised in fake.downloads)  # with the bot token
    assert decodes(fake.audio(take)) > 1.5


@pytest.mark.parametrize("case", ["no melody worker", "declared too large", "not audio", "no words"])
async def test_a_melody_that_cannot_be_used_is_refused_privately_and_queues_nothing(harness: Harness,
                                                                                    case: str) -> None:
    fake = harness.fake
    app = await harness.start_app(rate_limit_requests=1)
    files = {"no melody worker": {"hum.wav": wav_clip()}, "declared too large": {"long.wav": b"RIFF"},
             "not audio": {"lyrics.mp3": b"these are my lyrics, not a song " * 40}, "no words": {"hum.wav": wav_clip()}}
    with FakeWorker(harness.redis_url, melody=case != "no melody worker"):
        mention = await fake.mention("" if case == "no words" else STORY, files=files[case],
                                     sizes={"long.wav": 11 * 1024 * 1024})
        if case == "no words":
            reply = (await fake.wait_for(lambda: fake.in_thread(fake.channel_id, mention.ts), what="a reply"))[0]
            notice = {"user": ALICE, "text": reply.text}
        else:
            notice = (await fake.wait_for(lambda: fake.ephemerals, what="the private refusal"))[0]
    expected = {"no melody worker": "No worker here can follow a melody right now",
                "declared too large": "long.wav is 11.0 MB; a melody clip can be at most 10 MB",
                "not audio": "lyrics.mp3 isn't audio I can read",
                "no words": "Tell me what to play with your melody"}[case]
    assert notice["user"] == ALICE and expected in notice["text"]
    assert app.queue.depth() == 0 and app.service.limiter.peek(f"slack:{ALICE}") is None
    assert bool(fake.downloads) == (case == "not audio")  # by the declared size, or no worker: not downloaded


# ---- the app's set-up ---------------------------------------------------------------------------------
def test_manifest_turns_interactivity_on_and_asks_to_read_shared_files() -> None:
    yaml = pytest.importorskip("yaml")
    manifest = yaml.safe_load((Path(__file__).parents[1] / "deploy" / "slack-manifest.yml").read_text())
    assert manifest["settings"]["interactivity"]["is_enabled"] is True  # buttons: block_actions
    assert "files:read" in manifest["oauth_config"]["scopes"]["bot"]  # a melody clip shared with a mention


async def test_the_app_serves_metrics_health_and_readiness(harness: Harness) -> None:
    fake = harness.fake
    port = free_port()
    await harness.start_socket_mode(metrics_port=port)
    await fake.wait_for(lambda: json.loads(get(port, "/readyz")[1]).get("ready"), what="ready")
    _, before = await asyncio.to_thread(get, port, "/metrics")
    with FakeWorker(harness.redis_url):
        await fake.command("jazz piano", socket=True)
        await fake.command("genre:Jazzz", socket=True)  # refused: invalid
        parent = (await fake.wait_for(harness.parents, what="the parent message"))[0]
        await fake.wait_for(lambda: "✅" in parent.text, what="the result")
    health = await asyncio.to_thread(get, port, "/healthz")
    ready = await asyncio.to_thread(get, port, "/readyz")
    _, after = await asyncio.to_thread(get, port, "/metrics")

    check_bot_served("slack", before, after, health, ready)


def test_the_bots_log_the_redis_warnings_once_at_start(redis_url: str, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from bot.runner import serving_health
    from worker.metrics import Health
    from worker.settings import Settings

    with JobQueue.from_url(redis_url) as queue, caplog.at_level(logging.WARNING, logger="textunes"):
        with serving_health(Settings(redis_url=redis_url), queue, Health(), "connected", lambda: True,
                            logging.getLogger("textunes.slack")):
            pass
    assert [r.getMessage()[:27] for r in caplog.records] == ["Redis keeps nothing on disk"]


# ---- the real worker ------------------------------------------------------------------------------
@pytest.mark.slow
async def test_extend_button_end_to_end_with_the_real_worker(harness: Harness, real_worker: object) -> None:
    fake = harness.fake
    await harness.start_app(max_duration=15)
    await fake.command("jazz piano 5s format:flac")
    parent = (await fake.wait_for(harness.parents, what="the parent message"))[0]
    take = (await fake.wait_for(lambda: fake.with_files(fake.channel_id, parent.ts), timeout=240,
                                what="the take"))[0]
    assert [f["mimetype"] for f in take.files] == ["audio/flac", "image/png"]
    await fake.click(await buttons_of(harness, take), "➕ Extend")
    longer = (await fake.wait_for(lambda: takes(harness, parent)[1:], timeout=240, what="the longer take"))[0]
    assert re.match(r"Take 2 · extended from take 1 · seed \d+ · 0:15", longer.text)
    assert abs(decodes(fake.audio(longer)) - 15.0) < 0.1


@pytest.mark.slow
async def test_a_melody_shared_with_a_mention_end_to_end_with_the_real_melody_worker(
        harness: Harness, request: pytest.FixtureRequest) -> None:
    from tests.workers import start_worker
    from worker.engine import EngineOptions, ReferenceEngine  # type: ignore[attr-defined]
    from worker.melody import MelodyGen  # type: ignore[import-not-found]
    from worker.queue import MELODY_LANE

    fake = harness.fake
    model = MelodyGen.load(str(request.getfixturevalue("tiny_melody_dir")), device="cpu")
    queue = JobQueue.from_url(harness.redis_url, lane=MELODY_LANE)
    _, stop, thread = start_worker(queue, model, ReferenceEngine(model, EngineOptions(slots=2)), consumer="melody")
    try:
        await fake.wait_for(queue.melody_workers, what="the melody worker's heartbeat")
        await harness.start_app(max_duration=15)
        mention = await fake.mention(f"{STORY} 5s", files={"hum.wav": wav_clip(4.0)})
        take = (await fake.wait_for(lambda: fake.with_files(fake.channel_id, mention.ts), timeout=240,
                                    what="the take"))[0]
    finally:
        stop.set()
        await asyncio.to_thread(thread.join, 60)
        queue.close()
    assert decodes(fake.audio(take)) > 4.0 and fake.downloads
