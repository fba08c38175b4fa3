"""The room bench's pure parts (``babelcall bench --room``), as tables, without models: which
frames belong to a turn, its lags, the judge's "closer to its own reference", the texts of a
language the eval set holds, when a turn has been heard, and the speaker's track."""

import asyncio
import json

import numpy as np
import pytest
from conftest import eval_dir

from babelcall.benchmarks import room as R
from babelcall.clients.cli import build_parser
from babelcall.realtime.errors import BabelcallError

MS = 1_000_000


@pytest.mark.parametrize(("text", "langs"), [
    ("en,es,fr,pt", ["en", "es", "fr", "pt"]),
    (" en , pt ", ["en", "pt"]),
    ("en", None),          # nobody to hear
    ("en,es,en", None),    # one speaker per language
    ("", None),
])
def test_room_languages(text, langs):
    if langs is None:
        with pytest.raises(BabelcallError):
            R.room_langs(text)
    else:
        assert R.room_langs(text) == langs


ARRIVALS = [(t * 20 * MS, rms) for t, rms in enumerate(
    [0, 0, 0.2, 0.3, 0, 0, 0.005, 0.4, 0, 0])]  # frame i arrives at i*20 ms


@pytest.mark.parametrize(("start", "end", "frames"), [
    (0, None, (0, 10)),
    (40 * MS, 100 * MS, (2, 5)),    # [start, end): frame 5 (100 ms) is the next turn's
    (41 * MS, 100 * MS, (3, 5)),
    (300 * MS, None, (10, 10)),     # nothing arrived yet
])
def test_a_turns_window_holds_the_frames_that_arrived_in_it(start, end, frames):
    w = R.window(ARRIVALS, start, end)
    assert (w.start, w.stop) == frames


@pytest.mark.parametrize(("arrivals", "start", "end", "want"), [
    # speech 0..100 ms; loud frames at 40, 60, 140 ms (0.005 is under the loudness bar)
    (ARRIVALS, 0, 100 * MS, (40, -60, 40)),
    (ARRIVALS[5:], 0, 100 * MS, (140, 40, 40)),  # heard only after the speaker finished
    (ARRIVALS[8:], 0, 100 * MS, (None, None, None)),  # nothing heard
])
def test_lags_from_the_first_and_last_translated_sound(arrivals, start, end, want):
    got = R.lags(arrivals, start, end)
    assert (got["first_after_start_ms"], got["first_after_end_ms"], got["end_offset_ms"]) \
        == want


TEXTS = {"own": "The cabbage juice changes color depending on how acidic it is.",
         "other": "Many people don't think about them as dinosaurs because they have feathers."}


@pytest.mark.parametrize(("heard", "own", "texts", "right", "near"), [
    ("the cabbage juice changes colour, depending on how acidic", "own", TEXTS, True, "other"),
    ("many people think of them as dinosaurs", "own", TEXTS, False, "other"),
    ("", "own", TEXTS, False, "other"),                    # silence hears nobody
    ("the cabbage juice changes", "own", {"own": TEXTS["own"]}, True, None),  # no other
    ("the cabbage juice changes", "missing", TEXTS, None, None),  # no reference: no verdict
])
def test_closer_to_its_own_text_than_to_any_other(heard, own, texts, right, near):
    got = R.closer(heard, own, texts)
    assert got["right"] is right and got["nearest_other"] == near
    assert (got["chrf"] is None) == (own not in texts)


def test_chrf_is_scored_on_words_not_the_judges_punctuation():
    ref = "Muitas pessoas não pensam neles como dinossauros."
    assert R.word_chrf("Muitas pessoas não pensam. Neles como dinossauros", ref) == 100.0
    assert R.word_chrf("", ref) == 0.0


def test_the_texts_of_a_language_are_its_references_then_its_own_sentences(tmp_path):
    def refs(name, rows):
        (tmp_path / name).write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")

    refs("refs-en-es.jsonl", [{"clip": "fleurs-en-000", "src_ref": "Hello.",
                               "tgt_ref": "Hola."}])
    refs("refs-es-en.jsonl", [{"clip": "fleurs-es-000", "src_ref": "Adiós.",
                               "tgt_ref": "Goodbye."}])
    (tmp_path / "fleurs-es-000.txt").write_text("adiós\n", encoding="utf-8")
    (tmp_path / "fleurs-es-001.txt").write_text("buenas noches\n", encoding="utf-8")
    (tmp_path / "fleurs-fr-000.txt").write_text("bonsoir\n", encoding="utf-8")
    assert R.texts_in(tmp_path, "es") == {"fleurs-en-000": "Hola.",
                                          "fleurs-es-000": "Adiós.",  # punctuated first
                                          "fleurs-es-001": "buenas noches"}
    assert R.texts_in(tmp_path, "en") == {"fleurs-es-000": "Goodbye.", "fleurs-en-000": "Hello."}
    assert R.texts_in(tmp_path, "pt") == {}


def _rec(kind, speaker="a", **kw):
    return {"type": kind, "speaker": speaker, **kw}


@pytest.mark.parametrize(("records", "done"), [
    ([], False),
    ([_rec("translation", committed="Hola amigo.", final=False)], False),  # phrase open
    ([_rec("translation", committed="Hola amigo.", final=True),
      _rec("synth_audio"), _rec("audio_out", text="Hola amigo.")], True),
    ([_rec("translation", committed="Hola amigo.", final=True),  # made, not yet played
      _rec("synth_audio"), _rec("synth_audio"), _rec("audio_out", text="Hola")], False),
    ([_rec("translation", committed="Hola amigo.", final=True),  # shed, and said so
      _rec("speech_skipped", text="Hola amigo.")], True),
    ([_rec("translation", committed="Hola amigo.", final=True, speaker="b"),  # someone else
      _rec("synth_audio", speaker="b"), _rec("audio_out", text="Hola amigo.", speaker="b")],
     False),
])
def test_a_turn_is_spoken_when_every_committed_word_played(records, done):
    assert R.spoken(records, "a") is done


