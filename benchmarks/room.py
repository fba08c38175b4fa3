"""``babelcall bench --room``: one speaker per language in one room, taking turns, on the real
models in real time. A listener's audio within a turn belongs to that turn's speaker (the next
speaker waits until every listener has heard the translation to its end, then ``GAP_S``), so
it is scored per (listener, speaker): the judge's transcript against the FLEURS reference of
the speaker's clip in the listener's language, and whether it is closer to that reference than
to every other text of that language in the eval set ("hears the right speaker"). Pairs
without a reference (most non-English pairs here) say so, and are scored instead as a round
trip: against the translation the server captioned for that speaker, nearer than to the
others'. Lags are read at the listener on its own clock, as loopback.py does: the speaker's
track stamps its first and last speech sample, the listener each received frame.

The server is the product's (``transports.server.running``, ``POST /rooms/<room>/join``); its
``/stats`` tells each speaker's recogniser streams (one per Whisper task, not per listener)."""

from __future__ import annotations

import asyncio
import bisect
import fractions
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from babelcall.benchmarks.measures import normalize
from babelcall.clients.call import LOUD_RMS
from babelcall.realtime.audio import frame_from_array
from babelcall.realtime.clock import SystemClock
from babelcall.realtime.errors import BabelcallError
from babelcall.transports.tracks import PTIME, WIRE_RATE, Pacer

# Short clips whose references cover the most pairs (only en->X and X->en exist here).
DEFAULT_CLIPS = {"en": "fleurs-en-003", "es": "fleurs-es-003", "fr": "fleurs-fr-004",
                 "pt": "fleurs-pt-002"}
GAP_S = 0.5     # the next speaker starts this long after the last translated sound
TURN_CAP_S = 120.0  # from the end of a turn's speech: one stuck turn cannot hang the bench
Arrivals = list[tuple[int, float]]  # (monotonic ns, RMS) per received 20 ms frame


def room_langs(text: str) -> list[str]:
    """``--room-langs``: two or more distinct languages."""
    langs = [x.strip() for x in text.split(",") if x.strip()]
    if len(set(langs)) != len(langs) or len(langs) < 2:
        raise BabelcallError(f"--room-langs needs two or more distinct languages, got {text!r}")
    return langs


# -- scoring: pure ------------------------------------------------------------------------
def word_chrf(hypothesis: str, reference: str) -> float:
    """chrF on words (lower case, no punctuation): the judge punctuates by the pauses between
    voiced pieces, which moved chrF by ~10 points with the same words."""
    import sacrebleu

    return round(sacrebleu.sentence_chrf(normalize(hypothesis), [normalize(reference)]).score, 1)


def closer(heard: str, own: str, texts: dict[str, str]) -> dict[str, Any]:
    """``heard`` scored against ``texts[own]`` and against every other text: closer to its own
    than to the nearest other? No own text: nothing to say (``chrf`` None)."""
    if own not in texts:
        return {"chrf": None, "right": None, "nearest_other": None, "other_chrf": None}
    scores = {k: word_chrf(heard, t) for k, t in texts.items() if t.strip()}
    others = {k: v for k, v in scores.items() if k != own}
    near = max(others, key=others.__getitem__, default=None)
    return {"chrf": scores.get(own, 0.0), "nearest_other": near,
            "other_chrf": None if near is None else others[near],
            "right": bool(heard.strip()) and (near is None or scores.get(own, 0) > others[near])}


def texts_in(eval_dir: Path, lang: str) -> dict[str, str]:
    """Every text of ``lang`` in the eval set, by clip: reference translations into it, then
    its own clips' sentences (the distractors of "hears the right speaker")."""
    out: dict[str, str] = {}
    for pattern, key in ((f"refs-*-{lang}.jsonl", "tgt_ref"), (f"refs-{lang}-*.jsonl", "src_ref")):
        for path in sorted(eval_dir.glob(pattern)):
            for row in map(json.loads, path.read_text(encoding="utf-8").splitlines()):
                out.setdefault(row["clip"], row[key])
    for path in sorted(eval_dir.glob(f"fleurs-{lang}-*.txt")):
        out.setdefault(path.stem, path.read_text(encoding="utf-8").strip())
    return out


