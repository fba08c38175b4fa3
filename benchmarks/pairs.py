"""``babelcall bench --pair X-Y --fast``: one language pair's quality from deterministic replays
(the session on a simulated clock: computation-unaware, so the figures do not depend on how busy
the machine is; no latency figures), scored by an independent transcriber.

Per pair: text chrF/BLEU of the committed translation against the FLEURS references; heard
chrF/BLEU (the translated speech transcribed back by the judge) against the same references;
recognition WER where the recogniser transcribes; and the synthesiser's round trip in the target
language (reference sentences synthesised, then transcribed: WER). A pair without references
(pt-en) is scored as a round trip: what was heard against the committed text, and said so.

``--record`` stores the figures in engines/quality.json with the date and the MT route, for
``babelcall languages`` and ``GET /languages``."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from babelcall.benchmarks import measures as M
from babelcall.benchmarks.judge import hear


def lowercase_refs(refs: list[str]) -> bool:
    """References written lowercase without punctuation (FLEURS en-it): score hypotheses
    the same way."""
    return bool(refs) and all(r == M.normalize(r) for r in refs)


def scores(hyps: list[str], refs: list[str]) -> tuple[float, float]:
    """(BLEU, chrF), with hypotheses normalised like lowercase references."""
    if lowercase_refs(refs):
        hyps = [M.normalize(h) for h in hyps]
    return M.bleu_chrf(hyps, refs)


def tts_texts(eval_dir: Path, language: str, limit: int = 5) -> list[str]:
    """Reference sentences in ``language`` for the synthesiser's round trip: the FLEURS
    translations from English, or English's own source sentences."""
    if language == "en":
        path, key = eval_dir / "refs-en-es.jsonl", "src_ref"
    else:
        path, key = eval_dir / f"refs-en-{language}.jsonl", "tgt_ref"
    if path.is_file():
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        return [r[key] for r in rows][:limit]
    return [p.read_text(encoding="utf-8").strip()
            for p in sorted(eval_dir.glob(f"fleurs-{language}-*.txt"))][:limit]


def tts_round_trip(tts: Any, judge: Callable[[np.ndarray, int, str], str], texts: list[str],
                   language: str) -> float:
    """WER of the judge's transcript of each sentence synthesised alone (0.5 s of silence
    after it, as a call has)."""
    import jiwer

    refs, hyps = [], []
    for text in texts:
        chunks = list(tts.synthesize(text, language=language))
        audio = np.concatenate([*chunks, np.zeros(tts.sample_rate // 2, np.float32)])
        refs.append(M.normalize(text))
        hyps.append(M.normalize(judge(audio, tts.sample_rate, language)) or "<empty>")
    return round(float(jiwer.wer(refs, hyps)), 3)


async def run_fast(args: Any, engines: Any, clips: list[Any]) -> dict[str, Any]:
    """Replay each clip through a session on a simulated clock and score it."""
    from babelcall.benchmarks.run import git_commit, machine_info
    from babelcall.engines.languages import mt_label
    from babelcall.realtime.replay import replay
    from babelcall.realtime.session import SessionConfig

    source, target = args.source, args.target
    judge = functools.partial(hear, models_dir=args.models_dir)
    round_trip = not any(c.tgt_ref for c in clips)
    transcribes = engines.asr_task(source, target) == "transcribe"
    config = SessionConfig(source, target, voice=args.voice, clone_voice=args.clone != "off")
    rows = []
    for clip in clips:
        res = await replay(engines, config, clip.path, fast=True)
        said = M.committed_target(res.records)
        heard = judge(res.audio, res.rate, target)
        rows.append({"clip": clip.name, "source": M.committed_source(res.records),
                     "target": said, "heard": heard, "reference": clip.tgt_ref or None,
                     "wer": round(M.wer(clip.transcript, M.committed_source(res.records)), 3)
                     if transcribes else None})
    refs = [r["reference"] or r["target"] for r in rows]
    text_bleu, text_chrf = (None, None) if round_trip else \
        scores([r["target"] for r in rows], refs)
    heard_bleu, heard_chrf = scores([r["heard"] for r in rows], refs)
    tts_wer = tts_round_trip(engines.tts, judge, tts_texts(Path(args.eval_dir), target), target)
    date = datetime.now(UTC).strftime("%Y-%m-%d")
    figures = {
        "date": date, "commit": git_commit(), "mt": mt_label(engines, source, target),
        "clips": len(rows),
        "mode": "fast replay (simulated clock)", "voice": args.voice or "auto",
        "clone": args.clone, "round_trip": round_trip,
        "text_chrf": text_chrf, "text_bleu": text_bleu,
        "heard_chrf": heard_chrf, "heard_bleu": heard_bleu,
        "asr_wer": round(float(np.mean([r["wer"] for r in rows])), 3) if transcribes else None,
    }
    results = {"pair": args.pair, "figures": figures, "per_clip": rows,
               "tts": {target: {"wer": tts_wer, "date": date, "voice": args.voice or "default",
                                "sentences": len(tts_texts(Path(args.eval_dir), target))}},
               "commit": git_commit(), "machine": machine_info(args.device)}
    results["markdown"] = markdown(results)
    return results


def markdown(results: dict[str, Any]) -> str:
    f = results["figures"]
    (lang, tts), = results["tts"].items()
    what = ("round trip (no references: heard speech vs the committed translation)"
            if f["round_trip"] else "FLEURS references")
    lines = [f"### babelcall bench --fast — {results['pair']}, {f['clips']} clips, {f['mode']}",
             "", f"MT: {f['mt']}; scored against {what}; speech transcribed by an independent "
             f"Whisper base (beam 5, VAD, full window); voice cloning {f['clone']}; "
             f"{f['date']}, commit {results['commit']}.", "",
             "| text chrF | text BLEU | heard chrF | heard BLEU | ASR WER | TTS round-trip WER |",
             "|---|---|---|---|---|---|",
             "| " + " | ".join("–" if v is None else f"{v:g}" for v in (
                 f["text_chrf"], f["text_bleu"], f["heard_chrf"], f["heard_bleu"],
                 f["asr_wer"], tts["wer"])) + " |", ""]
    for row in results["per_clip"]:
        lines.append(f"- {row['clip']}: said “{row['target']}” — heard “{row['heard']}”")
    return "\n".join(lines) + "\n"


def pair_name(text: str) -> tuple[str, str]:
    m = re.fullmatch(r"([a-z]{2,3})-([a-z]{2,3})", text)
    if not m:
        from babelcall.realtime.errors import BabelcallError

        raise BabelcallError(f"--pair must look like en-es, got {text!r}")
    return m.group(1), m.group(2)
