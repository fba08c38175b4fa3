"""Listen: the speaker's 16 kHz audio in, phrases out. Voice activity runs on the scheduler's
VAD lane; only speech (and the phrase boundaries) goes on to the recogniser, so silence and
noise between phrases cost no model time. Each phrase gets its number (``utt``) here."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from babelcall.realtime.phrases import (
    Heard,
    PhraseAudio,
    PhraseDetector,
    PhraseEnd,
    PhrasePause,
    PhraseStart,
)
from babelcall.realtime.stages.base import END, Context, Flow, Inbox, Stage, span
from babelcall.realtime.types import SpeechEnded, SpeechStarted

# Audio handed to the VAD per call: two of its 32 ms windows. A call per 20 ms frame cost more in
# thread hops than in the model (the VAD lane's thread spent ~0.016 CPU-s per second of audio
# where the detector alone needs ~0.004); a pause is seen at most one chunk later than before.
VAD_CHUNK_S = 0.064


class ListenStage(Stage):
    name = "listen"

    def __init__(self, ctx: Context, flow: Flow, out: Inbox) -> None:
        super().__init__(ctx, flow)
        self.out = out  # -> recognize: (utt, Heard) items, then END
        self.detector = PhraseDetector(ctx.scheduler.engines.vad, ctx.config.vad)
        self.utt = -1
        self.scored = 0  # samples handed to the VAD so far (the stream position it has reached)
        self.on_progress: Callable[[], None] | None = None  # after each scored batch
        self._profiling = False  # a speaker analysis is under way
        self._chunk = int(VAD_CHUNK_S * self.detector.rate)
        self._unscored: list[np.ndarray] = []  # frames waiting for a whole chunk

    async def handle(self, items: list[Any]) -> bool:
        ended = any(i is END for i in items)
        self._unscored += [i for i in items if i is not END]
        if not ended and sum(len(b) for b in self._unscored) < self._chunk:
            return False
        blocks, self._unscored = self._unscored, []
        detect = self.ctx.scheduler.detect_speech
        heard: list[Heard] = []
        if blocks:
            pcm = np.concatenate(blocks)
            self.scored += len(pcm)
            self.ctx.scheduler.cost.heard(len(pcm) / self.detector.rate)  # the cost account's
            if self.detector.quiet(pcm):  # no model call, so no lane: a few numpy operations
                heard = self.detector.feed(pcm)
            else:
                heard = await self.ctx.timed("vad", detect(functools.partial(self.detector.feed,
                                                                             pcm)))
        if ended:
            heard += await detect(self.detector.flush)
        stats = self.ctx.stats
        if not self.detector.speaking and not heard and self.out.empty():
            stats.covered_s = max(stats.covered_s, self.ctx.arrivals.heard_s)
        for h in heard:
            self._route(h)
        if ended:
            self.out.put(END)
        if self.on_progress is not None:
            self.on_progress()
        return ended

    def _route(self, h: Heard) -> None:
        ctx = self.ctx
        if ctx.profile is not None and isinstance(h, PhraseStart | PhraseAudio):
            ctx.profile.add(h.pcm)  # a bounded append; the analysis runs on a lane
            if ctx.profile.due and not self._profiling:
                self._profile_ahead()
        if isinstance(h, PhraseStart):
            self.utt += 1
            ctx.emit(SpeechStarted(self.utt, span(h.time, h.time), ctx.clock.now_ns()))
        elif isinstance(h, PhrasePause):
            ctx.stats.stamp(self.utt, "pause", ctx.clock.now_ns())  # the waterfall's first hop
        elif isinstance(h, PhraseEnd):
            ctx.stats.stamp(self.utt, "end", ctx.clock.now_ns())
            ctx.emit(SpeechEnded(self.utt, span(h.time, h.time), ctx.clock.now_ns()))
        self.out.put((self.utt, h))

    def _profile_ahead(self) -> None:
        """Analyse the speaker's voice in the background, unhurried (its deadline is later
        than any phrase's), so the speak stage finds a fresh profile instead of waiting."""
        ctx, builder = self.ctx, self.ctx.profile
        assert builder is not None
        self._profiling = True
        self.flow.add()  # in flight like any item: a replay's idle() waits for it

        def done(task: asyncio.Task[object]) -> None:
            self._profiling = False
            self.flow.done(1)
            if not task.cancelled():
                task.exception()  # a failed analysis: the speak stage simply has no profile

        due = ctx.clock.now_ns() + ctx.budget.deadline("tts", 0, final=False)
        task = asyncio.ensure_future(ctx.scheduler.analyse(lambda: builder.profile,
                                                           deadline_ns=due))
        task.add_done_callback(done)
