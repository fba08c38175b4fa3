"""The only place babelcall reads time, so replays can run on a simulated clock."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now_ns(self) -> int: ...


class SystemClock:
    """Monotonic wall clock."""

    def now_ns(self) -> int:
        return time.monotonic_ns()


class FakeClock:
    """Clock moved by hand: a replay advances it with the audio (computation-unaware mode)."""

    def __init__(self, start_ns: int = 0) -> None:
        self._now = start_ns

    def now_ns(self) -> int:
        return self._now

    def advance(self, ns: int) -> None:
        if ns < 0:
            raise ValueError("a clock never goes back")
        self._now += ns

    def set(self, ns: int) -> None:
        self._now = max(self._now, ns)
