"""Recognize: phrases in, committed source text out. LocalAgreement-2 over the phrase buffer
(``OnlineAsr``): the stage decides when to read (``policy.asr_pass``), sends the buffer to the
scheduler's ASR lane with its deadline, and hands the words back to the policy. A backlog of
audio is read in one pass (coalesced)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from babelcall.engines.asr.agreement import OnlineAsr
from babelcall.realtime.phrases import PhraseAudio, PhraseEnd, PhrasePause, PhraseStart
from babelcall.realtime.policy import AsrPass, asr_interval_factor, asr_pass
from babelcall.realtime.scheduler import CallTrace
from babelcall.realtime.stages.base import END, Context, Flow, Inbox, Stage, span
from babelcall.realtime.types import Span, Transcript, Word

_KIND = {PhraseAudio: "audio", PhrasePause: "pause", PhraseEnd: "end"}


@dataclass(frozen=True)
class SourceText:
    """All committed source text of a phrase so far (the translator re-reads it whole), and
    the ASR pass that committed its latest words (for the waterfall)."""

    utt: int
    text: str
    span: Span
    final: bool
    asr: CallTrace | None = None
    settled: bool = False  # a pass at a pause committed every word heard so far
    task: str = "transcribe"  # "translate": Whisper's own English, no text MT after it


class RecognizeStage(Stage):
    name = "recognize"

    def __init__(self, ctx: Context, flow: Flow, out: Inbox, *, task: str | None = None) -> None:
        """``task``: Whisper's task (default: what the session's pair needs); a speaker's
        front (``realtime/speaker.py``) runs one stage per task its targets need."""
        super().__init__(ctx, flow)
        self.out = out  # -> translate: SourceText items, then END
        cfg, engines = ctx.config, ctx.scheduler.engines
        self.task = task or engines.asr_task(cfg.source, cfg.target)
        self.online = OnlineAsr(engines.asr, language=cfg.source, task=self.task,
                                max_buffer_s=cfg.max_phrase_buffer_s,
                                # Whisper translating rewords its output as context grows:
                                # there only agreement (or a pause) commits
                                stable_after_s=cfg.asr_stable_after_s
                                if self.task == "transcribe" else None,
                                stable_min_prob=cfg.asr_stable_min_prob)
        self.fresh = 0.0  # seconds of phrase audio not yet transcribed
        self.voiced = 0.0  # ... of which the VAD scored as speech
        self.start = 0.0  # source time where the open phrase starts
        self.committed: list[Word] = []
        self.trace: CallTrace | None = None  # the latest pass

    async def handle(self, items: list[Any]) -> bool:
        for k, item in enumerate(items):
            if item is END:
                self.out.put(END)
                return True
            utt, heard = item
            if isinstance(heard, PhraseStart):
                self.start, self.committed = heard.time, []
                self.fresh = self.voiced = len(heard.pcm) / self.online.rate
                self.online.start(heard.time, heard.pcm)
                continue
            if isinstance(heard, PhraseAudio):
                self.online.insert_audio(heard.pcm)
                self.fresh += len(heard.pcm) / self.online.rate
                self.voiced += heard.voiced_s
            later = [i[1] for i in items[k + 1:] if i is not END]
            await self._step(utt, heard, later)
        return False

    async def _step(self, utt: int, heard: Any, later: list[Any]) -> None:
        kind = _KIND[type(heard)]
        todo = asr_pass(
            kind, fresh_s=self.fresh, voiced_s=self.voiced, interval_s=self._interval(),
            audio_queued=any(isinstance(h, PhraseAudio | PhrasePause | PhraseEnd)
                             for h in later),
            voice_queued=any(isinstance(h, PhraseAudio) and h.voiced_s for h in later))
        new: list[Word] = []
        if todo is not None:
            self.fresh = self.voiced = 0.0
            final = todo is not AsrPass.UPDATE
            t = self.online.buffer_end if todo is AsrPass.UPDATE else heard.time
            settle = todo is AsrPass.SETTLE and self.ctx.config.settle_at_pause
            new = await self._read(utt, self.ctx.deadline("asr", t, final=final), settle)
        if kind == "end":
            new += self.online.finish()
            self.fresh = self.voiced = 0.0
            self.ctx.stats.covered_s = max(self.ctx.stats.covered_s, heard.time)
        self.committed += new
        if kind == "end":
            if self.committed:
                self.ctx.stats.stamp(utt, "last_word", self.ctx.arrival_ns(
                    self.committed[-1].end))
            self._send(utt, new, final=True)
        elif todo is not None:
            self._send(utt, new, final=False, settled=todo is AsrPass.SETTLE
                       and self.ctx.config.settle_at_pause)

    async def _read(self, utt: int, deadline_ns: int, settle: bool) -> list[Word]:
        """One pass over the phrase buffer; the newly committed words."""
        ctx, online = self.ctx, self.online
        audio, prompt = online.request()
        self.trace = CallTrace()
        try:
            words = await ctx.timed("asr", ctx.scheduler.transcribe(
                audio, language=ctx.config.source, prompt=prompt, task=self.task,
                deadline_ns=deadline_ns, trace=self.trace))
        except Exception as exc:
            ctx.error("asr", utt, span(self.start, online.buffer_end), exc)
            return []
        committed = online.accept(words, settle=settle)
        ctx.stats.covered_s = max(ctx.stats.covered_s, online.buffer_end)
        if ctx.profile is not None and words:
            ctx.profile.add_words(words)  # speaking rate (spans only: no shift needed)
        return committed

    def _interval(self) -> float:
        return self.ctx.config.asr_interval_s * asr_interval_factor(self.ctx.scheduler.level)

    def _send(self, utt: int, new: list[Word], *, final: bool, settled: bool = False) -> None:
        ctx = self.ctx
        partial = [] if final else self.online.partial
        last = self.committed[-1].end if self.committed else self.start
        end = partial[-1].end if partial else last
        ctx.emit(Transcript(utt, span(self.start, end), ctx.clock.now_ns(), tuple(new),
                            tuple(partial)))
        if new or final or settled:  # settled: the translator may commit its draft now
            text = "".join(w.text for w in self.committed).strip()
            self.out.put(SourceText(utt, text, span(self.start, last), final, self.trace,
                                    settled, self.task))
