"""Translate: committed source text in, committed target text out. The session's
``IncrementalTranslator`` runs on the scheduler's MT lane (a step may call its engine more
than once); a phrase whose updates queued up is translated once, from its latest source.
Where Whisper translated into English itself (``SourceText.task`` "translate") the source is
the target.

An English branch may be moved mid-call from Whisper's English to the speaker's transcript
and a text engine (``switch_to_text``: the speaker's other listeners need the transcript, and
one recogniser stream per speaker is what the CPU affords). Whisper's stream may still be
finishing the phrase under way when the transcript's next phrase arrives: those wait, so
phrases reach the speak stage in order."""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import Any

from babelcall.engines.mt.incremental import IncrementalTranslator
from babelcall.engines.mt.router import route_label
from babelcall.realtime.errors import UnsupportedLanguage
from babelcall.realtime.scheduler import CallTrace
from babelcall.realtime.stages.base import END, Context, Flow, Inbox, Stage
from babelcall.realtime.stages.recognize import SourceText
from babelcall.realtime.types import Span, Translation


@dataclass(frozen=True)
class TargetText:
    """Target text newly committed for a phrase (appended to what came before), with the ASR
    pass and MT step that made it (for the waterfall)."""

    utt: int
    text: str
    span: Span
    final: bool
    asr: CallTrace | None = None
    mt: CallTrace | None = None
    draft: str = ""  # the translator's current guess for the rest (may change)


def latest_per_phrase(items: list[SourceText]) -> list[SourceText]:
    """Each phrase's latest source contains its earlier ones: translate only that (a phrase's
    final source is never dropped; a settled one passes its settling on)."""
    todo: list[SourceText] = []
    for item in items:
        if todo and todo[-1].utt == item.utt and not todo[-1].final:
            settled = item.settled or todo[-1].settled
            todo[-1] = replace(item, settled=settled)
        else:
            todo.append(item)
    return todo


class TranslateStage(Stage):
    name = "translate"

    def __init__(self, ctx: Context, flow: Flow, out: Inbox) -> None:
        super().__init__(ctx, flow)
        self.out = out  # -> speak: TargetText items, then END
        engine = ctx.scheduler.engines.translator_for(ctx.config.source, ctx.config.target)
        self.mt = self._incremental(engine) if engine is not None else None
        self.said = ""  # target already passed on, when Whisper translates itself
        # after switch_to_text: the transcript waits until Whisper's stream has finished
        # this phrase
        self.hold_after: int | None = None
        self._held: list[SourceText] = []

    def _incremental(self, engine: Any) -> IncrementalTranslator:
        cfg = self.ctx.config
        return IncrementalTranslator(engine, cfg.source, cfg.target,
                                     holdback=cfg.mt_holdback_words)

    @property
    def route(self) -> str:
        """How this branch is translated now, named as ``babelcall languages`` names routes."""
        cfg = self.ctx.config
        return route_label(None if self.mt is None else self.mt.engine, cfg.source, cfg.target)

    def switch_to_text(self, last_whisper_utt: int | None) -> None:
        """From now on translate the transcript with the pair's text engine; Whisper's
        English still arriving for phrases up to ``last_whisper_utt`` (None: none) passes
        first. UnsupportedLanguage where no text engine serves the pair."""
        if self.mt is None:
            cfg = self.ctx.config
            engine = self.ctx.scheduler.engines.text_translator_for(cfg.source, cfg.target)
            if engine is None:
                raise UnsupportedLanguage(f"no text engine for {cfg.source}->{cfg.target}")
            self.mt = self._incremental(engine)
        self.hold_after = last_whisper_utt

    async def handle(self, items: list[Any]) -> bool:
        for src in latest_per_phrase([i for i in items if i is not END]):
            if self.hold_after is not None and src.task != "translate":
                self._held.append(src)
                continue
            await self._one(src)
            if self.hold_after is not None and src.final and src.utt >= self.hold_after:
                await self._release()
        if any(i is END for i in items):
            await self._release()
            self.out.put(END)
            return True
        return False

    async def _release(self) -> None:
        """Whisper's stream is through: the transcript's phrases that waited, in order."""
        held, self._held, self.hold_after = self._held, [], None
        for src in latest_per_phrase(held):
            await self._one(src)

    async def _one(self, src: SourceText) -> None:
        ctx = self.ctx
        trace = None
        if src.task == "translate" or self.mt is None:
            new, draft = src.text[len(self.said):].strip(), ""
            self.said = "" if src.final else src.text
        else:
            trace = CallTrace()
            try:
                step = await ctx.timed("mt", ctx.scheduler.translate(
                    functools.partial(self.mt.update, src.text, final=src.final,
                                      settled=src.settled),
                    deadline_ns=ctx.deadline("mt", src.span.end, final=src.final),
                    trace=trace))
                new, draft = step.new_committed, step.draft
            except Exception as exc:
                ctx.error("mt", src.utt, src.span, exc)
                new, draft = "", ""
            if src.final:
                self.mt.reset()
        ctx.emit(Translation(src.utt, src.span, ctx.clock.now_ns(), new, draft, src.final))
        if new or src.final or draft.strip():  # a draft alone feeds speculative synthesis
            self.out.put(TargetText(src.utt, new, src.span, src.final, src.asr, trace,
                                    "" if src.final else draft))
