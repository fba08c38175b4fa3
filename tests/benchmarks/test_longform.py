"""The long-form bench (``babelcall bench --longform``): its word-by-word lag on hand-made
logs, and a short real talk and dialogue on the real engines (fast replay). No speed is
asserted: the figures are the benchmark's."""

import asyncio
import json

import pytest
from conftest import eval_dir, load_clip

from babelcall.benchmarks import longform as L
from babelcall.clients.cli import build_parser


def _audio(clause, utt, s, e, play, dur, text="x"):
    return {"type": "synth_audio", "utt": utt, "src_start": s, "src_end": e, "clause": clause,
            "wall_ms": play * 1000, "play_start_ms": play * 1000, "duration_ms": dur * 1000,
            "text": text}


def test_each_commit_covers_only_the_source_it_added():
    """A phrase's commits all span from its start: the second unit starts where the first
    ended, and its two pieces play one after the other."""
    recs = [_audio(1, 0, 1.0, 2.0, 2.5, 1.0), _audio(2, 0, 1.0, 4.0, 4.5, 1.0),
            _audio(3, 0, 1.0, 4.0, 5.5, 2.0)]
    units = L.units(recs)
    assert [(u.start_s, u.end_s) for u in units] == [(1.0, 2.0), (2.0, 4.0)]
    second = units[1]
    assert second.heard_at(2.0) == pytest.approx(4.5)   # its first word: as it starts
    assert second.heard_at(3.0) == pytest.approx(6.0)   # halfway through its 3 s of audio
    assert second.heard_at(4.0) == pytest.approx(7.5)   # its last word: at its end


def test_word_lags_sentence_lags_and_captions():
    recs = [_audio(1, 0, 1.0, 2.0, 2.5, 1.0), _audio(2, 0, 1.0, 4.0, 4.5, 3.0),
            {"type": "speech_skipped", "utt": 1, "src_start": 6.0, "src_end": 8.0}]
    words = [("a", 1.0, 1.5), ("b", 1.6, 2.0), ("c", 3.5, 4.0), ("d", 6.5, 7.0),
             ("e", 12.0, 12.5)]  # "e": no clause near it
    lags, captions = L.word_lags(recs, words)
    assert captions == 1
    assert [round(t, 2) for t, _ in lags] == [1.5, 2.0, 4.0]
    assert [round(x, 2) for _, x in lags] == [1.5, 1.5, 3.5]
    sentences = [L.Sentence("s1", 1.0, 2.0, "", ""), L.Sentence("s2", 3.0, 4.0, "", ""),
                 L.Sentence("s3", 11.0, 13.0, "", "")]
    assert L.sentence_lags(lags, sentences) == [1.5, 3.5, None]
    assert L.slope([(0, 1), (10, 2), (20, 3)]) == pytest.approx(0.1)
    assert L.slope([(0, 1)]) is None


def _run(pair, p50, ends, after, chrf, slope=0.01):
    return {"pair": pair, "ear_voice_s": {"p50": p50, "p90": p50 + 1}, "slope_s_per_s": slope,
            "sentence_end_lag_s": ends, "after_talk_s": after, "heard_chrf": chrf}


