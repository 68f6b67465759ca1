"""The Discord bot end to end: the real discord.py client against a fake Discord (REST +
gateway on 127.0.0.1), real Redis, and the fake worker (sine-tone MP3s in milliseconds)."""

from __future__ import annotations

import asyncio
import io
import logging
import re
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from bot import replies
from bot.discord_bot import TexTunesBot
from bot.service import preview_caption
from tests import fake_worker
from tests.fake_worker import FakeWorker
from tests.events import events_settled
from tests.logs import CollectedWarnings
from tests.fakes.discord import FakeDiscord, FakeInteraction, Posted
from worker.queue import JobQueue
from worker.settings import Settings


NO_PERSISTENCE = "Redis keeps nothing on disk"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Harness:
    fake: FakeDiscord
    redis_url: str
    clock: FakeClock = field(default_factory=FakeClock)
    running: list[tuple[TexTunesBot, asyncio.Task[None], JobQueue]] = field(default_factory=list)
    expected_logs: list[str] = field(default_factory=list)  # warnings a test provokes on purpose

    async def start_bot(self, *, consumer: str = "discord-test", guild: bool = True, **settings: Any) -> TexTunesBot:
        options = {"redis_url": self.redis_url, "discord_token": self.fake.bot_token, "progress_interval_s": 0.0,
                   **settings}
        queue = JobQueue.from_url(self.redis_url, visibility_timeout_s=30.0)
        bot = TexTunesBot(Settings(**options), queue, guild_id=self.fake.guild_id if guild else "",
                          clock=self.clock, consumer=consumer, pump_block_ms=50, guild_ready_timeout=0.05)
        self.fake.identified.clear()
        task = asyncio.create_task(bot.start(self.fake.bot_token))
        self.running.append((bot, task, queue))
        await self.fake.wait_for(lambda: bot.is_ready() or task.done(), what="the bot to connect")
        if task.done():
            task.result()
        return bot

    async def stop_bot(self, bot: TexTunesBot) -> None:
        for entry in list(self.running):
            if entry[0] is bot:
                self.running.remove(entry)
                await bot.close()
                await asyncio.wait_for(entry[1], 10)
                entry[2].close()

    def status(self, interaction: FakeInteraction) -> Posted:
        return self.fake.messages[interaction.original_id]

    def status_text(self, interaction: FakeInteraction) -> str:
        """The status message's text now ("" before the interaction is answered)."""
        message = self.fake.messages.get(interaction.original_id)
        return message.content if message else ""

    def events_settled(self) -> bool:
        return events_settled(self.redis_url, "discord")


@pytest.fixture
async def harness(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Harness]:
    catcher = CollectedWarnings()
    loggers = [logging.getLogger(name) for name in ("discord", "textunes")]
    for logger in loggers:
        logger.addHandler(catcher)
    fake = FakeDiscord()
    await fake.start()
    fake.patch(monkeypatch)
    h = Harness(fake, redis_url)
    try:
        yield h
    finally:
        for bot, _, _ in list(h.running):
            await h.stop_bot(bot)
        await fake.stop()
        for logger in loggers:
            logger.removeHandler(catcher)
    problems = [f"{r.name}: {r.getMessage()}" for r in catcher.records
                if not any(expected in r.getMessage() for expected in h.expected_logs)]
    assert not problems, "warnings or errors were logged:\n" + "\n".join(problems)
    assert not fake.unhandled, f"the bot called REST routes the fake doesn't know: {fake.unhandled}"


def decodes(mp3: bytes) -> float:
    """Seconds of audio in ``mp3`` (fails if it isn't audio)."""
    samples, rate = sf.read(io.BytesIO(mp3))
    assert len(samples) > 0 and np.isfinite(samples).all()
    return len(samples) / rate