def window(arrivals: Arrivals, start_ns: int, end_ns: int | None) -> slice:
    """The frames that arrived in [start, end) (arrivals are in order)."""
    ns = [a for a, _ in arrivals]
    return slice(bisect.bisect_left(ns, start_ns),
                 len(ns) if end_ns is None else bisect.bisect_left(ns, end_ns))


def lags(arrivals: Arrivals, start_ns: int, end_ns: int) -> dict[str, float | None]:
    """First and last translated sound of ``arrivals`` (one turn's window), in ms after the
    speech started / ended: ``first_after_end_ms`` < 0 when the listener heard the
    translation before the speaker finished."""
    loud = [ns for ns, rms in arrivals if rms > LOUD_RMS]
    if not loud:
        return {"first_after_start_ms": None, "first_after_end_ms": None, "end_offset_ms": None}
    return {"first_after_start_ms": round((loud[0] - start_ns) / 1e6),
            "first_after_end_ms": round((loud[0] - end_ns) / 1e6),
            "end_offset_ms": round((loud[-1] - end_ns) / 1e6)}


def said(records: list[dict[str, Any]], speaker: str) -> str:
    """The translation the server captioned for ``speaker``."""
    return " ".join(r["committed"].strip() for r in records if r.get("type") == "translation"
                    and r.get("speaker") == speaker and r.get("committed", "").strip())


def spoken(records: list[dict[str, Any]], speaker: str) -> bool:
    """``speaker``'s phrase is translated to its end and every committed word of it has played
    (or was said to be skipped); as tests/transports/test_rooms_languages.py waits."""
    mine = [r for r in records if r.get("speaker") == speaker]
    out = " ".join(r["text"] for r in mine if r["type"] in ("audio_out", "speech_skipped"))
    return any(r["type"] == "translation" and r["final"] for r in mine) and \
        sum(r["type"] == "synth_audio" for r in mine) == \
        sum(r["type"] == "audio_out" for r in mine) and \
        sum(map(str.isalnum, out)) >= sum(map(str.isalnum, said(mine, speaker)))


def quiet(arrivals: Arrivals, now_ns: int, seconds: float) -> bool:
    """No loud frame arrived in the last ``seconds``."""
    return not any(rms > LOUD_RMS for ns, rms in arrivals[-int(seconds / PTIME) - 5:]
                   if ns >= now_ns - seconds * 1e9)


# -- the room -----------------------------------------------------------------------------
class TurnTrack(MediaStreamTrack):
    """A speaker's microphone: paced 20 ms frames, silent until ``go`` is set, then the clip
    once, then silence again. Stamps when its first sample went out and when its last did
    (``start_ns + duration``, as loopback.py times a clip)."""

    kind = "audio"

    def __init__(self, pcm: np.ndarray, rate: int = WIRE_RATE) -> None:
        super().__init__()
        self.pcm, self.rate = pcm.astype(np.float32), rate
        self.samples = int(rate * PTIME)
        self.go, self.finished = asyncio.Event(), asyncio.Event()
        self.start_ns: int | None = None
        self._at = 0
        self._pacer = Pacer(rate, self.samples, SystemClock())
        self._time_base = fractions.Fraction(1, rate)

    @property
    def end_ns(self) -> int | None:
        return None if self.start_ns is None else \
            self.start_ns + int(len(self.pcm) / self.rate * 1e9)

    async def recv(self) -> Any:
        if self.readyState != "live":
            raise MediaStreamError
        pts = await self._pacer.next()
        chunk = np.zeros(self.samples, np.float32)
        if self.go.is_set() and self._at < len(self.pcm):
            if self._at == 0:
                self.start_ns = time.monotonic_ns()
            piece = self.pcm[self._at:self._at + self.samples]
            chunk[:len(piece)] = piece
            self._at += self.samples
            if self._at >= len(self.pcm):
                self.finished.set()
        frame = frame_from_array((np.clip(chunk, -1, 1) * 32767).astype(np.int16), self.rate)
        frame.pts, frame.time_base = pts, self._time_base
        return frame


