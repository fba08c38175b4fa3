"""The pipeline's decisions as tables: no models, no clocks."""

import pytest

from babelcall.realtime.budget import LatencyBudget
from babelcall.realtime.policy import (
    AsrPass,
    asr_interval_factor,
    asr_pass,
    catchup_speed,
    compression,
    merge_waiting,
    shed_level,
    skip_voice,
    speech_speed,
    voice_early,
)


@pytest.mark.parametrize("kind,fresh,voiced,audio_q,voice_q,expected", [
    ("audio", 0.5, 0.5, False, False, None),            # not enough new audio yet
    ("audio", 0.8, 0.8, False, False, AsrPass.UPDATE),
    ("audio", 2.0, 2.0, True, True, None),              # more queued: one pass reads it all
    ("pause", 0.3, 0.2, False, False, AsrPass.SETTLE),
    ("pause", 0.3, 0.0, False, False, None),            # nothing said since the last pass
    ("pause", 0.3, 0.2, True, True, None),              # the speaker went on talking
    ("pause", 0.3, 0.2, True, False, AsrPass.SETTLE),   # only silence queued after it
    ("end", 0.5, 0.5, False, False, AsrPass.FINAL),
    ("end", 0.0, 0.02, False, False, None),             # the pause pass read everything
])
def test_when_the_recogniser_reads_the_phrase(kind, fresh, voiced, audio_q, voice_q, expected):
    assert asr_pass(kind, fresh_s=fresh, voiced_s=voiced, interval_s=0.8,
                    audio_queued=audio_q, voice_queued=voice_q) == expected


def test_an_unknown_listener_report_is_a_bug():
    with pytest.raises(ValueError):
        asr_pass("cough", fresh_s=0, voiced_s=0, interval_s=1, audio_queued=False,
                 voice_queued=False)


@pytest.mark.parametrize("backlog,speed", [(0, 1.0), (1.0, 1.0), (2.5, 1.15), (4.0, 1.3),
                                           (30, 1.3)])
def test_catchup_speed_rises_with_backlog_and_is_capped(backlog, speed):
    budget = LatencyBudget(catchup_start_s=1.0, catchup_full_s=4.0, max_speed=1.3)
    assert catchup_speed(backlog, budget) == pytest.approx(speed)


def test_by_default_catchup_starts_with_the_first_audio_waiting():
    assert catchup_speed(0.0, LatencyBudget()) == 1.0
    assert catchup_speed(1.0, LatencyBudget()) == pytest.approx(1.1)
    assert catchup_speed(9.0, LatencyBudget()) == pytest.approx(1.2)


def test_speech_speed_combines_pace_and_catchup_under_a_cap():
    b = LatencyBudget()
    assert speech_speed(1.0, 1.0, 0.0, b) == 1.0
    assert speech_speed(0.9, 1.0, 0.2, b) == pytest.approx(0.9 * 1.02)
    assert speech_speed(1.0, 1.2, 4.0, b) == 1.2  # 1.44 would lose words
    assert speech_speed(1.5, 1.25, 10.0, b) == 1.2


@pytest.mark.parametrize(("behind", "backlog", "speed"), [
    (0.0, 0.0, 1.0),  # on time: the voice's own pace
    (1.9, 0.0, 1.0),  # within the lag target (2 s): not yet
    (2.1, 0.0, 1.2),  # later than the target: full catch-up at once, nothing queued or not
    (2.1, 1.0, 1.2),
    (1.0, 1.0, 1.1),  # queued audio alone: the ramp, as before
])
def test_a_late_clause_is_spoken_fast_by_the_voice_itself(behind, backlog, speed):
    assert speech_speed(1.0, 1.0, backlog, LatencyBudget(), behind_s=behind) \
        == pytest.approx(speed)