# ---- /tune ---------------------------------------------------------------------------------
async def test_tune_defers_then_status_thread_and_takes_arrive(harness: Harness) -> None:
    fake = harness.fake
    await harness.start_bot()
    assert fake.command_scope == f"guild:{fake.guild_id}"
    tune = next(c for c in fake.commands if c["name"] == "tune")
    options = {o["name"]: o for o in tune["options"]}
    assert set(options) == {"prompt", "genre", "mood", "instruments", "tempo", "duration", "takes", "seed",
                            "loop", "format", "melody"}
    assert (options["loop"]["type"], options["format"]["type"], options["melody"]["type"]) == (5, 3, 11)  # bool, str, file
    assert [c["value"] for c in options["format"]["choices"]] == ["mp3", "flac", "wav"]
    # Korean names and descriptions, for users whose Discord is in Korean (as the inline syntax's 장르:, 루프:…)
    korean = {name: o["name_localizations"]["ko"] for name, o in options.items()}
    assert (korean["genre"], korean["mood"], korean["loop"], korean["format"], korean["melody"]) == (
        "장르", "분위기", "루프", "형식", "멜로디")
    assert all(o["description_localizations"]["ko"] for o in options.values())
    durations = [c["value"] for o in tune["options"] if o["name"] == "duration" for c in o["choices"]]
    assert durations and max(durations) == 180  # the configured maximum (TEXTUNES_MAX_DURATION, 180 by default)

    with FakeWorker(harness.redis_url):
        interaction = await fake.slash("tune", {"prompt": "rainy night", "genre": "Lofi", "mood": "Calm",
                                                "tempo": "80", "takes": 2})
        thread_id = (await fake.wait_for(fake.threads, what="a thread"))[0]
        takes = await fake.wait_for(lambda: len(fake.with_files(thread_id)) == 2 and fake.with_files(thread_id),
                                    what="two takes in the thread")
        await fake.wait_for(lambda: harness.status_text(interaction).startswith("✅"), what="the final status")

    assert interaction.callback_type == 5  # deferred: Discord's 3-second deadline is met at once
    status = harness.status(interaction)
    assert not status.ephemeral and thread_id == status.id  # the thread hangs on the status message
    assert any("#1 in line" in text or "starting" in text or "generating" in text for text, _ in status.edits)
    assert "lo-fi" in status.content and "2 takes ready" in status.content
    seeds = set()
    for n, message in enumerate(sorted(takes, key=lambda m: int(m.id)), start=1):
        name, data = message.audio()
        assert re.fullmatch(rf"textunes-[a-z0-9-]+-{n}\.mp3", name)
        assert decodes(data) > 1.0
        match = re.search(r"Take (\d) · seed (\d+) · 10\.0 s", message.content)
        assert match and int(match.group(1)) == n
        seeds.add(match.group(2))
        assert message.via == "bot"
    assert len(seeds) == 2


async def test_tune_without_anything_to_play_answers_privately(harness: Harness) -> None:
    fake = harness.fake
    bot = await harness.start_bot()
    interaction = await fake.slash("tune", {"tempo": "slow", "takes": 2})
    await fake.wait_for(lambda: interaction.callback_type is not None, what="an answer")
    assert interaction.callback_type == 4
    message = harness.status(interaction)
    assert message.ephemeral and "prompt" in message.content and "genre" in message.content
    assert "For example" in message.content
    assert bot.queue.depth() == 0


async def test_tune_with_unknown_genre_suggests_close_ones(harness: Harness) -> None:
    fake = harness.fake
    await harness.start_bot()
    interaction = await fake.slash("tune", {"genre": "Jazzz", "mood": "Calm"})
    await fake.wait_for(lambda: interaction.callback_type is not None, what="an answer")
    message = harness.status(interaction)
    assert message.ephemeral and "Unknown genre 'Jazzz'" in message.content and "Jazz" in message.content


async def test_autocomplete_offers_catalog_names_in_english_and_korean(harness: Harness) -> None:
    fake = harness.fake
    await harness.start_bot()
    interaction = await fake.slash("tune", {"instruments": "Piano, 첼"}, autocomplete="instruments")
    await fake.wait_for(lambda: interaction.callback_type is not None, what="choices")
    assert interaction.callback_type == 8
    values = [c["value"] for c in interaction.callback_data["choices"]]
    assert "Piano, Cello" in values
    names = [c["name"] for c in interaction.callback_data["choices"]]
    assert any("첼로" in n for n in names)


