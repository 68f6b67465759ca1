"""How both bots run until signalled: the first SIGTERM asks them to stop, a second stops at once."""

from __future__ import annotations

import asyncio
import os
import signal

from bot.runner import run_until_signalled


async def test_the_first_signal_asks_to_stop_and_a_second_stops_at_once() -> None:
    stopping = asyncio.Event()

    async def main(stop: asyncio.Event) -> int:
        await stop.wait()
        stopping.set()
        await asyncio.sleep(3600)  # uploads that would take longer than anyone wants to wait
        return 0

    running = asyncio.create_task(run_until_signalled(main, grace_s=25))
    await asyncio.sleep(0)  # let it install its handlers
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(stopping.wait(), 5)
    assert not running.done()
    os.kill(os.getpid(), signal.SIGTERM)
    assert await asyncio.wait_for(running, 5) == 1
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handed back


async def test_main_returns_its_own_exit_code_when_it_stops_by_itself() -> None:
    async def main(stop: asyncio.Event) -> int:
        return 2

    assert await run_until_signalled(main, grace_s=1) == 2
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Ctrl-C works as before
