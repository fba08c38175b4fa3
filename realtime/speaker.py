"""One speaker's front: their audio in, recognised source text out to every target language
that hears them — so a speaker heard in three languages runs the VAD and Whisper once, not
three times (each ``Session`` is then only a translate + speak branch for one target).

The front owns what depends on the speaker alone: the resampler, the arrival index (when
each source sample arrived), the door, the listen stage (VAD, phrase numbers), the voice
profile builder, and one recognise stage per Whisper task a branch needs — "transcribe", and
"translate" only while a branch into English needs Whisper's own X->en translation
(``Engines.asr_task``). Their outputs are ``FanOut``s: each item goes into every attached
branch's inbox, and backpressure waits for the slowest branch.

A branch attached mid-call starts at the next phrase (a phrase's text is re-read whole by the
translator, so half a phrase would be a wrong sentence). A front failure (its VAD or ASR
engine broken) ends every branch; a branch failure (MT or TTS) detaches that target only.
``Session(scheduler, config)`` alone builds a private front, so a one-target session works
exactly as before."""

from __future__ import annotations

import asyncio
import itertools
import logging
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

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
    Stage,
)
from babelcall.realtime.tasks import cancel_and_wait
from babelcall.realtime.types import Event

if TYPE_CHECKING:
    from babelcall.realtime.session import Session

__all__ = ["FanOut", "SpeakerFront"]
log = logging.getLogger(__name__)
_ids = itertools.count(1)


def _passes(rec: Recogniser) -> int:
    """ASR passes a recogniser has made (failed ones included: each cost a Whisper call)."""
    asr = rec.stats.stages.get("asr")
    return 0 if asr is None else asr.calls


def _utt(item: Any) -> int:
    """The phrase an item belongs to: (utt, Heard) from listen, SourceText from recognise."""
    return item[0] if isinstance(item, tuple) else item.utt


class FanOut:
    """A stage's output into several inboxes (the same interface as one ``Inbox`` for the
    stage that writes it). Each inbox takes items from its ``first`` phrase on (END always);
    ``room()`` waits for the slowest, so backpressure still stops the writer."""

    def __init__(self) -> None:
        self._to: list[tuple[Inbox, int]] = []

    def attach(self, inbox: Inbox, first: int) -> None:
        self._to.append((inbox, first))

    def detach(self, inbox: Inbox) -> None:
        """Stop feeding ``inbox``; what it holds is dropped so nobody waits on its room."""
        self._to = [(i, f) for i, f in self._to if i is not inbox]
        inbox.discard()

    def __len__(self) -> int:
        return len(self._to)

    def put(self, item: Any) -> None:
        for inbox, first in self._to:
            if item is END or _utt(item) >= first:
                inbox.put(item)

    def empty(self) -> bool:
        return all(i.empty() for i, _ in self._to)

    def full(self) -> bool:
        return any(i.full() for i, _ in self._to)

    async def room(self) -> None:
        """Return once every inbox is below its bound."""
        while True:
            full = [i for i, _ in self._to if i.full()]
            if not full:
                return
            await full[0].room()


@dataclass
class FrontMetrics(SessionMetrics):
    """A front stage's metrics: its waterfall stamps (pause, end, last word) also go to each
    branch it feeds, whose speak stage completes the waterfall from them."""

    copies: list[SessionMetrics] = field(default_factory=list)

    def stamp(self, utt: int, key: str, ns: int, *, once: bool = False) -> None:
        super().stamp(utt, key, ns, once=once)
        for other in self.copies:
            other.stamp(utt, key, ns, once=once)


@dataclass
class Recogniser:
    """One Whisper task's stream over the speaker's phrases and the branches it feeds."""

    task: str
    stage: RecognizeStage
    stats: FrontMetrics
    out: FanOut
    branches: list[Session] = field(default_factory=list)
    task_handle: asyncio.Task[None] | None = None


