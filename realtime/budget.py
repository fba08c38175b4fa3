"""The latency budget and the pure decisions taken from it (testable without models or time).

A phrase's budget runs from the moment its last source sample arrives to the first translated
audio of it. Each stage gets a share; a stage call's deadline is where its share ends, and the
scheduler serves calls earliest-deadline-first."""

from __future__ import annotations

from dataclasses import dataclass

MS = 1_000_000


@dataclass(frozen=True)
class LatencyBudget:
    first_audio_ms: int = 800
    asr_ms: int = 450   # final ASR pass after the phrase ends
    mt_ms: int = 100
    # the rest (first_audio_ms - asr_ms - mt_ms) is the first TTS chunk's share
    update_slack_ms: int = 1500  # mid-phrase updates are less urgent than any phrase end
    catchup_start_s: float = 1.0  # queued translated audio before playback speeds up
    catchup_full_s: float = 4.0   # queued audio at which the speed cap is reached
    max_speed: float = 1.3
    merge_backlog_s: float = 6.0  # beyond this, pending clauses are merged into one
    # Last resort under overload: a clause the listener would hear more than this long after
    # it was said is captioned but not voiced, so the voice stays near the speaker.
    max_speech_lag_s: float = 10.0

    def __post_init__(self) -> None:
        if self.asr_ms + self.mt_ms >= self.first_audio_ms:
            raise ValueError("asr_ms + mt_ms must leave time for speech synthesis")
        if not 1.0 <= self.max_speed <= 2.0:
            raise ValueError("max_speed must be within [1, 2]")
        if self.max_speech_lag_s <= self.merge_backlog_s:
            raise ValueError("max_speech_lag_s must exceed merge_backlog_s (merge first)")

    def deadline(self, stage: str, anchor_ns: int, *, final: bool) -> int:
        """Deadline of a ``stage`` call for source that arrived at ``anchor_ns``."""
        share = {"asr": self.asr_ms, "mt": self.asr_ms + self.mt_ms,
                 "tts": self.first_audio_ms}[stage]
        return anchor_ns + (share if final else share + self.update_slack_ms) * MS


def catchup_speed(backlog_s: float, budget: LatencyBudget) -> float:
    """Speech rate for the next clause: 1.0 until ``catchup_start_s`` of translated audio is
    waiting, then rising linearly to ``max_speed``."""
    lo, hi = budget.catchup_start_s, budget.catchup_full_s
    if backlog_s <= lo:
        return 1.0
    frac = min(1.0, (backlog_s - lo) / max(hi - lo, 1e-9))
    return round(1.0 + frac * (budget.max_speed - 1.0), 3)


# Overload shedding: lateness (how far past their deadlines calls finish, smoothed) -> level.
SHED_ENTER_S = (0.5, 1.5, 3.0)  # level 1: slower ASR cadence; 2: slower still; 3: refuse
SHED_EXIT_S = (0.2, 0.8, 2.0)   # hysteresis: leave a level only well below its entry


def shed_level(lateness_s: float, current: int) -> int:
    level = current
    while level < 3 and lateness_s >= SHED_ENTER_S[level]:
        level += 1
    while level > 0 and lateness_s < SHED_EXIT_S[level - 1]:
        level -= 1
    return level


def asr_interval_factor(level: int) -> float:
    """How much longer a session waits between ASR updates at a shed level. At the top level
    a phrase is mostly read at its pauses (one pass each): run-on speech still gets an update
    every ~5 s, so its words keep coming."""
    return (1.0, 2.0, 3.0, 6.0)[level]
