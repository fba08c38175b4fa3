"""Speak: committed target text in, translated speech out. Text is cut into clauses
(``ClauseCutter``); each clause is synthesised piece by piece on the scheduler's TTS lane,
in the phrase's voice (chosen once per phrase so it never changes inside a sentence) and
converted towards the speaker's. How fast to speak, whether to merge what waits and whether
a clause is too late to voice at all are ``policy`` decisions on the sink's backlog."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from babelcall.engines.voice import VoiceProfile, rate_factor
from babelcall.realtime.clauses import ClauseCutter
from babelcall.realtime.policy import merge_waiting, skip_voice, speech_speed
from babelcall.realtime.scheduler import CallTrace
from babelcall.realtime.stages.base import END, Context, Flow, Stage, span
from babelcall.realtime.stages.translate import TargetText
from babelcall.realtime.types import PhraseTiming, Span, SpeechSkipped, SynthAudio
from babelcall.realtime.waterfall import hops_ms

log = logging.getLogger(__name__)


class Speech:
    """One clause's speech, made step by step on the TTS lane's thread: each ``step`` makes
    the next piece and converts it to the speaker's voice (None when the clause is done).
    Phonemising happens in the first step too, never on the event loop."""

    def __init__(self, ctx: Context, text: str, voice: str | None, speed: float,
                 profile: VoiceProfile | None) -> None:
        engines = ctx.scheduler.engines
        self.tts, self.cloner = engines.tts, engines.cloner
        self.text, self.voice, self.speed, self.profile = text, voice, speed, profile
        self.language = ctx.config.target
        self.clock = ctx.clock
        self.synthesized_ns = 0  # when the latest piece was made, before conversion
        self._pieces: Iterator[np.ndarray] | None = None

    def step(self) -> np.ndarray | None:
        if self._pieces is None:
            self._pieces = self.tts.synthesize(self.text, language=self.language,
                                               voice=self.voice, speed=self.speed)
        pcm = next(self._pieces, None)
        self.synthesized_ns = self.clock.now_ns()
        if pcm is None or self.profile is None:
            return pcm
        return self.cloner.apply(pcm, self.tts.sample_rate, self.profile, voice=self.voice)


@dataclass(frozen=True)
class _Piece:
    """A clause to voice and what made its text (the waterfall of the last one of a phrase)."""

    utt: int
    text: str
    src: Span
    made_by: TargetText


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
        self.cutter = ClauseCutter(cfg.max_clause_words, cfg.first_clause_words)
        self._phrase_voice: tuple[int, VoiceProfile | None, str | None] = (-1, None, None)
        self._clauses = itertools.count(1)
        self._latest: dict[int, tuple[int, dict[str, int]]] = {}  # utt -> its latest clause

    def coalesce(self) -> bool:
        """Far behind, voice everything that waits as one; otherwise clause by clause."""
        return merge_waiting(self.ctx.backlog_s, self.ctx.budget)

    async def handle(self, items: list[Any]) -> bool:
        pieces: list[_Piece] = []
        for item in items:
            if item is END:
                continue
            t: TargetText = item
            pieces += [_Piece(t.utt, p, t.span, t) for p in self.cutter.push(t.text,
                                                                            final=t.final)]
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
        for item in items:
            if item is not END and item.final:
                self._phrase_done(item)
        return any(i is END for i in items)

    def _phrase_done(self, last: TargetText) -> None:
        """The phrase is over: its latest clause carried its last word. Say how it got here."""
        ctx = self.ctx
        latest = self._latest.pop(last.utt, None)
        stamps = ctx.stats.stamps(last.utt)
        if latest is None or "last_word" not in stamps:
            return  # nothing voiced, or no word recognised (noise)
        clause, marks = latest
        marks = {**marks, **{k: stamps[k] for k in ("last_word", "pause", "end")
                             if k in stamps}}
        ctx.stats.last_timing_ms = hops_ms(marks)
        ctx.emit(PhraseTiming(last.utt, last.span, ctx.clock.now_ns(), clause, marks))

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

    async def _voice_for(self, utt: int, deadline_ns: int
                         ) -> tuple[VoiceProfile | None, str | None]:
        """Profile and base voice for a phrase, fixed at its first piece."""
        if self._phrase_voice[0] != utt:
            ctx = self.ctx
            profile, voice = None, ctx.config.voice
            builder = ctx.profile
            if builder is not None:
                profile = await ctx.timed("voice", ctx.scheduler.analyse(
                    lambda: builder.profile, deadline_ns=deadline_ns))
                engines = ctx.scheduler.engines
                voice = engines.cloner.choose_voice(
                    profile, getattr(engines.tts, "voices", ())) or voice
            self._phrase_voice = (utt, profile, voice)
        return self._phrase_voice[1], self._phrase_voice[2]

    async def _say(self, piece: _Piece) -> None:
        ctx = self.ctx
        utt, src = piece.utt, piece.src
        behind = self.behind_s(src, ahead=True)
        if skip_voice(behind, ctx.budget):
            log.info("session %s overload: not voicing %r (%.1f s behind the speaker)",
                     ctx.session_id, piece.text, behind)
            ctx.stats.skipped += 1
            self._latest.pop(utt, None)  # its last clause was not voiced: no waterfall
            ctx.emit(SpeechSkipped(utt, src, ctx.clock.now_ns(), piece.text, behind))
            return
        deadline = self._deadline(utt, src)
        clause = next(self._clauses)
        try:
            profile, voice = await self._voice_for(utt, deadline)
            speed = speech_speed(ctx.config.speed, rate_factor(profile, ctx.config.target),
                                 ctx.backlog_s, ctx.budget)
            ctx.stats.speed = speed
            speech = Speech(ctx, piece.text, voice, speed, profile)
            rate = ctx.scheduler.engines.tts.sample_rate
            seq = 0
            trace: CallTrace | None = CallTrace()
            while (pcm := await ctx.timed("tts", ctx.scheduler.synthesize(
                    speech.step, deadline_ns=deadline, trace=trace))) is not None:
                if trace is not None:  # the clause's first piece: its waterfall hops
                    self._latest[utt] = (clause, self._marks(piece, trace, speech))
                    ctx.stats.stamp(utt, "first_audio", ctx.clock.now_ns(), once=True)
                    ctx.stats.speech_lag_s = self.behind_s(src)
                    trace = None
                ctx.emit(SynthAudio(utt, src, ctx.clock.now_ns(), pcm, rate, piece.text, seq,
                                    clause))
                seq += 1
                deadline = self._deadline(utt, src)
        except Exception as exc:
            ctx.error("tts", utt, src, exc)

    @staticmethod
    def _marks(piece: _Piece, tts: CallTrace, speech: Speech) -> dict[str, int]:
        made = piece.made_by
        return {**_trace_marks("asr", made.asr), **_trace_marks("mt", made.mt),
                "tts_submit": tts.submitted_ns, "tts_start": tts.started_ns,
                "synthesized": speech.synthesized_ns, "tts_done": tts.done_ns}