def test_what_was_said_for_a_speaker():
    records = [_rec("translation", committed="Hola"), _rec("translation", committed=" "),
               _rec("translation", committed="amigo.", speaker="b"),
               _rec("translation", committed="y adiós.")]
    assert R.said(records, "a") == "Hola y adiós."


@pytest.mark.parametrize(("arrivals", "now_ms", "seconds", "is_quiet"), [
    (ARRIVALS, 200, 0.05, True),    # last loud frame at 140 ms
    (ARRIVALS, 200, 0.07, False),
    ([], 0, 0.5, True),
])
def test_quiet_for_the_last_seconds(arrivals, now_ms, seconds, is_quiet):
    assert R.quiet(arrivals, now_ms * MS, seconds) is is_quiet


def test_a_speakers_track_is_silent_until_its_turn_then_plays_its_clip_once():
    clip = np.full(48000 // 10, 0.5, np.float32)  # 100 ms: five frames

    async def main():
        track = R.TurnTrack(clip)
        before = [await track.recv() for _ in range(3)]
        track.go.set()
        during = [await track.recv() for _ in range(5)]
        after = [await track.recv() for _ in range(2)]
        return track, before, during, after

    track, before, during, after = asyncio.run(main())
    loud = [[bool(np.any(f.to_ndarray())) for f in frames] for frames in (before, during, after)]
    assert loud == [[False] * 3, [True] * 5, [False] * 2]
    assert track.finished.is_set()
    assert [f.pts for f in before + during] == [i * 960 for i in range(8)]  # one clock
    assert track.end_ns - track.start_ns == 100 * MS


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_two_language_room_bench_on_the_real_models(all_pairs, tmp_path):
    """English and Portuguese take turns; each hears the other in their turn's window, from one
    recogniser stream each (Bergamot both ways: Whisper only transcribes). No speed asserted."""
    from babelcall.benchmarks.cli import run_bench

    args = build_parser().parse_args(["bench", "--room", "--room-langs", "en,pt", "--out",
                                      str(tmp_path), "--eval-dir", str(eval_dir())])
    results = asyncio.run(run_bench(args, engines=all_pairs))
    saved = json.loads((tmp_path / "room.json").read_text())
    assert (tmp_path / "room.md").read_text() == results["markdown"]
    assert [t["heard_to_end"] for t in saved["turns"]] == [True, True]
    cells = {(c["listener"], c["speaker"]): c for c in saved["cells"]}
    assert set(cells) == {("pt", "en"), ("en", "pt")}
    assert cells["pt", "en"]["reference"]["right"], cells["pt", "en"]["heard"]
    assert cells["en", "pt"]["reference"]["chrf"] is None  # FLEURS has no pt->en reference
    assert all(c["round_trip"]["chrf"] > 0 and c["end_offset_ms"] is not None
               for c in cells.values())
    assert {lang: r["streams"] for lang, r in saved["recognition"].items()} == {"en": 1, "pt": 1}
    assert "| pt ← en (bergamot)" in results["markdown"]


def test_the_report_says_no_reference_and_which_text_a_wrong_hearing_was_nearer():
    from babelcall.benchmarks.room_report import markdown

    def cell(listener, speaker, ref, trip, start=4200, end=-800, off=8800, shed=0):
        return {"listener": listener, "speaker": speaker, "reference": ref, "round_trip": trip,
                "first_after_start_ms": start, "first_after_end_ms": end,
                "end_offset_ms": off, "caption_only": shed, "said": "s", "heard": "h"}

    right = {"chrf": 40.0, "right": True, "nearest_other": "fleurs-es-001", "other_chrf": 17.5}
    wrong = {"chrf": 11.5, "right": False, "nearest_other": "fleurs-en-001", "other_chrf": 17.0}
    none = {"chrf": None, "right": None, "nearest_other": None, "other_chrf": None}
    results = {"langs": ["en", "es"], "cpu": "AMD EPYC", "cores": 2, "date": "d",
               "commit": "abc", "uncommitted": [], "command": "babelcall bench --room",
               "clone": "dsp", "clips": {"en": "fleurs-en-003"}, "speech_s": {"en": 5.76},
               "mt": {"en->es": "apertium"},
               "cells": [cell("es", "en", right, right),
                         cell("en", "es", none, wrong, start=None, end=None, off=None, shed=2)],
               "recognition": {"en": {"streams": 1, "asr_passes": {"transcribe": 6},
                                      "branches": 1}},
               "busy_s": {"tts": 52.2}, "turns_s": 73.8,
               "turns": [{"speaker": "en", "heard_to_end": True, "wait_s": 6.5},
                         {"speaker": "es", "heard_to_end": False, "wait_s": 120.0}]}
    md = markdown(results)
    assert "| es ← en (apertium) | 40.0 | yes (next 17.5) | 40.0 | yes (next 17.5) | " \
           "4.2 / -0.8 | 8.8 | 0 |" in md
    assert "| en ← es (?) | no reference | – | 11.5 | **no**, nearer fleurs-en-001 (next " \
           "17.0) | – / – | – | 2 |" in md
    assert "| en | 1 | transcribe 6 | 1 |" in md and "tts 52.2 s" in md
    assert "es NOT heard to its end within the cap" in md
