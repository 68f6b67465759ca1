"""Never lose a take: each bot as a real process (``textunes discord`` / ``textunes slack``, the
real discord.py and slack-bolt) against the fake services, killed or stopped in the middle of
posting a job's two takes:

- SIGKILL while an upload is on the wire (it never lands): the next process posts it;
- SIGKILL after the upload landed but before its answer came back: the next process finds it
  in the thread and does not post it again;
- SIGKILL during the final status edit: the next process makes it;
- SIGTERM during a slow upload: the process finishes it within the grace period, then exits;
- SIGTERM while an upload can't finish within the grace period (Discord: a 429 whose
  ``retry_after`` is longer than the grace; Slack: an upload that hangs): the process exits
  after the grace period and the next process posts the take.

Every time: each take is in the thread exactly once, and the status says ✅ only after both.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest

from tests.events import events_settled
from tests.fake_worker import FakeWorker
from tests.fakes.discord import FakeDiscord, FakeInteraction
from tests.fakes.faults import Call, Fault
from tests.fakes.slack import FakeSlack, Message

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
FAULTS = ["kill during an upload", "kill after the upload landed", "kill during the status edit",
          "term during a slow upload", "term past the grace period"]


@dataclass
class Bot:
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)

    async def exit_code(self, timeout: float = 60.0) -> int:
        deadline = time.monotonic() + timeout
        while self.process.poll() is None:
            assert time.monotonic() < deadline, f"the bot did not exit within {timeout:g} s:\n{self.output()}"
            await asyncio.sleep(0.05)
        return self.process.returncode


@dataclass
class Bots:
    """Bot processes of one test; whatever still runs at the end is killed."""

    folder: Path
    env: dict[str, str]
    started: list[Bot] = field(default_factory=list)

    async def start(self, command: list[str], ready: str, **env: str) -> Bot:
        log = self.folder / f"bot-{len(self.started) + 1}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(command, cwd=ROOT, env={**self.env, **env}, stdout=out, stderr=subprocess.STDOUT)
        bot = Bot(process, log)
        self.started.append(bot)
        deadline = time.monotonic() + 90
        while ready not in bot.output():
            assert process.poll() is None, f"the bot exited with {process.returncode}:\n{bot.output()}"
            assert time.monotonic() < deadline, f"the bot did not start:\n{bot.output()}"
            await asyncio.sleep(0.05)
        return bot

    def stop_all(self) -> None:
        for bot in self.started:
            if bot.process.poll() is None:
                bot.kill()


class Rig(Protocol):
    """One platform's fake, its bot command and what a test looks at."""

    platform: str

    async def start_bot(self, grace_s: float, *, serving: bool = True) -> Bot:
        """Start the bot; wait until it takes requests (``serving``) or only until it reads events."""
        ...

    async def ask(self) -> None: ...

    def arm(self, fault: str) -> Fault: ...

    def status(self) -> str: ...

    def takes(self) -> list[tuple[int, str]]:
        """(timeline index, file name) of every message with a take in the job's thread."""
        ...

    def first_done_edit(self) -> int | None: ...

    def check(self) -> None: ...


@pytest.fixture
def bots(tmp_path: Path, redis_url: str) -> Iterator[Bots]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "SLACK_", "TEXTUNES_"))}
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", REDIS_URL=redis_url, TEXTUNES_LOG_LEVEL="INFO",
               TEXTUNES_PROGRESS_INTERVAL_S="0", TEXTUNES_POST_LEASE_S="1")
    running = Bots(tmp_path, env)
    try:
        yield running
    finally:
        running.stop_all()


async def wait_for(condition: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout:g} s waiting for {what}"
        await asyncio.sleep(0.02)


