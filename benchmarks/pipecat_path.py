"""The benchmark over the pipecat path: each clip fed in real time (20 ms PCM16 frames, as a
pipecat transport's input delivers them) into a real pipecat pipeline, ``InterpreterProcessor``
-> a listener at the end of the pipeline, on the same scheduler as the in-process run.

What it adds to the in-process path is pipecat itself: its frame queues and processor tasks on
the way in and out, the PCM16 conversions, the processor's event-to-frame step. Both paths
are timed the same way: a clause "plays" when it reaches its listener (the in-process replay's
playout, here the last processor of the pipeline) and the listener is free, on one
``PlayoutClock`` each; the final-clause latency runs from the arrival of the phrase's last
word to that moment.

    python -m babelcall.benchmarks.pipecat_path --pair en-es --clips 3

runs both paths on the same clips, alternating clip by clip (so load that drifts during the
run falls on both), and prints the final-clause latency p50 of each and what pipecat adds.
``babelcall bench --pipecat`` adds the same path to the full benchmark."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from babelcall.benchmarks import measures as M
from babelcall.benchmarks.run import Clip
from babelcall.engines.registry import Engines
from babelcall.realtime.audio import SPEECH_RATE, load_file
from babelcall.realtime.budget import LatencyBudget
from babelcall.realtime.playout import PlayoutClock
from babelcall.realtime.replay import FRAME_S, ReplayResult, replay
from babelcall.realtime.scheduler import Scheduler
from babelcall.realtime.session import SessionConfig

Record = dict[str, Any]


async def pipecat_replay(sched: Scheduler, clip_path: Path, source: str,
                         target: str) -> ReplayResult:
    """One clip through a pipecat pipeline in real time; the result reads like an in-process
    ``replay``'s (records with the listener's play times, the audio on its timeline)."""
    from pipecat.frames.frames import EndFrame, Frame, InputAudioRawFrame, TTSAudioRawFrame
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineParams, PipelineWorker
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
    from pipecat.workers.runner import WorkerRunner

    from babelcall.transports.pipecat import InterpreterProcessor

    class Listener(FrameProcessor):
        """The end of the pipeline: when each chunk of speech would start playing."""

        def __init__(self) -> None:
            super().__init__()
            self.clock = PlayoutClock()
            self.placed: list[tuple[int, dict[str, Any], np.ndarray]] = []
            self.arrived: dict[tuple[int, int, int], int] = {}  # chunk -> when it got here

        async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            if isinstance(frame, TTSAudioRawFrame) and "babelcall" in frame.metadata:
                pcm = np.frombuffer(frame.audio, "<i2").astype(np.float32) / 32767
                now, meta = time.monotonic_ns(), frame.metadata["babelcall"]
                self.arrived[(meta["utt"], meta["clause"], meta["seq"])] = now
                start = self.clock.place(now, len(pcm) / frame.sample_rate)
                self.placed.append((start, frame.metadata["babelcall"], pcm))
            await self.push_frame(frame, direction)

    pcm = (load_file(clip_path, SPEECH_RATE) * 32767).astype("<i2")
    step = int(FRAME_S * SPEECH_RATE)
    frames = [pcm[i:i + step].tobytes() for i in range(0, len(pcm), step)]
    records: list[Record] = []
    proc = InterpreterProcessor(sched, source, target, on_record=records.append)
    listener = Listener()
    worker = PipelineWorker(Pipeline([proc, listener]),
                            params=PipelineParams(enable_metrics=True), idle_timeout_secs=None)
    runner = WorkerRunner(handle_sigint=False)

    origin: list[int] = []  # the session's time 0, as its records count it
    entered: list[int] = []  # when each frame went into the pipeline
    started = asyncio.Event()

    @worker.event_handler("on_pipeline_started")
    async def on_started(_worker: Any, _frame: Any) -> None:
        started.set()

    async def feed() -> None:
        """As the in-process replay paces: frame i goes in when its last sample is due."""
        await started.wait()  # a transport delivers once the pipeline runs
        t0 = time.monotonic()
        for i, data in enumerate(frames):
            await asyncio.sleep(max(0.0, t0 + (i + 1) * FRAME_S - time.monotonic()))
            entered.append(time.monotonic_ns())
            await worker.queue_frame(InputAudioRawFrame(audio=data, sample_rate=SPEECH_RATE,
                                                        num_channels=1))
        origin.extend(sp.origin_ns for group in proc.speakers.values() for sp in group)
        await worker.queue_frame(EndFrame())

    feeding = asyncio.create_task(feed())
    await runner.add_workers(worker)
    await runner.run()
    await feeding
    return _with_listener(records, listener.placed, len(frames) * FRAME_S,
                          origin[0] if origin else None, sched.engines.tts.sample_rate,
                          listener.arrived, entered)


def _with_listener(records: list[Record], placed: list[tuple[int, dict[str, Any], np.ndarray]],
                   input_s: float, origin: int | None, rate: int,
                   arrived: dict[tuple[int, int, int], int],
                   entered: list[int]) -> ReplayResult:
    """Records as the in-process replay writes them: each phrase's ``playing`` hop (so its
    final-clause latency) is its final clause's first chunk at the listener, each chunk's
    ``play_start_ms`` its start there (the session's clock and the listener's are both the
    monotonic clock; ``origin``: the session's time 0). ``pipecat_out_ms``: from the session
    making the chunk to the chunk reaching the end of the pipeline (pipecat's way out).
    The final-clause latency runs from the moment the frame holding the last word's end went
    into the pipeline (``entered``), so pipecat's way in counts too (``pipecat_in_ms``: from
    there to the session stamping that sample's arrival)."""
    ends = M.phrase_ends(records)
    first = {(m["utt"], m["clause"]): ns for ns, m, _ in placed if m["seq"] == 0}
    starts = {(m["utt"], m["clause"], m["seq"]): ns for ns, m, _ in placed}
    out: list[Record] = []
    for r in records:
        if r["type"] == "timing" and r.get("last_word_ns") is not None:
            ns = first.get((r["utt"], r["clause"]))
            if ns is not None:
                ms = round((ns - r["last_word_ns"]) / 1e6, 1)
                r = {**r, "hops_ms": {**r["hops_ms"], "playing": ms}, "final_clause_ms": ms}
                if entered and r["utt"] in ends:
                    went_in = entered[min(len(entered) - 1, int(ends[r["utt"]] / FRAME_S))]
                    r["pipecat_in_ms"] = round((r["last_word_ns"] - went_in) / 1e6, 1)
                    r["final_clause_ms"] = round((ns - went_in) / 1e6, 1)
        elif r["type"] == "synth_audio" and origin is not None:
            key = (r["utt"], r["clause"], r["seq"])
            ns = starts.get(key)
            if ns is not None:
                r = {**r, "play_start_ms": round((ns - origin) / 1e6, 1),
                     "pipecat_out_ms": round((arrived[key] - origin) / 1e6 - r["wall_ms"], 1)}
        out.append(r)
    audio = np.zeros(0, np.float32)
    if placed and origin is not None:
        end = max((s - origin) / 1e9 + len(p) / rate for s, _, p in placed)
        audio = np.zeros(int(np.ceil(max(end, input_s) * rate)) + 1, np.float32)
        for s, _, p in placed:
            i = max(0, round((s - origin) / 1e9 * rate))
            chunk = p[: len(audio) - i]
            audio[i:i + len(chunk)] = chunk
    return ReplayResult(records=out, audio=audio, rate=rate, input_s=input_s)


async def compare(engines: Engines, clips: list[Clip], source: str, target: str, *,
                  budget: LatencyBudget | None = None,
                  runs: list[tuple[ReplayResult, ReplayResult]] | None = None
                  ) -> dict[str, Any]:
    """Both paths on the same clips, alternating clip by clip on one scheduler (with
    ``budget``, else the default): final-clause and first-audio latency percentiles of each,
    and what pipecat adds at p50. ``runs`` gets each clip's (in-process, pipecat) replays."""
    inproc: list[float] = []
    out_hop: list[float] = []
    in_hop: list[float] = []
    piped: list[float] = []
    first_in: list[float] = []
    first_pc: list[float] = []
    async with Scheduler(engines, budget=budget) as sched:
        for clip in clips:
            await settled(sched)
            a = await replay(engines, SessionConfig(source, target), clip.path, scheduler=sched)
            await settled(sched)
            b = await pipecat_replay(sched, clip.path, source, target)
            if runs is not None:
                runs.append((a, b))
            inproc += M.final_clause_latencies(a.records)
            piped += M.final_clause_latencies(b.records)
            first_in += M.first_audio_latencies(a.records)
            first_pc += M.first_audio_latencies(b.records)
            out_hop += [r["pipecat_out_ms"] for r in b.records if "pipecat_out_ms" in r]
            in_hop += [r["pipecat_in_ms"] for r in b.records if "pipecat_in_ms" in r]
    fc_in, fc_pc = M.percentiles(inproc), M.percentiles(piped)
    added = None if fc_in["p50"] is None or fc_pc["p50"] is None else \
        round(fc_pc["p50"] - fc_in["p50"], 1)
    return {"clips": [c.name for c in clips],
            "final_clause_ms": {"in_process": fc_in, "pipecat": fc_pc},
            "first_audio_ms": {"in_process": M.percentiles(first_in),
                               "pipecat": M.percentiles(first_pc)},
            "pipecat_adds_p50_ms": added, "pipecat_in_hop_ms": M.percentiles(in_hop),
            "pipecat_out_hop_ms": M.percentiles(out_hop)}


async def settled(sched: Scheduler) -> None:
    """Until the scheduler has shed its lateness (it decays while idle): each run starts from
    the same state, and is not refused as Overloaded after a run a loaded machine made late."""
    while sched.level > 0:
        await asyncio.sleep(0.25)


def markdown(cmp: dict[str, Any]) -> str:
    fc = cmp["final_clause_ms"]
    return ("\n### pipecat path vs in-process (same clips, alternating)\n\n"
            "| final-clause latency, ms | p50 | p90 | n |\n|---|---|---|---|\n"
            f"| in-process | {fc['in_process']['p50']} | {fc['in_process']['p90']} | "
            f"{fc['in_process']['n']} |\n"
            f"| pipecat pipeline | {fc['pipecat']['p50']} | {fc['pipecat']['p90']} | "
            f"{fc['pipecat']['n']} |\n\n"
            f"pipecat adds {cmp['pipecat_adds_p50_ms']} ms at p50. Its own hops: the way in "
            f"(a frame queued into the pipeline -> the session stamps it) p50 "
            f"{cmp['pipecat_in_hop_ms']['p50']} ms, p90 {cmp['pipecat_in_hop_ms']['p90']} ms "
            f"({cmp['pipecat_in_hop_ms']['n']} phrase ends); the way out (the session makes a "
            f"chunk -> it reaches the end of the pipeline) p50 "
            f"{cmp['pipecat_out_hop_ms']['p50']} ms, p90 {cmp['pipecat_out_hop_ms']['p90']} ms "
            f"({cmp['pipecat_out_hop_ms']['n']} chunks).\n")


def main(argv: list[str] | None = None) -> int:
    from loguru import logger

    from babelcall.benchmarks.pairs import pair_name
    from babelcall.benchmarks.run import find_clips
    from babelcall.clients.cli import engine_args, load_engines

    p = argparse.ArgumentParser(prog="python -m babelcall.benchmarks.pipecat_path",
                                description="final-clause latency: pipecat path vs in-process")
    p.add_argument("--pair", default="en-es")
    p.add_argument("--clips", type=int, default=3)
    p.add_argument("--eval-dir", default=str(Path(__file__).resolve().parents[2] / "shared"
                                             / "eval" / "fleurs"))
    p.add_argument("--json", help="also write the figures here")
    p.add_argument("--voice-every-clause", action="store_true",
                   help="never caption a late clause instead of voicing it (on a loaded "
                        "machine the two paths would otherwise voice different phrases)")
    engine_args(p, languages=False)
    args = p.parse_args(argv)
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    args.source, args.target = pair_name(args.pair)
    clips = find_clips(Path(args.eval_dir), args.source, args.target, args.clips)
    engines = load_engines(args)
    budget = LatencyBudget(max_speech_lag_s=3600) if args.voice_every_clause else None
    result = asyncio.run(compare(engines, clips, args.source, args.target, budget=budget))
    print(markdown(result), end="")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