def test_shed_levels_have_hysteresis():
    assert shed_level(0.1, 0) == 0
    assert shed_level(0.6, 0) == 1
    assert shed_level(0.4, 1) == 1  # not yet below the exit threshold
    assert shed_level(0.1, 1) == 0
    assert shed_level(5.0, 0) == 3
    assert shed_level(1.0, 3) == 2  # level 2 is left only below 0.8 s
    assert shed_level(0.5, 3) == 1
    assert [asr_interval_factor(lv) for lv in range(4)] == [1.0, 2.0, 3.0, 6.0]


def test_merge_before_skip():
    b = LatencyBudget(merge_backlog_s=6.0, max_speech_lag_s=10.0)
    assert not merge_waiting(6.0, b) and merge_waiting(6.1, b)
    assert not skip_voice(10.0, b) and skip_voice(10.1, b)


# -- keeping pace over a talk (issue 20) -------------------------------------------------------

@pytest.mark.parametrize("behind,duration,speed,converted,expected", [
    (0.5, 1.0, 1.0, False, 1.0),     # fits: heard 1.5 s after the words, under the 2 s target
    (1.0, 1.0, 1.0, False, 1.0),     # ends exactly on target
    (1.0, 1.5, 1.0, False, 1.5),     # 1.5 s of speech in the 1 s left
    (1.5, 0.6, 1.2, False, 1.2),     # 0.6 s into 0.5 s: 1.2x on top of Kokoro's 1.2x
    (1.8, 2.0, 1.0, False, 1.75),    # no room left: the cap
    (3.0, 1.0, 1.0, False, 1.75),    # already past the target: the cap
    (3.0, 1.0, 1.2, False, 1.458),   # the cap is overall: 1.75 / 1.2
    (3.0, 1.0, 1.0, True, 1.5),      # a converted voice has a lower cap
    (3.0, 1.0, 1.75, False, 1.0),    # Kokoro's speed alone reaches the cap
    (3.0, 0.0, 1.0, False, 1.0),     # nothing to re-time
])
def test_compression_fits_a_piece_into_the_lag_target(behind, duration, speed, converted,
                                                     expected):
    b = LatencyBudget(target_lag_s=2.0, max_pace=1.75, max_pace_converted=1.5, max_speed=1.2)
    assert compression(behind, duration, speed, b, converted=converted) == \
        pytest.approx(expected, abs=1e-3)


@pytest.mark.parametrize("language, expected", [
    ("es", 1.7), ("pt", 1.7), ("en", 1.7), (None, 1.7),  # judged at the budget's cap
    ("fr", 1.5), ("it", 1.5),                             # not: Kokoro reads them poorly
])
def test_the_pace_cap_is_lower_where_the_voice_was_not_judged_at_it(language, expected):
    b = LatencyBudget(target_lag_s=2.0, max_pace=1.7, max_pace_converted=1.7, max_speed=1.2)
    assert compression(5.0, 2.0, 1.0, b, language=language) == pytest.approx(expected)


@pytest.mark.parametrize("words, expected", [
    (None, 1.7),                 # a piece that goes on from its phrase's words: not counted
    (3, 1.5), (7, 1.5),          # a short piece heard with nothing before it
    (8, 1.7), (20, 1.7),         # long enough to carry its own context
])
def test_a_short_piece_heard_alone_is_not_sped_up_to_the_full_cap(words, expected):
    b = LatencyBudget(target_lag_s=2.0, max_pace=1.7, max_pace_converted=1.7, max_speed=1.2)
    assert compression(5.0, 2.0, 1.0, b, language="es", words=words) == pytest.approx(expected)


@pytest.mark.parametrize("backlog,expected", [(0.0, True), (0.3, True), (0.31, False),
                                              (5.0, False)])
def test_words_are_voiced_early_only_while_the_listener_has_nothing_queued(backlog, expected):
    assert voice_early(backlog, LatencyBudget(early_backlog_s=0.3)) is expected


def test_a_budget_with_an_impossible_pace_is_refused():
    with pytest.raises(ValueError):
        LatencyBudget(max_pace=1.1, max_speed=1.2)
    with pytest.raises(ValueError):
        LatencyBudget(max_pace=1.5, max_pace_converted=1.6)
    with pytest.raises(ValueError):
        LatencyBudget(target_lag_s=0)
