"""Speak: committed target text in, translated speech out. Text is cut into clauses
(``ClauseCutter``); each clause is synthesised piece by piece on the scheduler's TTS lane,
in the phrase's voice (chosen once per phrase so it never changes inside a sentence) and
converted towards the speaker's. How fast to speak, whether to merge what waits and whether
a clause is too late to voice at all are ``policy`` decisions on the sink's backlog.

Speculation: when nothing committed waits, the clause that the translator's current draft
would end the phrase with is synthesised ahead of its commit. If the commit then brings
exactly that clause, its audio goes out at once (a hit); anything else is synthesised from
the committed text as usual (a miss) — speculative audio is never played for other words."""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from babelcall.engines.voice import VoiceProfile, rate_factor, world
from babelcall.realtime.audio import shorten_pauses
from babelcall.realtime.clauses import ClauseCutter, clause_words, early_words
from babelcall.realtime.condense import condense
from babelcall.realtime.policy import (
    compression,
    merge_waiting,
    skip_voice,
    speech_speed,
    voice_early,
)
from babelcall.realtime.scheduler import CallTrace
from babelcall.realtime.stages.base import END, Context, Flow, Stage, span
from babelcall.realtime.stages.translate import TargetText
from babelcall.realtime.types import PhraseTiming, Span, SpeechSkipped, SynthAudio, VoiceChosen
from babelcall.realtime.waterfall import hops_ms

log = logging.getLogger(__name__)


class Speech:
    """One clause's speech, made step by step on the TTS lane's thread: each ``step`` makes
    the next piece and converts it to the speaker's voice (None when the clause is done).
    Phonemising happens in the first step too, never on the event loop."""

    def __init__(self, ctx: Context, text: str, voice: str | None, speed: float,
                 profile: VoiceProfile | None,
                 behind: Callable[[], float] | None = None, *, before: str = "") -> None:
        engines = ctx.scheduler.engines
        self.tts, self.cloner = engines.tts, engines.cloner
        self.language = ctx.config.target
        # what the voice says: the captions keep the whole translation
        self.text = condense(text, self.language, before=before)
        # a piece that opens its phrase is heard without the words before it
        # (policy.FULL_PACE_WORDS); one that goes on from them is not counted
        self.opening_words = None if before else len(self.text.split())
        self.voice, self.speed, self.profile = voice, speed, profile
        # how far behind the speaker the listener is now, read once a piece exists (its
        # length decides its re-timing, policy.compression); None: never re-timed
        self.behind = behind
        self.budget = ctx.budget
        self.tempo = 1.0  # the latest piece's re-timing
        self.max_pause_s = ctx.config.max_pause_s
        self.clock = ctx.clock
        self.synthesized_ns = 0  # when the latest piece was made, before conversion
        self._pieces: Iterator[np.ndarray] | None = None

    def step(self) -> np.ndarray | None:
        if self._pieces is None:
            self._pieces = self.tts.synthesize(self.text, language=self.language,
                                               voice=self.voice, speed=self.speed)
        pcm = next(self._pieces, None)
        self.synthesized_ns = self.clock.now_ns()
        if pcm is None:
            return None
        if self.max_pause_s is not None:
            pcm = shorten_pauses(pcm, self.tts.sample_rate, self.max_pause_s)
        rate = self.tts.sample_rate
        if self.behind is not None:  # its length decides how much it is re-timed
            self.tempo = compression(self.behind(), len(pcm) / rate, self.speed, self.budget,
                                     converted=self.profile is not None,
                                     language=self.language, words=self.opening_words)
        if self.profile is not None and getattr(self.cloner, "retimes", False):
            return self.cloner.apply(pcm, rate, self.profile, voice=self.voice,
                                     tempo=self.tempo)  # one vocoder pass for both
        if self.tempo > 1.0:  # before conversion: it then has less audio to convert
            pcm = world.retime(pcm, rate, self.tempo)
        if self.profile is None:
            return pcm
        return self.cloner.apply(pcm, rate, self.profile, voice=self.voice)


@dataclass(frozen=True)
class _Piece:
    """A clause to voice and what made its text (the waterfall of the last one of a phrase)."""

    utt: int
    text: str
    src: Span
    made_by: TargetText
    # when the speaker said the piece's last word (estimated: a commit's words are spread
    # evenly over the source it added); None: at ``src.end``
    said_s: float | None = None

    @property
    def said_end(self) -> float:
        return self.src.end if self.said_s is None else self.said_s


