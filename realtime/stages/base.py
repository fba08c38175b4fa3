"""What every stage shares: the queue it reads, the session-wide count of items still in
flight (``Session.idle()`` waits for none, so replays on a simulated clock are exact), the
loop over the queue, and the context (clock, budget, scheduler, metrics, where events go)."""

from __future__ import annotations

import abc
import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

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
MAX_FAILURES = 3  # model calls of one stage failing in a row: the session is ended


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


MAX_INBOX_ITEMS = 64  # between stages: the upstream stage waits while this many wait
MAX_DOOR_S = 30.0  # audio waiting for the listen stage; beyond it, new audio is dropped


def _weight(item: Any) -> int:
    """What an item counts towards its inbox's bound: samples for audio, 1 for the rest."""
    return len(item) if isinstance(item, np.ndarray) else 1


class Inbox:
    """A stage's queue, counted in the session's Flow, with a bound (``limit``, in items, or
    samples for audio) and a stated policy: between stages, backpressure (the upstream stage
    awaits ``room()`` before it takes more work, so a stuck stage stops the ones before it);
    at the session's door, whose ``push`` never blocks, drop-and-count (``Session._accept``).
    ``put`` itself never refuses: END must always get in."""

    def __init__(self, flow: Flow, limit: int = MAX_INBOX_ITEMS) -> None:
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._flow = flow
        self.limit = limit
        self.size = 0  # the items' weight (samples for audio)
        self._room = asyncio.Event()
        self._room.set()

    def put(self, item: Any) -> None:
        self._flow.add()
        self._queue.put_nowait(item)
        self.size += _weight(item)
        if self.size >= self.limit:
            self._room.clear()

    def full(self) -> bool:
        return self.size >= self.limit

    async def room(self) -> None:
        """Return once the inbox is below its bound."""
        await self._room.wait()

    def _took(self, item: Any) -> Any:
        self.size -= _weight(item)
        if self.size < self.limit:
            self._room.set()
        return item

    async def get(self) -> Any:
        return self._took(await self._queue.get())

    def drain(self) -> list[Any]:
        """Everything already waiting (a backlog is handled as one)."""
        items = []
        while not self._queue.empty():
            items.append(self._took(self._queue.get_nowait()))
        return items

    def discard(self) -> None:
        """Drop what waits (the session failed): frees it and settles the Flow."""
        self.done(len(self.drain()))

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
    # when the translated audio queued at the sink will have played out (the sink reports
    # what it holds; between reports it keeps playing, so the backlog shrinks with the clock)
    backlog_until_ns: int = 0
    # the session's reaction to a stage that keeps failing (or crashed): end it with an error
    on_fatal: Callable[[str, BaseException], None] | None = None
    failures: dict[str, int] = field(default_factory=dict)  # consecutive, per stage

    @property
    def backlog_s(self) -> float:
        """Translated audio still waiting at the sink now."""
        return max(0.0, (self.backlog_until_ns - self.clock.now_ns()) / 1e9)

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
            result = await call
        finally:
            self.stats.stage_done(stage, (self.clock.now_ns() - started) / 1e9)
        self.failures.pop(stage, None)  # it works again
        return result

    def error(self, stage: str, utt: int, span: Span, exc: BaseException) -> None:
        """One model call failed (or timed out on its lane): the phrase goes on without it.
        ``MAX_FAILURES`` in a row in one stage mean the engine is broken, not the input:
        the session is ended (``on_fatal``) rather than failing every phrase for ever."""
        log.warning("session %s: %s failed: %s", self.session_id, stage, exc)
        self.stats.errors += 1
        self.emit(StageError(utt, span, self.clock.now_ns(), stage,
                             f"{type(exc).__name__}: {exc}"))
        self.failures[stage] = self.failures.get(stage, 0) + 1
        if self.failures[stage] >= MAX_FAILURES and self.on_fatal is not None:
            self.on_fatal(stage, exc)


class Stage(abc.ABC):
    """A loop over the stage's inbox: take what waits, handle it, count it done; ends after
    handling END (which it passes on)."""

    name = "stage"

    def __init__(self, ctx: Context, flow: Flow) -> None:
        self.ctx = ctx
        self.flow = flow
        self.inbox = Inbox(flow)
        self.downstream: Inbox | None = None  # the next stage's inbox (backpressure)

    def coalesce(self) -> bool:
        """Take the whole backlog at once (the default) or one item at a time."""
        return True

    async def run(self) -> None:
        while True:
            if self.downstream is not None:
                await self.downstream.room()  # the next stage is behind: wait for it
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
