"""The bench's pipecat path (benchmarks/pipecat_path.py) on one short real clip: both paths
give a final-clause latency from the same kind of record, and the pipecat run's records read
like the in-process replay's. Speed is not asserted (numbers come from the benchmark)."""

import asyncio

from conftest import eval_dir

from babelcall.benchmarks import measures as M
from babelcall.benchmarks.pipecat_path import compare, markdown
from babelcall.benchmarks.run import find_clips
from babelcall.realtime.budget import LatencyBudget

# every clause voiced, however loaded the machine (the default captions one heard > 10 s late)
PATIENT = LatencyBudget(max_speech_lag_s=120)


def _quiet_pipecat() -> None:
    """pipecat logs through loguru at DEBUG to the stderr it found at import: keep warnings,
    written to whatever stderr is current (so pytest captures them with the test)."""
    import sys

    from loguru import logger

    logger.remove()
    logger.add(lambda message: sys.stderr.write(message), level="WARNING")


_quiet_pipecat()


def test_pipecat_path_against_in_process(engines):
    clips = [c for c in find_clips(eval_dir(), "en", "es", None) if c.name == "fleurs-en-004"]
    runs: list = []
    result = asyncio.run(compare(engines, clips, "en", "es", budget=PATIENT, runs=runs))
    fc = result["final_clause_ms"]
    assert fc["in_process"]["n"] >= 1 and fc["pipecat"]["n"] >= 1, result
    assert result["pipecat_adds_p50_ms"] == round(
        fc["pipecat"]["p50"] - fc["in_process"]["p50"], 1)
    assert "pipecat adds" in markdown(result) and result["pipecat_out_hop_ms"]["n"] >= 1
    assert result["pipecat_in_hop_ms"]["n"] >= 1
    (_, piped), = runs
    timings = M.timings(piped.records)
    assert timings and all(t["hops_ms"]["playing"] >= t["hops_ms"]["handed"] for t in timings)
    assert all("play_start_ms" in r for r in piped.records if r["type"] == "synth_audio")
    assert M.first_audio_latencies(piped.records)
    assert piped.audio.any() and piped.input_s > 4