class SpeakerFront:
    """Listen and recognise one speaker once, for any number of target branches. Uses
    ``config``'s source-side knobs (source, VAD, ASR pacing, voice cloning); its target is
    not used — each branch brings its own."""

    def __init__(self, scheduler: Scheduler, config: SessionConfig) -> None:
        self.id = next(_ids)
        self.config = config
        self.scheduler = scheduler
        self.clock = scheduler.clock
        self.stats = FrontMetrics()
        self.arrivals = ArrivalIndex(SPEECH_RATE)
        self.flow = Flow()
        self.profile = ProfileBuilder(language=config.source) if config.clone_voice else None
        self.ctx = Context(-self.id, config, scheduler, self.clock, scheduler.budget,
                           self.stats, self.arrivals, self._broadcast, self.profile,
                           on_fatal=self.fail)
        self.heard = FanOut()  # listen -> every recogniser
        self.listen = ListenStage(self.ctx, self.flow, self.heard)  # type: ignore[arg-type]
        self.listen.downstream = self.heard  # type: ignore[assignment]
        self.listen.inbox.limit = int(MAX_DOOR_S * SPEECH_RATE)
        self.recognisers: dict[str, Recogniser] = {}
        self.branches: list[Session] = []
        self.failed: str | None = None
        self.ended = False
        self._streams_made = 0  # recognisers made so far (the first feeds the profile)
        self._retired: dict[str, int] = {}  # ASR passes of streams no branch needs any more
        self._resampler: Resampler | None = None
        self._listen_task: asyncio.Task[None] | None = None

    # -- branches ---------------------------------------------------------------------------
    def attach(self, branch: Session, inbox: Inbox, source: str, target: str) -> Recogniser:
        """Feed ``branch``'s translate ``inbox`` from the next phrase on, from the recogniser
        of the Whisper task its pair needs (made, and started if the front runs, on demand)."""
        if self.failed is not None or self.ended:
            raise SessionClosed(f"the speaker's front has {'failed' if self.failed else 'ended'}")
        task = self.scheduler.engines.asr_task(source, target)
        rec = self.recognisers.get(task) or self._recogniser(task)
        branch.first_utt = self.listen.utt + 1
        rec.branches.append(branch)
        self.branches.append(branch)
        rec.stats.copies.append(branch.stats)
        self.stats.copies.append(branch.stats)
        rec.out.attach(inbox, branch.first_utt)
        return rec

    def detach(self, branch: Session, inbox: Inbox) -> None:
        """Stop feeding ``branch``; a recogniser no branch needs any more stops too (an
        English listener gone: no more Whisper translate passes)."""
        if branch not in self.branches:
            return
        self.branches.remove(branch)
        self.stats.copies.remove(branch.stats)
        for task, rec in list(self.recognisers.items()):
            if branch in rec.branches:
                rec.branches.remove(branch)
                rec.stats.copies.remove(branch.stats)
                rec.out.detach(inbox)
            if not rec.branches:
                del self.recognisers[task]
                self._retired[task] = self._retired.get(task, 0) + _passes(rec)
                self.heard.detach(rec.stage.inbox)
                if rec.task_handle is not None:
                    rec.task_handle.cancel()

    def _recogniser(self, task: str) -> Recogniser:
        stats = FrontMetrics()
        out = FanOut()
        first_task = self._streams_made == 0
        # the speaking rate comes from one stream's words only (counted twice, it would be
        # wrong); the first stream made is the one a private front has
        ctx = replace(self.ctx, stats=stats, failures={},
                      profile=self.profile if first_task else None)
        rec = Recogniser(task, RecognizeStage(ctx, self.flow, out, task=task), stats, out)  # type: ignore[arg-type]
        ctx.emit = lambda ev, rec=rec: self._to(rec.branches, ev)
        rec.stage.downstream = out  # type: ignore[assignment]
        self._streams_made += 1
        self.recognisers[task] = rec
        self.heard.attach(rec.stage.inbox, self.listen.utt + 1)
        if self._listen_task is not None:
            rec.task_handle = asyncio.create_task(self._guard(rec.stage),
                                                  name=f"recognize-{task}-{self.id}")
        return rec

    # -- audio in ---------------------------------------------------------------------------
    def start(self) -> None:
        if self._listen_task is None:
            self._listen_task = asyncio.create_task(self._guard(self.listen),
                                                    name=f"listen-{self.id}")
            for rec in self.recognisers.values():
                rec.task_handle = asyncio.create_task(self._guard(rec.stage),
                                                      name=f"recognize-{rec.task}-{self.id}")

    def push(self, audio: av.AudioFrame | np.ndarray, rate: int | None = None, *,
             channels: int = 1, by: Session | None = None) -> None:
        """Feed audio (see ``Session.push``); never blocks. ``by``: the branch whose input
        this is. Each target's transport may read its own copy of the speaker's track (a
        room's links, a bot's interpreters, each with its own original-voice bed): only the
        earliest attached branch's copy is heard — the next one takes over if it leaves —
        so the speaker is listened to once."""
        if by is not None and (not self.branches or self.branches[0] is not by):
            return
        if self.ended:
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

    def end(self) -> None:
        """No more audio: the open phrase is finished, then every branch's events end."""
        if self.ended:
            return
        if self._resampler is not None:
            self._accept(self._resampler.flush())
        self.ended = True
        self.listen.inbox.put(END)

    async def close(self) -> None:
        """Stop listening and recognising (the speaker is gone)."""
        self.ended = True
        await cancel_and_wait(self._tasks())

    def _tasks(self) -> list[asyncio.Task[None]]:
        handles = [self._listen_task, *(r.task_handle for r in self.recognisers.values())]
        return [t for t in handles if t is not None]

    def _accept(self, pcm: np.ndarray) -> None:
        if not len(pcm):
            return
        door = self.listen.inbox
        if door.full():  # the listen stage is stuck or far behind: drop, and say so
            self.stats.dropped_s += len(pcm) / SPEECH_RATE
            return
        pcm = np.clip(np.nan_to_num(pcm, nan=0.0, posinf=0.0, neginf=0.0), -1.0, 1.0)
        self.arrivals.add(len(pcm), self.clock.now_ns())
        door.put(pcm.astype(np.float32, copy=False))

    # -- events and faults --------------------------------------------------------------------
    def _broadcast(self, ev: Event) -> None:
        self._to(self.branches, ev)

    @staticmethod
    def _to(branches: list[Session], ev: Event) -> None:
        for b in list(branches):
            if ev.utt < 0 or ev.utt >= b.first_utt:
                b.deliver(ev)

    async def _guard(self, stage: Stage) -> None:
        try:
            await stage.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug, or an engine failing outside a guarded call
            log.exception("speaker %s: stage %s crashed", self.id, stage.name)
            self.fail(stage.name, exc)

    def fail(self, stage: str, exc: BaseException) -> None:
        """The speaker cannot be heard any more: every branch ends with the fatal error, the
        front's queues are emptied and its tasks stopped."""
        if self.failed is not None:
            return
        self.failed = f"{stage}: {type(exc).__name__}: {exc}"[:300]
        self.ended = True
        log.warning("speaker %s: front ended by a fault: %s", self.id, self.failed)
        for b in list(self.branches):
            b.front_failed(stage, exc)
        self.listen.inbox.discard()
        for rec in self.recognisers.values():
            rec.stage.inbox.discard()
        current = asyncio.current_task()
        for task in self._tasks():
            if task is not current:
                task.cancel()

    # -- figures ------------------------------------------------------------------------------
    def recognition(self) -> dict[str, Any]:
        """Recogniser streams and ASR passes of this speaker (``/stats``, session metrics)."""
        passes = dict(self._retired)
        for t, r in self.recognisers.items():
            passes[t] = passes.get(t, 0) + _passes(r)
        return {"speaker": self.id, "streams": len(self.recognisers),
                "branches": len(self.branches), "asr_passes": passes}