@dataclass
class Speaker:
    lang: str
    clip: str
    track: TurnTrack
    caller: Any = None  # clients.call.Caller
    id: str = ""


async def _until(condition: Callable[[], bool], deadline: float) -> bool:
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def run_room(engines: Any, speakers: list[Speaker], *, gap_s: float = GAP_S,
                   cap_s: float = TURN_CAP_S) -> dict[str, Any]:
    """Everyone joins; each speaks in turn once the last turn was heard to its end. Returns
    the turns and the server's recognition figures; the callers keep what they received."""
    from babelcall.clients.call import Caller
    from babelcall.transports.hub import ServerConfig
    from babelcall.transports.server import running

    turns: list[dict[str, Any]] = []
    async with running(engines, ServerConfig(), shutdown_timeout=5) as srv:
        for s in speakers:
            s.caller = Caller(s.track, srv.url, endpoint="/rooms/bench/join",
                              params={"lang": s.lang, "name": s.lang, "echo_guard": "0"})
        try:
            stats = await _turns(srv, speakers, turns, gap_s, cap_s)
        finally:
            for s in speakers:
                await s.caller.hang_up()
    return {"turns": turns, **stats, "end_ns": time.monotonic_ns()}


async def _turns(srv: Any, speakers: list[Speaker], turns: list[dict[str, Any]], gap_s: float,
                 cap_s: float) -> dict[str, Any]:
    """Join, take turns, then read /stats: each speaker's recognition, and how long each
    model lane computed (one TTS lane voices every target language, one call at a time)."""
    import aiohttp

    for s in speakers:
        await s.caller.connect()
        s.id = s.caller.location.rsplit("/", 1)[1]
    room = srv.hub.rooms["bench"]
    await _until(lambda: all(s.caller.channel.readyState == "open" for s in speakers),
                 time.monotonic() + 30)  # captions before it opens would be lost
    for s in speakers:
        others = [o for o in speakers if o is not s]
        go_ns = time.monotonic_ns()
        s.track.go.set()
        await asyncio.wait_for(s.track.finished.wait(), len(s.track.pcm) / WIRE_RATE + cap_s)
        deadline = time.monotonic() + cap_s
        links = list(room.participants[s.id].links.values())
        heard = await _until(lambda s=s, others=others, links=links: all(
            settled(link) for link in links) and all(
            spoken(o.caller.records, s.id) for o in others), deadline)
        heard = heard and await _until(lambda others=others: all(
            quiet(o.caller.arrivals, time.monotonic_ns(), gap_s) for o in others),
            deadline)
        turns.append({"speaker": s.lang, "go_ns": go_ns, "start_ns": s.track.start_ns,
                      "end_ns": s.track.end_ns, "heard_to_end": heard,
                      "wait_s": round((time.monotonic_ns() - s.track.end_ns) / 1e9, 1)})
    async with aiohttp.ClientSession() as http, http.get(f"{srv.url}/stats") as resp:
        stats = await resp.json()
    fronts = {p.front.id: p.lang for p in room.participants.values() if p.front}
    busy = {k[:-7]: v for k, v in stats.items() if k.endswith("_busy_s")}
    return {"recognition": {fronts.get(r["speaker"], str(r["speaker"])): r
                            for r in stats["recognition"]},
            "busy_s": busy, "turns_s": round((time.monotonic_ns() - turns[0]["go_ns"]) / 1e9, 1)}


def settled(link: Any) -> bool:
    """Nothing left to do: phrase closed, translated and voiced, the mixer lanes empty."""
    m = link.session.metrics()
    return not any(m["queues"].values()) and m["lag_s"] < 0.1 and \
        not any(lane.queued for _, lane in link.outputs)


