"""Events as JSON lines: every event with its source span and its latency, so a log alone is
enough to compute delays later (benchmarks read these files)."""

from __future__ import annotations

from typing import Any

from babelcall.realtime import waterfall
from babelcall.realtime.types import (
    Event,
    PhraseTiming,
    SpeechSkipped,
    StageError,
    SynthAudio,
    Transcript,
    Translation,
    VoiceChosen,
    join_words,
)


def event_record(ev: Event, *, origin_ns: int, arrival_ns: int,
                 play_start_ns: int | None = None,
                 marks: dict[str, int] | None = None) -> dict[str, Any]:
    """``origin_ns``: wall time of source time 0; ``arrival_ns``: when ``ev.src.end`` arrived.
    A PhraseTiming becomes the phrase's ``timing`` record, with the sink's own ``marks``
    (handed, playing, sent, heard) added to the session's."""
    if isinstance(ev, PhraseTiming):
        return waterfall.timing_record(ev.utt, ev.clause, {**ev.marks, **(marks or {})},
                                       wall_ms=round((ev.wall_ns - origin_ns) / 1e6, 1))
    rec: dict[str, Any] = {
        "type": ev.kind,
        "utt": ev.utt,
        "src_start": ev.src.start,
        "src_end": ev.src.end,
        "wall_ms": round((ev.wall_ns - origin_ns) / 1e6, 1),
        "latency_ms": round((ev.wall_ns - arrival_ns) / 1e6, 1),
    }
    if isinstance(ev, Transcript):
        rec["committed"] = join_words(ev.committed)
        rec["partial"] = join_words(ev.partial)
        rec["words"] = [[w.text.strip(), round(w.start, 3), round(w.end, 3)]
                        for w in ev.committed]
    elif isinstance(ev, Translation):
        rec.update(committed=ev.committed, draft=ev.draft, final=ev.final)
    elif isinstance(ev, SynthAudio):
        rec.update(text=ev.text, seq=ev.seq, duration_ms=round(ev.duration * 1000, 1), rate=ev.rate,
                   clause=ev.clause)
        if play_start_ns is not None:
            rec["play_start_ms"] = round((play_start_ns - origin_ns) / 1e6, 1)
            rec["play_latency_ms"] = round((play_start_ns - arrival_ns) / 1e6, 1)
    elif isinstance(ev, SpeechSkipped):
        rec.update(text=ev.text, behind_s=round(ev.behind_s, 2))
    elif isinstance(ev, VoiceChosen):
        rec.update(voice=ev.voice, converted=ev.converted, reason=ev.reason)
    elif isinstance(ev, StageError):
        rec.update(stage=ev.stage, message=ev.message, fatal=ev.fatal)
    return rec
