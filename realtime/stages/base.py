"""What every stage shares: the queue it reads, the session-wide count of items still in
flight (``Session.idle()`` waits for none, so replays on a simulated clock are exact), the
loop over the queue, and the context (clock, budget, scheduler, metrics, where events go)."""

from __future__ import annotations

import abc
import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from babelcall.engines.voice import ProfileBuilder
from babelcall.realtime.arrivals import ArrivalIndex
from babelcall.realtime.budget import LatencyBudget
from babelcall.realtime.clock import Clock
from babelcall.realtime.config import SessionConfig
from babelcall.realtime.metrics import SessionMetrics
from babelcall.realtime.scheduler import Scheduler
from babelcall.realtime.types import Event, Span, StageError

log = logging.getLogger(__name__)
T = TypeVar("T")


class _End:
    """The end-of-stream sentinel: no more input will follow it."""

    def __repr__(self) -> str:
        return "END"


END = _End()


class Flow:
    """Items put into any stage's queue and not yet fully handled."""

    def __init__(self) -> None:
        self._pending = 0
        self.idle = asyncio.Event()
        self.idle.set()

    def add(self) -> None:
        self._pending += 1
        self.idle.clear()

    def done(self, n: int) -> None:
        self._pending -= n
        if self._pending <= 0:
            self._pending = 0
            self.idle.set()


class Inbox:
    """A stage's unbounded queue (input is bounded at the session's door: the transports'
    rate guard), counted in the session's Flow."""

    def __init__(self, flow: Flow) -> None:
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._flow = flow

    def put(self, item: Any) -> None:
        self._flow.add()
        self._queue.put_nowait(item)

    async def get(self) -> Any:
        return await self._queue.get()

    def drain(self) -> list[Any]:
        """Everything already waiting (a backlog is handled as one)."""
        items = []
        while not self._queue.empty():
            items.append(self._queue.get_nowait())
        return items

    def done(self, n: int) -> None:
        self._flow.done(n)

    def empty(self) -> bool:
        return self._queue.empty()

    def qsize(self) -> int:
        return self._queue.qsize()


@dataclass
class Context:
    """One session's shared state, as the stages see it."""

    session_id: int
    config: SessionConfig
    scheduler: Scheduler
    clock: Clock
    budget: LatencyBudget
    stats: SessionMetrics
    arrivals: ArrivalIndex
    emit: Callable[[Event], None]
    profile: ProfileBuilder | None  # the speaker's voice, for cloning
    backlog_s: float = 0.0  # translated audio waiting at the sink (the sink reports it)

    def arrival_ns(self, t: float) -> int:
        """Wall time at which the source instant ``t`` (seconds) arrived."""
        ns = self.arrivals.wall_ns_at(t)
        return self.clock.now_ns() if ns is None else ns

    def deadline(self, stage: str, t: float, *, final: bool) -> int:
        """The deadline of a ``stage`` call for the source up to ``t``."""
        return self.budget.deadline(stage, self.arrival_ns(t), final=final)

    async def timed(self, stage: str, call: Awaitable[T]) -> T:
        """Await a model call, counting its time (queueing included) in the metrics."""
        started = self.clock.now_ns()
        try:
            return await call
        finally:
            self.stats.stage_done(stage, (self.clock.now_ns() - started) / 1e9)

    def error(self, stage: str, utt: int, span: Span, exc: BaseException) -> None:
        log.warning("session %s: %s failed: %s", self.session_id, stage, exc)
        self.stats.errors += 1
        self.emit(StageError(utt, span, self.clock.now_ns(), stage,
                             f"{type(exc).__name__}: {exc}"))


class Stage(abc.ABC):
    """A loop over the stage's inbox: take what waits, handle it, count it done; ends after
    handling END (which it passes on)."""

    name = "stage"

    def __init__(self, ctx: Context, flow: Flow) -> None:
        self.ctx = ctx
        self.flow = flow
        self.inbox = Inbox(flow)

    def coalesce(self) -> bool:
        """Take the whole backlog at once (the default) or one item at a time."""
        return True

    async def run(self) -> None:
        while True:
            items = [await self.inbox.get()]
            if self.coalesce():
                items += self.inbox.drain()
            try:
                ended = await self.handle(items)
            finally:
                self.inbox.done(len(items))
            if ended:
                return

    @abc.abstractmethod
    async def handle(self, items: list[Any]) -> bool:
        """Handle ``items`` in order; True once END was among them."""


def span(start: float, end: float) -> Span:
    """A source span rounded to the millisecond, never reversed."""
    return Span(round(start, 3), round(max(start, end), 3))
