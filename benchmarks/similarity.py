"""Voice-cloning benchmark: does the translation sound like the caller?

For each FLEURS clip (en clips voiced in Spanish, es clips voiced in English) the caller's
speech goes through the real VAD into a ``ProfileBuilder``; the reference translation
(``tgt_ref``, so MT quality plays no part) is synthesised by Kokoro twice:

* off: the default voice ``jm_kumo``, untouched;
* on: the voice the cloner picks from the profile, converted by ``DspCloner.apply``.

Speaker similarity is the cosine of Resemblyzer embeddings (same speaker ~0.87, different
~0.50 on this data) between the caller's clip and each output. The added latency is the
wall time of ``apply`` on the first TTS chunk, since the first audio waits for it (median of
``--repeats`` runs per clip). ``--wer`` also checks that the conversion keeps the speech
intelligible (round trip, heard by the judge: ``judge.py``). ``babelcall bench`` runs the
fuller voice ablation (``ablation.py``) through the real session.

Run: ``python -m babelcall.benchmarks.similarity`` (needs resemblyzer: pip install
torch==2.13.0 && pip install resemblyzer)."""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from babelcall.engines.voice.encoder import ResemblyzerEncoder, cosine

RATE = 16000
PAIRS = (("en", "es"), ("es", "en"))
OFF_VOICE = "jm_kumo"
FIRST_CHUNK_S = 2.0

_encoder: ResemblyzerEncoder | None = None


def similarity(a16k: np.ndarray, b16k: np.ndarray) -> float:
    """Speaker similarity of two 16 kHz recordings: cosine of their Resemblyzer embeddings
    (torch loads on the first call)."""
    global _encoder
    if _encoder is None:
        _encoder = ResemblyzerEncoder()
    return cosine(_encoder.embed(a16k, RATE), _encoder.embed(b16k, RATE))


def default_eval_dir() -> Path:
    env = os.environ.get("BABELCALL_EVAL")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared" / "eval" / "fleurs"


@dataclass
class Row:
    clip: str
    source: str
    target: str
    f0_hz: float
    voice_on: str
    sim_off: float
    sim_on: float
    first_chunk_s: float
    apply_ms_first_chunk: float  # wall, median of repeats
    apply_ms_2s: float  # wall, on the first 2 s of that chunk
    apply_cpu_ms_2s: float
    wer_off: float | None = None
    wer_on: float | None = None


def caller_speech(pcm: np.ndarray, vad: Any) -> np.ndarray:
    """The speech the VAD lets through, phrases joined (what a session feeds the builder)."""
    from babelcall.realtime.phrases import PhraseAudio, PhraseDetector, PhraseStart

    listener = PhraseDetector(vad)
    heard = listener.feed(pcm) + listener.flush()
    parts = [h.pcm for h in heard if isinstance(h, PhraseStart | PhraseAudio)]
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def _timed(fn: Any, repeats: int) -> tuple[float, float]:
    walls, cpus = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return 1000 * statistics.median(walls), 1000 * statistics.median(cpus)


