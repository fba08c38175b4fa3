"""Voice ablation: does the cloned voice keep the meaning, and does it sound like the caller?

Each clip is replayed once per voice engine (``--clone off`` / ``dsp`` / ``praat``) through the
real session, on the deterministic fast replay (simulated clock, computation-unaware: the
session's output does not depend on how busy the CPU is, so engines are compared on the same
text and timing). Per clip and per engine:

* ASR-chrF: the judge's transcript of the translated speech against the reference
  translation (what the issue's target is stated in);
* round-trip WER: the judge's transcript against the text the session voiced (intelligibility
  of the speech itself, MT errors left out);
* speaker similarity: Resemblyzer cosine between the caller's clip and the translated speech.

The fixed voice (``off``) is the baseline every other engine is held against: ASR-chrF within
``CORPUS_MARGIN`` for the corpus, no clip more than ``CLIP_MARGIN`` below, similarity above."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from babelcall.benchmarks import measures as M
from babelcall.benchmarks.run import Clip, hear, speaker_similarity

ENGINES = ("off", "dsp", "praat")
CORPUS_MARGIN = 1.0  # chrF points the corpus may lose to the fixed voice
CLIP_MARGIN = 3.0  # ... and any one clip


@dataclass
class VoiceRow:
    clip: str
    engine: str
    voice: str | None  # base voice the cloner chose for the caller (whole-clip profile)
    converted: bool
    reason: str
    spoken_text: str  # what the session voiced
    heard_text: str  # what the judge heard
    asr_chrf: float
    roundtrip_wer: float
    similarity: float | None


def caller_decision(engines: Any, cloner: Any, clip: Clip, source: str) -> Any:
    """The cloner's decision for this caller, from a profile of the whole clip's speech."""
    from babelcall.benchmarks.similarity import caller_speech
    from babelcall.engines.voice.profile import ProfileBuilder
    from babelcall.realtime.audio import load_file

    builder = ProfileBuilder(language=source)
    speech = caller_speech(load_file(clip.path, 16000), engines.vad)
    for i in range(0, len(speech), 8000):
        builder.add(speech[i:i + 8000])
    return cloner.decide(builder.profile, getattr(engines.tts, "voices", ()))


async def run_ablation(engines: Any, clips: list[Clip], source: str, target: str,
                       kinds: tuple[str, ...] = ENGINES) -> dict[str, Any]:
    import sacrebleu

    from babelcall.engines.voice import load_cloner
    from babelcall.realtime.replay import replay
    from babelcall.realtime.session import SessionConfig

    rows: list[VoiceRow] = []
    for kind in kinds:
        cloner = load_cloner(kind)
        variant = dataclasses.replace(engines, cloner=cloner)
        config = SessionConfig(source, target, clone_voice=kind != "off")
        for clip in clips:
            res = await replay(variant, config, clip.path, fast=True)
            spoken = M.committed_target(res.records)
            heard = hear(res.audio, res.rate, target)
            decision = caller_decision(engines, cloner, clip, source)
            rows.append(VoiceRow(
                clip.name, kind, decision.voice, decision.convert, decision.reason, spoken,
                heard, round(sacrebleu.sentence_chrf(heard, [clip.tgt_ref]).score, 1),
                roundtrip_wer(spoken, heard), speaker_similarity(clip, res.audio, res.rate)))
    refs = {c.name: c.tgt_ref for c in clips}
    corpus: dict[str, dict[str, Any]] = {}
    for kind in kinds:
        mine = [r for r in rows if r.engine == kind]
        sims = [r.similarity for r in mine if r.similarity is not None]
        corpus[kind] = {
            "asr_chrf": round(sacrebleu.corpus_chrf([r.heard_text for r in mine],
                                                    [[refs[r.clip] for r in mine]]).score, 2),
            "roundtrip_wer": round(float(np.mean([r.roundtrip_wer for r in mine])), 3),
            "similarity": round(float(np.mean(sims)), 3) if sims else None}
    return {"mode": "fast replay (simulated clock, computation-unaware, deterministic)",
            "scorer": "judge: faster-whisper base, full 30 s window, beam 5, VAD filter",
            "engines": list(kinds), "rows": [dataclasses.asdict(r) for r in rows],
            "corpus": corpus, "verdict": verdict(rows, corpus)}


def roundtrip_wer(spoken: str, heard: str) -> float:
    """WER of what was heard against what was voiced (0 when nothing was voiced nor heard)."""
    if not M.normalize(spoken):
        return 0.0 if not M.normalize(heard) else 1.0
    return round(M.wer(spoken, heard), 3)


def verdict(rows: list[VoiceRow], corpus: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per cloning engine: does it keep the meaning (ASR-chrF within the margins of ``off``)
    and sound closer to the caller than the fixed voice?"""
    if "off" not in corpus:
        return {}
    base = {r.clip: r for r in rows if r.engine == "off"}
    out: dict[str, Any] = {}
    for kind, agg in corpus.items():
        if kind == "off":
            continue
        drops = {r.clip: round(base[r.clip].asr_chrf - r.asr_chrf, 1) for r in rows
                 if r.engine == kind and r.clip in base}
        sim, sim_off = agg["similarity"], corpus["off"]["similarity"]
        out[kind] = {
            "corpus_drop": round(corpus["off"]["asr_chrf"] - agg["asr_chrf"], 2),
            "worst_clip_drop": max(drops.values(), default=0.0),
            "closer_than_fixed_voice": sim is not None and sim_off is not None and sim > sim_off,
        }
        out[kind]["keeps_meaning"] = (out[kind]["corpus_drop"] <= CORPUS_MARGIN
                                      and out[kind]["worst_clip_drop"] <= CLIP_MARGIN)
    return out


