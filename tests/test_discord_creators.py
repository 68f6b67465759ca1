"""Creators' features on Discord, end to end (the real discord.py client, the fake Discord, real
Redis, the fake worker): loops and file formats, the waveform picture, a melody clip, the
buttons under each take (New take, Extend, Loop) and the ➕ reaction, metrics and health."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import signal
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from bot import replies
from bot.discord_bot import _serve
from tests.endpoints import check_bot_served, get
from tests.fake_worker import TOKENS_EXPIRED, FakeWorker, tiny_png
from tests.fakes.discord import FakeFile, Posted
from tests.test_discord import NO_PERSISTENCE, Harness, decodes, harness  # noqa: F401 (the fixture)
from worker.local_redis import free_port
from worker.queue import JobQueue
from worker.settings import Settings

def wav_clip(seconds: float = 3.0, rate: int = 44_100) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    out = io.BytesIO()
    sf.write(out, 0.3 * np.sin(2 * np.pi * 440 * t), rate, format="WAV")
    return out.getvalue()


async def first_take(harness: Harness, options: dict[str, Any]) -> tuple[str, Posted]:
    """Ask ``/tune`` and wait for its take; returns (its thread's id, the take's message)."""
    fake = harness.fake
    known = len(fake.threads())
    await fake.slash("tune", options)
    thread_id = (await fake.wait_for(lambda: fake.threads()[known:], what="a thread"))[0]
    take = (await fake.wait_for(lambda: fake.with_files(thread_id), what="the take"))[0]
    return thread_id, take


def takes_in(harness: Harness, thread_id: str) -> list[Posted]:
    return sorted(harness.fake.with_files(thread_id), key=lambda m: int(m.id))


async def ephemeral_answer(harness: Harness, interaction: Any) -> str:
    """What the bot answered a click with, shown only to the user who clicked."""
    answers = await harness.fake.wait_for(lambda: [m for m in harness.fake.messages.values()
                                                   if m.interaction_id == interaction.id], what="the answer")
    assert interaction.callback_type == 6 and len(answers) == 1 and answers[0].ephemeral
    return answers[0].content


# ---- loop, format, picture, note ---------------------------------------------------------------
async def test_a_loop_is_a_flac_named_loop_with_its_waveform_inline_and_new_take_and_extend_buttons(
        harness: Harness) -> None:
    await harness.start_bot()
    with FakeWorker(harness.redis_url):
        _, take = await first_take(harness, {"genre": "Jazz", "loop": True})
        await harness.fake.wait_for(harness.events_settled, what="events acknowledged")
    name, data = take.audio()
    assert re.fullmatch(r"textunes-[a-z0-9-]+-1-loop\.flac", name) and decodes(data) > 1.5
    assert re.match(r"Take 1 · loop · seed \d+ · 10\.0 s$", take.content)
    picture = next(a for a in take.attachments if a["filename"].endswith(".png"))
    assert picture["filename"] == name.replace(".flac", ".png") and picture["content_type"] == "image/png"
    assert take.files[picture["filename"]] == tiny_png()  # the worker's picture, as a second attachment
    audio = next(a for a in take.attachments if a["filename"] == name)
    assert audio["content_type"] == "audio/flac"
    assert [c["label"] for row in take.components for c in row["components"]] == ["New take", "Extend"]  # a loop
    queue = JobQueue.from_url(harness.redis_url)
    assert not queue.redis.keys("textunes:preview:*") and not queue.redis.keys("textunes:audio:*")  # posted: gone
    queue.close()


@pytest.mark.parametrize("audio_format, content_type", [("wav", "audio/wav"), ("mp3", "audio/mpeg")])
async def test_the_format_option_picks_the_file_type(harness: Harness, audio_format: str, content_type: str) -> None:
    await harness.start_bot()
    with FakeWorker(harness.redis_url, note="ℹ️ A note from the worker."):
        _, take = await first_take(harness, {"mood": "Calm", "format": audio_format})
    name, data = take.audio()
    assert name.endswith(f"-1.{audio_format}") and decodes(data) > 1.5
    assert next(a for a in take.attachments if a["filename"] == name)["content_type"] == content_type
    assert take.content.endswith("\nℹ️ A note from the worker.")  # the take's note is shown with it
    assert [c["label"] for row in take.components for c in row["components"]] == ["New take", "Extend", "Loop"]


async def test_a_wav_over_the_upload_limit_goes_out_as_flac_then_mp3_and_the_message_says_so(
        harness: Harness) -> None:
    fake = harness.fake
    fake.attachment_size_limit = 60_000  # the 2 s WAV is 128 kB, its FLAC 29 kB
    await harness.start_bot()
    with FakeWorker(harness.redis_url):
        _, take = await first_take(harness, {"genre": "Jazz", "format": "wav"})
        name, data = take.audio()
        assert name.endswith("-1.flac") and decodes(data) > 1.5
        assert "The WAV was over this channel's 59 KiB upload limit, so this is a FLAC" in take.content

        fake.attachment_size_limit = 25_000  # not even the FLAC fits: an MP3
        _, second = await first_take(harness, {"genre": "Jazz", "format": "wav"})
    name, data = second.audio()
    assert name.endswith("-1.mp3") and len(data) <= 25_000 and decodes(data) > 1.5
    assert re.search(r"The WAV was over this channel's 24 KiB upload limit, so this is an MP3 \(\d+ kbps\)",
                     second.content)


# ---- buttons -------------------------------------------------------------------------------------
async def test_new_take_button_makes_another_take_in_the_thread(harness: Harness) -> None:
    fake = harness.fake
    bot = await harness.start_bot()
    with FakeWorker(harness.redis_url):
        thread_id, take = await first_take(harness, {"genre": "Jazz", "seed": 7})
        click = await fake.click(take.id, "New take", user_id=fake.other_user_id)
        second = (await fake.wait_for(lambda: takes_in(harness, thread_id)[1:], what="a second take"))[0]
        await fake.wait_for(harness.events_settled, what="events acknowledged")
    assert click.callback_type == 6  # answered at once, without a message: the status says the rest
    new_seed = re.match(r"Take 2 · seed (\d+) ·", second.content)
    assert new_seed and int(new_seed.group(1)) != 7  # a new take draws a new seed
    status = next(m for m in fake.in_channel(thread_id) if m.posted_as.startswith(f"<@{fake.other_user_id}>"))
    assert "🔁 Another take: 🎼 jazz" in status.posted_as and status.content.startswith("✅")
    job = bot.service.links.job_for_message("discord", second.id)
    assert job is not None and job.parent_job_id and job.request.genres == ["Jazz"]


async def test_extend_button_continues_the_take_by_30_seconds_as_a_new_take(harness: Harness) -> None:
    fake = harness.fake
    bot = await harness.start_bot()
    with FakeWorker(harness.redis_url):
        thread_id, take = await first_take(harness, {"genre": "Jazz", "duration": 10})
        await fake.click(take.id, "Extend")
        extended = (await fake.wait_for(lambda: takes_in(harness, thread_id)[1:], what="the longer take"))[0]
        status = next(m for m in fake.in_channel(thread_id) if "Extending" in m.posted_as)
        # ➕ on the longer take extends it again, from its own tokens
        await fake.wait_for(lambda: bot.service.links.shown("discord", extended.id), what="the take linked")
        await fake.react(extended.id, "➕")
        third = (await fake.wait_for(lambda: takes_in(harness, thread_id)[2:], what="an even longer take"))[0]
        await fake.click(extended.id, "Loop")  # a loop of the longer take: take 1 continued again, same seed
        loop = (await fake.wait_for(lambda: takes_in(harness, thread_id)[3:], what="the loop"))[0]
    assert re.match(r"Take 2 · extended from take 1 · seed \d+ · 0:40$", extended.content)
    assert extended.audio()[0].endswith("-2.mp3")
    assert re.match(r"Take 3 · extended from take 2 · seed \d+ · 1:10$", third.content)
    seed = re.search(r"seed (\d+)", extended.content).group(1)  # type: ignore[union-attr]
    assert re.match(rf"Take 4 · extended from take 1 · loop · seed {seed} · ", loop.content)
    assert status.posted_as.startswith(f"<@{fake.user_id}> ➕ Extending take 1 by 30 s: 🎼 jazz")
    assert status.content.startswith("✅")
    original = bot.service.links.job_for_message("discord", take.id)
    job = bot.service.links.job_for_message("discord", extended.id)
    assert job is not None and original is not None
    assert str(job.extend) == f"{original.job_id}:1" and job.request.duration == 30.0  # the seconds it adds
    assert job.request.genres == ["Jazz"]  # the original request


async def test_extend_stops_at_the_maximum_length_and_says_the_range(harness: Harness) -> None:
    fake = harness.fake
    bot = await harness.start_bot(max_duration=50)
    with FakeWorker(harness.redis_url):
        thread_id, take = await first_take(harness, {"genre": "Jazz", "duration": 30})
        await fake.click(take.id, "Extend")  # 30 s + 20 s: what the maximum leaves
        longer = (await fake.wait_for(lambda: takes_in(harness, thread_id)[1:], what="the longer take"))[0]
        assert re.search(r"· 0:50$", longer.content)
        click = await fake.click(longer.id, "Extend")
        await fake.wait_for(lambda: click.callback_type is not None, what="an answer")
    answer = await ephemeral_answer(harness, click)
    assert "Take 2 is already 0:50 long" in answer and "at most 0:50 (50 s)" in answer and "5 to 30 seconds" in answer
    assert len(takes_in(harness, thread_id)) == 2 and bot.queue.depth() == 0


async def test_a_click_on_an_expired_take_or_job_gets_a_private_reason_and_queues_nothing(harness: Harness) -> None:
    fake = harness.fake
    bot = await harness.start_bot(rate_limit_requests=3)
    with FakeWorker(harness.redis_url):
        thread_id, take = await first_take(harness, {"genre": "Jazz"})
        await fake.wait_for(harness.events_settled, what="events acknowledged")
        job = bot.service.links.job_for_message("discord", take.id)
        assert job is not None
        bot.queue.redis.delete(bot.queue.tokens_key(job.job_id, 1))  # the tokens' day is over
        extend = await fake.click(take.id, "Extend")
        await fake.wait_for(lambda: extend.callback_type is not None, what="an answer")
        bot.queue.redis.delete(f"textunes:job:{job.job_id}")  # and then the job record's
        again = await fake.click(take.id, "New take")
        await fake.wait_for(lambda: again.callback_type is not None, what="an answer")
    assert await ephemeral_answer(harness, extend) == replies.tokens_expired(1)
    assert await ephemeral_answer(harness, again) == replies.request_expired()
    assert len(takes_in(harness, thread_id)) == 1 and bot.queue.depth() == 0
    assert bot.service.limiter.peek(f"discord:{fake.user_id}") is None  # none of the user's requests used
    assert TOKENS_EXPIRED not in str(fake.messages)  # refused before the worker could fail it


async def test_loop_button_makes_a_loop_of_that_take_with_its_seed(harness: Harness) -> None:
    fake = harness.fake
    bot = await harness.start_bot()
    with FakeWorker(harness.redis_url):
        thread_id, take = await first_take(harness, {"genre": "Jazz", "seed": 42, "takes": 2})
        await fake.wait_for(lambda: len(takes_in(harness, thread_id)) == 2, what="both takes")
        second_take = takes_in(harness, thread_id)[1]
        await fake.click(second_take.id, "Loop")
        loop = (await fake.wait_for(lambda: takes_in(harness, thread_id)[2:], what="the loop"))[0]
        await fake.wait_for(lambda: bot.service.links.shown("discord", loop.id), what="the loop linked")
        await fake.react(loop.id, "🔂")  # a loop of a loop: no
        refusal = await fake.wait_for(lambda: [m for m in fake.in_channel(thread_id) if "already" in m.content],
                                      what="the refusal")
        await fake.click(loop.id, "Extend")  # a loop extended is a longer track, not a loop
        longer = (await fake.wait_for(lambda: takes_in(harness, thread_id)[3:], what="the longer track"))[0]
    assert re.match(r"Take 3 · loop · seed 43 · ", loop.content)  # take 2's seed: 42 + 1
    assert loop.audio()[0].endswith("-3-loop.flac")
    job = bot.service.links.job_for_message("discord", loop.id)
    assert job is not None and job.request.loop and job.request.seed == 43 and job.request.takes == 1
    assert replies.already_a_loop(3) in refusal[0].content
    assert re.match(r"Take 4 · extended from take 3 · seed \d+ · 0:40$", longer.content)
    assert longer.audio()[0].endswith("-4.mp3") and len(takes_in(harness, thread_id)) == 4


async def test_a_double_click_makes_one_job(harness: Harness) -> None:
    fake = harness.fake
    bot = await harness.start_bot()
    with FakeWorker(harness.redis_url):
        thread_id, take = await first_take(harness, {"genre": "Jazz"})
        await fake.wait_for(harness.events_settled, what="events acknowledged")
    first = await fake.click(take.id, "New take")
    second = await fake.click(take.id, "New take")
    await fake.wait_for(lambda: first.callback_type and second.callback_type, what="both answered")
    await fake.wait_for(lambda: bot.queue.depth() == 1, what="the job")
    assert (first.callback_type, second.callback_type) == (6, 6) and bot.queue.depth() == 1


async def test_the_fake_discord_refuses_late_answers_and_broken_components(harness: Harness) -> None:
    """The fake is as strict as Discord: a bot that broke these rules would fail the tests above."""
    import aiohttp

    fake = harness.fake
    await harness.start_bot()
    late = await fake.slash("tune", {"tempo": "slow"})  # the bot answers (privately) at once…
    await fake.wait_for(lambda: late.callback_type is not None, what="an answer")
    late.callback_type, late.created = None, late.created - 4  # …but had it taken 4 s:
    headers = {"Authorization": f"Bot {fake.bot_token}"}
    broken_rows = [
        [{"type": 2, "style": 2, "label": "x", "custom_id": "a" * 101}],  # custom_id over 100
        [{"type": 2, "style": 2, "label": "x", "custom_id": "same"}, {"type": 2, "style": 2, "label": "y",
                                                                        "custom_id": "same"}],
        [{"type": 2, "style": 2, "label": str(n), "custom_id": str(n)} for n in range(6)],  # 6 in a row
        [{"type": 2, "style": 2, "custom_id": "no-label"}],
    ]
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{fake.base_url}/api/v10/interactions/{late.id}/{late.token}/callback",
                                json={"type": 4, "data": {"content": "too late"}}) as response:
            assert response.status == 404 and (await response.json())["code"] == 10062
        for row in broken_rows:
            async with session.post(f"{fake.base_url}/api/v10/channels/{fake.channel_id}/messages", headers=headers,
                                    json={"content": "x", "components": [{"type": 1, "components": row}]}) as response:
                assert response.status == 400, row


# ---- melody --------------------------------------------------------------------------------------
async def test_a_melody_clip_is_checked_and_queued_for_a_melody_worker(harness: Harness) -> None:
    fake = harness.fake
    bot = await harness.start_bot()
    with FakeWorker(harness.redis_url, melody=True) as worker:
        thread_id, take = await first_take(harness, {"genre": "Jazz", "melody": FakeFile("hum.wav", wav_clip())})
        job = bot.service.links.job_for_message("discord", thread_id)
        assert job is not None and job.melody_key
        clip = worker.melodies[job.job_id]
    samples, rate = sf.read(io.BytesIO(clip))
    assert rate == 32_000 and samples.ndim == 1 and abs(len(samples) / rate - 3.0) < 0.05  # mono 32 kHz, whole
    assert fake.downloads  # read from Discord's CDN with the bot's HTTP session
    assert decodes(take.audio()[1]) > 1.5


@pytest.mark.parametrize("case", ["no melody worker", "declared too large", "not audio"])
async def test_a_melody_that_cannot_be_used_is_refused_privately_and_queues_nothing(harness: Harness,
                                                                                    case: str) -> None:
    fake = harness.fake
    bot = await harness.start_bot(rate_limit_requests=1)
    clip = {"no melody worker": FakeFile("hum.wav", wav_clip()),
            "declared too large": FakeFile("long.wav", b"RIFF", size=11 * 1024 * 1024),
            "not audio": FakeFile("notes.mp3", b"these are my lyrics, not a song " * 40)}[case]
    with FakeWorker(harness.redis_url, melody=case != "no melody worker"):
        interaction = await fake.slash("tune", {"genre": "Jazz", "melody": clip})
        answer = (await fake.wait_for(lambda: [m for m in fake.messages.values()
                                               if m.ephemeral and m.interaction_id == interaction.id],
                                      what="the private answer"))[0]
    expected = {"no melody worker": "No worker here can follow a melody right now",
                "declared too large": "long.wav is 11.0 MB; a melody clip can be at most 10 MB",
                "not audio": "notes.mp3 isn't audio I can read"}[case]
    assert expected in answer.content
    assert bot.queue.depth() == 0 and not fake.threads()
    assert bot.service.limiter.peek(f"discord:{fake.user_id}") is None  # the user's one request is still free
    assert (len(fake.downloads) > 0) == (case == "not audio")  # a size or a missing worker: never downloaded
    assert not [m for m in fake.messages.values() if m.interaction_id == interaction.id and not m.ephemeral]


# ---- metrics and health --------------------------------------------------------------------------
async def test_the_bot_serves_metrics_health_and_readiness(harness: Harness) -> None:
    fake = harness.fake
    harness.expected_logs.append(NO_PERSISTENCE)
    port = free_port()
    settings = Settings(redis_url=harness.redis_url, discord_token=fake.bot_token, metrics_port=port,
                        progress_interval_s=0.0)
    with JobQueue.from_url(harness.redis_url) as queue:
        serving = asyncio.create_task(_serve(settings, queue, fake.guild_id, True))
        await fake.wait_for(fake.identified.is_set, what="the bot to connect")
        await fake.wait_for(lambda: json.loads(get(port, "/readyz")[1]).get("ready"), what="ready")
        _, before = await asyncio.to_thread(get, port, "/metrics")
        with FakeWorker(harness.redis_url):
            await fake.slash("tune", {"genre": "Jazz"})
            await fake.slash("tune", {"genre": "Jazzz"})  # refused: invalid
            thread_id = (await fake.wait_for(fake.threads, what="a thread"))[0]
            await fake.wait_for(lambda: fake.messages[thread_id].content.startswith("✅"), what="the result")
        health = await asyncio.to_thread(get, port, "/healthz")
        ready = await asyncio.to_thread(get, port, "/readyz")
        _, after = await asyncio.to_thread(get, port, "/metrics")
        os.kill(os.getpid(), signal.SIGTERM)
        assert await asyncio.wait_for(serving, 15) == 0

    check_bot_served("discord", before, after, health, ready)


# ---- the real worker ------------------------------------------------------------------------------
@pytest.mark.slow
async def test_extend_and_loop_end_to_end_with_the_real_worker(harness: Harness, real_worker: Any) -> None:
    fake = harness.fake
    await harness.start_bot(max_duration=15)
    thread_id, take = await first_take_waiting(harness, {"genre": "Jazz", "duration": 5, "format": "wav"})
    name, data = take.audio()
    assert name.endswith("-1.wav") and abs(decodes(data) - 5.0) < 0.1
    assert any(n.endswith("-1.png") for n in take.files)  # the worker's waveform, inline
    await fake.click(take.id, "Extend")  # 5 s + what the 15 s maximum leaves
    longer = (await fake.wait_for(lambda: takes_in(harness, thread_id)[1:], timeout=240, what="the longer take"))[0]
    assert re.match(r"Take 2 · extended from take 1 · seed \d+ · 0:15", longer.content)
    assert abs(decodes(longer.audio()[1]) - 15.0) < 0.1
    await fake.click(take.id, "Loop")
    loop = (await fake.wait_for(lambda: takes_in(harness, thread_id)[2:], timeout=240, what="the loop"))[0]
    assert loop.audio()[0].endswith("-3-loop.wav") and re.match(r"Take 3 · loop · seed ", loop.content)


async def first_take_waiting(harness: Harness, options: dict[str, Any]) -> tuple[str, Posted]:
    """``first_take`` with the patience a model needs."""
    fake = harness.fake
    await fake.slash("tune", options)
    thread_id = (await fake.wait_for(fake.threads, what="a thread"))[0]
    take = (await fake.wait_for(lambda: fake.with_files(thread_id), timeout=240, what="the take"))[0]
    return thread_id, take