@dataclass
class _Made:
    """A clause's speech as it is made: its pieces of audio and the waterfall hops of its
    first. Once ``out`` is set (at once, or when a speculation is confirmed), every piece
    goes out through it as soon as it exists."""

    piece: _Piece
    clause: int
    before: str = ""  # the word said before it in its phrase ("" at the phrase's start)
    chunks: list[np.ndarray] = field(default_factory=list)
    marks: dict[str, int] = field(default_factory=dict)
    out: Callable[[_Made, int], None] | None = None

    def add(self, pcm: np.ndarray) -> None:
        self.chunks.append(pcm)
        if self.out is not None:
            self.out(self, len(self.chunks) - 1)

    def publish(self, out: Callable[[_Made, int], None]) -> None:
        """From now on pieces go out; those made already go out now, in order."""
        self.out = out
        for seq in range(len(self.chunks)):
            out(self, seq)


@dataclass
class _Speculation:
    utt: int
    text: str
    made: _Made
    task: asyncio.Task[None]


def _trace_marks(prefix: str, trace: CallTrace | None) -> dict[str, int]:
    if trace is None:
        return {}
    return {f"{prefix}_submit": trace.submitted_ns, f"{prefix}_start": trace.started_ns,
            f"{prefix}_done": trace.done_ns}


