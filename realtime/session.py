"""A Session interprets one speaker: audio frames in, an async stream of events out.

Four stage tasks joined by queues, one way only (listen -> recognize -> translate -> speak):
each model call runs in a worker thread, so 20 ms frames keep flowing on the event loop while
Whisper or Kokoro work. A stage that finds a backlog coalesces it into one model call (ASR
reads all queued audio at once; MT translates only the latest source), which is how a slow
update catches up instead of queueing forever. A failing engine call becomes a StageError
event and the session goes on with the next phrase.

Every event carries the source span it covers and the wall time it was produced; the session
remembers when each source sample arrived (``arrival_ns``), so latency is a subtraction."""

from __future__ import annotations

import asyncio
import bisect
import concurrent.futures
import functools
import itertools
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import av
import numpy as np

from babelcall.engines.asr.agreement import OnlineAsr
from babelcall.engines.mt.incremental import IncrementalTranslator
from babelcall.engines.registry import Engines
from babelcall.engines.vad.tracker import VadParams
from babelcall.engines.voice import ProfileBuilder, VoiceProfile, rate_factor
from babelcall.realtime.audio import Resampler, frame_from_array
from babelcall.realtime.budget import LatencyBudget, asr_interval_factor, catchup_speed
from babelcall.realtime.clauses import ClauseCutter
from babelcall.realtime.clock import Clock, SystemClock
from babelcall.realtime.errors import SessionClosed
from babelcall.realtime.listener import (
    Listener,
    PhraseAudio,
    PhraseEnd,
    PhrasePause,
    PhraseStart,
)
from babelcall.realtime.metrics import SessionMetrics
from babelcall.realtime.scheduler import Deadlines, Scheduler
from babelcall.realtime.types import (
    Event,
    Span,
    SpeechEnded,
    SpeechSkipped,
    SpeechStarted,
    StageError,
    SynthAudio,
    Transcript,
    Translation,
    Word,
)

log = logging.getLogger(__name__)
RATE = 16000
_END = object()
_ids = itertools.count(1)
ARRIVAL_KEEP = 6000  # arrival stamps kept: >= 2 min of 20 ms frames, far beyond any phrase


@dataclass(frozen=True)
class SessionConfig:
    source: str
    target: str
    vad: VadParams = field(default_factory=VadParams)
    asr_interval_s: float = 0.8  # new speech between two ASR updates of a phrase
    max_phrase_buffer_s: float = 15.0
    max_clause_words: int = 8
    first_clause_words: int = 5  # the first piece of a phrase is shorter: it is waited for
    voice: str | None = None
    speed: float = 1.0
    clone_voice: bool = True  # profile the speaker for the engines' cloner (off: PassThrough)
    # Commit the recogniser's whole hypothesis at a pause (see OnlineAsr.process); off: words
    # wait for agreement or the end of the phrase.
    settle_at_pause: bool = True

    def __post_init__(self) -> None:
        if self.asr_interval_s <= 0:
            raise ValueError("asr_interval_s must be positive")


@dataclass
class _SourceText:
    utt: int
    text: str  # all committed source text of the phrase so far
    span: Span
    final: bool


