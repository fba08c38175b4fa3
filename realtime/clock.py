"""The only place babelcall reads time or waits for it, so replays can run on a simulated
clock: every deadline, timeout and pacing sleep goes through a ``Clock``."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
import time
from typing import Protocol


class Clock(Protocol):
    def now_ns(self) -> int: ...

    async def sleep(self, seconds: float) -> None:
        """Wait until the clock has moved ``seconds`` on (at once if ``seconds <= 0``)."""
        ...


class SystemClock:
    """Monotonic wall clock."""

    def now_ns(self) -> int:
        return time.monotonic_ns()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class FakeClock:
    """Clock moved by hand: a replay advances it with the audio (computation-unaware mode),
    tests advance it past a timeout. ``sleep`` returns when someone moves the clock past its
    end; moving it is allowed from any thread (fake engines advance it while they "work")."""

    def __init__(self, start_ns: int = 0) -> None:
        self._now = start_ns
        self._lock = threading.Lock()
        self._sleepers: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now_ns(self) -> int:
        return self._now

    def advance(self, ns: int) -> None:
        if ns < 0:
            raise ValueError("a clock never goes back")
        with self._lock:
            self._now += ns
        self._wake()

    def set(self, ns: int) -> None:
        with self._lock:
            self._now = max(self._now, ns)
        self._wake()

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with self._lock:
            heapq.heappush(self._sleepers, (self._now + int(seconds * 1e9), next(self._seq), fut))
        await fut

    def _wake(self) -> None:
        due = []
        with self._lock:
            while self._sleepers and self._sleepers[0][0] <= self._now:
                due.append(heapq.heappop(self._sleepers)[2])
        for fut in due:
            if not fut.done():
                try:
                    fut.get_loop().call_soon_threadsafe(_resolve, fut)
                except RuntimeError:  # that loop is closed: nobody waits any more
                    pass


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