async def test_rate_limit_answers_privately_with_when_to_retry(harness: Harness) -> None:
    fake = harness.fake
    bot = await harness.start_bot(rate_limit_requests=2)
    hold = threading.Event()
    hold.set()
    with FakeWorker(harness.redis_url, hold=hold):
        first = [await fake.slash("tune", {"genre": "Jazz"}) for _ in range(2)]
        for interaction in first:
            await fake.wait_for(lambda: " — " in harness.status_text(interaction), what="queued")
        third = await fake.slash("tune", {"genre": "Jazz"})
        await fake.wait_for(lambda: third.callback_type is not None, what="an answer")
        message = harness.status(third)
        assert third.callback_type == 4 and message.ephemeral
        assert "Try again in" in message.content and "2 tracks" in message.content
        # someone else is not limited
        other = await fake.slash("tune", {"genre": "Jazz"}, user_id=fake.other_user_id)
        await fake.wait_for(lambda: other.callback_type is not None, what="an answer")
        assert other.callback_type == 5
        assert bot.queue.depth() == 3
        hold.clear()


async def test_failed_job_says_so_in_the_thread_with_the_job_id(harness: Harness) -> None:
    fake = harness.fake
    bot = await harness.start_bot()
    with FakeWorker(harness.redis_url, fail_prompts=("boom",)):
        interaction = await fake.slash("tune", {"prompt": "boom boom", "genre": "Rock"})
        thread_id = (await fake.wait_for(fake.threads, what="a thread"))[0]
        warning = await fake.wait_for(
            lambda: [m for m in fake.in_channel(thread_id) if m.content.startswith("⚠️")], what="the failure")
        await fake.wait_for(lambda: harness.status_text(interaction).startswith("⚠️"), what="the status to say so")
    job = bot.service.links.job_for_message("discord", harness.status(interaction).id)
    assert job is not None and job.job_id in warning[0].content
    assert "Traceback" not in warning[0].content and not fake.with_files()


async def test_every_message_fits_discords_limits_and_the_job_keeps_the_whole_caption(harness: Harness) -> None:
    from pipeline.catalog import catalog

    fake = harness.fake
    bot = await harness.start_bot()
    names = {kind: ", ".join(e.name for e in catalog().entries(kind)[:40]) for kind in ("genre", "mood", "instrument")}
    prompt = ("rain on the window of a night bus " * 40)[:1000]
    assert all(len(v) < 6000 for v in names.values())  # each option within what Discord lets a user send
    with FakeWorker(harness.redis_url):
        interaction = await fake.slash("tune", {"prompt": prompt, "genre": names["genre"], "mood": names["mood"],
                                                "instruments": names["instrument"]})
        thread_id = (await fake.wait_for(fake.threads, what="a thread"))[0]
        await fake.wait_for(lambda: fake.with_files(thread_id), what="the take")
        await fake.wait_for(lambda: harness.status_text(interaction).startswith("✅"), what="the final status")
        unknown = await fake.slash("tune", {"genre": "x" * 3000})
        await fake.wait_for(lambda: unknown.callback_type is not None, what="an answer")
    job = bot.service.links.job_for_message("discord", thread_id)
    assert job is not None and job.request.prompt == prompt and len(job.request.genres) == 40  # not clipped
    assert len(preview_caption(job.request)) > 2000  # what the status line would have been in full
    assert fake.status_codes() == []  # Discord refused nothing
    assert all(len(m.content) <= 2000 for m in fake.messages.values())
    assert len(fake.channels[thread_id]["name"]) <= 100 and harness.status_text(interaction).endswith("for another.")
    assert harness.status(unknown).ephemeral and "Unknown genre" in harness.status(unknown).content


@pytest.mark.parametrize("registered, value", [(4, 300), (4, 1), (3, "300"), (3, "forever")])
async def test_a_duration_the_command_no_longer_offers_gets_the_allowed_range(
        harness: Harness, registered: int, value: Any) -> None:
    fake = harness.fake
    bot = await harness.start_bot()
    # /tune as Discord still has it registered from an older start (a higher maximum, or another type)
    duration = next(o for c in fake.commands for o in c["options"] if o["name"] == "duration")
    duration["type"] = registered
    interaction = await fake.slash("tune", {"genre": "Jazz", "duration": value})
    await fake.wait_for(lambda: interaction.callback_type is not None, what="an answer")
    reply = harness.status(interaction)
    assert reply.ephemeral and "between 5 and 180 seconds" in reply.content
    assert bot.queue.depth() == 0


