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

from typing import Any

from babelcall.benchmarks import measures as M
from babelcall.benchmarks.run import Clip, ClipScore, hear, speaker_similarity
from babelcall.clients.call import LOUD_RMS, CallResult, run_call
from babelcall.engines.registry import Engines
from babelcall.realtime.audio import load_file
from babelcall.transports.hub import ServerConfig
from babelcall.transports.server import running
from babelcall.transports.tracks import PcmTrack

RATE = 48000
LEAD_IN_S = 0.5   # the call connects and the first frames settle before the speech starts
EARLY_NS = 100_000_000


async def run_loopback(engines: Engines, clips: list[Clip], source: str,
                       target: str) -> list[ClipScore]:
    """One call per clip, one after another, to a server sharing ``engines``."""
    scores = []
    async with running(engines, ServerConfig(source=source, target=target),
                       shutdown_timeout=5) as srv:
        for clip in clips:
            track = PcmTrack(load_file(clip.path, RATE), RATE, lead_in_s=LEAD_IN_S)
            result = await run_call(track, srv.url, source, target, drain_timeout=60)
            scores.append(score_call(engines, clip, result, target))
    return scores


def score_call(engines: Engines, clip: Clip, result: CallResult, target: str) -> ClipScore:
    """The same measures as the in-process run, timed at the caller."""
    if result.sent_start_ns is None:
        raise RuntimeError(f"{clip.name}: no audio was sent")
    t0 = result.sent_start_ns
    recs = [{**r, "wall_ms": (r["client_ns"] - t0) / 1e6} for r in result.records
            if "client_ns" in r and "type" in r]
    ends = _phrase_ends(recs)
    loud = [(ns, rms) for ns, rms in result.arrivals if rms > LOUD_RMS]
    first: list[float] = []
    seen: set[int] = set()
    for r in recs:
        if r["type"] != "audio_out" or r["utt"] in seen or r["utt"] not in ends:
            continue
        seen.add(r["utt"])
        onset = next((ns for ns, _ in loud if ns >= r["client_ns"] - EARLY_NS), None)
        if onset is not None:
            first.append((onset - t0) / 1e6 - ends[r["utt"]] * 1000)
    starts = [r["src_start"] for r in recs if r["type"] == "transcript" and r["committed"]]
    start_off = end_off = None
    if loud and starts and ends:
        start_off = (loud[0][0] - t0) / 1e6 - min(starts) * 1000
        end_off = (loud[-1][0] - t0) / 1e6 - max(ends.values()) * 1000
    source_text = M.committed_source(recs)
    return ClipScore(
        clip.name, result.sent_s - LEAD_IN_S, first, start_off, end_off,
        M.laal(M.text_delays(recs), result.sent_s * 1000, len(clip.tgt_ref.split())),
        M.wer(clip.transcript, source_text), source_text, M.committed_target(recs),
        hear(engines, result.audio, result.rate, target), {},
        speaker_similarity(clip, result.audio, result.rate))


def _phrase_ends(recs: list[dict[str, Any]]) -> dict[int, float]:
    """End of each phrase's speech: the furthest source time its transcripts covered (the
    captions carry spans, not words)."""
    ends: dict[int, float] = {}
    for r in recs:
        if r["type"] == "transcript" and (r.get("committed") or r.get("partial")):
            ends[r["utt"]] = max(ends.get(r["utt"], 0.0), float(r["src_end"]))
    return ends