@pytest.mark.parametrize("runs, want", [
    # three runs of one pair: the middle of each figure, the worst sentence end per run
    ([_run("en-es", 6.0, [5.0, 7.0], 7.5, 47.0), _run("en-es", 5.0, [4.0, None], 8.2, 46.0),
      _run("en-es", 7.0, [9.0, 6.0], 6.9, 48.0)],
     [{"pair": "en-es", "runs": 3, "ear_voice_p50_s": 6.0, "ear_voice_p90_s": 7.0,
       "slope_s_per_s": 0.01, "worst_sentence_end_s": 7.0, "after_talk_s": 7.5,
       "after_talk_range_s": [6.9, 8.2], "heard_chrf": 47.0}]),
    # two pairs, two runs each: each pair on its own; an even count takes the mean of the two
    ([_run("en-es", 2.0, [3.0], 2.0, 40.0), _run("es-en", 4.0, [2.0], None, 30.0),
      _run("en-es", 3.0, [2.0], 3.0, 41.0), _run("es-en", 5.0, [None], 1.0, 32.0)],
     [{"pair": "en-es", "runs": 2, "ear_voice_p50_s": 2.5, "ear_voice_p90_s": 3.5,
       "slope_s_per_s": 0.01, "worst_sentence_end_s": 2.5, "after_talk_s": 2.5,
       "after_talk_range_s": [2.0, 3.0], "heard_chrf": 40.5},
      {"pair": "es-en", "runs": 2, "ear_voice_p50_s": 4.5, "ear_voice_p90_s": 5.5,
       "slope_s_per_s": 0.01, "worst_sentence_end_s": 2.0, "after_talk_s": 1.0,
       "after_talk_range_s": [1.0, 1.0], "heard_chrf": 31.0}]),
])
def test_repeated_runs_report_each_pair_s_median(runs, want):
    """``--repeat``: real time moves by seconds from run to run; the report gives each
    pair's median (a run with no figure is left out of that figure)."""
    assert L.medians(runs) == want
    row = L.median_row(want[0])
    assert row.startswith(f"| {want[0]['pair']} | {want[0]['runs']} |")
    lo, hi = want[0]["after_talk_range_s"]
    assert f"{want[0]['after_talk_s']} ({lo}–{hi})" in row


def test_a_quiet_reader_s_sentence_is_kept_whole():
    """fleurs-en-000 is read softly (frames peak at 0.015 RMS, most of it under 0.01): a
    loudness threshold cut it after 3.6 s, the voice detector keeps its 7.9 s of speech and
    still drops the silence around it."""
    pcm = load_clip("fleurs-en-000")
    speech = L.trim(pcm)
    assert 7.0 <= len(speech) / L.RATE <= len(pcm) / L.RATE - 1.5
    wire = load_clip("fleurs-en-000", 48000)  # the room bench trims at the wire's rate
    assert abs(len(L.trim(wire, 48000)) / 48000 - len(speech) / L.RATE) < 0.05


def test_a_dialogue_puts_each_speaker_on_their_own_track(tmp_path):
    from babelcall.benchmarks.run import find_clips

    en = find_clips(eval_dir(), "en", "es", 2)
    es = find_clips(eval_dir(), "es", "en", 2)
    a, b = L.make_dialogue(en, es, ("en", "es"), tmp_path)
    assert (a.source, a.target, b.source, b.target) == ("en", "es", "es", "en")
    turns = sorted([(s.start_s, "a") for s in a.sentences]
                   + [(s.start_s, "b") for s in b.sentences])
    assert [who for _, who in turns] == ["a", "b", "a", "b"]  # they take turns
    for first, second in zip(a.sentences, b.sentences, strict=True):
        assert second.start_s >= first.end_s + L.TURN_GAP_S - 1e-6


def test_longform_bench_on_a_short_talk_and_dialogue(engines, tmp_path):
    from babelcall.benchmarks.cli import run_bench

    args = build_parser().parse_args(["bench", "--longform", "--dialogue", "--fast",
                                      "--pair", "en-es", "--clips", "1", "--out",
                                      str(tmp_path), "--eval-dir", str(eval_dir())])
    asyncio.run(run_bench(args, engines=engines))
    saved = json.loads((tmp_path / "longform.json").read_text())
    (talk,) = saved["talks"]
    assert talk["pair"] == "en-es" and talk["sentences"] == 1
    assert talk["words"] >= 2
    assert 0 < talk["ear_voice_s"]["p50"] <= talk["ear_voice_s"]["p90"]
    assert all(lag is not None and lag > 0 for lag in talk["sentence_end_lag_s"])
    assert talk["after_talk_s"] > 0
    assert 0 < talk["heard_chrf"] <= 100 and talk["heard"]
    speakers = saved["dialogue"]["speakers"]
    assert [s["pair"] for s in speakers] == ["en-es", "es-en"]
    assert saved["dialogue"]["turn_end_lag_s"]["p50"] > 0
    assert (tmp_path / "longform_lag.png").is_file()
    assert "| en-es | fast |" in (tmp_path / "longform.md").read_text()
