"""``babelcall bench``: run FLEURS clips through the real pipeline, paced in real time, next to
the offline cascade baseline, then sweep concurrent sessions until p95 first audio exceeds the
budget. Writes results.json (machine, models, commit), results.md and PNG plots."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import resource
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from babelcall.benchmarks import measures as M
from babelcall.engines.registry import Engines
from babelcall.realtime.audio import Resampler, frame_from_array, load_file
from babelcall.realtime.replay import ReplayResult, replay
from babelcall.realtime.scheduler import Scheduler
from babelcall.realtime.session import SessionConfig
from babelcall.realtime.types import join_words


@dataclass
class Clip:
    name: str
    path: Path
    src_ref: str
    tgt_ref: str
    transcript: str
    duration_s: float = 0.0


def find_clips(eval_dir: Path, source: str, target: str, limit: int | None) -> list[Clip]:
    refs = eval_dir / f"refs-{source}-{target}.jsonl"
    if not refs.is_file():  # no references: scored as a round trip (tgt_ref "")
        clips = [Clip(p.stem, p, "", "", p.with_suffix(".txt").read_text(encoding="utf-8"))
                 for p in sorted(eval_dir.glob(f"fleurs-{source}-*.ogg"))
                 if p.with_suffix(".txt").is_file()]
        if not clips:
            from babelcall.realtime.errors import BabelcallError

            raise BabelcallError(f"no references and no {source} clips for {source}-{target} "
                                 f"in {eval_dir}")
        return clips[:limit] if limit else clips
    clips = []
    for line in refs.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        path = eval_dir / f"{row['clip']}.ogg"
        txt = path.with_suffix(".txt")
        clips.append(Clip(row["clip"], path, row["src_ref"], row["tgt_ref"],
                          txt.read_text(encoding="utf-8") if txt.is_file() else row["src_ref"]))
    return clips[:limit] if limit else clips


def to_16k(pcm: np.ndarray, rate: int) -> np.ndarray:
    if rate == 16000:
        return pcm
    r = Resampler(16000)
    return np.concatenate([r.push(frame_from_array(pcm, rate)), r.flush()])


def frame_rms(pcm: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """``pcm`` cut into 20 ms frames (a trailing partial frame dropped) and their RMS."""
    n = int(rate * 0.02)
    frames = pcm[: len(pcm) // n * n].reshape(-1, n)
    return frames, np.sqrt((frames ** 2).mean(axis=1))


def compact(pcm: np.ndarray, rate: int, threshold: float = 0.005, keep_s: float = 0.3
            ) -> np.ndarray:
    """Shorten every silence to ``keep_s``. A live recording is mostly silence between
    clauses, which makes Whisper drop or invent words, and fixed windows would cut words;
    the content is what is scored."""
    frames, rms = frame_rms(pcm, rate)
    loud = rms > threshold
    keep = int(keep_s / 0.02)
    out, quiet = [], 0
    for frame, is_loud in zip(frames, loud, strict=True):
        quiet = 0 if is_loud else quiet + 1
        if quiet <= keep:
            out.append(frame)
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def hear(audio: np.ndarray, rate: int, language: str) -> str:
    """What a listener hears in the translated speech (for ASR-BLEU/chrF), by the reference
    transcriber (``judge.py``: plain faster-whisper, full window, beam 5, VAD), never by the
    streaming engine under test."""
    from babelcall.benchmarks.judge import hear as judge_hear

    return judge_hear(audio, rate, language)


@dataclass
class ClipScore:
    clip: str
    duration_s: float
    first_audio_ms: list[float]
    start_offset_ms: float | None
    end_offset_ms: float | None
    laal_ms: float | None
    wer: float | None  # None: Whisper translated, no source transcript to score
    source_text: str
    target_text: str
    heard_text: str
    stage_rtf: dict[str, float] = field(default_factory=dict)
    similarity: float | None = None  # speaker similarity, source vs translated speech
    # over a network path: the interpreter got the phrase end -> the listener hears it (ms)
    heard_after_ms: list[float] = field(default_factory=list)
    # per phrase: last source word -> the listener starts hearing the clause carrying it
    final_clause_ms: list[float] = field(default_factory=list)
    timings: list[dict[str, Any]] = field(default_factory=list)  # each phrase's waterfall


def speaker_similarity(clip: Clip, audio: np.ndarray, rate: int) -> float | None:
    """Resemblyzer cosine between the caller and the translated speech (None: no speech)."""
    from babelcall.benchmarks.similarity import similarity

    out = to_16k(audio, rate)
    if not len(out) or float(np.abs(out).max()) == 0.0:
        return None
    return round(float(similarity(load_file(clip.path, 16000), out)), 3)


def score_stream(engines: Engines, clip: Clip, res: ReplayResult, target: str) -> ClipScore:
    recs = res.records
    start_off, end_off = M.offsets(recs)
    tgt = M.committed_target(recs)
    return ClipScore(
        clip.name, res.input_s, M.first_audio_latencies(recs), start_off, end_off,
        M.laal(M.text_delays(recs), res.input_s * 1000, len(clip.tgt_ref.split())),
        M.wer(clip.transcript, M.committed_source(recs)), M.committed_source(recs), tgt,
        hear(res.audio, res.rate, target),
        {k: round(v / max(res.input_s, 1e-9), 3)
         for k, v in res.metrics.get("stage_total_s", {}).items()},
        speaker_similarity(clip, res.audio, res.rate),
        final_clause_ms=M.final_clause_latencies(recs),
        timings=[{**t, "clip": clip.name} for t in M.timings(recs)])


def run_cascade(engines: Engines, clip: Clip, source: str, target: str) -> ClipScore:
    """The dubbing workflow: wait for the whole clip, then ASR -> MT -> TTS in one go.
    First audio = the time those take after the clip ends (the source is all there)."""
    audio = load_file(clip.path, 16000)
    dur = len(audio) / 16000
    t0 = time.monotonic()
    words = []
    for i in range(0, len(audio), 16000 * 28):
        words += engines.asr.transcribe(audio[i:i + 16000 * 28], language=source)
    text = join_words(words)
    mt = engines.translator_for(source, target)
    if mt is not None:
        tgt = mt.translate([text], source=source, target=target)[0]
    else:
        tgt = join_words(engines.asr.transcribe(audio[: 16000 * 30], language=source,
                                                task="translate"))
    chunks, first_ms = [], None
    for chunk in engines.tts.synthesize(tgt, language=target):
        if first_ms is None:
            first_ms = (time.monotonic() - t0) * 1000
        chunks.append(chunk)
    out = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
    end_ms = (time.monotonic() - t0) * 1000 + len(out) / engines.tts.sample_rate * 1000
    src_end = words[-1].end if words else dur
    lag = (dur - src_end) * 1000  # the clip's trailing silence also passes before t0
    first = [first_ms + lag] if first_ms is not None else []
    start = (dur * 1000 + first_ms - (words[0].start * 1000 if words else 0)) \
        if first_ms is not None else None
    return ClipScore(clip.name, dur, first, start, end_ms + lag, None,
                     M.wer(clip.transcript, text), text, tgt,
                     hear(out, engines.tts.sample_rate, target),
                     similarity=speaker_similarity(clip, out, engines.tts.sample_rate))


def aggregate(scores: list[ClipScore], tgt_refs: list[str] | None) -> dict[str, Any]:
    """``tgt_refs`` None: no references, so a round trip: what was heard is scored against
    what was committed, and the text itself is not scored."""
    from babelcall.benchmarks.pairs import scores as bleu_chrf

    lat = [x for s in scores for x in s.first_audio_ms]
    if tgt_refs is None:
        bleu, chrf = None, None
        ableu, achrf = bleu_chrf([s.heard_text for s in scores], [s.target_text for s in scores])
    else:
        bleu, chrf = bleu_chrf([s.target_text for s in scores], tgt_refs)
        ableu, achrf = bleu_chrf([s.heard_text for s in scores], tgt_refs)
    vals = [s.laal_ms for s in scores if s.laal_ms is not None]
    wers = [s.wer for s in scores if s.wer is not None]
    sims = [s.similarity for s in scores if s.similarity is not None]
    return {
        "first_audio_ms": M.percentiles(lat),
        "start_offset_ms": M.percentiles([s.start_offset_ms for s in scores
                                          if s.start_offset_ms is not None]),
        "end_offset_ms": M.percentiles([s.end_offset_ms for s in scores
                                        if s.end_offset_ms is not None]),
        "laal_ms": M.percentiles(vals),
        "wer": round(float(np.mean(wers)), 3) if wers else None,
        "bleu": bleu, "chrf": chrf, "asr_bleu": ableu, "asr_chrf": achrf,
        "speaker_similarity": round(float(np.mean(sims)), 3) if sims else None,
        "heard_after_ms": M.percentiles([x for s in scores for x in s.heard_after_ms]),
        "final_clause_ms": M.percentiles([x for s in scores for x in s.final_clause_ms]),
        "waterfall_p50_ms": M.waterfall_p50([t for s in scores for t in s.timings]),
    }


async def sweep(engines: Engines, clips: list[Clip], source: str, target: str, *,
                budget_ms: float, max_sessions: int) -> list[dict[str, Any]]:
    """N concurrent sessions (each its own clip, all sharing the models through one scheduler)
    for N = 1, 2, 4, ... until p95 first audio exceeds the budget."""
    rows: list[dict[str, Any]] = []
    n = 1
    while n <= max_sessions:
        async with Scheduler(engines) as sched:
            started = time.monotonic()
            results = await asyncio.gather(*[
                replay(engines, SessionConfig(source, target), clips[i % len(clips)].path,
                       scheduler=sched) for i in range(n)])
            lat = [x for r in results for x in M.first_audio_latencies(r.records)]
            metrics = sched.metrics()
        pct = M.percentiles(lat)
        rows.append({"sessions": n, "first_audio_ms": pct,
                     "max_lag_s": max((lag for r in results for _, lag in r.lag), default=0.0),
                     "asr_mean_batch": metrics["asr_mean_batch"],
                     "wall_s": round(time.monotonic() - started, 1),
                     "lag": [r.lag for r in results]})
        if pct["p95"] is None or pct["p95"] > budget_ms:
            break
        n *= 2
    return rows


async def cost_account(engines: Engines, clips: list[Clip], source: str, target: str, *,
                       sessions: int) -> dict[str, Any]:
    """``sessions`` speakers at once, in real time on one scheduler: round i plays clip i to
    the first, clip i+1 to the second, ... What the cost account (realtime/cost.py) counted
    over the rounds, per second of the call (the longest clip of each round): the share of
    the machine ``sessions`` callers talking at once take."""
    from babelcall.realtime.cost import per_audio

    async with Scheduler(engines) as sched:
        before, call_s = sched.cost.cpu_s(), 0.0
        lags: list[float] = []
        skipped = 0  # clauses only captioned: speech not made costs no CPU, so say it
        made_s = 0.0
        for i in range(len(clips)):
            while sched.level >= 3:  # the last round left it behind: admission would refuse
                await asyncio.sleep(0.5)
            results = await asyncio.gather(*[
                replay(engines, SessionConfig(source, target),
                       clips[(i + k) % len(clips)].path, scheduler=sched)
                for k in range(sessions)])
            call_s += max(r.input_s for r in results)
            lags += [x for r in results for x in M.final_clause_latencies(r.records)]
            skipped += sum(r.metrics.get("skipped", 0) for r in results)
            made_s += sum(speech_made_s(r) for r in results)
        account = per_audio(before, sched.cost.cpu_s(), call_s, sched.cost.cores)
    return {"sessions": sessions, "machine": sched.cost.machine, **account,
            "final_clause_ms": M.percentiles(lags), "skipped": skipped,
            "speech_made_s": round(made_s, 2)}


def speech_made_s(result: ReplayResult) -> float:
    """Seconds of translated speech a replay made (what the TTS and voice stages cost
    follows, whatever was shed)."""
    from babelcall.realtime.types import SynthAudio

    return sum(len(e.pcm) / e.rate for e in result.events if isinstance(e, SynthAudio))


def long_call(clips: list[Clip], seconds: float, path: Path) -> Path:
    """A call of about ``seconds``: the clips one after another, 1 s of silence between."""
    from babelcall.realtime.audio import write_wav

    parts, total = [], 0.0
    while total < seconds:
        for clip in clips:
            pcm = load_file(clip.path, 16000)
            parts += [pcm, np.zeros(16000, dtype=np.float32)]
            total += len(pcm) / 16000 + 1.0
            if total >= seconds:
                break
    write_wav(path, np.concatenate(parts), 16000)
    return path


RSS_EVERY_S = 10.0


def rss_mib() -> float:
    """This process's resident memory now (Linux); the peak where /proc is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _sample_rss(samples: list[tuple[float, float]], started: float) -> None:
    while True:
        samples.append((round(time.monotonic() - started, 1), round(rss_mib(), 1)))
        await asyncio.sleep(RSS_EVERY_S)


