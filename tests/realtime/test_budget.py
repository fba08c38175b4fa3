"""The latency budget: deadlines per stage (the decisions taken from it are in\ntest_policy.py)."""

import pytest

from babelcall.realtime.budget import LatencyBudget


def test_deadlines_order_phrase_ends_before_updates():
    b = LatencyBudget(first_audio_ms=800, asr_ms=400, mt_ms=100)
    assert b.deadline("asr", 0, final=True) == 400_000_000
    assert b.deadline("mt", 0, final=True) == 500_000_000
    assert b.deadline("tts", 0, final=True) == 800_000_000
    assert b.deadline("asr", 0, final=False) > b.deadline("tts", 0, final=True)


def test_budget_must_leave_room_for_tts():
    with pytest.raises(ValueError):
        LatencyBudget(first_audio_ms=500, asr_ms=450, mt_ms=100)


def test_later_pieces_get_the_tts_share():
    assert LatencyBudget(first_audio_ms=800, asr_ms=400, mt_ms=100).tts_share_ns() == 300_000_000
