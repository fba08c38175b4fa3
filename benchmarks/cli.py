"""``babelcall bench``: the numbers users compare us by (see benchmarks/run.py)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DEFAULT_EVAL = Path(__file__).resolve().parents[2] / "shared" / "eval" / "fleurs"


def register(sub: Any) -> None:
    from babelcall.clients.cli import engine_args

    p = sub.add_parser("bench", help="latency/quality/scale benchmark on FLEURS clips")
    p.add_argument("--pair", default="en-es", help="source-target, e.g. en-es")
    p.add_argument("--clips", type=int, default=None, help="use the first N clips (default all)")
    p.add_argument("--eval-dir", default=os.environ.get("BABELCALL_EVAL", str(DEFAULT_EVAL)))
    p.add_argument("--out", default="bench-results", help="output folder")
    p.add_argument("--budget-ms", type=float, default=1000.0,
                   help="p95 first-audio target for the concurrency sweep")
    p.add_argument("--max-sessions", type=int, default=16)
    p.add_argument("--no-sweep", action="store_true", help="skip the concurrency sweep")
    p.add_argument("--smoke", action="store_true", help="one clip, no sweep (CI)")
    p.add_argument("--no-webrtc", action="store_true",
                   help="skip the WebRTC loopback run (aiortc caller <-> babelcall serve)")
    p.add_argument("--no-janus", action="store_true",
                   help="skip the run through a private Janus (babelcall join's bot)")
    p.add_argument("--pipecat", action="store_true",
                   help="also run the clips through a pipecat pipeline (InterpreterProcessor) "
                        "and compare its final-clause latency with the in-process run's")
    p.add_argument("--soak-s", type=float, default=0.0,
                   help="also run --soak-sessions callers on a call of this many seconds "
                        "made of the clips, sampling their lag (0: skip)")
    p.add_argument("--soak-sessions", type=int, default=4)
    p.add_argument("--voice-engines", default="off,dsp,praat",
                   help="voice engines compared in the voice ablation (fast replays), "
                        "comma-separated; 'off' is the fixed-voice baseline")
    p.add_argument("--no-voice-ablation", action="store_true", help="skip the voice ablation")
    p.add_argument("--cost-sessions", type=int, default=2,
                   help="the cost account also for this many speakers at once (real time; "
                        "0 or 1: only the single speaker of the in-process run)")
    p.add_argument("--fast", action="store_true",
                   help="quality only: deterministic replays on a simulated clock, scored by an "
                        "independent transcriber (no latency, network paths or sweep)")
    p.add_argument("--longform", action="store_true",
                   help="keep-pace bench: the clips joined into one talk per pair (--pair may "
                        "list several: en-es,es-en,en-pt); with --fast compute-free")
    p.add_argument("--dialogue", action="store_true",
                   help="with --longform: also two speakers of the first pair taking turns")
    p.add_argument("--dialogue-only", action="store_true",
                   help="with --longform: only the dialogue")
    p.add_argument("--repeat", type=_at_least_one, default=1,
                   help="with --longform: play each talk this many times and report each "
                        "pair's median too (real time moves by seconds from run to run)")
    p.add_argument("--room", action="store_true",
                   help="a room on the real models in real time: one speaker per --room-langs "
                        "language taking turns, each heard by all the others (room.json/.md)")
    p.add_argument("--room-langs", default="en,es,fr,pt",
                   help="with --room: the speakers' languages, comma-separated")
    p.add_argument("--record", action="store_true",
                   help="with --fast: store the figures for babelcall languages")
    engine_args(p, languages=False)
    p.set_defaults(func=cmd_bench)


def _at_least_one(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {n}")
    return n


def cmd_bench(args: argparse.Namespace) -> int:
    results = asyncio.run(run_bench(args))
    print(results["markdown"], end="")
    print(f"results in {args.out}/", file=sys.stderr)
    return 0


async def run_bench(args: argparse.Namespace, engines: Any = None) -> dict[str, Any]:
    """``engines``: already loaded engines to use (tests share theirs); else loaded from args."""
    from babelcall.benchmarks import run as R
    from babelcall.benchmarks.pairs import pair_name
    from babelcall.benchmarks.report import markdown, plots
    from babelcall.clients.cli import load_engines
    from babelcall.engines.languages import mt_label
    from babelcall.realtime.cost import machine_name, per_audio
    from babelcall.realtime.replay import replay
    from babelcall.realtime.scheduler import Scheduler
    from babelcall.realtime.session import SessionConfig

    if args.room:
        from babelcall.benchmarks.room import room_langs, run_room_bench

        args.source, args.target = room_langs(args.room_langs)[:2]
        return await run_room_bench(args, engines or load_engines(args))
    if args.longform:
        from babelcall.benchmarks.longform import run_longform

        args.source, args.target = pair_name(args.pair.split(",")[0])
        return await run_longform(args, engines or load_engines(args))
    args.source, args.target = pair_name(args.pair)
    clips = R.find_clips(Path(args.eval_dir), args.source, args.target,
                         1 if args.smoke else args.clips)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    engines = engines or load_engines(args)
    engines.check_pair(args.source, args.target)
    if args.fast:
        return await _fast(args, engines, clips, out)
    cpu0, wall0 = sum(os.times()[:2]), time.monotonic()

    streaming, stream_runs = [], []
    async with Scheduler(engines) as sched:
        spent0 = sched.cost.cpu_s()  # the cost account of one speaker (realtime/cost.py)
        for clip in clips:
            res = await replay(engines, SessionConfig(args.source, args.target), clip.path,
                               scheduler=sched)
            stream_runs.append(res)
            streaming.append(R.score_stream(engines, clip, res, args.target))
        account = {"1": per_audio(spent0, sched.cost.cpu_s(),
                                  sum(r.input_s for r in stream_runs), sched.cost.cores)}
        account["1"].update(  # what was shed costs no CPU: say it beside the figures
            skipped=sum(r.metrics.get("skipped", 0) for r in stream_runs),
            speech_made_s=round(sum(R.speech_made_s(r) for r in stream_runs), 2))
    webrtc = None
    if not args.no_webrtc:
        from babelcall.benchmarks.loopback import run_loopback

        webrtc = await run_loopback(engines, clips, args.source, args.target)
    if getattr(args, "pipecat", False):
        from babelcall.benchmarks.pipecat_path import compare

        pipecat_cmp = await compare(engines, clips, args.source, args.target)
    janus = None
    if not args.no_janus:
        from babelcall.benchmarks.janus_path import run_janus

        janus = await run_janus(engines, clips, args.source, args.target)
    if engines.asr_task(args.source, args.target) == "translate":
        for s in [*streaming, *(webrtc or []), *(janus or [])]:
            s.wer = None  # the session's "transcript" is Whisper's English, not the source
    cascade = [R.run_cascade(engines, c, args.source, args.target) for c in clips]
    refs = [c.tgt_ref for c in clips] if any(c.tgt_ref for c in clips) else None  # round trip
    stage_rtf: dict[str, float] = {}
    total_in = sum(r.input_s for r in stream_runs)
    for r in stream_runs:
        for k, v in r.metrics.get("stage_total_s", {}).items():
            stage_rtf[k] = stage_rtf.get(k, 0.0) + v
    results: dict[str, Any] = {
        "pair": args.pair, "clips": len(clips), "mode": "real-time pacing",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": R.git_commit(), "machine": R.machine_info(args.device),
        "models": {"asr": args.asr_model, "mt": mt_label(engines, args.source, args.target),
                   "tts": args.tts_model},
        "budget_ms": args.budget_ms,
        "streaming": R.aggregate(streaming, refs), "cascade": R.aggregate(cascade, refs),
        "per_clip": [vars(s) for s in streaming],
        "per_clip_cascade": [vars(s) for s in cascade],
        **({"webrtc": R.aggregate(webrtc, refs), "per_clip_webrtc": [vars(s) for s in webrtc]}
           if webrtc is not None else {}),
        **({"janus": R.aggregate(janus, refs), "per_clip_janus": [vars(s) for s in janus]}
           if janus is not None else {}),
        "cost": {"stage_rtf": {k: round(v / max(total_in, 1e-9), 3)
                               for k, v in stage_rtf.items()},
                 "machine": machine_name(), "account": account,
                 **R.resources(cpu0, wall0)},
    }
    if args.cost_sessions > 1 and not args.smoke:
        account[str(args.cost_sessions)] = await R.cost_account(
            engines, clips, args.source, args.target, sessions=args.cost_sessions)
    if not (args.smoke or args.no_sweep):
        rows = await R.sweep(engines, clips, args.source, args.target,
                             budget_ms=args.budget_ms, max_sessions=args.max_sessions)
        results["sweep"] = rows
        ok = [r["sessions"] for r in rows if r["first_audio_ms"]["p95"] is not None
              and r["first_audio_ms"]["p95"] <= args.budget_ms]
        results["max_sessions_within_budget"] = max(ok, default=0)
    if args.soak_s > 0 and not args.smoke:
        call = R.long_call(clips, args.soak_s, out / "soak_call.wav")
        results["soak"] = await R.soak(engines, call, args.source, args.target,
                                       args.soak_sessions)
        call.unlink(missing_ok=True)
    if not args.no_voice_ablation:
        from babelcall.benchmarks.ablation import run_ablation

        results["voice_ablation"] = await run_ablation(
            engines, clips, args.source, args.target,
            tuple(k.strip() for k in args.voice_engines.split(",") if k.strip()))
    results["cost"].update(R.resources(cpu0, wall0))
    results["markdown"] = markdown(results)
    if getattr(args, "pipecat", False):
        from babelcall.benchmarks.pipecat_path import markdown as pipecat_markdown

        results["pipecat"] = pipecat_cmp
        results["markdown"] += pipecat_markdown(pipecat_cmp)
    raw = {"streaming_latencies": [x for s in streaming for x in s.first_audio_ms],
           "cascade_latencies": [x for s in cascade for x in s.first_audio_ms],
           "webrtc_latencies": [x for s in webrtc or [] for x in s.first_audio_ms]}
    results["plots"] = [str(p) for p in plots(results, raw, out)]
    (out / "results.json").write_text(json.dumps(results, indent=1, ensure_ascii=False))
    (out / "results.md").write_text(results["markdown"], encoding="utf-8")
    return results


async def _fast(args: argparse.Namespace, engines: Any, clips: list[Any], out: Path
                ) -> dict[str, Any]:
    from babelcall.benchmarks.pairs import run_fast
    from babelcall.engines.languages import record_quality

    results = await run_fast(args, engines, clips)
    (out / "results.json").write_text(json.dumps(results, indent=1, ensure_ascii=False))
    (out / "results.md").write_text(results["markdown"], encoding="utf-8")
    if args.record:
        record_quality(args.pair, results["figures"], results["tts"])
    return results
