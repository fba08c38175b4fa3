"""Session metrics: stage times, the budget marks of each phrase, bounded on long calls."""

import pytest

from babelcall.realtime.metrics import PHRASES_KEPT, SessionMetrics


def test_budget_usage_is_measured_from_the_phrase_end():
    m = SessionMetrics()
    m.phrase_end(3, 10_000_000_000)
    m.mark(3, "asr_done_ns", 10_400_000_000)
    m.mark(3, "first_audio_ns", 11_000_000_000, once=True)
    m.mark(3, "first_audio_ns", 12_000_000_000, once=True)  # only the first counts
    assert m.budget_usage(3) == {"asr_done_ms": 400.0, "first_audio_ms": 1000.0}
    assert m.spoken(3) and not m.spoken(4)
    assert m.budget_usage(4) == {}


def test_stage_times_and_snapshot():
    m = SessionMetrics()
    m.stage_done("asr", 0.5)
    m.stage_done("asr", 1.0)
    m.covered_s = 8.0
    snap = m.snapshot(heard_s=10.0, queues={"listen": 0}, shed_level=1)
    assert snap["lag_s"] == 2.0 and snap["shed_level"] == 1
    assert snap["stage_calls"] == {"asr": 2} and snap["stage_total_s"] == {"asr": 1.5}
    assert snap["stage_ms"]["asr"] == pytest.approx(600.0)  # smoothed


def test_only_the_last_phrases_are_kept():
    m = SessionMetrics()
    for utt in range(PHRASES_KEPT * 10):
        m.phrase_end(utt, utt)
        m.mark(utt, "first_audio_ns", utt + 1)
    assert len(m.phrases) == PHRASES_KEPT
    assert min(m.phrases) == PHRASES_KEPT * 9