async def run_scenario(rig: Rig, bots: Bots, redis_url: str, fault_name: str) -> None:
    first = await rig.start_bot(grace_s=1.0 if fault_name == "term past the grace period" else 20.0)
    fault = rig.arm(fault_name)
    with FakeWorker(redis_url):
        await rig.ask()
        await wait_for(lambda: fault.calls and (fault.retry_after or fault.reached.is_set()), "the fault to strike")
        if fault_name.startswith("kill"):
            first.kill()
            await asyncio.wait_for(fault.client_gone.wait(), 30)
        else:
            first.process.send_signal(signal.SIGTERM)
            assert await first.exit_code() == 0
            landed = len(rig.takes())
            # a slow upload is finished before the process exits; one past the grace period is not
            assert landed == (1 if fault_name == "term during a slow upload" else 0), first.output()
        assert not rig.status().startswith("✅")
        second = await rig.start_bot(grace_s=20.0, serving=False)
        await wait_for(lambda: rig.status().startswith("✅"), "the final status")
        await wait_for(lambda: events_settled(redis_url, rig.platform), "every event acknowledged")
    second.process.send_signal(signal.SIGTERM)
    assert await second.exit_code() == 0
    logs = first.output() + second.output()

    takes = rig.takes()
    names = sorted(name for _, name in takes)
    assert len(names) == 2 and names[0].endswith("-1.mp3") and names[1].endswith("-2.mp3"), (names, logs)
    done_at = rig.first_done_edit()
    assert done_at is not None and done_at > max(index for index, _ in takes), "✅ came before a take"
    assert "2 takes ready" in rig.status()
    assert "Traceback" not in logs, logs
    rig.check()


# ---- Discord ---------------------------------------------------------------------------------
@dataclass
class DiscordRig:
    fake: FakeDiscord
    bots: Bots
    platform: str = "discord"
    interaction: FakeInteraction | None = None

    async def start_bot(self, grace_s: float, *, serving: bool = True) -> Bot:
        return await self.bots.start(
            [sys.executable, "-m", "tests.bot_process", self.fake.base_url, "--guild-id", self.fake.guild_id],
            "connected to Discord as" if serving else "synced 1 command(s)", DISCORD_TOKEN=self.fake.bot_token,
            TEXTUNES_SHUTDOWN_GRACE_S=str(grace_s))

    async def ask(self) -> None:
        self.interaction = await self.fake.slash("tune", {"genre": "Jazz", "takes": 2})
        await wait_for(self.fake.threads, "a thread")

    def arm(self, fault: str) -> Fault:
        faults = self.fake.faults

        def upload(call: Call) -> bool:
            return bool(call.files)

        def done_edit(call: Call) -> bool:
            return call.method == "PATCH" and call.text().startswith("✅")

        return {
            "kill during an upload": lambda: faults.stall(upload),
            "kill after the upload landed": lambda: faults.stall(upload, after=True),
            "kill during the status edit": lambda: faults.stall(done_edit),
            "term during a slow upload": lambda: faults.stall(upload, seconds=1.5),
            "term past the grace period": lambda: faults.rate_limit(upload, retry_after=30.0),
        }[fault]()

    def status(self) -> str:
        assert self.interaction is not None
        message = self.fake.messages.get(self.interaction.original_id)
        return message.content if message else ""

    def takes(self) -> list[tuple[int, str]]:
        thread = self.fake.threads()[0]
        return [(i, self.fake.messages[message_id].audio()[0]) for i, (kind, message_id, channel)
                in enumerate(self.fake.timeline) if kind == "message" and channel == thread
                and self.fake.messages[message_id].files]

    def first_done_edit(self) -> int | None:
        assert self.interaction is not None
        return next((i for i, (kind, message_id, content) in enumerate(self.fake.timeline)
                     if kind == "edit" and message_id == self.interaction.original_id and content.startswith("✅")),
                    None)

    def check(self) -> None:
        assert not self.fake.unhandled, self.fake.unhandled
        for message in self.fake.with_files(self.fake.threads()[0]):  # each take with its picture and buttons
            assert sorted(name.rpartition(".")[2] for name in message.files) == ["mp3", "png"]
            assert [message.button(label) for label in ("New take", "Extend", "Loop")]