def markdown(ab: dict[str, Any]) -> str:
    kinds = ab["engines"]
    lines = ["", f"Voice ablation ({ab['mode']}; heard by the {ab['scorer']}): ASR-chrF "
             "against the reference translation, round-trip WER against the text voiced, "
             "speaker similarity (Resemblyzer) to the caller.", "",
             "| clip | base voice | " + " | ".join(
                 f"{k}: chrF / WER / sim" for k in kinds) + " |",
             "|---|---|" + "---|" * len(kinds)]
    clips = list(dict.fromkeys(r["clip"] for r in ab["rows"]))
    by = {(r["clip"], r["engine"]): r for r in ab["rows"]}

    def cell(r: dict[str, Any] | None) -> str:
        if r is None:
            return "–"
        sim = "–" if r["similarity"] is None else f"{r['similarity']:.3f}"
        return f"{r['asr_chrf']:.1f} / {r['roundtrip_wer']:.2f} / {sim}"

    for clip in clips:
        cloned = next((by[(clip, k)] for k in kinds if k != "off" and (clip, k) in by), None)
        voice = "–" if cloned is None else (cloned["voice"] or "default") + (
            "" if cloned["converted"] else " (not converted)")
        lines.append(f"| {clip} | {voice} | "
                     + " | ".join(cell(by.get((clip, k))) for k in kinds) + " |")
    corpus = ab["corpus"]
    lines.append("| **corpus** | | " + " | ".join(
        f"**{corpus[k]['asr_chrf']:.1f}** / {corpus[k]['roundtrip_wer']:.2f} / "
        + ("–" if corpus[k]["similarity"] is None else f"{corpus[k]['similarity']:.3f}")
        for k in kinds) + " |")
    for kind, v in ab.get("verdict", {}).items():
        keeps = "keeps" if v["keeps_meaning"] else "LOSES"
        above = "above" if v["closer_than_fixed_voice"] else "NOT above"
        lines.append(f"\n`{kind}` vs `off`: corpus ASR-chrF {-v['corpus_drop']:+.1f}, worst "
                     f"clip {-v['worst_clip_drop']:+.1f} (margins -{CORPUS_MARGIN:g} / "
                     f"-{CLIP_MARGIN:g}): {keeps} the meaning; similarity {above} the fixed "
                     "voice.")
    return "\n".join(lines) + "\n"
