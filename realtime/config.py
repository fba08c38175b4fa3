"""What one session is asked to do: the language pair and the knobs of its stages."""

from __future__ import annotations

from dataclasses import dataclass, field

from babelcall.engines.vad.tracker import VadParams


@dataclass(frozen=True)
class SessionConfig:
    source: str
    target: str
    vad: VadParams = field(default_factory=VadParams)
    asr_interval_s: float = 0.8  # new speech between two ASR updates of a phrase
    max_phrase_buffer_s: float = 15.0
    # words per synthesised piece, and in a phrase's first (shorter: it is waited for); None:
    # what suits the target language (realtime/clauses.clause_words)
    max_clause_words: int | None = None
    first_clause_words: int | None = None
    voice: str | None = None
    speed: float = 1.0
    # Pauses inside synthesised speech are cut to this (None: as the voice made them): the
    # translation runs longer than the speech it covers, and a pause is the cheapest place
    # to catch up.
    max_pause_s: float | None = 0.2
    clone_voice: bool = True  # profile the speaker for the engines' cloner (off: PassThrough)
    # Commit the recogniser's whole hypothesis at a pause (see OnlineAsr.accept); off: words
    # wait for agreement or the end of the phrase.
    settle_at_pause: bool = True
    # Commit a recognised word once this much audio follows it, agreed or not (None: only on
    # agreement of two passes, at a pause, or at the phrase's end); see OnlineAsr.
    # 0.7: with 1.0 "the cabbage juice changes color" waited 1.6 s for two passes that never
    # agreed ("change its color" / "changes color"): the sentence was heard 3.4 s behind, the
    # rest of the talk 2.0-2.5 s. Compute-free talks, 1.0 -> 0.7: en->es ear-voice p50/p90
    # 2.34/3.26 -> 2.26/2.67 s, worst sentence end 3.06 -> 2.78 s, slope 0.021 -> 0.012 s/s,
    # heard chrF 47.6 -> 47.2; en->pt 2.40/3.09 -> 2.32/2.65 s, 2.71 -> 2.71 s, 0.017 ->
    # 0.008 s/s, 63.7 -> 63.7; es->pt alike (Whisper's own translation, es->en, commits on
    # agreement only). 0.8 scored lower on both (46.4, 62.3), 0.6 committed a hallucination.
    asr_stable_after_s: float | None = 0.7
    # ... and only up to the first word Whisper gave a lower probability than this (None: any).
    # The en->es talk, compute-free: without it words committed on one unsure pass ("All" at
    # 0.19 -> "all / now is alongside") cost 4.8 heard chrF (38.8 vs 43.6 before the early
    # commits); at 0.3 chrF 42.4, ear-voice p50 3.01 s (2.49 without), slope -0.005 s/s.
    asr_stable_min_prob: float | None = 0.3
    # The translator commits its hypothesis but for this many trailing words without
    # waiting for the next translation to agree (None: agreement only); see
    # IncrementalTranslator.
    mt_holdback_words: int | None = 2
    # Re-time translated speech (WORLD, pitch kept) when the listener falls behind
    # (policy.compression); off: Kokoro's own catch-up speed only.
    compress: bool = True
    # Voice committed words short of a full piece while the listener has nothing queued
    # (policy.voice_early); off: a piece waits for its clause end or its word count.
    voice_early: bool = True
    # Synthesise the phrase's last clause from the translator's draft while the speaker
    # pauses; play it the moment the commit confirms the same text (see stages/speak.py).
    # Off by default: with words committed early and voiced early, the draft rarely is what
    # gets committed (the 5-sentence en->es and en->pt talks: 3 hits / 17 misses and 2 / 18),
    # and every miss is a clause synthesised for nothing on a CPU that has none to spare.
    speculate: bool = False

    def __post_init__(self) -> None:
        if self.asr_interval_s <= 0:
            raise ValueError("asr_interval_s must be positive")
