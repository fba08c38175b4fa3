"""A Session interprets one speaker into one language: audio frames in, an async stream of
events out.

It wires four stages, one way (``stages/``: listen -> recognize -> translate -> speak), each a
task looping over its own queue and awaiting its model calls from the shared ``Scheduler``,
so 20 ms frames keep flowing on the event loop while Whisper or Kokoro work on the
scheduler's threads. Listen and recognize belong to the speaker's front
(``realtime/speaker.py``): a session made with ``front=`` shares it with the speaker's other
target languages (each speaker is recognised once); without it the session builds a private
front, and works as it always did. The session itself is the branch for its target:
translate, speak, its own context, events and backlog.

A failing model call becomes a StageError event and the session goes on with the next
phrase; a stage that crashes, or whose engine fails ``MAX_FAILURES`` calls in a row (a hung
engine: its lane's timeout, each time), ends the session at once: a fatal StageError is its
last event, ``failed`` says why, its stages stop, their queues are emptied and its scheduler
slot is freed, and ``push`` refuses audio (``SessionClosed``) so nothing piles up behind it.
A broken front (VAD, ASR) ends every session it feeds; a broken translate or speak stage
ends only its own. Other sessions on the scheduler go on.

Queues are bounded (``stages/base.py``): between stages by backpressure; at the door, whose
``push`` never blocks, audio beyond ``MAX_DOOR_S`` waiting is dropped and counted
(``dropped_s`` in the metrics).

Every event carries the source span it covers and the wall time it was produced; the front
remembers when each source sample arrived (``ArrivalIndex``), so latency is a subtraction."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator
from typing import Any

import av
import numpy as np

from babelcall.realtime.config import SessionConfig
from babelcall.realtime.errors import SessionClosed
from babelcall.realtime.metrics import SessionMetrics
from babelcall.realtime.scheduler import Scheduler
from babelcall.realtime.speaker import Recogniser, SpeakerFront
from babelcall.realtime.stages import (
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

__all__ = ["Session", "SessionConfig", "SpeakerFront"]
log = logging.getLogger(__name__)
_ids = itertools.count(1)
_DONE = object()  # the end of the event stream


class Session:
    """One speaker, one language pair, on a (shared) scheduler. Construction refuses what
    cannot work before anything starts: an unsupported pair (``UnsupportedLanguage``), a full
    or overloaded scheduler (``Overloaded``), a front that has ended (``SessionClosed``).
    ``front``: the speaker's shared front (its source must be this config's); None builds
    a private one, started, ended and closed with the session."""

    def __init__(self, scheduler: Scheduler, config: SessionConfig, *,
                 front: SpeakerFront | None = None) -> None:
        scheduler.engines.check_pair(config.source, config.target)
        if front is not None and front.config.source != config.source:
            raise ValueError(f"the front hears '{front.config.source}', "
                             f"not '{config.source}'")
        self.id = next(_ids)
        self.config = config
        self.scheduler = scheduler
        self.clock = scheduler.clock
        self.budget = scheduler.budget
        self._own_front = front is None
        self.front = front or SpeakerFront(scheduler, config)
        if self.front.ended:
            raise SessionClosed("the speaker's front has ended")
        scheduler.admit(self)  # may raise Overloaded: before anything is started
        self.stats = SessionMetrics()
        self.arrivals = self.front.arrivals
        self.first_utt = 0  # the first phrase this branch gets (set by the front)
        self.last_utt: int | None = None  # the last, once it takes no more audio (``end``)
        self._events: asyncio.Queue[Any] = asyncio.Queue()
        self._flow = Flow()
        self._ctx = Context(self.id, config, scheduler, self.clock, self.budget, self.stats,
                            self.arrivals, self._events.put_nowait, self.front.profile,
                            on_fatal=self._fail)
        self._speak = SpeakStage(self._ctx, self._flow)
        self._translate = TranslateStage(self._ctx, self._flow, self._speak.inbox)
        self._translate.downstream = self._speak.inbox
        self._rec = self.front.attach(self, self._translate.inbox, config.source,
                                      config.target)
        self._branch: tuple[Stage, ...] = (self._translate, self._speak)
        self.failed: str | None = None  # why the session was ended by a fault
        self._failed = asyncio.Event()
        self._ended = False
        self._detached = False
        self._tasks: list[asyncio.Task[None]] = []

    # the stages as one pipeline (tests and tools look at them)
    @property
    def _listen(self) -> ListenStage:
        return self.front.listen

    @property
    def _recognize(self) -> RecognizeStage:
        return self._rec.stage

    @property
    def _stages(self) -> tuple[Stage, ...]:
        return (self._listen, self._recognize, *self._branch)

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
                           for s in self._branch]
            self.front.start()

    def push(self, audio: av.AudioFrame | np.ndarray, rate: int | None = None, *,
             channels: int = 1) -> None:
        """Feed audio: an av.AudioFrame (any rate/layout/format, e.g. from aiortc) or a numpy
        array of PCM at ``rate``. Never blocks; the work happens in the stage tasks. Mono
        float32 at 16 kHz (what the transports' inbound path delivers) goes in as it is.
        With a shared front, only the audio of its earliest target still attached is heard
        (``SpeakerFront.push``): every target may be fed its own copy of the speaker."""
        if self._ended:
            raise SessionClosed(f"the session failed ({self.failed})" if self.failed
                                else "audio pushed after the session ended")
        self.front.push(audio, rate, channels=channels,
                        by=None if self._own_front else self)

    async def end(self) -> None:
        """No more audio: finish the open phrase; ``events()`` ends after its last event.
        On a shared front this target still gets the phrase under way (the front hears the
        rest from another target's copy, or finishes it once every target has ended)."""
        if self._ended:
            return
        self._ended = True
        if self._own_front:
            self.front.end()
        else:
            self.front.finish(self)

    async def events(self) -> AsyncIterator[Event]:
        while True:
            ev = await self._events.get()
            if ev is _DONE:
                return
            yield ev

    async def idle(self) -> None:
        """Wait until every stage has handled everything pushed so far (replays use it); a
        failed session has nothing left to handle."""
        front, own = self.front.flow.idle, self._flow.idle
        while self.failed is None and not (front.is_set() and own.is_set()):
            waits = [asyncio.ensure_future(e.wait()) for e in (front, own) if not e.is_set()]
            failed = asyncio.ensure_future(self._failed.wait())
            try:
                await asyncio.wait([*waits, failed], return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in [*waits, failed]:
                    w.cancel()

    async def close(self) -> None:
        """Stop (peer gone, or done): cancel the stages, wait for them, free the slot."""
        self._ended = True
        self._detach()
        await cancel_and_wait(self._tasks)
        if self._own_front:
            await self.front.close()
        self._events.put_nowait(_DONE)
        self.scheduler.release(self)

    def report_backlog(self, seconds: float) -> None:
        """The sink says how much translated audio waits to be played: drives catch-up (and,
        as it plays out, voicing early; see ``Context.backlog_s``)."""
        self._ctx.backlog_until_ns = self._ctx.clock.now_ns() + int(max(0.0, seconds) * 1e9)
        self.stats.backlog_s = self._ctx.backlog_s

    def metrics(self) -> dict[str, Any]:
        """Live figures for captions/stats and the benchmark: this target's own, with the
        front's (VAD, ASR, what it covered and dropped) and its recogniser streams."""
        front, rec = self.front.stats, self._rec.stats
        queues = {s.name: s.inbox.qsize() for s in self._stages}
        snap = self.stats.snapshot(heard_s=self.arrivals.heard_s, queues=queues,
                                   shed_level=self.scheduler.level)
        covered = max(front.covered_s, rec.covered_s)
        snap["lag_s"] = round(max(0.0, self.arrivals.heard_s - covered), 3)
        for m in (front, rec):
            for k, v in m.stages.items():
                snap["stage_ms"][k] = round(v.ewma_s * 1000, 1)
                snap["stage_calls"][k] = v.calls
                snap["stage_total_s"][k] = round(v.total_s, 3)
        snap["errors"] += front.errors + rec.errors
        snap["dropped_s"] = round(front.dropped_s, 3)
        snap["recognition"] = self.front.recognition()
        return snap

    def arrival_ns(self, t: float) -> int:
        """Wall time at which the source sample at stream time ``t`` arrived."""
        return self._ctx.arrival_ns(t)

    @property
    def route(self) -> str:
        """The MT route this target is served by now ("whisper-translate", "apertium", ...)."""
        return self._translate.route

    # -- what the front calls -----------------------------------------------------------
    def use_transcript(self, last_whisper_utt: int | None,
                       rec: Recogniser | None = None) -> None:
        """Translate the speaker's transcript with a text engine instead of hearing
        Whisper's own English (the front runs one stream; see ``SpeakerFront``):
        ``last_whisper_utt``, Whisper's phrase still to come first; ``rec``, the stream that
        feeds this branch from now on (None: the one ``attach`` returns)."""
        self._translate.switch_to_text(last_whisper_utt)
        if rec is not None:
            self._rec = rec

    def deliver(self, ev: Event) -> None:
        """An event of the speaker's front (speech started/ended, a transcript)."""
        if not self._detached:
            self._events.put_nowait(ev)

    def front_failed(self, stage: str, exc: BaseException) -> None:
        """The front cannot hear the speaker any more: this target ends too."""
        self._fail(stage, exc)

    # -- plumbing -------------------------------------------------------------------------
    def _detach(self) -> None:
        if not self._detached:
            self._detached = True
            self.front.detach(self, self._translate.inbox)

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
        the scheduler slot. A private front stops with it; a shared one goes on serving the
        speaker's other targets. ``close()`` afterwards is still safe."""
        if self.failed is not None:
            return
        self.failed = f"{stage}: {type(exc).__name__}: {exc}"[:300]
        self._failed.set()
        self._ended = True
        log.warning("session %s ended by a fault: %s", self.id, self.failed)
        t = self.arrivals.heard_s
        self._events.put_nowait(StageError(-1, Span(t, t), self.clock.now_ns(), stage,
                                           f"session ended: {self.failed}", fatal=True))
        self._events.put_nowait(_DONE)
        self._detach()
        if self._own_front:
            self.front.fail(stage, exc)
        for s in self._branch:
            s.inbox.discard()
        self.scheduler.release(self)
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