async def test_a_mention_with_only_emoji_is_refused_before_queueing_and_costs_no_request(harness: Harness) -> None:
    fake = harness.fake
    bot = await harness.start_bot(rate_limit_requests=1)
    mention = await fake.mention("🎵🎶🔥 ✨")
    reply = await fake.wait_for(lambda: [m for m in fake.in_channel(fake.channel_id) if m.reference_id == mention.id],
                                what="the refusal")
    assert "no words to analyse" in reply[0].content
    assert bot.queue.depth() == 0 and not fake.threads()
    assert bot.service.limiter.peek(f"discord:{fake.user_id}") is None  # the user's one request is still free


# ---- where results go, and the 15-minute token -----------------------------------------------
@pytest.mark.parametrize("minutes_later, expected_via", [(1, "interaction"), (16, "bot")])
async def test_result_without_thread_uses_interaction_token_then_bot_token(
        harness: Harness, minutes_later: int, expected_via: str) -> None:
    fake = harness.fake
    await harness.start_bot()
    hold = threading.Event()
    hold.set()
    with FakeWorker(harness.redis_url, hold=hold):
        interaction = await fake.slash("tune", {"genre": "Ambient"}, channel_id=fake.no_threads_channel_id)
        await fake.wait_for(lambda: " — " in harness.status_text(interaction), what="the queued status")
        harness.clock.now += minutes_later * 60
        if minutes_later >= 15:
            fake.expire(interaction)  # Discord no longer takes the token
        hold.clear()
        takes = await fake.wait_for(lambda: fake.with_files(fake.no_threads_channel_id), what="the take")
        await fake.wait_for(lambda: harness.status_text(interaction).startswith("✅"), what="the final status")
    assert not fake.threads()  # threads are refused in this channel: the reply goes in place
    assert takes[0].via == expected_via
    assert harness.status(interaction).edits[-1][1] == expected_via


async def test_tune_in_a_direct_message_replies_in_place(harness: Harness) -> None:
    fake = harness.fake
    await harness.start_bot()
    with FakeWorker(harness.redis_url):
        interaction = await fake.slash("tune", {"mood": "Happy"}, channel_id=fake.dm_channel_id)
        takes = await fake.wait_for(lambda: fake.with_files(fake.dm_channel_id), what="the take")
    assert not fake.threads() and takes[0].via == "interaction"
    assert not [r for r in fake.requests if r.path.endswith("/threads")]  # never tried in a DM
    assert interaction.callback_type == 5


