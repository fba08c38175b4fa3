"""The latency budget: how a phrase's time from its last source sample to its first
translated audio is shared between the stages. A stage call's deadline is where its share
ends; the scheduler serves calls earliest-deadline-first. The decisions taken from the budget
are pure functions in ``policy.py``."""

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
    # Catch-up: the voice speeds up with the translated audio waiting to be played, from the
    # first of it (the translation runs ~1.5x longer than the speech it covers) to
    # max_speed at catchup_full_s; policy.MAX_TTS_SPEED caps the product with the caller's
    # pace where speech stays intelligible.
    catchup_start_s: float = 0.0
    catchup_full_s: float = 2.0
    max_speed: float = 1.2
    # Time compression (WORLD, pitch kept) beyond Kokoro's own speed: a piece of translated
    # speech is re-timed so its end is heard at most target_lag_s after the speaker said the
    # words it carries, up to max_pace (Kokoro's speed times the compression) overall.
    target_lag_s: float = 2.0
    # 1.7: the 5 en->es reference sentences (Kokoro 1.2x, then WORLD), converted towards each
    # of the 5 English dev speakers and the fixed voice, heard by the judge, WER per speaker at
    # 1.5x / 1.7x / 1.8x: 0.058/0.074/0.050, 0.058/0.058/0.050, 0.041/0.050/0.058,
    # 0.041/0.050/0.074, 0.050/0.050/0.074, fixed 0.050/0.050/0.074 (mean 0.050/0.055/0.063):
    # about a word in 200 more at 1.7x. Compute-free long-form talks (AMD EPYC) at 1.5x -> 1.7x:
    # en->es every sentence end <= 2.97 s (was up to 3.79), after the talk 3.50 -> 2.66 s, heard
    # chrF 47.8 -> 47.2; en->pt after 2.70 -> 2.40 s, chrF 62.7 -> 63.5; es->en after 2.33 ->
    # 1.71 s, chrF 46.1 -> 45.5. Only a clause that would end later than target_lag_s is
    # re-timed, and only as much as that needs (policy.compression); French and Italian stay at
    # 1.5x (policy.PACE_MEASURED), as does a piece of fewer than 8 words that opens its phrase
    # (policy.FULL_PACE_WORDS)
    max_pace: float = 1.7
    # ... for a voice converted towards the caller's. Was 1.3 after one cloned clip lost 6
    # heard chrF points at 1.5-1.75x in a session; measured properly (5 en->es reference
    # sentences, Kokoro converted towards each of the 5 English dev speakers, 3 of them women
    # (pitch x1.1 to x1.74), heard by the judge, WER per speaker at 1.3x / 1.5x): 0.066/0.041,
    # 0.050/0.025, 0.066/0.033, 0.050/0.041, 0.050/0.050 (the fixed voice 0.066/0.066; see
    # README): 1.5x costs nothing a 1.3x cap would save; 1.7x as above (max_pace). The fixed
    # Portuguese voice in a room fell below its bar in 2 of 4 runs at 1.75x, none at 1.5x
    # (2026-12-02, before the room had one recogniser per speaker; passes at 1.7x now)
    max_pace_converted: float = 1.7
    # Committed words short of a full piece are voiced at once while less than this much
    # translated audio waits for the listener (policy.voice_early).
    early_backlog_s: float = 0.3
    merge_backlog_s: float = 6.0  # beyond this, pending clauses are merged into one
    # Last resort under overload: a clause the listener would hear more than this long after
    # it was said is captioned but not voiced, so the voice stays near the speaker.
    max_speech_lag_s: float = 10.0

    def __post_init__(self) -> None:
        if self.asr_ms + self.mt_ms >= self.first_audio_ms:
            raise ValueError("asr_ms + mt_ms must leave time for speech synthesis")
        if not 1.0 <= self.max_speed <= 2.0:
            raise ValueError("max_speed must be within [1, 2]")
        if not self.max_speed <= self.max_pace_converted <= self.max_pace <= 2.0:
            raise ValueError("need max_speed <= max_pace_converted <= max_pace <= 2")
        if self.target_lag_s <= 0:
            raise ValueError("target_lag_s must be positive")
        if self.max_speech_lag_s <= self.merge_backlog_s:
            raise ValueError("max_speech_lag_s must exceed merge_backlog_s (merge first)")

    def deadline(self, stage: str, anchor_ns: int, *, final: bool) -> int:
        """Deadline of a ``stage`` call for source that arrived at ``anchor_ns``."""
        share = {"asr": self.asr_ms, "mt": self.asr_ms + self.mt_ms,
                 "tts": self.first_audio_ms}[stage]
        return anchor_ns + (share if final else share + self.update_slack_ms) * MS

    def tts_share_ns(self) -> int:
        """What a later piece of a phrase gets: the first piece's share of the budget."""
        return (self.first_audio_ms - self.asr_ms - self.mt_ms) * MS
