"""Pure budget decisions."""

import pytest

from babelcall.realtime.budget import (
    LatencyBudget,
    asr_interval_factor,
    catchup_speed,
    shed_level,
)


def test_deadlines_order_phrase_ends_before_updates():
    b = LatencyBudget(first_audio_ms=800, asr_ms=400, mt_ms=100)
    assert b.deadline("asr", 0, final=True) == 400_000_000
    assert b.deadline("mt", 0, final=True) == 500_000_000
    assert b.deadline("tts", 0, final=True) == 800_000_000
    assert b.deadline("asr", 0, final=False) > b.deadline("tts", 0, final=True)


def test_budget_must_leave_room_for_tts():
    with pytest.raises(ValueError):
        LatencyBudget(first_audio_ms=500, asr_ms=450, mt_ms=100)


@pytest.mark.parametrize("backlog,speed", [(0, 1.0), (1.0, 1.0), (2.5, 1.15), (4.0, 1.3),
                                           (30, 1.3)])
def test_catchup_speed_rises_with_backlog_and_is_capped(backlog, speed):
    assert catchup_speed(backlog, LatencyBudget()) == pytest.approx(speed)


def test_shed_levels_have_hysteresis():
    assert shed_level(0.1, 0) == 0
    assert shed_level(0.6, 0) == 1
    assert shed_level(0.4, 1) == 1  # not yet below the exit threshold
    assert shed_level(0.1, 1) == 0
    assert shed_level(5.0, 0) == 3
    assert shed_level(1.0, 3) == 2  # level 2 is left only below 0.8 s
    assert shed_level(0.5, 3) == 1
    assert [asr_interval_factor(lv) for lv in range(4)] == [1.0, 2.0, 3.0, 6.0]
