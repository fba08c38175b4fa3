"""What a server, a join bot and a worker each set up while media flows: a scheduler (their
own, or one they were handed and must not close) and the process's GIL switch interval.

The event loop paces media and moves every RTP packet; with model threads holding the GIL it
waits up to 5 ms (Python's default switch interval) after each syscall, and under load the
outgoing audio falls seconds behind. So while media flows the interval is shortened, and put
back afterwards."""

from __future__ import annotations

import sys

from babelcall.engines.registry import Engines
from babelcall.realtime.scheduler import Scheduler

MEDIA_SWITCH_INTERVAL_S = 0.001


class GilSwitch:
    """Set a switch interval and put the old one back; None leaves the process alone."""

    def __init__(self, interval_s: float | None = MEDIA_SWITCH_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._old: float | None = None

    def set(self) -> None:
        if self.interval_s and self._old is None:
            self._old = sys.getswitchinterval()
            sys.setswitchinterval(self.interval_s)

    def restore(self) -> None:
        if self._old is not None:
            sys.setswitchinterval(self._old)
            self._old = None


class Runtime:
    """A scheduler plus the GIL switch. Given Engines it makes (and later closes) a scheduler
    of its own; given a Scheduler it shares it and leaves closing it to its owner."""

    def __init__(self, engines_or_scheduler: Engines | Scheduler, *,
                 gil_switch_interval_s: float | None = MEDIA_SWITCH_INTERVAL_S,
                 max_sessions: int | None = None) -> None:
        if isinstance(engines_or_scheduler, Scheduler):
            self.scheduler, self._own = engines_or_scheduler, False
        else:
            self.scheduler = Scheduler(engines_or_scheduler, max_sessions=max_sessions)
            self._own = True
        self._gil = GilSwitch(gil_switch_interval_s)

    @property
    def engines(self) -> Engines:
        return self.scheduler.engines

    async def start(self) -> None:
        await self.scheduler.start()
        self._gil.set()

    async def close(self) -> None:
        self._gil.restore()
        if self._own:
            await self.scheduler.close()
