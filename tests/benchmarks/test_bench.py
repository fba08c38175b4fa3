"""The bench's smoke variant on one real clip with the real engines: the report is complete
and sane. Speed is not asserted (numbers come from the benchmark, not from tests)."""

import asyncio
import json

import pytest
from conftest import eval_dir

from babelcall.benchmarks import measures as M
from babelcall.clients.cli import build_parser


def test_measures_on_a_hand_made_log():
    recs = [
        {"type": "transcript", "utt": 0, "committed": "hello there", "wall_ms": 1500,
         "words": [["hello", 0.5, 0.9], ["there", 1.0, 1.4]]},
        {"type": "translation", "utt": 0, "committed": "hola", "wall_ms": 1600},
        {"type": "translation", "utt": 0, "committed": " ahí", "wall_ms": 2000},
        {"type": "synth_audio", "utt": 0, "wall_ms": 2100, "play_start_ms": 2100,
         "duration_ms": 800},
    ]
    assert M.first_audio_latencies(recs) == [pytest.approx(700)]
    assert M.offsets(recs) == (pytest.approx(1600), pytest.approx(1500))
    assert M.committed_target(recs) == "hola ahí"
    # two target words against a 1.4 s source and a 2-word reference: d - i*700
    assert M.laal([1600, 2000], 1400, 2) == pytest.approx(1600)
    assert M.wer("hello there", "hello") == pytest.approx(0.5)


def test_soak_memory_slope_leaves_out_the_warm_up():
    from babelcall.benchmarks.run import rss_slope

    warm = [(t, 1000.0 + t) for t in range(0, 60, 10)]  # +1 MiB/s while models warm up
    flat = [(t, 1060.0 + 0.05 * (t - 60)) for t in range(60, 300, 10)]  # then +3 MiB/min
    assert rss_slope(warm + flat, 60) == pytest.approx(3.0)
    assert rss_slope(warm + flat, 0) > 9  # the warm-up would dominate
    assert rss_slope(warm, 60) is None  # too few samples after it


def test_bench_smoke_report_is_complete_and_sane(engines, tmp_path):
    from babelcall.benchmarks.cli import run_bench

    args = build_parser().parse_args(["bench", "--smoke", "--pair", "en-es", "--out",
                                      str(tmp_path), "--eval-dir", str(eval_dir())])
    results = asyncio.run(run_bench(args, engines=engines))
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["clips"] == 1 and saved["machine"]["cores"] >= 1
    for side in ("streaming", "webrtc", "cascade"):
        agg = saved[side]
        assert agg["first_audio_ms"]["n"] >= 1
        assert agg["first_audio_ms"]["p50"] > 0
        assert agg["start_offset_ms"]["p50"] > 0
        assert 0 <= agg["bleu"] <= 100 and 0 <= agg["chrf"] <= 100
        assert 0 <= agg["asr_bleu"] <= 100 and 0 <= agg["wer"] <= 1.5
        sim = agg.get("speaker_similarity")
        assert sim is None or -1 <= sim <= 1
    assert saved["streaming"]["laal_ms"]["p50"] is not None
    assert saved["webrtc"]["laal_ms"]["p50"] is not None
    for path in ("webrtc", "janus"):  # the network paths, timed at their listeners
        assert saved[path]["heard_after_ms"]["n"] >= 1
        assert saved[path]["heard_after_ms"]["p50"] > 0
        assert saved[path]["chrf"] > 20 and saved[path]["asr_chrf"] > 15
    # the loopback heard Spanish about the clip (not silence, not the English input)
    assert saved["webrtc"]["chrf"] > 20 and saved["webrtc"]["asr_chrf"] > 15
    assert set(saved["cost"]["stage_rtf"]) >= {"asr", "mt", "tts"}
    assert saved["cost"]["peak_rss_mib"] > 100
    one = saved["cost"]["account"]["1"]  # the cost account, by the threads' CPU clocks
    assert {"vad", "asr", "tts"} <= set(one["cpu_per_audio_s"])
    assert 0 < one["share_of_machine"] and "cores" in saved["cost"]["machine"]
    ablation = saved["voice_ablation"]  # one clip per voice engine, judge-scored
    assert set(ablation["corpus"]) == {"off", "dsp", "praat"}
    assert len(ablation["rows"]) == 3
    for row in ablation["rows"]:
        assert 0 <= row["asr_chrf"] <= 100 and row["heard_text"]
        assert row["similarity"] is None or -1 <= row["similarity"] <= 1
    assert set(ablation["verdict"]) == {"dsp", "praat"}
    table = (tmp_path / "results.md").read_text()
    assert "| BLEU |" in table and "WebRTC loopback" in table and "Janus" in table
    assert "Voice ablation" in table and "fast replay" in table
    assert "CPU-seconds per second of speech" in table and "share of the machine" in table
    assert (tmp_path / "latency_cdf.png").stat().st_size > 1000
    assert results["markdown"].startswith("### babelcall bench")


def test_source_wer_leaves_out_sessions_that_had_no_source_transcript():
    from babelcall.benchmarks.run import ClipScore, aggregate

    def clip(wer):
        return ClipScore("c", 1.0, [], None, None, None, wer, "src", "hola", "hola")

    assert aggregate([clip(0.2), clip(None)], ["hola", "hola"])["wer"] == pytest.approx(0.2)
    assert aggregate([clip(None)], ["hola"])["wer"] is None  # Whisper translated: no WER


def test_the_cost_table_shows_each_stage_for_one_and_two_speakers():
    from babelcall.benchmarks.report import cost_table

    run = {"cpu_per_audio_s": {"asr": 0.2, "tts": 0.5}, "total_cpu_per_audio_s": 0.7,
           "share_of_machine": 0.35}
    two = {**run, "cpu_per_audio_s": {"asr": 0.3, "tts": 1.0, "mt": 0.01},
           "share_of_machine": 0.7}
    lines = cost_table({"machine": "AMD EPYC, 2 cores", "account": {"1": run, "2": two}})
    assert "AMD EPYC, 2 cores" in lines[1]
    assert "| asr | 0.2 | 0.3 |" in lines and "| mt | – | 0.01 |" in lines
    assert lines[-1] == "| share of the machine | 35 % | 70 % |"
    shed = cost_table({"account": {"1": {**run, "speech_made_s": 12.5, "audio_s": 20.0,
                                         "skipped": 3}}})
    assert shed[-2:] == ["| speech made, s (of speech heard, s) | 12 (20) |",
                         "| clauses only captioned | 3 |"]
