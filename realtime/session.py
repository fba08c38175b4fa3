"""A Session interprets one speaker: audio frames in, an async stream of events out.

It only wires four stages together, one way (``stages/``: listen -> recognize -> translate
-> speak), each a task looping over its own queue and awaiting its model calls from the shared
``Scheduler``, so 20 ms frames keep flowing on the event loop while Whisper or Kokoro work on
the scheduler's threads. A failing model call becomes a StageError event and the session goes
on with the next phrase; a stage that crashes, or whose engine fails ``MAX_FAILURES`` calls in
a row (a hung engine: its lane's timeout, each time), ends the session at once: a fatal
StageError is its last event, ``failed`` says why, its stages stop, their queues are emptied
and its scheduler slot is freed, and ``push`` refuses audio (``SessionClosed``) so nothing
piles up behind it. Other sessions on the scheduler go on.

Queues are bounded (``stages/base.py``): between stages by backpressure; at the door, whose
``push`` never blocks, audio beyond ``MAX_DOOR_S`` waiting is dropped and counted
(``dropped_s`` in the metrics).

Every event carries the source span it covers and the wall time it was produced; the session
remembers when each source sample arrived (``ArrivalIndex``), so latency is a subtraction."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator
from typing import Any

import av
import numpy as np

from babelcall.engines.voice import ProfileBuilder
from babelcall.realtime.arrivals import ArrivalIndex
from babelcall.realtime.audio import SPEECH_RATE, Resampler, frame_from_array
from babelcall.realtime.config import SessionConfig
from babelcall.realtime.errors import SessionClosed
from babelcall.realtime.metrics import SessionMetrics
from babelcall.realtime.scheduler import Scheduler
from babelcall.realtime.stages import (
    END,
    MAX_DOOR_S,
    Context,
    Flow,
    Inbox,
    ListenStage,
    RecognizeStage,
    SpeakStage,
    Stage,
    TranslateStage,
)
from babelcall.realtime.tasks import cancel_and_wait
from babelcall.realtime.types import Event, Span, StageError

__all__ = ["Session", "SessionConfig"]
log = logging.getLogger(__name__)
_ids = itertools.count(1)
_DONE = object()  # the end of the event stream


class Session:
    """One speaker, one language pair, on a (shared) scheduler. Construction refuses what
    cannot work before anything starts: an unsupported pair (``UnsupportedLanguage``), a full
    or overloaded scheduler (``Overloaded``)."""

    def __init__(self, scheduler: Scheduler, config: SessionConfig) -> None:
        scheduler.engines.check_pair(config.source, config.target)
        self.id = next(_ids)
        self.config = config
        self.scheduler = scheduler
        self.clock = scheduler.clock
        self.budget = scheduler.budget
        scheduler.admit(self)  # may raise Overloaded: before anything is started
        self.stats = SessionMetrics()
        self.arrivals = ArrivalIndex(SPEECH_RATE)
        self._events: asyncio.Queue[Any] = asyncio.Queue()
        self._flow = Flow()
        profile = ProfileBuilder(language=config.source) if config.clone_voice else None
        self._ctx = Context(self.id, config, scheduler, self.clock, self.budget, self.stats,
                            self.arrivals, self._events.put_nowait, profile,
                            on_fatal=self._fail)
        self._speak = SpeakStage(self._ctx, self._flow)
        self._translate = TranslateStage(self._ctx, self._flow, self._speak.inbox)
        self._recognize = RecognizeStage(self._ctx, self._flow, self._translate.inbox)
        self._listen = ListenStage(self._ctx, self._flow, self._recognize.inbox)
        self._stages: tuple[Stage, ...] = (self._listen, self._recognize, self._translate,
                                           self._speak)
        for stage, after in zip(self._stages, self._stages[1:], strict=False):
            stage.downstream = after.inbox
        self._door.limit = int(MAX_DOOR_S * SPEECH_RATE)
        self.failed: str | None = None  # why the session was ended by a fault
        self._resampler: Resampler | None = None
        self._ended = False
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def _door(self) -> Inbox:
        return self._listen.inbox

    # -- public API -----------------------------------------------------------------------
    async def __aenter__(self) -> Session:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [asyncio.create_task(self._guard(s), name=f"{s.name}-{self.id}")
                           for s in self._stages]

    def push(self, audio: av.AudioFrame | np.ndarray, rate: int | None = None, *,
             channels: int = 1) -> None:
        """Feed audio: an av.AudioFrame (any rate/layout/format, e.g. from aiortc) or a numpy
        array of PCM at ``rate``. Never blocks; the work happens in the stage tasks. Mono
        float32 at 16 kHz (what the transports' inbound path delivers) goes in as it is."""
        if self._ended:
            raise SessionClosed(f"the session failed ({self.failed})" if self.failed
                                else "audio pushed after the session ended")
        if not isinstance(audio, av.AudioFrame):
            if rate is None:
                raise ValueError("rate is required with a numpy array")
            if rate == SPEECH_RATE and channels == 1 and audio.ndim == 1 \
                    and audio.dtype == np.float32:
                self._accept(audio)
                return
            audio = frame_from_array(audio, rate, channels=channels)
        if self._resampler is None:
            self._resampler = Resampler(SPEECH_RATE)
        self._accept(self._resampler.push(audio))

    async def end(self) -> None:
        """No more audio: finish the open phrase; ``events()`` ends after its last event."""
        if self._ended:
            return
        if self._resampler is not None:
            self._accept(self._resampler.flush())
        self._ended = True
        self._door.put(END)

    async def events(self) -> AsyncIterator[Event]:
        while True:
            ev = await self._events.get()
            if ev is _DONE:
                return
            yield ev

    async def idle(self) -> None:
        """Wait until every stage has handled everything pushed so far (replays use it)."""
        await self._flow.idle.wait()

    async def close(self) -> None:
        """Stop (peer gone, or done): cancel the stages, wait for them, free the slot."""
        self._ended = True
        await cancel_and_wait(self._tasks)
        self._events.put_nowait(_DONE)
        self.scheduler.release(self)

    def report_backlog(self, seconds: float) -> None:
        """The sink says how much translated audio waits to be played: drives catch-up (and,
        as it plays out, voicing early; see ``Context.backlog_s``)."""
        self._ctx.backlog_until_ns = self._ctx.clock.now_ns() + int(max(0.0, seconds) * 1e9)
        self.stats.backlog_s = self._ctx.backlog_s

    def metrics(self) -> dict[str, Any]:
        """Live figures for captions/stats and the benchmark."""
        queues = {s.name: s.inbox.qsize() for s in self._stages}
        return self.stats.snapshot(heard_s=self.arrivals.heard_s, queues=queues,
                                   shed_level=self.scheduler.level)

    def arrival_ns(self, t: float) -> int:
        """Wall time at which the source sample at stream time ``t`` arrived."""
        return self._ctx.arrival_ns(t)

    # -- plumbing -------------------------------------------------------------------------
    def _accept(self, pcm: np.ndarray) -> None:
        if not len(pcm):
            return
        if self._door.full():  # the listen stage is stuck or far behind: drop, and say so
            self.stats.dropped_s += len(pcm) / SPEECH_RATE
            return
        pcm = np.clip(np.nan_to_num(pcm, nan=0.0, posinf=0.0, neginf=0.0), -1.0, 1.0)
        self.arrivals.add(len(pcm), self.clock.now_ns())
        self._door.put(pcm.astype(np.float32, copy=False))

    async def _guard(self, stage: Stage) -> None:
        try:
            await stage.run()
            if stage is self._speak:
                self._events.put_nowait(_DONE)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug, or an engine failing outside a guarded call
            log.exception("session %s: stage %s crashed", self.id, stage.name)
            self._fail(stage.name, exc)

    def _fail(self, stage: str, exc: BaseException) -> None:
        """End the session because ``stage`` cannot go on: tell the clients (a fatal
        StageError, then the end of the events), stop the other stages, free the queues and
        the scheduler slot. ``close()`` afterwards is still safe."""
        if self.failed is not None:
            return
        self.failed = f"{stage}: {type(exc).__name__}: {exc}"[:300]
        self._ended = True
        log.warning("session %s ended by a fault: %s", self.id, self.failed)
        t = self.arrivals.heard_s
        self._events.put_nowait(StageError(-1, Span(t, t), self.clock.now_ns(), stage,
                                           f"session ended: {self.failed}", fatal=True))
        self._events.put_nowait(_DONE)
        for s in self._stages:
            s.inbox.discard()
        self.scheduler.release(self)
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