async def test_a_take_over_the_upload_limit_is_reencoded_or_explained(
        harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.audio import encode_mp3

    def louder_sine(seconds: float) -> bytes:  # 192 kbps: about 48 kB for 2 s
        t = np.arange(int(seconds * 32_000)) / 32_000
        return encode_mp3((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 32_000, bitrates=(192,)).data

    monkeypatch.setattr(fake_worker, "sine_mp3", louder_sine)
    fake = harness.fake
    fake.attachment_size_limit = 30_000
    await harness.start_bot()
    with FakeWorker(harness.redis_url):
        await fake.slash("tune", {"genre": "Jazz"})
        thread_id = (await fake.wait_for(fake.threads, what="a thread"))[0]
        take = (await fake.wait_for(lambda: fake.with_files(thread_id), what="the take"))[0]
        _, data = take.audio()
        assert len(data) <= 30_000 and decodes(data) > 1.5

        fake.attachment_size_limit = 3_000  # not even the lowest bitrate fits
        await fake.slash("tune", {"genre": "Rock"})
        await fake.wait_for(lambda: len(fake.threads()) == 2, what="a second thread")
        second = fake.threads()[1]
        notice = await fake.wait_for(lambda: [m for m in fake.in_channel(second) if "upload limit" in m.content],
                                     what="the too-large notice")
    assert "shorter duration" in notice[0].content and not fake.with_files(second)


# ---- mentions ----------------------------------------------------------------------------------
STORY = ("The rain had not stopped for three days. She sat by the window with cold tea, reading "
         "her father's letters one last time before the house was sold.")


async def test_mention_with_text_runs_text_mode_and_explains_the_analysis_first(harness: Harness) -> None:
    fake = harness.fake
    bot = await harness.start_bot()
    with FakeWorker(harness.redis_url):
        mention = await fake.mention(STORY)
        thread_id = (await fake.wait_for(fake.threads, what="a thread"))[0]
        await fake.wait_for(lambda: fake.with_files(thread_id), what="the take")
    status = fake.messages[thread_id]
    assert status.reference_id == mention.id and status.via == "bot"
    assert status.edits[0][0].startswith("🎼 ")  # the queue position or, if the worker was faster, progress
    await fake.wait_for(lambda: status.content.startswith("✅ melancholic"), what="the final status")
    job = bot.service.links.job_for_message("discord", status.id)
    assert job is not None and job.request.mode == "text" and job.request.text == STORY
    posts = sorted(fake.in_channel(thread_id), key=lambda m: int(m.id))
    assert posts[0].content.startswith("🧠 melancholic") and not posts[0].files
    assert posts[1].files  # the music comes after what the analysis decided


async def test_mention_with_a_txt_attachment_reads_the_file(harness: Harness) -> None:
    fake = harness.fake
    bot = await harness.start_bot()
    await fake.mention("", files={"script.txt": ("\ufeff" + STORY).encode()})
    thread_id = (await fake.wait_for(fake.threads, what="a thread"))[0]
    await fake.wait_for(lambda: bot.service.links.job_for_message("discord", thread_id), what="the job")
    assert bot.service.links.job_for_message("discord", thread_id).request.text == STORY


@pytest.mark.parametrize("withheld", [False, True])
async def test_mention_in_a_reply_uses_the_replied_to_message(harness: Harness, withheld: bool) -> None:
    fake = harness.fake
    fake.withhold_content = withheld  # then the bot fetches the message over REST
    bot = await harness.start_bot()
    original = fake.user_message(STORY)
    await fake.mention("{bot}", reply_to=original.id)
    thread_id = (await fake.wait_for(fake.threads, what="a thread"))[0]
    await fake.wait_for(lambda: bot.service.links.job_for_message("discord", thread_id), what="the job")
    assert bot.service.links.job_for_message("discord", thread_id).request.text == STORY


async def test_bare_mention_gets_help_and_queues_nothing(harness: Harness) -> None:
    fake = harness.fake
    bot = await harness.start_bot()
    mention = await fake.mention("")
    reply = await fake.wait_for(lambda: [m for m in fake.in_channel(fake.channel_id) if m.reference_id == mention.id],
                                what="the help reply")
    assert "/tune" in reply[0].content and bot.queue.depth() == 0 and not fake.threads()


# ---- 🔁 -------------------------------------------------------------------------------------------
async def test_regenerate_reaction_makes_a_new_take_in_the_same_thread(harness: Harness) -> None:
    fake = harness.fake
    bot = await harness.start_bot()
    with FakeWorker(harness.redis_url):
        await fake.slash("tune", {"genre": "Jazz", "seed": 7})
        thread_id = (await fake.wait_for(fake.threads, what="a thread"))[0]
        first = (await fake.wait_for(lambda: fake.with_files(thread_id), what="the first take"))[0]

        # 🔁 is offered on every take (the bot reacts first, and ignores its own reaction)
        await fake.wait_for(lambda: ("🔁", fake.bot_id) in first.reactions, what="the bot's 🔁")
        await fake.wait_for(lambda: bot.service.links.job_for_message("discord", first.id), what="the take to be linked")
        await fake.react(first.id, "👍")
        await fake.react(first.id, "🔁")
        takes = await fake.wait_for(lambda: len(fake.with_files(thread_id)) == 2 and fake.with_files(thread_id),
                                    what="a second take")
        await harness.fake.wait_for(harness.events_settled, what="events acknowledged")
    assert len(fake.with_files()) == 2  # one new take: 👍 and the bot's own 🔁 did nothing
    ordered = sorted(takes, key=lambda m: int(m.id))
    seeds = [re.search(r"seed (\d+)", m.content).group(1) for m in ordered]
    assert seeds[0] == "7" and seeds[1] != seeds[0]
    # the new take continues the thread's numbering: no second "Take 1" or "…-1.mp3"
    assert [m.content.split(" · ")[0] for m in ordered] == ["Take 1", "Take 2"]
    assert [next(iter(m.files)).rsplit("-", 1)[1] for m in ordered] == ["1.mp3", "2.mp3"]
    regenerated = [m for m in fake.in_channel(thread_id) if not m.files and m.content.startswith("✅")]
    assert len(regenerated) == 1 and regenerated[0].edits[0][0].startswith("🎼 jazz")  # its own status message


async def test_regenerate_counts_against_the_rate_limit(harness: Harness) -> None:
    fake = harness.fake
    bot = await harness.start_bot(rate_limit_requests=1)
    with FakeWorker(harness.redis_url):
        await fake.slash("tune", {"genre": "Jazz"})
        thread_id = (await fake.wait_for(fake.threads, what="a thread"))[0]
        first = (await fake.wait_for(lambda: fake.with_files(thread_id), what="the take"))[0]
        await fake.wait_for(lambda: bot.service.links.job_for_message("discord", first.id), what="the take to be linked")
        await fake.react(first.id, "🔁")
        refusal = await fake.wait_for(lambda: [m for m in fake.in_channel(thread_id) if "Try again in" in m.content],
                                      what="the refusal")
    assert f"<@{fake.user_id}>" in refusal[0].content and len(fake.with_files()) == 1


# ---- restarts ----------------------------------------------------------------------------------
async def test_results_finished_while_the_bot_was_down_arrive_once(harness: Harness) -> None:
    fake = harness.fake
    bot = await harness.start_bot()
    hold = threading.Event()
    hold.set()
    with FakeWorker(harness.redis_url, hold=hold) as worker:
        interaction = await fake.slash("tune", {"genre": "Jazz", "takes": 2})
        await fake.wait_for(lambda: " — " in harness.status_text(interaction), what="queued")
        await harness.stop_bot(bot)
        hold.clear()
        await fake.wait_for(lambda: worker.handled, what="the worker to finish")
    bot = await harness.start_bot()  # same consumer name: reads what it missed
    thread_id = fake.threads()[0]
    await fake.wait_for(lambda: len(fake.with_files(thread_id)) == 2, what="both takes")
    await fake.wait_for(harness.events_settled, what="events acknowledged")
    await harness.stop_bot(bot)
    # a third start (or a redelivery) finds nothing left to post
    await harness.start_bot()
    await fake.wait_for(harness.events_settled, what="events acknowledged")
    assert len(fake.with_files(thread_id)) == 2
    assert harness.status_text(interaction).startswith("✅")


# ---- the command line ------------------------------------------------------------------------
def test_run_without_a_token_exits_2_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from bot.discord_bot import configure_parser, run

    parser = argparse.ArgumentParser()
    configure_parser(parser)
    assert run(parser.parse_args([]), Settings(discord_token="")) == 2
    assert "DISCORD_TOKEN" in capsys.readouterr().err


async def test_the_bot_token_never_reaches_the_logs(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    fake = harness.fake
    await harness.start_bot()
    with FakeWorker(harness.redis_url):
        await fake.slash("tune", {"genre": "Jazz"})
        await fake.wait_for(lambda: fake.with_files(), what="the take")
    assert caplog.records and not [r for r in caplog.records if fake.bot_token in r.getMessage()]
    assert any(re.search(r"job [0-9a-f]{12}: /tune", r.getMessage()) for r in caplog.records)


@pytest.mark.slow
async def test_end_to_end_with_the_real_worker(harness: Harness, real_worker: Any) -> None:
    fake = harness.fake
    await harness.start_bot()
    await fake.slash("tune", {"genre": "Jazz", "duration": 5})
    thread_id = (await fake.wait_for(fake.threads, what="a thread"))[0]
    take = (await fake.wait_for(lambda: fake.with_files(thread_id), timeout=240, what="the take"))[0]
    _, data = take.audio()
    assert decodes(data) > 4.0


async def test_regenerate_on_a_bot_message_that_is_no_result_explains(harness: Harness) -> None:
    fake = harness.fake
    bot = await harness.start_bot()
    mention = await fake.mention("")
    help_reply = (await fake.wait_for(
        lambda: [m for m in fake.in_channel(fake.channel_id) if m.reference_id == mention.id], what="help"))[0]
    await fake.react(help_reply.id, "🔁")
    await fake.react(mention.id, "🔁")  # someone else's message: not the bot's business
    notice = await fake.wait_for(lambda: [m for m in fake.in_channel(fake.channel_id)
                                          if m.content == replies.not_a_result()], what="the notice")
    assert len(notice) == 1 and bot.queue.depth() == 0


async def test_without_a_guild_id_the_command_is_registered_globally(harness: Harness) -> None:
    await harness.start_bot(guild=False)
    assert harness.fake.command_scope == "global"
    assert [c["name"] for c in harness.fake.commands] == ["tune"]


async def test_in_a_dm_any_message_is_for_the_bot_and_replies_stay_in_place(harness: Harness) -> None:
    fake = harness.fake
    bot = await harness.start_bot()
    with FakeWorker(harness.redis_url):
        await fake.say(STORY, channel_id=fake.dm_channel_id)
        take = (await fake.wait_for(lambda: fake.with_files(fake.dm_channel_id), what="the take"))[0]
    assert take.via == "bot" and not fake.threads()
    status = (await fake.wait_for(lambda: [m for m in fake.in_channel(fake.dm_channel_id)
                                           if m.content.startswith("✅")], what="the final status"))[0]
    assert bot.service.links.job_for_message("discord", status.id).request.text == STORY


async def test_replying_to_a_result_without_mentioning_the_bot_starts_nothing(harness: Harness) -> None:
    fake = harness.fake
    bot = await harness.start_bot()
    with FakeWorker(harness.redis_url):
        await fake.slash("tune", {"genre": "Jazz"})
        thread_id = (await fake.wait_for(fake.threads, what="a thread"))[0]
        take = (await fake.wait_for(lambda: fake.with_files(thread_id), what="the take"))[0]
        await fake.say("love this one!", channel_id=thread_id, reply_to=take.id, pings_bot=True)
        await fake.mention("", channel_id=thread_id)  # a later message the bot does answer (help)
        await fake.wait_for(lambda: [m for m in fake.in_channel(thread_id) if "/tune" in m.content], what="help")
    assert bot.queue.depth() == 0 and len(fake.with_files()) == 1
    assert not [m for m in fake.in_channel(thread_id) if m.content.startswith("🧠")]


async def test_serve_exits_cleanly_on_sigterm_and_says_when_the_token_is_wrong(
        harness: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    import os
    import signal

    from bot.discord_bot import _serve

    fake = harness.fake
    harness.expected_logs.append(NO_PERSISTENCE)  # the test Redis keeps nothing on disk: the bot says so at start
    settings = Settings(redis_url=harness.redis_url, discord_token=fake.bot_token)
    with JobQueue.from_url(harness.redis_url) as queue:
        serving = asyncio.create_task(_serve(settings, queue, fake.guild_id, True))
        await fake.wait_for(fake.identified.is_set, what="the bot to connect")
        os.kill(os.getpid(), signal.SIGTERM)
        assert await asyncio.wait_for(serving, 15) == 0

        wrong = Settings(redis_url=harness.redis_url, discord_token="not-the-token")
        assert await asyncio.wait_for(_serve(wrong, queue, "", True), 15) == 2
    err = capsys.readouterr().err
    assert "rejected DISCORD_TOKEN" in err and "not-the-token" not in err


async def test_a_full_queue_answers_privately(harness: Harness) -> None:
    fake = harness.fake
    await harness.start_bot(queue_cap=1)
    first = await fake.slash("tune", {"genre": "Jazz"})  # no worker: it stays in the queue
    await fake.wait_for(lambda: "#1 in line" in harness.status_text(first), what="queued")
    second = await fake.slash("tune", {"genre": "Rock"}, user_id=fake.other_user_id)
    await fake.wait_for(lambda: second.callback_type is not None, what="an answer")
    assert harness.status(second).ephemeral and "queue is full" in harness.status(second).content