class SpeakStage(Stage):
    name = "speak"

    def __init__(self, ctx: Context, flow: Flow) -> None:
        super().__init__(ctx, flow)
        cfg = ctx.config
        words, first = clause_words(cfg.target)
        self.cutter = ClauseCutter(cfg.max_clause_words or words, cfg.first_clause_words or first)
        self.min_early_words = early_words(cfg.target)
        self._src_end: dict[int, float] = {}  # utt -> where its latest commit's source ended
        self._phrase_voice: tuple[int, VoiceProfile | None, str | None] = (-1, None, None)
        self._clauses = itertools.count(1)
        self._latest: dict[int, tuple[int, dict[str, int]]] = {}  # utt -> its latest clause
        self._spec: _Speculation | None = None
        self._said_voice: tuple[str | None, bool, str] | None = None
        self._tail: tuple[int, str] = (-1, "")  # (utt, last word) of the latest committed piece

    def coalesce(self) -> bool:
        """Far behind, voice everything that waits as one; otherwise clause by clause."""
        return merge_waiting(self.ctx.backlog_s, self.ctx.budget)

    async def handle(self, items: list[Any]) -> bool:
        pieces: list[_Piece] = []
        texts = [i for i in items if i is not END]
        for t in texts:
            pieces += self._cut(t)
        if texts and not pieces and self.ctx.config.voice_early \
                and voice_early(self.ctx.backlog_s, self.ctx.budget):
            early = self.cutter.flush(self.min_early_words)
            if early:
                t = texts[-1]
                pieces.append(_Piece(t.utt, early, t.span, t))
        if len(items) > 1 and len(pieces) > 1:
            # Nothing committed is dropped: the merge is logged and counted.
            log.info("session %s catch-up: merged %d clauses (backlog %.1f s)",
                     self.ctx.session_id, len(pieces), self.ctx.backlog_s)
            self.ctx.stats.merges += len(pieces) - 1
            last = pieces[-1]
            pieces = [_Piece(last.utt, " ".join(p.text for p in pieces),
                             span(pieces[0].src.start, last.src.end), last.made_by)]
        for piece in pieces:
            await self._say(piece)
        for t in texts:
            if t.final:
                self._phrase_done(t)
        if texts and not texts[-1].final and self.inbox.empty():
            self._speculate(texts[-1])
        ended = any(i is END for i in items)
        if ended:
            self._drop_speculation()
        return ended

    def _cut(self, t: TargetText) -> list[_Piece]:
        """The pieces ready once ``t`` is committed, each with when its last word was said:
        the words ``t`` adds are spread evenly over the source it adds (from where the
        phrase's previous commit ended to ``t.span.end``); words that waited in the cutter
        were said by then."""
        lo = min(self._src_end.get(t.utt, t.span.start), t.span.end)
        self._src_end = {t.utt: t.span.end}  # only the open phrase's is ever needed
        waiting = len(self.cutter.pending.split())
        added = max(1, len(t.text.split()))
        out, used = [], 0
        for text in self.cutter.push(t.text, final=t.final):
            used += len(text.split())
            frac = min(1.0, max(0.0, (used - waiting) / added))
            out.append(_Piece(t.utt, text, t.span, t, lo + frac * (t.span.end - lo)))
        return out

    async def run(self) -> None:
        try:
            await super().run()
        finally:  # closed mid-phrase: a speculation still being made is not needed
            spec, self._spec = self._spec, None
            if spec is not None:
                _forget(spec.task)

    def _phrase_done(self, last: TargetText) -> None:
        """The phrase is over: its latest clause carried its last word. Say how it got here."""
        ctx = self.ctx
        if self._spec is not None and self._spec.utt == last.utt:
            self._drop_speculation()  # the phrase ended on other words
        latest = self._latest.pop(last.utt, None)
        stamps = ctx.stats.stamps(last.utt)
        if latest is None or "last_word" not in stamps:
            return  # nothing voiced, or no word recognised (noise)
        clause, marks = latest
        marks = {**marks, **{k: stamps[k] for k in ("last_word", "pause", "end")
                             if k in stamps}}
        ctx.stats.last_timing_ms = hops_ms(marks)
        ctx.emit(PhraseTiming(last.utt, last.span, ctx.clock.now_ns(), clause, marks))

    # -- speculation ----------------------------------------------------------------------
    def _speculate(self, latest: TargetText) -> None:
        """Start making the clause the phrase would end with if the draft were committed
        now (nothing committed waits, so the TTS lane would otherwise idle)."""
        if not self.ctx.config.speculate or not latest.draft.strip():
            return
        builder = self.ctx.profile
        if self._phrase_voice[0] != latest.utt and builder is not None \
                and not builder.heard_enough:
            return  # the phrase's voice would be fixed before the speaker can be cloned
        preview = self.cutter.preview(latest.draft, final=True)
        if not preview:
            return
        text = preview[0]
        spec = self._spec
        if spec is not None and spec.utt == latest.utt and spec.text == text:
            return  # already being made
        self._drop_speculation()
        made = self._new_clause(_Piece(latest.utt, text, latest.span, latest))
        task = asyncio.create_task(self._make(made))
        self.flow.add()  # in flight like any item: a replay's idle() waits for it
        task.add_done_callback(lambda _: self.flow.done(1))
        self._spec = _Speculation(latest.utt, text, made, task)

    def _take_speculation(self, piece: _Piece) -> _Speculation | None:
        """The speculation this committed clause confirms, if any (a hit); a speculation for
        the same phrase that it does not confirm is a miss."""
        spec = self._spec
        if spec is None or spec.utt != piece.utt:
            return None
        self._spec = None
        if spec.text == piece.text:
            self.ctx.stats.spec_hits += 1
            return spec
        self.ctx.stats.spec_misses += 1
        _forget(spec.task)
        return None

    def _drop_speculation(self) -> None:
        spec, self._spec = self._spec, None
        if spec is not None:
            self.ctx.stats.spec_misses += 1
            _forget(spec.task)

    # -- voicing --------------------------------------------------------------------------
    def behind_s(self, src: Span, *, ahead: bool = False) -> float:
        """How long after the speaker said ``src`` the listener starts hearing it: the time
        since it arrived plus the audio queued before it; ``ahead``: plus what a synthesis
        call takes now (waiting for the shared model included), for a clause not yet made."""
        ctx = self.ctx
        behind = (ctx.clock.now_ns() - ctx.arrival_ns(src.end)) / 1e9 + ctx.backlog_s
        tts = ctx.stats.stages.get("tts")
        return behind + (tts.ewma_s if ahead and tts is not None else 0.0)

    def _deadline(self, utt: int, src: Span) -> int:
        """A phrase's first piece is due at its budget; a later one when the audio queued
        before it has played out."""
        ctx = self.ctx
        if ctx.stats.spoken(utt):
            return ctx.clock.now_ns() + int(ctx.backlog_s * 1e9) + ctx.budget.tts_share_ns()
        return ctx.deadline("tts", src.end, final=True)

    async def _voice_for(self, utt: int, src: Span, deadline_ns: int
                         ) -> tuple[VoiceProfile | None, str | None]:
        """Profile and base voice for a phrase, fixed at its first piece — except that a
        phrase begun before the speaker could be profiled takes the profile at its next clause
        once it exists (a woman's long first phrase is not all said in the default man's
        voice). A change of voice (or of why it is not converted) is said in VoiceChosen."""
        ctx = self.ctx
        builder = ctx.profile
        fixed_utt, fixed_profile, _ = self._phrase_voice
        profiled_now = fixed_utt == utt and fixed_profile is None and builder is not None \
            and builder.latest is not None
        if fixed_utt != utt or profiled_now:
            profile, voice = None, ctx.config.voice
            if builder is not None:
                profile = builder.latest  # analysed ahead by the listen stage
                if profile is None and builder.due:  # not yet: this phrase would lose it
                    profile = await ctx.timed("voice", ctx.scheduler.analyse(
                        lambda: builder.profile, deadline_ns=deadline_ns))
                tts = ctx.scheduler.engines.tts
                usable = tts.voices_for(ctx.config.target) if hasattr(tts, "voices_for") \
                    else getattr(tts, "voices", ())  # voices heard well in the target language
                decision = ctx.scheduler.engines.cloner.decide(profile, usable)
                voice = decision.voice or voice
                said = (voice, decision.convert, decision.reason)
                if said != self._said_voice:
                    self._said_voice = said
                    ctx.emit(VoiceChosen(utt, src, ctx.clock.now_ns(), *said))
            self._phrase_voice = (utt, profile, voice)
        return self._phrase_voice[1], self._phrase_voice[2]

    async def _say(self, piece: _Piece) -> None:
        try:
            await self._voice(piece)
        finally:  # the next piece follows this one's words, voiced or captioned
            words = piece.text.split()
            self._tail = (piece.utt, words[-1] if words else "")

    async def _voice(self, piece: _Piece) -> None:
        ctx = self.ctx
        utt, src = piece.utt, piece.src
        spec = self._take_speculation(piece)
        behind = self.behind_s(src, ahead=spec is None)
        if skip_voice(behind, ctx.budget):
            log.info("session %s overload: not voicing %r (%.1f s behind the speaker)",
                     ctx.session_id, piece.text, behind)
            ctx.stats.skipped += 1
            self._latest.pop(utt, None)  # its last clause was not voiced: no waterfall
            ctx.emit(SpeechSkipped(utt, src, ctx.clock.now_ns(), piece.text, behind))
            if spec is not None:
                _forget(spec.task)
            return
        if spec is not None:  # confirmed: what is made goes out now, the rest as it comes
            spec.made.piece = piece  # the committed text's hops (ASR, MT) for the waterfall
            spec.made.publish(self._out)
            try:
                await spec.task
                return
            except Exception as exc:
                if spec.made.chunks:  # part of it went out already: the rest is lost
                    ctx.error("tts", utt, src, exc)
                    return
                log.info("session %s: speculation failed (%s); making it again",
                         ctx.session_id, exc)
        made = self._new_clause(piece)
        made.out = self._out
        try:
            await self._make(made)
        except Exception as exc:
            ctx.error("tts", utt, src, exc)

    def _new_clause(self, piece: _Piece) -> _Made:
        utt, tail = self._tail
        return _Made(piece, next(self._clauses), before=tail if utt == piece.utt else "")

    async def _make(self, made: _Made) -> None:
        """Synthesise a clause, piece by piece, into ``made``."""
        ctx = self.ctx
        utt, src = made.piece.utt, made.piece.src
        deadline = self._deadline(utt, src)
        profile, voice = await self._voice_for(utt, src, deadline)
        said = span(src.start, made.piece.said_end)
        speed = speech_speed(ctx.config.speed, rate_factor(profile, ctx.config.target),
                             ctx.backlog_s, ctx.budget,
                             behind_s=self.behind_s(said, ahead=True)
                             if ctx.config.compress else 0.0)
        ctx.stats.speed = speed
        speech = Speech(ctx, made.piece.text, voice, speed, profile,
                        functools.partial(self.behind_s, said) if ctx.config.compress else None,
                        before=made.before)
        trace = CallTrace()
        while (pcm := await ctx.timed("tts", ctx.scheduler.synthesize(
                speech.step, deadline_ns=deadline, trace=trace))) is not None:
            if not made.chunks:  # the clause's first piece: its waterfall hops
                made.marks = {"tts_submit": trace.submitted_ns, "tts_start": trace.started_ns,
                              "synthesized": speech.synthesized_ns, "tts_done": trace.done_ns}
            ctx.stats.speed = round(speed * speech.tempo, 3)
            made.add(pcm)
            deadline = self._deadline(utt, src)

    def _out(self, made: _Made, seq: int) -> None:
        """A piece of a clause goes to the listener."""
        ctx, piece = self.ctx, made.piece
        if seq == 0:
            marks = {**_trace_marks("asr", piece.made_by.asr),
                     **_trace_marks("mt", piece.made_by.mt), **made.marks}
            self._latest[piece.utt] = (made.clause, marks)
            ctx.stats.stamp(piece.utt, "first_audio", ctx.clock.now_ns(), once=True)
            ctx.stats.speech_lag_s = self.behind_s(piece.src)
        ctx.emit(SynthAudio(piece.utt, piece.src, ctx.clock.now_ns(), made.chunks[seq],
                            ctx.scheduler.engines.tts.sample_rate, piece.text, seq,
                            made.clause))


def _forget(task: asyncio.Task[Any]) -> None:
    """A speculation nobody will play: stop it (a queued lane call is then dropped unrun),
    and let no error of it be reported as unretrieved."""
    task.cancel()
    task.add_done_callback(lambda t: t.cancelled() or t.exception())
