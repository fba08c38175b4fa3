"""VadTracker decision table: pure, no model."""

import pytest

from babelcall.engines.vad.tracker import Boundary, VadParams, VadTracker

W = 0.032  # one window


def run(probs, **params):
    tr = VadTracker(VadParams(**params), window_s=W)
    return tr.update(probs) + tr.flush()


def test_silence_gives_nothing():
    assert run([0.0] * 200) == []


def test_blip_shorter_than_min_speech_is_ignored():
    assert run([0.0] * 10 + [0.9] * 3 + [0.0] * 50) == []


def test_phrase_start_is_padded_and_end_follows_silence():
    out = run([0.0] * 20 + [0.9] * 40 + [0.0] * 40, pad_s=0.2, min_silence_s=0.45)
    assert [b.start for b in out] == [True, False]
    assert out[0].time == pytest.approx(20 * W - 0.2)
    assert out[1].time == pytest.approx(60 * W + 0.2)


def test_short_pause_keeps_phrase_whole():
    probs = [0.9] * 30 + [0.1] * 8 + [0.9] * 30 + [0.0] * 30
    out = run(probs, min_silence_s=0.45)
    assert [b.start for b in out] == [True, False]


def test_hysteresis_keeps_speech_between_thresholds():
    out = run([0.9] * 20 + [0.4] * 50 + [0.0] * 30)
    assert len(out) == 2 and out[1].time > 60 * W


def test_open_phrase_closed_on_flush():
    out = run([0.9] * 30)
    assert out[-1] == Boundary(False, pytest.approx(30 * W))


def test_bad_params_rejected():
    with pytest.raises(ValueError):
        VadParams(threshold=1.5)
