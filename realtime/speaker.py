"""One speaker's front: their audio in, recognised source text out to every target language
that hears them — so a speaker heard in three languages runs the VAD and Whisper once, not
three times (each ``Session`` is then only a translate + speak branch for one target).

The front owns what depends on the speaker alone: the resampler, the arrival index (when
each source sample arrived), the door, the listen stage (VAD, phrase numbers), the voice
profile builder, and one recognise stage: "transcribe", or "translate" while every branch is
into English and Whisper's own X->en translation serves them best (``Engines.asr_task``).
Once another language needs the transcript, the English branches are moved onto it with a
text engine (``Engines.text_translator_for``) from the next phrase, and Whisper's translate
stream retires after the phrase under way: one Whisper stream per speaker, the most a 2-core
CPU affords in a room (a second stream stays only for a pair no text engine serves). Their
outputs are ``FanOut``s: each item goes into every attached branch's inbox, and backpressure
waits for the slowest branch.

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


@dataclass
class _Tap:
    """One inbox a ``FanOut`` feeds: phrases ``first`` to ``last`` (None: no end). ``close``:
    once past ``last`` the inbox gets END (a recogniser that retires after its last phrase);
    otherwise END never reaches it from here (a branch fed on by another stream)."""

    inbox: Inbox
    first: int
    last: int | None = None
    close: bool = False


class FanOut:
    """A stage's output into several inboxes (the same interface as one ``Inbox`` for the
    stage that writes it). Each inbox takes items from its ``first`` phrase on (END always);
    ``room()`` waits for the slowest, so backpressure still stops the writer."""

    def __init__(self) -> None:
        self._to: list[_Tap] = []
        self.final_utt = -1  # the latest phrase whose final item went out

    def attach(self, inbox: Inbox, first: int) -> None:
        self._to.append(_Tap(inbox, first))

    def stop_after(self, inbox: Inbox, last: int, *, close: bool) -> None:
        """Feed ``inbox`` no phrase after ``last`` (see ``_Tap``)."""
        for tap in self._to:
            if tap.inbox is inbox:
                tap.last, tap.close = last, close

    def finish(self, inbox: Inbox, last: int) -> None:
        """Feed ``inbox`` through phrase ``last``, then END: once that phrase's final item is
        out (at once if it is already, or if ``inbox`` starts after it)."""
        for tap in list(self._to):
            if tap.inbox is not inbox:
                continue
            if self.final_utt >= last or tap.first > last:
                self._to.remove(tap)
                inbox.put(END)
            else:
                tap.last, tap.close = last, True

    def detach(self, inbox: Inbox) -> None:
        """Stop feeding ``inbox``; what it holds is dropped so nobody waits on its room."""
        self._to = [t for t in self._to if t.inbox is not inbox]
        inbox.discard()

    def __len__(self) -> int:
        return len(self._to)

    def put(self, item: Any) -> None:
        if item is not END and getattr(item, "final", False):
            self.final_utt = max(self.final_utt, _utt(item))
        for tap in list(self._to):
            if item is END:
                if tap.last is None or tap.close:
                    tap.inbox.put(END)
                continue
            utt = _utt(item)
            if tap.last is not None and utt > tap.last:
                self._to.remove(tap)  # past its last phrase: leave it (its END, if it wants one)
                if tap.close:
                    tap.inbox.put(END)
            elif utt >= tap.first:
                tap.inbox.put(item)
                if tap.close and utt == tap.last and getattr(item, "final", False):
                    self._to.remove(tap)  # its last phrase is through (``finish``)
                    tap.inbox.put(END)

    def empty(self) -> bool:
        return all(t.inbox.empty() for t in self._to)

    def full(self) -> bool:
        return any(t.inbox.full() for t in self._to)

    async def room(self) -> None:
        """Return once every inbox is below its bound."""
        while True:
            full = [t.inbox for t in self._to if t.inbox.full()]
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
    first: int  # the first phrase it hears
    branches: list[Session] = field(default_factory=list)
    moved: dict[Session, int] = field(default_factory=dict)  # branch -> its last phrase here
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
        self.listen.on_progress = self._resolve_finishing
        self.recognisers: dict[str, Recogniser] = {}  # the streams taking new phrases
        self._retiring: list[Recogniser] = []  # streams finishing their last phrase
        self._inboxes: dict[Session, Inbox] = {}  # each branch's translate inbox
        self.branches: list[Session] = []
        self._finishing: set[Session] = set()  # branches that take no more audio
        self._waiting: dict[Session, int] = {}  # finishing, until listen has scored N samples
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
        engines = self.scheduler.engines
        task = engines.asr_task(source, target)
        if task == "translate" and "transcribe" in self.recognisers \
                and engines.text_translator_for(source, target) is not None:
            task = "transcribe"  # the transcript is made anyway: one stream, not two
            branch.use_transcript(None)
        rec = self.recognisers.get(task) or self._recogniser(task)
        branch.first_utt = self.listen.utt + 1
        rec.branches.append(branch)
        self.branches.append(branch)
        rec.stats.copies.append(branch.stats)
        self.stats.copies.append(branch.stats)
        rec.out.attach(inbox, branch.first_utt)
        self._inboxes[branch] = inbox
        if task == "transcribe":
            self._fold_translate(rec)
        return rec

    def _fold_translate(self, transcribe: Recogniser) -> None:
        """Move the English branches of Whisper's translate stream onto ``transcribe`` (and
        a text engine) from the next phrase; the stream retires once none is left on it."""
        old = self.recognisers.get("translate")
        if old is None:
            return
        engines = self.scheduler.engines
        nxt = self.listen.utt + 1
        moved = [b for b in old.branches
                 if engines.text_translator_for(b.config.source, b.config.target) is not None]
        for b in moved:
            inbox = self._inboxes[b]
            # Whisper's English of the phrase under way may come after the transcript's
            # next phrase: the branch holds the latter until the former is through
            pending = nxt - 1 if nxt - 1 >= max(b.first_utt, old.first) \
                and old.out.final_utt < nxt - 1 else None
            b.use_transcript(pending, transcribe)
            old.moved[b] = nxt - 1
            old.out.stop_after(inbox, nxt - 1, close=False)
            transcribe.out.attach(inbox, nxt)
            transcribe.branches.append(b)
            transcribe.stats.copies.append(b.stats)
        if len(moved) == len(old.branches):  # else a pair only Whisper translates keeps it
            self._retire(old, nxt - 1)

    def _retire(self, rec: Recogniser, last: int) -> None:
        """``rec`` takes no phrase after ``last``; it stops once that one is through."""
        del self.recognisers[rec.task]
        live = self.recognisers.get("transcribe")
        if rec.stage.ctx.profile is not None and live is not None:
            # the speaking rate comes from the stream that stays
            live.stage.ctx.profile, rec.stage.ctx.profile = rec.stage.ctx.profile, None
        if rec.task_handle is None:  # nothing heard yet: nothing to finish
            self.heard.detach(rec.stage.inbox)
            self._drop(rec)
            return
        self._retiring.append(rec)
        self.heard.stop_after(rec.stage.inbox, last, close=True)

    def detach(self, branch: Session, inbox: Inbox) -> None:
        """Stop feeding ``branch``; a recogniser no branch needs any more stops too (an
        English listener gone: no more Whisper translate passes)."""
        if branch not in self.branches:
            return
        self.branches.remove(branch)
        self._finishing.discard(branch)
        self._waiting.pop(branch, None)
        self.stats.copies.remove(branch.stats)
        self._inboxes.pop(branch, None)
        for rec in [*self.recognisers.values(), *self._retiring]:
            if branch in rec.branches:
                rec.branches.remove(branch)
                rec.moved.pop(branch, None)
                rec.stats.copies.remove(branch.stats)
                rec.out.detach(inbox)
            if not rec.branches:
                self._drop(rec)
                self.heard.detach(rec.stage.inbox)
                if rec.task_handle is not None:
                    rec.task_handle.cancel()
            elif set(rec.branches) <= set(rec.moved) and self.recognisers.get(rec.task) is rec:
                self._retire(rec, self.listen.utt)  # only moved branches left on it

    def finish(self, branch: Session) -> None:
        """``branch`` takes no more audio (its transport's input ended): it still gets the
        phrase under way, whole, then END. Once no branch takes audio the front ends itself,
        which finishes that phrase from what was heard. (Detaching at once, as a failed or
        closed branch does, lost the phrases still being recognised: a speaker whose
        audio reached a room's interpreters late was never translated.)"""
        if branch not in self.branches or branch in self._finishing:
            return
        self._finishing.add(branch)
        if self._finishing >= set(self.branches):
            self.end()  # END reaches every branch after the phrase under way
            return
        self._waiting[branch] = self.arrivals.samples
        self._resolve_finishing()

    def _resolve_finishing(self) -> None:
        """A finishing branch's last phrase is the one under way once the listen stage has
        scored all the audio pushed before the branch ended (its door may hold seconds of
        it: a late-read track arrives in a burst)."""
        for branch, until in list(self._waiting.items()):
            if self.listen.scored < until:
                continue
            del self._waiting[branch]
            last = branch.last_utt = self.listen.utt
            inbox = self._inboxes[branch]
            for rec in self.recognisers.values():
                if branch in rec.branches:
                    rec.out.finish(inbox, last)

    def _drop(self, rec: Recogniser) -> None:
        """Forget a stream (its passes stay counted)."""
        if self.recognisers.get(rec.task) is rec:
            del self.recognisers[rec.task]
        if rec in self._retiring:
            self._retiring.remove(rec)
        self._retired[rec.task] = self._retired.get(rec.task, 0) + _passes(rec)

    def _recogniser(self, task: str) -> Recogniser:
        stats = FrontMetrics()
        out = FanOut()
        first_task = self._streams_made == 0
        # the speaking rate comes from one stream's words only (counted twice, it would be
        # wrong); the first stream made is the one a private front has
        ctx = replace(self.ctx, stats=stats, failures={},
                      profile=self.profile if first_task else None)
        rec = Recogniser(task, RecognizeStage(ctx, self.flow, out, task=task), stats, out,  # type: ignore[arg-type]
                         self.listen.utt + 1)
        ctx.emit = lambda ev, rec=rec: self._to(rec.branches, ev, rec.moved)
        rec.stage.downstream = out  # type: ignore[assignment]
        self._streams_made += 1
        self.recognisers[task] = rec
        self.heard.attach(rec.stage.inbox, self.listen.utt + 1)
        if self._listen_task is not None:
            rec.task_handle = asyncio.create_task(self._run(rec),
                                                  name=f"recognize-{task}-{self.id}")
        return rec

    async def _run(self, rec: Recogniser) -> None:
        await self._guard(rec.stage)
        if rec in self._retiring:  # its last phrase is through
            self._drop(rec)
            for b in rec.branches:
                rec.stats.copies.remove(b.stats)
            rec.branches.clear()

    # -- audio in ---------------------------------------------------------------------------
    def start(self) -> None:
        if self._listen_task is None:
            self._listen_task = asyncio.create_task(self._guard(self.listen),
                                                    name=f"listen-{self.id}")
            for rec in self.recognisers.values():
                rec.task_handle = asyncio.create_task(self._run(rec),
                                                      name=f"recognize-{rec.task}-{self.id}")

    def push(self, audio: av.AudioFrame | np.ndarray, rate: int | None = None, *,
             channels: int = 1, by: Session | None = None) -> None:
        """Feed audio (see ``Session.push``); never blocks. ``by``: the branch whose input
        this is. Each target's transport may read its own copy of the speaker's track (a
        room's links, a bot's interpreters, each with its own original-voice bed): only the
        earliest attached branch's copy is heard — the next one takes over if it leaves —
        so the speaker is listened to once (a finishing branch's copy has ended)."""
        if by is not None and next((b for b in self.branches if b not in self._finishing),
                                   None) is not by:
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
        handles = [self._listen_task, *(r.task_handle for r in self.recognisers.values()),
                   *(r.task_handle for r in self._retiring)]
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
    def _to(branches: list[Session], ev: Event, last: dict[Session, int] | None = None) -> None:
        for b in list(branches):
            if b.last_utt is not None and ev.utt > b.last_utt:
                continue  # a finishing branch: not the phrases after its last
            if ev.utt < 0 or (ev.utt >= b.first_utt and (not last or ev.utt <= last.get(
                    b, ev.utt))):
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
        for rec in [*self.recognisers.values(), *self._retiring]:
            rec.stage.inbox.discard()
        current = asyncio.current_task()
        for task in self._tasks():
            if task is not current:
                task.cancel()

    # -- figures ------------------------------------------------------------------------------
    def recognition(self) -> dict[str, Any]:
        """Recogniser streams and ASR passes of this speaker (``/stats``, session metrics)."""
        passes = dict(self._retired)
        for r in [*self.recognisers.values(), *self._retiring]:
            passes[r.task] = passes.get(r.task, 0) + _passes(r)
        return {"speaker": self.id, "streams": len(self.recognisers),
                "branches": len(self.branches), "asr_passes": passes,
                "routes": {b.config.target: b.route for b in self.branches}}
