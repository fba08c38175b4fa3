"""The latency waterfall of a phrase: every hop between the end of its last source word and
the listener hearing the clause that carries it, on one clock.

The session stamps what it sees (pause and end detected, the ASR pass, MT step and first
synthesis step that made the clause); a sink stamps the rest (handed to the output, first
sample played, first RTP packet sent, heard at the far end). ``timing_record`` turns the
stamps into milliseconds after the last word, which is what the captions carry, the
benchmark aggregates and plots, and every latency change is judged on."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# (stamp, what happened by then), in the order a phrase's final clause passes them.
HOPS: tuple[tuple[str, str], ...] = (
    ("pause", "pause detected"),
    ("asr_submit", "final ASR pass asked"),
    ("asr_start", "ASR pass got the machine"),
    ("asr_done", "ASR pass done"),
    ("mt_submit", "MT step asked"),
    ("mt_done", "MT done"),
    ("tts_submit", "TTS asked"),
    ("tts_start", "TTS got the machine"),
    ("synthesized", "first piece synthesised"),
    ("tts_done", "voice converted"),
    ("handed", "handed to the output"),
    ("playing", "output starts playing it"),
    ("sent", "first RTP packet sent"),
    ("heard", "received and decoded"),
)
ORIGIN = "last_word"  # arrival of the end of the phrase's last recognised word
FELT = ("playing", "heard")  # what the listener feels: the last of these that is known


def hops_ms(marks: Mapping[str, int]) -> dict[str, float]:
    """Each known stamp in ms after the last word's arrival, in waterfall order."""
    origin = marks.get(ORIGIN)
    if origin is None:
        return {}
    return {name: round((marks[name] - origin) / 1e6, 1) for name, _ in HOPS
            if marks.get(name) is not None}


def timing_record(utt: int, clause: int, marks: Mapping[str, int],
                  **extra: Any) -> dict[str, Any]:
    """The ``timing`` caption/benchmark record of a phrase."""
    hops = hops_ms(marks)
    felt = next((hops[k] for k in reversed(FELT) if k in hops), None)
    return {"type": "timing", "utt": utt, "clause": clause, "hops_ms": hops,
            "final_clause_ms": felt, "last_word_ns": marks.get(ORIGIN), **extra}


def with_heard(record: Mapping[str, Any], heard_ns: int) -> dict[str, Any]:
    """A timing record completed at the far end: the clause was heard at ``heard_ns`` (on
    the clock of ``last_word_ns``)."""
    ms = round((heard_ns - record["last_word_ns"]) / 1e6, 1)
    return {**record, "hops_ms": {**record["hops_ms"], "heard": ms}, "final_clause_ms": ms}


def segments(hops: Mapping[str, float]) -> list[tuple[str, float]]:
    """Consecutive (hop, ms spent reaching it) for stacked bars; a stamp earlier than the
    one before it (the pause pass ran before the phrase end, say) counts as zero."""
    out, prev = [], 0.0
    for name, _ in HOPS:
        if name in hops:
            out.append((name, max(0.0, hops[name] - prev)))
            prev = max(prev, hops[name])
    return out