class Session:
    """``scheduler``: share engines with other sessions through the latency scheduler (EDF,
    batching, shedding); without one the session calls its engines directly."""

    def __init__(self, engines: Engines, config: SessionConfig, *,
                 clock: Clock | None = None, scheduler: Scheduler | None = None,
                 budget: LatencyBudget | None = None) -> None:
        engines.check_pair(config.source, config.target)
        self.id = next(_ids)
        self.config = config
        self.clock = clock or (scheduler.clock if scheduler else SystemClock())
        self.budget = budget or (scheduler.budget if scheduler else LatencyBudget())
        self.scheduler = scheduler
        self._deadlines = Deadlines(self.clock)
        if scheduler is not None:
            scheduler.admit(self)  # may raise Overloaded: before anything is started
            engines = scheduler.bind(self._deadlines)
        self.engines = engines
        self.stats = SessionMetrics()
        self._backlog_s = 0.0
        # Own threads: a call waiting on a busy shared model must not starve other sessions.
        self._executor = concurrent.futures.ThreadPoolExecutor(
            4, thread_name_prefix=f"session-{self.id}")
        self._listener = Listener(engines.vad, config.vad)
        task = engines.asr_task(config.source, config.target)
        self._asr = OnlineAsr(engines.asr, language=config.source, task=task,
                              max_buffer_s=config.max_phrase_buffer_s)
        self._mt = IncrementalTranslator(engines.translator, config.source, config.target) \
            if engines.translator is not None else None
        self._resampler: Resampler | None = None
        self._received = 0  # 16 kHz samples pushed
        self._arrival_t: list[float] = []
        self._arrival_ns: list[int] = []
        self._listen_q: asyncio.Queue[Any] = asyncio.Queue()
        self._asr_q: asyncio.Queue[Any] = asyncio.Queue()
        self._mt_q: asyncio.Queue[Any] = asyncio.Queue()
        self._tts_q: asyncio.Queue[Any] = asyncio.Queue()
        self._events: asyncio.Queue[Any] = asyncio.Queue()
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._ended = False
        self._tasks: list[asyncio.Task[None]] = []
        self._utt = -1
        self._said = ""  # target text already passed on, when Whisper translates itself
        # The speaker's voice profile, for cloning; one voice per phrase, never mixed.
        self._profile = ProfileBuilder(language=config.source) if config.clone_voice else None
        self._phrase_voice: tuple[int, VoiceProfile | None, str | None] = (-1, None, None)

    # -- public API -----------------------------------------------------------------------
    async def __aenter__(self) -> Session:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def start(self) -> None:
        if self._tasks:
            return
        for fn in (self._listen, self._recognize, self._translate, self._speak):
            self._tasks.append(asyncio.create_task(self._guard(fn), name=fn.__name__))

    def push(self, audio: av.AudioFrame | np.ndarray, rate: int | None = None, *,
             channels: int = 1) -> None:
        """Feed audio: an av.AudioFrame (any rate/layout/format, e.g. from aiortc) or a numpy
        array of PCM at ``rate``. Never blocks; the work happens in the stage tasks."""
        if self._ended:
            raise SessionClosed("audio pushed after the session ended")
        if not isinstance(audio, av.AudioFrame):
            if rate is None:
                raise ValueError("rate is required with a numpy array")
            audio = frame_from_array(audio, rate, channels=channels)
        if self._resampler is None:
            self._resampler = Resampler(RATE)
        pcm = self._resampler.push(audio)
        self._accept(pcm)

    async def end(self) -> None:
        """No more audio: finish the open phrase; ``events()`` ends after its last event."""
        if self._ended:
            return
        if self._resampler is not None:
            self._accept(self._resampler.flush())
        self._ended = True
        self._put(self._listen_q, _END)

    async def events(self) -> AsyncIterator[Event]:
        while True:
            ev = await self._events.get()
            if ev is _END:
                return
            yield ev

    async def idle(self) -> None:
        """Wait until every stage has handled everything pushed so far (replays use it)."""
        await self._idle.wait()

    async def close(self) -> None:
        """Stop (peer gone, or done): cancel the stages, wait for them, free the slot."""
        self._ended = True
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._events.put_nowait(_END)
        if self.scheduler is not None:
            self.scheduler.release(self)
        self._executor.shutdown(wait=False, cancel_futures=True)

    def report_backlog(self, seconds: float) -> None:
        """The sink says how much translated audio waits to be played: drives catch-up."""
        self._backlog_s = max(0.0, seconds)
        self.stats.backlog_s = self._backlog_s

    def metrics(self) -> dict[str, Any]:
        """Live figures for captions/stats and the benchmark."""
        queues = {"listen": self._listen_q.qsize(), "asr": self._asr_q.qsize(),
                  "mt": self._mt_q.qsize(), "tts": self._tts_q.qsize()}
        heard = self._received / RATE
        return self.stats.snapshot(heard_s=heard, queues=queues,
                                   shed_level=self.scheduler.level if self.scheduler else 0)

    def arrival_ns(self, t: float) -> int:
        """Wall time at which the source sample at stream time ``t`` arrived."""
        if not self._arrival_t:
            return self.clock.now_ns()
        i = min(bisect.bisect_left(self._arrival_t, t), len(self._arrival_t) - 1)
        return self._arrival_ns[i]

    # -- plumbing -------------------------------------------------------------------------
    def _accept(self, pcm: np.ndarray) -> None:
        if not len(pcm):
            return
        pcm = np.nan_to_num(pcm, nan=0.0, posinf=0.0, neginf=0.0)
        self._received += len(pcm)
        self._arrival_t.append(self._received / RATE)
        self._arrival_ns.append(self.clock.now_ns())
        if len(self._arrival_t) > 2 * ARRIVAL_KEEP:  # bounded memory on hour-long calls
            del self._arrival_t[:ARRIVAL_KEEP], self._arrival_ns[:ARRIVAL_KEEP]
        self._put(self._listen_q, pcm)

    def _put(self, q: asyncio.Queue[Any], item: Any) -> None:
        self._in_flight += 1
        self._idle.clear()
        q.put_nowait(item)

    def _done(self, n: int = 1) -> None:
        self._in_flight -= n
        if self._in_flight == 0:
            self._idle.set()

    def _emit(self, ev: Event) -> None:
        self._events.put_nowait(ev)

    async def _call(self, stage: str, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """Run a model call on the session's threads, timing it for the metrics."""
        loop = asyncio.get_running_loop()
        started = self.clock.now_ns()
        try:
            return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kw))
        finally:
            self.stats.stage_done(stage, (self.clock.now_ns() - started) / 1e9)

    def _drain(self, q: asyncio.Queue[Any], first: Any) -> list[Any]:
        items = [first]
        while not q.empty():
            items.append(q.get_nowait())
        return items

    async def _guard(self, fn: Callable[[], Any]) -> None:
        try:
            await fn()
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug in a stage must not leave events() hanging
            log.exception("stage %s crashed", fn.__name__)
            self._events.put_nowait(_END)

    def _error(self, stage: str, utt: int, span: Any, exc: BaseException) -> None:
        log.warning("%s failed: %s", stage, exc)
        self.stats.errors += 1
        message = f"{type(exc).__name__}: {exc}"
        self._emit(StageError(utt, span, self.clock.now_ns(), stage, message))

    # -- stages ---------------------------------------------------------------------------
    async def _listen(self) -> None:
        while True:
            first = await self._listen_q.get()
            items = self._drain(self._listen_q, first)
            ended = any(i is _END for i in items)
            blocks = [i for i in items if i is not _END]
            heard = []
            if blocks:
                pcm = np.concatenate(blocks)
                heard = await self._call("vad", self._listener.feed, pcm)
            if ended:
                heard += self._listener.flush()
            if not self._listener.speaking and not heard and self._asr_q.empty():
                self.stats.covered_s = max(self.stats.covered_s, self._received / RATE)
            for h in heard:
                if self._profile is not None and isinstance(h, PhraseStart | PhraseAudio):
                    self._profile.add(h.pcm)  # a bounded append; analysis runs later
                if isinstance(h, PhraseStart):
                    self._utt += 1
                    span = _span(h.time, h.time)
                    self._emit(SpeechStarted(self._utt, span, self.clock.now_ns()))
                elif isinstance(h, PhraseEnd):
                    self._emit(SpeechEnded(self._utt, _span(h.time, h.time), self.clock.now_ns()))
                self._put(self._asr_q, (self._utt, h))
            if ended:
                self._put(self._asr_q, _END)
            self._done(len(items))
            if ended:
                return

    async def _recognize(self) -> None:
        utt = -1
        fresh = 0.0  # seconds of phrase audio not yet transcribed
        voiced = 0.0  # of which the VAD scored as speech
        phrase_start = 0.0
        committed: list[Word] = []
        while True:
            first = await self._asr_q.get()
            items = self._drain(self._asr_q, first)
            for k, item in enumerate(items):
                if item is _END:
                    self._put(self._mt_q, _END)
                    self._done(len(items))
                    return
                utt, heard = item
                later = [i[1] for i in items[k + 1:] if i is not _END]
                if isinstance(heard, PhraseStart):
                    phrase_start, committed = heard.time, []
                    fresh = voiced = len(heard.pcm) / RATE
                    self._asr.start(heard.time, heard.pcm)
                elif isinstance(heard, PhraseAudio):
                    self._asr.insert_audio(heard.pcm)
                    fresh += len(heard.pcm) / RATE
                    voiced += heard.voiced_s
                    # Coalesce: with more audio already queued, one pass reads it all.
                    if fresh >= self._asr_interval() and not any(
                            isinstance(h, (PhraseAudio, PhrasePause, PhraseEnd)) for h in later):
                        fresh = voiced = 0.0
                        self._deadline("asr", self._asr.buffer_end, final=False)
                        new = await self._run_asr(utt, phrase_start, self._asr.process)
                        committed += new
                        self._send_source(utt, phrase_start, committed, new, final=False)
                elif isinstance(heard, PhrasePause):
                    # The phrase may be over: transcribe now, overlapping the VAD's wait.
                    if voiced > 0 and not any(isinstance(h, PhraseAudio) and h.voiced_s
                                              for h in later):
                        fresh = voiced = 0.0
                        self._deadline("asr", heard.time, final=True)
                        settle = self.config.settle_at_pause
                        new = await self._run_asr(
                            utt, phrase_start, functools.partial(self._asr.process, settle=settle))
                        committed += new
                        self._send_source(utt, phrase_start, committed, new, final=False)
                elif isinstance(heard, PhraseEnd):
                    self.stats.phrase_end(utt, self.arrival_ns(heard.time))
                    new = []
                    if voiced > 0.05:  # speech since the last pass: read it
                        self._deadline("asr", heard.time, final=True)
                        new += await self._run_asr(utt, phrase_start, self._asr.process)
                    new += self._asr.finish()
                    fresh = voiced = 0.0
                    committed += new
                    self.stats.covered_s = max(self.stats.covered_s, heard.time)
                    self.stats.mark(utt, "asr_done_ns", self.clock.now_ns())
                    self._send_source(utt, phrase_start, committed, new, final=True)
            self._done(len(items))

    async def _run_asr(self, utt: int, start: float, fn: Callable[[], list[Word]]) -> list[Word]:
        try:
            words = await self._call("asr", fn)
        except Exception as exc:
            self._error("asr", utt, _span(start, self._asr.buffer_end), exc)
            return []
        self.stats.covered_s = max(self.stats.covered_s, self._asr.buffer_end)
        if self._profile is not None and words:
            self._profile.add_words(words)  # speaking rate
        return words

    def _asr_interval(self) -> float:
        level = self.scheduler.level if self.scheduler else 0
        return self.config.asr_interval_s * asr_interval_factor(level)

    def _deadline(self, stage: str, source_t: float, *, final: bool) -> None:
        anchor = self.arrival_ns(source_t)
        self._deadlines.set(stage, self.budget.deadline(stage, anchor, final=final))

    def _send_source(self, utt: int, start: float, committed: list[Word], new: list[Word],
                     *, final: bool) -> None:
        partial = [] if final else self._asr.partial
        last = (committed[-1].end if committed else start)
        end = partial[-1].end if partial else last
        self._emit(Transcript(utt, _span(start, end), self.clock.now_ns(), tuple(new),
                              tuple(partial)))
        if new or final:
            text = "".join(w.text for w in committed).strip()
            self._put(self._mt_q, _SourceText(utt, text, _span(start, last), final))

    async def _translate(self) -> None:
        while True:
            first = await self._mt_q.get()
            items = self._drain(self._mt_q, first)
            # Coalesce: per phrase only the latest source matters (it contains the earlier).
            todo: list[_SourceText] = []
            for item in items:
                if item is _END:
                    continue
                if todo and todo[-1].utt == item.utt and not todo[-1].final:
                    todo[-1] = item
                else:
                    todo.append(item)
            for src in todo:
                await self._translate_one(src)
            if any(i is _END for i in items):
                self._put(self._tts_q, _END)
                self._done(len(items))
                return
            self._done(len(items))

    async def _translate_one(self, src: _SourceText) -> None:
        if self._mt is None:  # the ASR already produced target-language text
            new, draft = src.text[len(self._said):].strip(), ""
            self._said = "" if src.final else src.text
        else:
            try:
                self._deadline("mt", src.span.end, final=src.final)
                step = await self._call("mt", self._mt.update, src.text, final=src.final)
                new, draft = step.new_committed, step.draft
            except Exception as exc:
                self._error("mt", src.utt, src.span, exc)
                new, draft = "", ""
            if src.final:
                self._mt.reset()
        if src.final:
            self.stats.mark(src.utt, "mt_done_ns", self.clock.now_ns())
        self._emit(Translation(src.utt, src.span, self.clock.now_ns(), new, draft, src.final))
        if new or src.final:
            self._put(self._tts_q, (src.utt, new, src.span, src.final))

    async def _speak(self) -> None:
        cutter = ClauseCutter(self.config.max_clause_words, self.config.first_clause_words)
        while True:
            first = await self._tts_q.get()
            items = self._drain(self._tts_q, first) if self._backlog_s > \
                self.budget.merge_backlog_s else [first]
            ended = any(i is _END for i in items)
            pieces: list[tuple[int, str, Span]] = []
            for item in items:
                if item is _END:
                    continue
                utt, text, span, final = item
                pieces += [(utt, p, span) for p in cutter.push(text, final=final)]
            if len(items) > 1 and len(pieces) > 1:
                # Far behind: voice the waiting clauses as one (fewer joins, one call). Nothing
                # committed is dropped; the merge is logged and counted.
                log.info("session %s catch-up: merged %d clauses (backlog %.1f s)",
                         self.id, len(pieces), self._backlog_s)
                self.stats.merges += len(pieces) - 1
                pieces = [(pieces[-1][0], " ".join(p[1] for p in pieces),
                           _span(pieces[0][2].start, pieces[-1][2].end))]
            for utt, piece, span in pieces:
                await self._say(utt, piece, span)
            self._done(len(items))
            if ended:
                self._events.put_nowait(_END)
                return

    async def _voice_for(self, utt: int) -> tuple[VoiceProfile | None, str | None]:
        """Profile and base voice for a phrase, fixed at its first piece so the voice never
        changes inside a sentence."""
        if self._phrase_voice[0] != utt:
            profile, voice = None, self.config.voice
            if self._profile is not None:
                builder = self._profile
                profile = await self._call("voice", lambda: builder.profile)
                tts = self.engines.tts
                voice = self.engines.cloner.choose_voice(
                    profile, getattr(tts, "voices", ())) or voice
            self._phrase_voice = (utt, profile, voice)
        return self._phrase_voice[1], self._phrase_voice[2]

    def _behind_s(self, span: Span, *, ahead: bool = False) -> float:
        """How long after the speaker said ``span`` the listener starts hearing it: the time
        since it arrived plus the audio queued before it; ``ahead``: plus what a synthesis
        call takes now (waiting for the shared model included), for a clause not yet made."""
        behind = (self.clock.now_ns() - self.arrival_ns(span.end)) / 1e9 + self._backlog_s
        tts = self.stats.stages.get("tts")
        return behind + (tts.ewma_s if ahead and tts is not None else 0.0)

    async def _say(self, utt: int, piece: str, span: Span) -> None:
        tts, cfg, cloner = self.engines.tts, self.config, self.engines.cloner
        behind = self._behind_s(span, ahead=True)
        if behind > self.budget.max_speech_lag_s:
            log.info("session %s overload: not voicing %r (%.1f s behind the speaker)",
                     self.id, piece, behind)
            self.stats.skipped += 1
            self._emit(SpeechSkipped(utt, span, self.clock.now_ns(), piece, behind))
            return
        if self.stats.spoken(utt):
            # A later piece is due when the audio queued before it has played out.
            self._deadlines.set("tts", self.clock.now_ns() + int(self._backlog_s * 1e9)
                                + self.budget.deadline("tts", 0, final=True))
        else:
            self._deadline("tts", span.end, final=True)
        try:
            profile, voice = await self._voice_for(utt)
            speed = min(2.0, cfg.speed * rate_factor(profile, cfg.target)
                        * catchup_speed(self._backlog_s, self.budget))
            self.stats.speed = speed
            chunks = tts.synthesize(piece, language=cfg.target, voice=voice, speed=speed)

            def next_chunk() -> np.ndarray | None:
                pcm = next(chunks, None)
                if pcm is None or profile is None:
                    return pcm
                return cloner.apply(pcm, tts.sample_rate, profile, voice=voice)

            seq = 0
            while (pcm := await self._call("tts", next_chunk)) is not None:
                if seq == 0:
                    self.stats.mark(utt, "first_audio_ns", self.clock.now_ns(), once=True)
                    self.stats.speech_lag_s = self._behind_s(span)
                self._emit(SynthAudio(utt, span, self.clock.now_ns(), pcm, tts.sample_rate,
                                      piece, seq))
                seq += 1
        except Exception as exc:
            self._error("tts", utt, span, exc)


def _span(start: float, end: float) -> Span:
    return Span(round(start, 3), round(max(start, end), 3))