def run(eval_dir: Path, *, clips: int = 5, repeats: int = 3, models_dir: str | None = None,
        wer: bool = False, log: Any = print) -> dict[str, Any]:
    from babelcall.engines.tts.kokoro import KokoroSynth
    from babelcall.engines.vad.silero import SileroVad
    from babelcall.engines.voice.dsp import DspCloner
    from babelcall.engines.voice.profile import ProfileBuilder
    from babelcall.engines.voice.sigproc import resample
    from babelcall.realtime.audio import load_file

    tts = KokoroSynth("kokoro-82m", models_dir=models_dir)
    vad, cloner = SileroVad(), DspCloner()
    rows: list[Row] = []
    for source, target in PAIRS:
        with open(eval_dir / f"refs-{source}-{target}.jsonl", encoding="utf-8") as f:
            refs = [json.loads(line) for line in f if line.strip()][:clips]
        for ref in refs:
            pcm = load_file(eval_dir / f"{ref['clip']}.ogg", RATE)
            builder = ProfileBuilder(language=source)
            speech = caller_speech(pcm, vad)
            for i in range(0, len(speech), RATE // 2):
                builder.add(speech[i:i + RATE // 2])
            profile = builder.profile
            text = ref["tgt_ref"]
            off = list(tts.synthesize(text, language=target, voice=OFF_VOICE))
            voice = cloner.choose_voice(profile, tts.voices) or OFF_VOICE
            raw = list(tts.synthesize(text, language=target, voice=voice))
            on = [cloner.apply(c, tts.sample_rate, profile, voice=voice) for c in raw]
            first = raw[0]
            cut = first[: int(FIRST_CHUNK_S * tts.sample_rate)]
            apply = functools.partial(cloner.apply, rate=tts.sample_rate, profile=profile,
                                      voice=voice)
            ms_first, _ = _timed(functools.partial(apply, first), repeats)
            ms_cut, cpu_cut = _timed(functools.partial(apply, cut), repeats)

            def to16k(chunks: list[np.ndarray]) -> np.ndarray:
                audio = np.concatenate(chunks)
                return resample(audio, round(len(audio) * RATE / tts.sample_rate))

            off16, on16 = to16k(off), to16k(on)
            row = Row(ref["clip"], source, target,
                      round(profile.f0_median, 1) if profile else 0.0, voice,
                      round(similarity(pcm, off16), 4), round(similarity(pcm, on16), 4),
                      round(len(first) / tts.sample_rate, 2), round(ms_first, 1),
                      round(ms_cut, 1), round(cpu_cut, 1))
            if wer:
                row.wer_off = _wer(off16, text, target)
                row.wer_on = _wer(on16, text, target)
            rows.append(row)
            log(f"{row.clip}: f0 {row.f0_hz:.0f} Hz, voice {voice}: similarity "
                f"off {row.sim_off:.3f} on {row.sim_on:.3f}; apply {ms_cut:.0f} ms "
                f"on 2 s ({cpu_cut:.0f} ms CPU)")
    return summarize(rows)


def _wer(audio16: np.ndarray, text: str, language: str) -> float:
    """Round-trip WER of synthesised ``text``, heard by the judge (not the engine under test)."""
    from babelcall.benchmarks.judge import judge
    from babelcall.benchmarks.measures import wer

    return round(wer(text, judge().transcribe(audio16, language)), 3)


def summarize(rows: list[Row]) -> dict[str, Any]:
    off = [r.sim_off for r in rows]
    on = [r.sim_on for r in rows]
    out: dict[str, Any] = {
        "rows": [asdict(r) for r in rows],
        "mean_sim_off": round(float(np.mean(off)), 4),
        "mean_sim_on": round(float(np.mean(on)), 4),
        "mean_gain": round(float(np.mean(np.subtract(on, off))), 4),
        "clips_improved": int(sum(b > a for a, b in zip(off, on, strict=True))),
        "apply_ms_2s_median": round(statistics.median(r.apply_ms_2s for r in rows), 1),
        "apply_cpu_ms_2s_median": round(statistics.median(r.apply_cpu_ms_2s for r in rows), 1),
        "apply_ms_first_chunk_median": round(
            statistics.median(r.apply_ms_first_chunk for r in rows), 1),
        "first_chunk_s_median": round(statistics.median(r.first_chunk_s for r in rows), 2),
    }
    if rows and rows[0].wer_off is not None:
        out["mean_wer_off"] = round(float(np.mean([r.wer_off for r in rows])), 3)
        out["mean_wer_on"] = round(float(np.mean([r.wer_on for r in rows])), 3)
    return out


def markdown(result: dict[str, Any]) -> str:
    wer = "mean_wer_off" in result
    head = "| clip | pair | caller f0 (Hz) | voice (on) | similarity off | similarity on | gain |"
    head += " WER off | WER on |" if wer else ""
    lines = [head, "|" + "---|" * (9 if wer else 7)]
    for r in result["rows"]:
        line = (f"| {r['clip']} | {r['source']}→{r['target']} | {r['f0_hz']:.0f} | "
                f"{r['voice_on']} | {r['sim_off']:.3f} | {r['sim_on']:.3f} | "
                f"{r['sim_on'] - r['sim_off']:+.3f} |")
        if wer:
            line += f" {r['wer_off']:.2f} | {r['wer_on']:.2f} |"
        lines.append(line)
    line = (f"| **mean** | | | | **{result['mean_sim_off']:.3f}** | "
            f"**{result['mean_sim_on']:.3f}** | **{result['mean_gain']:+.3f}** |")
    if wer:
        line += f" {result['mean_wer_off']:.2f} | {result['mean_wer_on']:.2f} |"
    lines.append(line)
    lines.append("")
    lines.append(f"apply() on the first 2 s of the first chunk: median "
                 f"{result['apply_ms_2s_median']:.0f} ms wall "
                 f"({result['apply_cpu_ms_2s_median']:.0f} ms CPU); on the whole first chunk "
                 f"(median {result['first_chunk_s_median']:.1f} s): "
                 f"{result['apply_ms_first_chunk_median']:.0f} ms wall")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m babelcall.benchmarks.similarity",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--eval-dir", type=Path, default=default_eval_dir())
    parser.add_argument("--clips", type=int, default=5, help="clips per language")
    parser.add_argument("--repeats", type=int, default=3, help="timing runs per clip")
    parser.add_argument("--models-dir", default=None)
    parser.add_argument("--wer", action="store_true", help="also Whisper round-trip WER")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    result = run(args.eval_dir, clips=args.clips, repeats=args.repeats,
                 models_dir=args.models_dir, wer=args.wer,
                 log=lambda s: print(s, file=sys.stderr, flush=True))
    print(markdown(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
