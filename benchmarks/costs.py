"""The cost account on fast replays: ``python3 -m babelcall.benchmarks.costs --pair en-es``.

Why fast replays: on the simulated clock every frame waits for the models, so the same phrases
are read and (mostly) the same clauses made whatever else the machine runs, and CPU clocks
(realtime/cost.py) hardly move with other load; two configurations can be compared on a
shared machine. It overstates what real time costs (more recogniser passes, every speculative
clause made). ``--threads 2 --vad-chunk-s 0.02`` is the configuration before issue 21."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path
from typing import Any


async def account(pair: str, eval_dir: Path, threads: int, clips: int | None
                  ) -> dict[str, Any]:
    from babelcall.benchmarks import run as R
    from babelcall.benchmarks.pairs import pair_name
    from babelcall.engines.registry import Engines
    from babelcall.realtime.clock import FakeClock
    from babelcall.realtime.cost import per_audio
    from babelcall.realtime.replay import _frames, _run  # a fast replay on our own scheduler
    from babelcall.realtime.scheduler import Scheduler
    from babelcall.realtime.session import SessionConfig

    source, target = pair_name(pair)
    engines = Engines.load(source, target, threads=threads)
    found = R.find_clips(eval_dir, source, target, clips)
    load = os.getloadavg()
    async with Scheduler(engines, clock=FakeClock()) as sched:
        before, heard_s, made_s = sched.cost.cpu_s(), 0.0, 0.0
        for clip in found:
            res = await _run(sched, SessionConfig(source, target), _frames(clip.path), True,
                             True, None, None)
            heard_s += res.input_s
            made_s += R.speech_made_s(res)
        spent = per_audio(before, sched.cost.cpu_s(), heard_s, sched.cost.cores)
    return {"pair": pair, "clips": len(found), "machine": sched.cost.machine,
            "threads": threads, "compute_slots": sched.gate.slots,
            "load_average_before": load, "load_average_after": os.getloadavg(),
            "speech_made_s": round(made_s, 2), **spent}


def main() -> None:
    from babelcall.benchmarks.cli import DEFAULT_EVAL
    from babelcall.realtime.stages import listen

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pair", default="en-es")
    p.add_argument("--clips", type=int, default=None)
    p.add_argument("--eval-dir", default=os.environ.get("BABELCALL_EVAL", str(DEFAULT_EVAL)))
    p.add_argument("--threads", type=int, default=0, help="threads per model (0: defaults)")
    p.add_argument("--vad-chunk-s", type=float, default=listen.VAD_CHUNK_S,
                   help="audio handed to the VAD per call (0.02: every frame)")
    args = p.parse_args()
    listen.VAD_CHUNK_S = args.vad_chunk_s
    out = asyncio.run(account(args.pair, Path(args.eval_dir), args.threads, args.clips))
    print(json.dumps({**out, "vad_chunk_s": args.vad_chunk_s}, indent=1))


if __name__ == "__main__":
    main()
