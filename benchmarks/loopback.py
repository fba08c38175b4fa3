"""The benchmark over a real WebRTC loopback: ``babelcall serve`` in this process, an aiortc
caller (``clients/call.py``) sending each clip paced in real time as Opus over RTP and recording
what comes back. Everything is measured at the caller, on its own clock, so the figures include
what the in-process run cannot see: Opus both ways, the jitter buffer, the output mixer's
pacing, data-channel delivery of captions.

Timeline: the caller's first frame left at ``sent_start_ns``; the server's session time 0 is
that frame's arrival, so source time ``t`` (from the captions) left the caller at
``sent_start_ns + t``. A phrase's first translated audio is the first loud received frame from
100 ms before its ``audio_out`` caption arrived (the server sends that caption as it starts
playing the phrase; the RTP path may run a few ms ahead of the data channel)."""

from __future__ import annotations

import bisect
from typing import Any

import numpy as np

from babelcall.benchmarks import measures as M
from babelcall.benchmarks.run import Clip, ClipScore, hear, speaker_similarity
from babelcall.clients.call import LOUD_RMS, CallResult, run_call
from babelcall.engines.registry import Engines
from babelcall.realtime.audio import load_file
from babelcall.realtime.waterfall import with_heard
from babelcall.transports.hub import ServerConfig
from babelcall.transports.server import running
from babelcall.transports.tracks import WIRE_RATE, PcmTrack

LEAD_IN_S = 0.5   # the call connects and the first frames settle before the speech starts
EARLY_NS = 100_000_000


async def run_loopback(engines: Engines, clips: list[Clip], source: str,
                       target: str) -> list[ClipScore]:
    """One call per clip, one after another, to a server sharing ``engines``."""
    scores = []
    async with running(engines, ServerConfig(source=source, target=target),
                       shutdown_timeout=5) as srv:
        for clip in clips:
            track = PcmTrack(load_file(clip.path, WIRE_RATE), WIRE_RATE, lead_in_s=LEAD_IN_S)
            result = await run_call(track, srv.url, source, target, drain_timeout=60)
            scores.append(score_call(engines, clip, result, target))
    return scores


def score_call(engines: Engines, clip: Clip, result: CallResult, target: str) -> ClipScore:
    """The same measures as the in-process run, timed at the caller."""
    if result.sent_start_ns is None:
        raise RuntimeError(f"{clip.name}: no audio was sent")
    return score_received(engines, clip, result.records, result.arrivals, result.audio,
                          result.rate, target, sent_start_ns=result.sent_start_ns,
                          sent_s=result.sent_s, lead_in_s=LEAD_IN_S,
                          pts_arrivals=result.pts_arrivals)


def score_received(engines: Engines, clip: Clip, records: list[dict[str, Any]],
                   arrivals: list[tuple[int, float]], audio: np.ndarray, rate: int,
                   target: str, *, sent_start_ns: int | None, sent_s: float,
                   lead_in_s: float,
                   pts_arrivals: list[tuple[int, int]] | None = None) -> ClipScore:
    """Score what a listener received: caption records stamped with their arrival
    (``client_ns``), and (arrival ns, RMS) per audio frame; ``sent_s`` of audio went out, the
    first ``lead_in_s`` of it silence. With ``sent_start_ns`` (the speaker's first frame, on
    the same clock) latencies run from the speaker's end of speech; without it only
    ``heard_after_ms`` (interpreter got the phrase end -> listener hears it)."""
    ends = _phrase_ends(records)
    loud = [ns for ns, rms in arrivals if rms > LOUD_RMS]
    onsets = _onsets(records, loud)
    first: list[float] = []
    start_off = end_off = laal = None
    recs = records
    if sent_start_ns is not None:
        t0 = sent_start_ns
        recs = [{**r, "wall_ms": (r["client_ns"] - t0) / 1e6} for r in records]
        first = [(ns - t0) / 1e6 - ends[u] * 1000 for u, ns in onsets.items() if u in ends]
        starts = [r["src_start"] for r in recs if r["type"] == "transcript" and r["committed"]]
        if loud and starts and ends:
            start_off = (loud[0] - t0) / 1e6 - min(starts) * 1000
            end_off = (loud[-1] - t0) / 1e6 - max(ends.values()) * 1000
        laal = M.laal(M.text_delays(recs), sent_s * 1000, len(clip.tgt_ref.split()))
    source_text = M.committed_source(recs)
    score = ClipScore(
        clip.name, sent_s - lead_in_s, first, start_off, end_off, laal,
        M.wer(clip.transcript, source_text), source_text, M.committed_target(recs),
        hear(audio, rate, target), {}, speaker_similarity(clip, audio, rate))
    score.heard_after_ms = heard_after(records, onsets)
    score.timings = [{**t, "clip": clip.name}
                     for t in heard_timings(records, pts_arrivals, arrivals)]
    score.final_clause_ms = [t["final_clause_ms"] for t in score.timings]
    return score