def score(speakers: list[Speaker], run: dict[str, Any], eval_dir: Path,
          judge: Callable[[np.ndarray, int, str], str],
          out: Path | None = None) -> list[dict[str, Any]]:
    """One row per (listener, speaker): what the listener heard in that speaker's turn (kept
    as ``out/<listener>-from-<speaker>.wav``, to listen to what the judge scored)."""
    from babelcall.realtime.audio import write_wav

    rows = []
    turns = run["turns"]
    texts = {s.lang: texts_in(eval_dir, s.lang) for s in speakers}  # read once per language
    for i, (s, turn) in enumerate(zip(speakers, turns, strict=True)):
        nxt = turns[i + 1]["go_ns"] if i + 1 < len(turns) else run["end_ns"]
        for ln in (o for o in speakers if o is not s):
            c = ln.caller
            w = window(c.arrivals, turn["go_ns"], nxt)
            audio = np.concatenate(c.received[w]) if c.received[w] else np.zeros(0, np.float32)
            heard = judge(audio, WIRE_RATE, ln.lang)
            if out is not None:
                write_wav(out / f"{ln.lang}-from-{s.lang}.wav", audio, WIRE_RATE)
            trip = {o.clip: said(c.records, o.id) for o in speakers if o is not ln}
            rows.append({
                "listener": ln.lang, "speaker": s.lang, "clip": s.clip, "heard": heard,
                "said": trip[s.clip], "reference": closer(heard, s.clip, texts[ln.lang]),
                "round_trip": closer(heard, s.clip, trip),
                "caption_only": sum(r.get("type") == "speech_skipped" and r.get("speaker")
                                    == s.id for r in c.records),
                **lags(c.arrivals[w], turn["start_ns"], turn["end_ns"])})
    return rows


# -- the bench ----------------------------------------------------------------------------
async def run_room_bench(args: Any, engines: Any) -> dict[str, Any]:
    """``babelcall bench --room``: the room on ``engines`` (every pair among the languages
    warmed first, as on a server that has served them), judged, written to ``args.out``."""
    import functools
    from datetime import UTC, datetime

    from babelcall.benchmarks.judge import hear
    from babelcall.benchmarks.longform import trim
    from babelcall.benchmarks.room_report import markdown, uncommitted
    from babelcall.benchmarks.run import git_commit
    from babelcall.engines.languages import mt_label
    from babelcall.realtime.audio import load_file
    from babelcall.realtime.cost import cpu_model, usable_cores

    langs = room_langs(args.room_langs)
    eval_dir = Path(args.eval_dir)
    for a in langs:
        for b in (b for b in langs if b != a):
            engines.check_pair(a, b)
            engines.warm_up(a, b)
    speakers = []
    for lang in langs:
        clip = DEFAULT_CLIPS.get(lang, f"fleurs-{lang}-000")
        pcm = trim(load_file(eval_dir / f"{clip}.ogg", WIRE_RATE), WIRE_RATE)
        speakers.append(Speaker(lang, clip, TurnTrack(pcm)))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    run = await run_room(engines, speakers)
    rows = score(speakers, run, eval_dir, functools.partial(hear, models_dir=args.models_dir),
                 out)
    results = {"langs": langs, "clips": {s.lang: s.clip for s in speakers},
               "speech_s": {s.lang: round(len(s.track.pcm) / WIRE_RATE, 2) for s in speakers},
               "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "commit": git_commit(),
               "clone": args.clone, "uncommitted": uncommitted(),
               "cpu": cpu_model(), "cores": usable_cores(),
               # the route each listener was served by (a room's English listener: the
               # speaker's transcript and a text engine, not Whisper's own translation)
               "mt": {f"{a}->{b}": run["recognition"].get(a, {}).get("routes", {}).get(b)
                      or mt_label(engines, a, b) for a in langs for b in langs if a != b},
               "command": f"babelcall bench --room --room-langs {','.join(langs)}",
               "turns": [{k: v for k, v in t.items() if not k.endswith("_ns")}
                         for t in run["turns"]],
               "recognition": run["recognition"], "busy_s": run["busy_s"],
               "turns_s": run["turns_s"], "cells": rows}
    results["markdown"] = markdown(results)
    (out / "room.json").write_text(json.dumps(results, indent=1, ensure_ascii=False))
    (out / "room.md").write_text(results["markdown"], encoding="utf-8")
    return results