@pytest.mark.parametrize("fault", FAULTS)
async def test_discord_posts_every_take_once_whatever_happens_to_the_bot(bots: Bots, redis_url: str,
                                                                         fault: str) -> None:
    fake = FakeDiscord()
    async with serving(fake, bots):
        await run_scenario(DiscordRig(fake, bots), bots, redis_url, fault)


# ---- Slack -----------------------------------------------------------------------------------
@dataclass
class SlackRig:
    fake: FakeSlack
    bots: Bots
    platform: str = "slack"
    parent: Message | None = None

    async def start_bot(self, grace_s: float, *, serving: bool = True) -> Bot:
        port = _free_port()
        bot = await self.bots.start(
            [sys.executable, "-m", "worker.cli", "slack", "--mode", "http", "--host", "127.0.0.1", "--port", str(port)],
            "listening for Slack on", SLACK_BOT_TOKEN=self.fake.bot_token,
            SLACK_SIGNING_SECRET=self.fake.signing_secret, SLACK_API_URL=self.fake.base_url,
            TEXTUNES_SHUTDOWN_GRACE_S=str(grace_s))
        self.fake.app_url = f"http://127.0.0.1:{port}/slack/events"
        return bot

    async def ask(self) -> None:
        assert await self.fake.command("jazz piano takes:2") == {}
        self.parent = (await wait_for(lambda: [m for m in self.fake.by_bot() if m.thread_ts is None],
                                      "the parent message"))[0]

    def arm(self, fault: str) -> Fault:
        faults = self.fake.faults

        def upload(call: Call) -> bool:
            return call.method == "upload"

        def done_edit(call: Call) -> bool:
            return call.method == "chat.update" and "✅" in call.text()

        return {
            "kill during an upload": lambda: faults.stall(upload),
            "kill after the upload landed": lambda: faults.stall(
                lambda call: call.method == "files.completeUploadExternal", after=True),
            "kill during the status edit": lambda: faults.stall(done_edit),
            "term during a slow upload": lambda: faults.stall(upload, seconds=1.5),
            "term past the grace period": lambda: faults.stall(upload),  # hangs until the client gives up
        }[fault]()

    def status(self) -> str:
        text = self.parent.text if self.parent else ""
        return text.split("> ", 1)[-1]  # after the requester's mention

    def takes(self) -> list[tuple[int, str]]:
        assert self.parent is not None
        in_thread = {m.ts: m for m in self.fake.with_files(self.fake.channel_id, self.parent.ts)}
        return [(i, self.fake.uploads[in_thread[ts].files[0]["id"]].filename)
                for i, (kind, ts, _) in enumerate(self.fake.timeline) if kind == "message" and ts in in_thread]

    def first_done_edit(self) -> int | None:
        assert self.parent is not None
        return next((i for i, (kind, ts, text) in enumerate(self.fake.timeline)
                     if kind == "edit" and ts == self.parent.ts and "✅" in text), None)

    def check(self) -> None:
        assert not self.fake.unhandled and not self.fake.markup_problems
        assert len(self.fake.called("files.completeUploadExternal")) == 2  # one completed upload per take
        assert self.parent is not None
        # each take's buttons once, also when the process that uploaded it died before it posted them
        buttons = [m for m in self.fake.in_thread(self.fake.channel_id, self.parent.ts) if m.blocks]
        assert sorted(m.buttons()["➕ Extend"]["value"].split(":")[1] for m in buttons) == ["1", "2"]


@pytest.mark.parametrize("fault", FAULTS)
async def test_slack_posts_every_take_once_whatever_happens_to_the_app(bots: Bots, redis_url: str, fault: str) -> None:
    fake = FakeSlack()
    async with serving(fake, bots):
        await run_scenario(SlackRig(fake, bots), bots, redis_url, fault)


@contextlib.asynccontextmanager
async def serving(fake: FakeDiscord | FakeSlack, bots: Bots) -> AsyncIterator[None]:
    """The fake service up for the test; afterwards the bots are killed before it goes."""
    await fake.start()
    try:
        yield
    finally:
        bots.stop_all()
        fake.faults.release_all()
        await fake.stop()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
