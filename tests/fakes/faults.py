"""Faults the fake chat services inject on purpose: a stalled or slow request, a 429.

A test arms a fault for the requests a predicate picks (a ``Call``); the fake consults
``before`` ahead of handling a request and ``after`` once it has stored what the request
did, ahead of answering. A stall *before* models an upload still on the wire: if the client
goes away meanwhile (killed, or it gave up), nothing is stored, as with a real service that
never got the whole request. A stall *after* models a post that landed whose answer never
reached the client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Call:
    """One request as a fault sees it: ``method`` is the HTTP method (Discord) or the Web API
    method (Slack; ``upload`` for the raw file upload); ``body`` the parsed JSON or form."""

    method: str
    path: str = ""
    body: dict[str, Any] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    def text(self) -> str:
        """The message text the request carries (Discord ``content``, Slack ``text``)."""
        return str(self.body.get("content") or self.body.get("text") or "")


@dataclass
class Fault:
    matches: Callable[[Call], bool]
    after: bool = False  # stall once stored: the post lands, its answer is held back
    seconds: float | None = None  # a slow request: let it go after this long
    retry_after: float = 0.0  # > 0: answer 429 with this retry_after instead of stalling
    times: int = 1
    calls: list[Call] = field(default_factory=list)  # the requests it caught
    reached: asyncio.Event = field(default_factory=asyncio.Event)
    released: asyncio.Event = field(default_factory=asyncio.Event)
    client_gone: asyncio.Event = field(default_factory=asyncio.Event)

    def release(self) -> None:
        self.released.set()


class Faults:
    def __init__(self) -> None:
        self.armed: list[Fault] = []

    def stall(self, matches: Callable[[Call], bool], *, after: bool = False, seconds: float | None = None) -> Fault:
        """Hold the next matching request until ``release()``, ``seconds`` or the client leaves."""
        fault = Fault(matches, after=after, seconds=seconds)
        self.armed.append(fault)
        return fault

    def rate_limit(self, matches: Callable[[Call], bool], retry_after: float, *, times: int = 1) -> Fault:
        """Answer the next ``times`` matching requests with 429 and ``retry_after`` seconds."""
        fault = Fault(matches, retry_after=retry_after, times=times)
        self.armed.append(fault)
        return fault

    def release_all(self) -> None:
        for fault in self.armed:
            fault.release()

    def _take(self, call: Call, *, after: bool) -> Fault | None:
        for fault in self.armed:
            if fault.after == after and fault.times > 0 and fault.matches(call):
                fault.times -= 1
                fault.calls.append(call)
                return fault
        return None

    def before(self, call: Call) -> Fault | None:
        return self._take(call, after=False)

    def after(self, call: Call) -> Fault | None:
        return self._take(call, after=True)

    @staticmethod
    async def hold(fault: Fault, request: web.Request) -> bool:
        """Stall ``request``; True when its client is still there to be answered."""
        fault.reached.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + fault.seconds if fault.seconds is not None else None
        while not fault.released.is_set():
            if _gone(request):
                fault.client_gone.set()
                return False
            if deadline is not None and loop.time() >= deadline:
                break
            try:  # wake on release, else look at the connection again shortly
                await asyncio.wait_for(fault.released.wait(), 0.02)
            except asyncio.TimeoutError:
                pass
        if _gone(request):
            fault.client_gone.set()
            return False
        return True


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()
