"""Translate: committed source text in, committed target text out. The session's
``IncrementalTranslator`` runs on the scheduler's MT lane (a step may call its engine more
than once); a phrase whose updates queued up is translated once, from its latest source.
Without a text engine (Whisper translated into English itself) the source is the target."""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import Any

from babelcall.engines.mt.incremental import IncrementalTranslator
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
        cfg = ctx.config
        engine = ctx.scheduler.engines.translator_for(cfg.source, cfg.target)
        self.mt = IncrementalTranslator(engine, cfg.source, cfg.target,
                                        holdback=cfg.mt_holdback_words) \
            if engine is not None else None
        self.said = ""  # target already passed on, when Whisper translates itself

    async def handle(self, items: list[Any]) -> bool:
        for src in latest_per_phrase([i for i in items if i is not END]):
            await self._one(src)
        if any(i is END for i in items):
            self.out.put(END)
            return True
        return False

    async def _one(self, src: SourceText) -> None:
        ctx = self.ctx
        trace = None
        if self.mt is None:
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
