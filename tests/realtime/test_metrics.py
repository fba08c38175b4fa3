"""Session metrics: stage times, each phrase's waterfall stamps, bounded on long calls."""

import pytest

from babelcall.realtime.metrics import PHRASES_KEPT, SessionMetrics


def test_stamps_per_phrase():
    m = SessionMetrics()
    m.stamp(3, "last_word", 10_000_000_000)
    m.stamp(3, "first_audio", 11_000_000_000, once=True)
    m.stamp(3, "first_audio", 12_000_000_000, once=True)  # only the first counts
    m.stamp(3, "asr_done", 10_500_000_000)
    m.stamp(3, "asr_done", 10_600_000_000)  # the last pass wins
    assert m.stamps(3) == {"last_word": 10_000_000_000, "first_audio": 11_000_000_000,
                           "asr_done": 10_600_000_000}
    assert m.spoken(3) and not m.spoken(4)


def test_stage_times_and_snapshot():
    m = SessionMetrics()
    m.stage_done("asr", 0.5)
    m.stage_done("asr", 1.0)
    m.covered_s = 8.0
    m.last_timing_ms = {"pause": 210.0}
    snap = m.snapshot(heard_s=10.0, queues={"listen": 0}, shed_level=1)
    assert snap["lag_s"] == 2.0 and snap["shed_level"] == 1
    assert snap["stage_calls"] == {"asr": 2} and snap["stage_total_s"] == {"asr": 1.5}
    assert snap["stage_ms"]["asr"] == pytest.approx(600.0)  # smoothed
    assert snap["last_timing_ms"] == {"pause": 210.0}


def test_only_the_last_phrases_are_kept():
    m = SessionMetrics()
    for utt in range(PHRASES_KEPT * 10):
        m.stamp(utt, "first_audio", utt + 1)
    assert len(m.phrases) == PHRASES_KEPT
    assert min(m.phrases) == PHRASES_KEPT * 9
