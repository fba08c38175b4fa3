"""Latency and quality measures computed from a run's event records (the JSONL the session
writes), so a stored log can be re-scored without re-running models.

Times: every record has ``wall_ms`` relative to the moment source time 0 arrived; a source
instant ``t`` arrives at ``t`` s (real-time pacing), so "latency of X after source time t" is
``X.wall_ms - 1000 t``: computation-aware, wall clock."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

Record = dict[str, Any]


def phrase_ends(records: list[Record]) -> dict[int, float]:
    """End of source speech per phrase: the last recognised word's end (VAD end as fallback)."""
    ends: dict[int, float] = {}
    for r in records:
        if r["type"] == "transcript" and r.get("words"):
            ends[r["utt"]] = max(ends.get(r["utt"], 0.0), max(w[2] for w in r["words"]))
    for r in records:
        if r["type"] == "speech_ended" and r["utt"] not in ends:
            ends[r["utt"]] = r["src_end"]
    return ends


def first_audio_latencies(records: list[Record]) -> list[float]:
    """Per phrase: end of its source speech -> its first translated audio playing (ms)."""
    ends = phrase_ends(records)
    first: dict[int, float] = {}
    for r in records:
        if r["type"] == "synth_audio" and r["utt"] not in first:
            first[r["utt"]] = r.get("play_start_ms", r["wall_ms"])
    return [first[u] - ends[u] * 1000 for u in sorted(first) if u in ends]


def timings(records: list[Record]) -> list[Record]:
    """The ``timing`` record of each phrase that was voiced (its waterfall)."""
    return [r for r in records if r.get("type") == "timing"
            and r.get("final_clause_ms") is not None]


def final_clause_latencies(records: list[Record]) -> list[float]:
    """Per phrase (ms): end of its last source word -> the listener starts hearing the clause
    that carries it (``heard`` over a network, ``playing`` in-process)."""
    return [r["final_clause_ms"] for r in timings(records)]


def waterfall_p50(timing_records: list[Record]) -> dict[str, float]:
    """p50 over phrases of each hop (ms after the last word), in waterfall order."""
    from babelcall.realtime.waterfall import HOPS

    out = {}
    for name, _ in HOPS:
        values = [r["hops_ms"][name] for r in timing_records if name in r["hops_ms"]]
        if values:
            out[name] = round(float(np.percentile(values, 50)), 1)
    return out


def offsets(records: list[Record]) -> tuple[float | None, float | None]:
    """StartOffset / EndOffset (ms): translated speech start/end minus source speech start/end."""
    audio = [r for r in records if r["type"] == "synth_audio"]
    words = [w for r in records if r["type"] == "transcript" for w in r.get("words", [])]
    if not audio or not words:
        return None, None
    src_start, src_end = min(w[1] for w in words), max(w[2] for w in words)
    out_start = min(r.get("play_start_ms", r["wall_ms"]) for r in audio)
    out_end = max(r.get("play_start_ms", r["wall_ms"]) + r["duration_ms"] for r in audio)
    return out_start - src_start * 1000, out_end - src_end * 1000


def laal(delays_ms: list[float], source_ms: float, ref_len: int) -> float | None:
    """Length-Adaptive Average Lagging (SimulEval): target word i emitted at ``delays_ms[i]``
    (elapsed time, computation-aware) against an ideal policy that spreads the source evenly
    over max(hypothesis, reference) words; averaged up to the first word emitted after the
    whole source was read."""
    if not delays_ms or source_ms <= 0:
        return None
    rate = source_ms / max(len(delays_ms), ref_len)
    total, tau = 0.0, 0
    for i, d in enumerate(delays_ms):
        total += d - i * rate
        tau = i + 1
        if d >= source_ms:
            break
    return total / tau


def text_delays(records: list[Record]) -> list[float]:
    """Emission time (ms) of each committed target word."""
    out: list[float] = []
    for r in records:
        if r["type"] == "translation" and r["committed"].strip():
            out += [r["wall_ms"]] * len(r["committed"].split())
    return out


def committed_source(records: list[Record]) -> str:
    return " ".join(r["committed"] for r in records if r["type"] == "transcript"
                    and r["committed"]).strip()


def committed_target(records: list[Record]) -> str:
    return " ".join(r["committed"].strip() for r in records if r["type"] == "translation"
                    and r["committed"].strip())


def normalize(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def wer(ref: str, hyp: str) -> float:
    import jiwer

    return float(jiwer.wer(normalize(ref), normalize(hyp) or "<empty>"))


def bleu_chrf(hyps: list[str], refs: list[str]) -> tuple[float, float]:
    import sacrebleu

    return (round(sacrebleu.corpus_bleu(hyps, [refs]).score, 2),
            round(sacrebleu.corpus_chrf(hyps, [refs]).score, 2))


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p90": None, "p95": None, "mean": None, "n": 0}
    arr = np.asarray(values, dtype=float)
    return {"p50": round(float(np.percentile(arr, 50)), 1),
            "p90": round(float(np.percentile(arr, 90)), 1),
            "p95": round(float(np.percentile(arr, 95)), 1),
            "mean": round(float(arr.mean()), 1), "n": len(values)}