def heard_timings(records: list[dict[str, Any]], pts_arrivals: list[tuple[int, int]] | None,
                  arrivals: list[tuple[int, float]]) -> list[dict[str, Any]]:
    """Each phrase's waterfall completed with its last hop, heard here: the arrival of the
    frame with the pts of the clause's first packet (the server sends it in the record);
    without pts (a relay renumbers them), the first sound after at least 60 ms of quiet
    that arrives from 100 ms before the record (approximate: a clause that follows the one
    before it without a pause has no onset to find)."""
    by_pts = sorted(pts_arrivals or [])
    keys = [p for p, _ in by_pts]
    onsets = [ns for i, (ns, rms) in enumerate(arrivals) if rms > LOUD_RMS and i >= 3
              and all(r <= LOUD_RMS for _, r in arrivals[i - 3:i])]
    out = []
    for r in M.timings(records):
        if r.get("last_word_ns") is None:
            continue
        heard = None
        if by_pts and "packet_pts" in r:
            i = bisect.bisect_left(keys, r["packet_pts"])
            heard = by_pts[i][1] if i < len(by_pts) else None
        elif not by_pts and "client_ns" in r:
            heard = next((ns for ns in onsets if ns >= r["client_ns"] - EARLY_NS), None)
        if heard is not None:
            out.append(with_heard(r, heard))
    return out


def _onsets(records: list[dict[str, Any]], loud: list[int]) -> dict[int, int]:
    """Per phrase: arrival of its first translated sound (see the module docstring)."""
    out: dict[int, int] = {}
    for r in records:
        if r.get("type") != "audio_out" or r["utt"] in out:
            continue
        onset = next((ns for ns in loud if ns >= r["client_ns"] - EARLY_NS), None)
        if onset is not None:
            out[r["utt"]] = onset
    return out


def heard_after(records: list[dict[str, Any]], onsets: dict[int, int]) -> list[float]:
    """Per phrase (ms): the interpreter received the end of its speech -> the listener hears
    its first translated sound. The arrival at the interpreter comes from the phrase's last
    transcript caption: it carries ``latency_ms`` since that source instant arrived, and
    reaches the listener a data-channel hop (about a millisecond here) after it was sent."""
    last: dict[int, dict[str, Any]] = {}
    for r in records:
        if r.get("type") == "transcript" and (r.get("committed") or r.get("partial")):
            if r["utt"] not in last or r["src_end"] >= last[r["utt"]]["src_end"]:
                last[r["utt"]] = r
    out = []
    for utt, onset in sorted(onsets.items()):
        r = last.get(utt)
        if r is not None:
            arrived_ns = r["client_ns"] - r["latency_ms"] * 1e6
            out.append(round((onset - arrived_ns) / 1e6, 1))
    return out


def _phrase_ends(recs: list[dict[str, Any]]) -> dict[int, float]:
    """End of each phrase's speech: the furthest source time its transcripts covered (the
    captions carry spans, not words)."""
    ends: dict[int, float] = {}
    for r in recs:
        if r.get("type") == "transcript" and (r.get("committed") or r.get("partial")):
            ends[r["utt"]] = max(ends.get(r["utt"], 0.0), float(r["src_end"]))
    return ends

