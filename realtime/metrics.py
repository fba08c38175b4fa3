"""Per-session live figures: how far behind the speaker the pipeline is, how long each stage
takes, and when each phrase passed each hop of its waterfall (``realtime/waterfall.py``)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

PHRASES_KEPT = 64  # stamps of the last phrases; a long call must not grow without end


@dataclass
class _StageTime:
    calls: int = 0
    total_s: float = 0.0
    ewma_s: float = 0.0

    def add(self, seconds: float) -> None:
        self.calls += 1
        self.total_s += seconds
        self.ewma_s = seconds if self.calls == 1 else 0.8 * self.ewma_s + 0.2 * seconds


@dataclass
class SessionMetrics:
    covered_s: float = 0.0  # source time the pipeline has recognised (or found silent)
    backlog_s: float = 0.0  # translated audio waiting at the sink
    speed: float = 1.0
    merges: int = 0
    skipped: int = 0
    spec_hits: int = 0  # speculative clauses the commit confirmed (played as made)
    spec_misses: int = 0  # ... that it did not (made again from the committed text)
    speech_lag_s: float = 0.0  # the last voiced clause: speaker said it -> listener hears it
    errors: int = 0
    dropped_s: float = 0.0  # input audio dropped at a full door (the listen stage stuck)
    stages: dict[str, _StageTime] = field(default_factory=dict)
    phrases: OrderedDict[int, dict[str, int]] = field(default_factory=OrderedDict)
    last_timing_ms: dict[str, float] = field(default_factory=dict)  # the latest waterfall

    def stage_done(self, stage: str, seconds: float) -> None:
        self.stages.setdefault(stage, _StageTime()).add(seconds)

    def stamps(self, utt: int) -> dict[str, int]:
        """Wall ns of each waterfall hop the phrase has passed (a new phrase starts empty;
        only the last ``PHRASES_KEPT`` are kept)."""
        marks = self.phrases.get(utt)
        if marks is None:
            marks = self.phrases[utt] = {}
            while len(self.phrases) > PHRASES_KEPT:
                self.phrases.popitem(last=False)
        return marks

    def stamp(self, utt: int, key: str, ns: int, *, once: bool = False) -> None:
        marks = self.stamps(utt)
        if not (once and key in marks):
            marks[key] = ns

    def spoken(self, utt: int) -> bool:
        """Has any audio of this phrase been made yet?"""
        return "first_audio" in self.phrases.get(utt, {})

    def snapshot(self, *, heard_s: float, queues: dict[str, int],
                 shed_level: int) -> dict[str, Any]:
        return {
            "heard_s": round(heard_s, 3),
            "lag_s": round(max(0.0, heard_s - self.covered_s), 3),
            "backlog_s": round(self.backlog_s, 3),
            "speed": self.speed,
            "queues": queues,
            "stage_ms": {k: round(v.ewma_s * 1000, 1) for k, v in self.stages.items()},
            "stage_calls": {k: v.calls for k, v in self.stages.items()},
            "stage_total_s": {k: round(v.total_s, 3) for k, v in self.stages.items()},
            "speech_lag_s": round(self.speech_lag_s, 3),
            "merges": self.merges,
            "skipped": self.skipped,
            "spec_hits": self.spec_hits,
            "spec_misses": self.spec_misses,
            "errors": self.errors,
            "dropped_s": round(self.dropped_s, 3),
            "shed_level": shed_level,
            "last_timing_ms": self.last_timing_ms,
        }