def rss_slope(samples: list[tuple[float, float]], warmup_s: float) -> float | None:
    """MiB per minute, least squares over the samples after ``warmup_s`` (models' buffers and
    allocator arenas grow during the first phrases; what grows after that grows with the
    call)."""
    late = [(t, r) for t, r in samples if t >= warmup_s]
    if len(late) < 3:
        return None
    t, r = np.array(late).T
    return round(float(np.polyfit(t, r, 1)[0]) * 60, 2)


async def soak(engines: Engines, call: Path, source: str, target: str,
               sessions: int) -> dict[str, Any]:
    """``sessions`` callers talking at once for the whole call: does lag stay bounded, and
    does memory (RSS sampled every ``RSS_EVERY_S``) stay flat after warm-up?"""
    rss: list[tuple[float, float]] = []
    started = time.monotonic()
    sampler = asyncio.create_task(_sample_rss(rss, started))
    kept: list[list[dict[str, Any]]] = [[] for _ in range(sessions)]  # what latency needs

    def keeper(out: list[dict[str, Any]]) -> Any:
        def keep(rec: dict[str, Any]) -> None:
            if rec["type"] == "speech_ended" or rec["type"] == "synth_audio" and rec["seq"] == 0:
                out.append(rec)
            elif rec["type"] == "transcript" and rec.get("words"):
                out.append({**rec, "words": rec["words"][-1:]})  # the phrase's end is enough
        return keep

    try:
        async with Scheduler(engines) as sched:
            results = await asyncio.gather(*[
                replay(engines, SessionConfig(source, target), call, scheduler=sched,
                       keep=False, on_record=keeper(kept[i]))
                for i in range(sessions)])
            metrics = sched.metrics()
    finally:
        sampler.cancel()
    mid = results[0].input_s / 2
    warmup_s = max(60.0, 0.2 * results[0].input_s)

    def halves(series: list[list[tuple[float, float]]]) -> tuple[float, float]:
        first = [v for lag in series for t, v in lag if t <= mid]
        second = [v for lag in series for t, v in lag if t > mid]
        return max(first, default=0.0), max(second, default=0.0)

    lags = [r.lag for r in results]
    speech = [r.speech_lag for r in results]
    lat = [x for recs in kept for x in M.first_audio_latencies(recs)]
    (l1, l2), (s1, s2) = halves(lags), halves(speech)
    return {"sessions": sessions, "call_s": round(results[0].input_s, 1),
            "max_lag_first_half_s": l1, "max_lag_second_half_s": l2,
            "max_speech_lag_first_half_s": s1, "max_speech_lag_second_half_s": s2,
            "skipped": sum(r.metrics.get("skipped", 0) for r in results),
            "merges": sum(r.metrics.get("merges", 0) for r in results),
            "first_audio_ms": M.percentiles(lat), "asr_mean_batch": metrics["asr_mean_batch"],
            "errors": sum(r.metrics.get("errors", 0) for r in results), "lag": lags,
            "speech_lag": speech, "rss_mib": rss, "rss_every_s": RSS_EVERY_S,
            "rss_warmup_s": warmup_s, "rss_end_mib": round(rss_mib(), 1),
            "rss_slope_mib_per_min": rss_slope(rss, warmup_s)}


def machine_info(device: str) -> dict[str, Any]:
    from babelcall.realtime.cost import cpu_model

    cpu = cpu_model() or platform.processor()
    info: dict[str, Any] = {"cpu": cpu, "cores": os.cpu_count(), "device": device,
                            "python": platform.python_version(),
                            "platform": platform.platform()}
    try:
        mem = Path("/proc/meminfo").read_text().split()[1]
        info["memory_gib"] = round(int(mem) / 2**20, 1)
    except (OSError, IndexError, ValueError):
        pass
    if device.startswith("cuda"):
        try:
            info["gpu"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            info["gpu"] = "unknown"
    return info


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10, cwd=Path(__file__).parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def resources(cpu_start: float, wall_start: float) -> dict[str, Any]:
    t = os.times()
    wall = time.monotonic() - wall_start
    return {"cpu_percent": round(100 * (t.user + t.system - cpu_start) / max(wall, 1e-9), 1),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "wall_s": round(wall, 1)}
