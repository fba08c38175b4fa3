"""Speaker profiles from real caller speech (FLEURS clips through the real VAD)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import load_clip

from babelcall.engines.voice import pitch
from babelcall.engines.voice.profile import MAX_SPEECH_S, ProfileBuilder, analyse
from babelcall.realtime.types import Word

from .conftest import HIGH_CLIPS, LOW_CLIPS, profile_of, speech

RATE = 16000


def _voiced_signal(f0: float, seconds: float, rate: int = RATE) -> np.ndarray:
    """A pulse train through two resonances, with a slow 5 % pitch glide: speech-like."""
    n = int(seconds * rate)
    t = np.arange(n) / rate
    inst = f0 * (1 + 0.05 * np.sin(2 * np.pi * 0.7 * t))
    phase = np.cumsum(inst) / rate
    pulses = (np.diff(np.floor(phase), prepend=0) > 0).astype(np.float64)
    k = np.arange(int(0.03 * rate)) / rate  # 30 ms impulse response of two resonances
    response = sum(np.exp(-np.pi * bw * k) * np.sin(2 * np.pi * freq * k)
                   for freq, bw in ((700.0, 90.0), (1800.0, 120.0)))
    out = np.convolve(pulses, response)[:n]
    return (0.3 * out / np.abs(out).max()).astype(np.float32)


def test_pitch_tracker_finds_a_known_f0():
    for f0 in (95.0, 220.0, 310.0):
        track = pitch.track(_voiced_signal(f0, 1.5), RATE)
        got = np.median(track.f0[track.f0 > 0])
        assert got == pytest.approx(f0, rel=0.03)
        assert track.voiced_s > 1.2


@pytest.mark.parametrize("name", LOW_CLIPS + HIGH_CLIPS)
def test_profile_from_real_speech_is_plausible(name):
    prof = profile_of(name)
    assert prof is not None
    assert 70 <= prof.f0_median <= 350
    assert 60 <= prof.f0_p10 < prof.f0_median < prof.f0_p90 <= 500
    assert 0.1 < prof.f0_range < 1.5  # octaves
    assert -70 < prof.loudness_db < -10
    assert prof.formants is not None and 150 < prof.formants[0] < prof.formants[1] \
        < prof.formants[2] < 4000
    assert prof.voiced_s >= 1.0 and prof.speech_s <= MAX_SPEECH_S + 1e-6


def test_low_and_high_voices_are_told_apart():
    low = [profile_of(n).f0_median for n in LOW_CLIPS]
    high = [profile_of(n).f0_median for n in HIGH_CLIPS]
    assert max(low) < 150 < min(high)


def test_loudness_follows_the_caller_level():
    pcm = speech("fleurs-en-001")
    loud = analyse(pcm)
    quiet = analyse(pcm * 0.1)
    assert quiet.loudness_db == pytest.approx(loud.loudness_db - 20, abs=0.5)
    assert quiet.f0_median == pytest.approx(loud.f0_median, rel=0.02)  # level-independent


def test_builder_waits_for_enough_speech_then_refines_and_stops():
    pcm = speech("fleurs-pt-001")
    b = ProfileBuilder()
    b.add(pcm[: int(2.0 * RATE)])
    assert b.profile is None  # under 2.5 s of speech
    b.add(pcm[int(2.0 * RATE): int(4.0 * RATE)])
    first = b.profile
    assert first is not None and first.speech_s == pytest.approx(4.0)
    assert b.profile is first  # nothing new: same object, no re-analysis
    b.add(pcm[int(4.0 * RATE):])
    later = b.profile
    assert later is not first and later.speech_s > first.speech_s
    assert later.f0_median == pytest.approx(first.f0_median, rel=0.15)
    # Capped: speech beyond MAX_SPEECH_S is not kept, analysis cost stays bounded.
    for _ in range(4):
        b.add(pcm)
    assert b.complete and b.speech_s == pytest.approx(MAX_SPEECH_S)
    capped = b.profile
    assert b.profile is capped
    t = time.process_time()
    b.add(pcm)
    assert b.profile is capped and time.process_time() - t < 0.05


def test_builder_retries_sooner_while_it_has_found_no_voice():
    """fleurs-en-004 is one 4 s phrase: its first 2.5 s hold too few pitched frames for a
    profile; the rest of the phrase must still make one (not wait for 1.5 s more speech)."""
    pcm = load_clip("fleurs-en-004")
    b = ProfileBuilder()
    b.add(pcm[: int(2.5 * RATE)])
    assert b.profile is None
    b.add(pcm[int(2.5 * RATE): int(3.1 * RATE)])  # 0.6 s more: a retry, not a refresh
    assert b.due
    found = b.profile
    assert found is not None and found.f0_median > 165  # a woman's voice
    b.add(pcm[int(3.1 * RATE): int(3.7 * RATE)])
    assert not b.due  # found: now only every REFRESH_S


@pytest.mark.parametrize("kind", ["zeros", "hiss", "loud_noise", "hum", "tone"])
def test_silence_noise_and_tones_make_no_profile(kind):
    rng = np.random.default_rng(0)
    n = 12 * RATE
    t = np.arange(n) / RATE
    pcm = {
        "zeros": np.zeros(n),
        "hiss": 1e-4 * rng.standard_normal(n),
        "loud_noise": 0.1 * rng.standard_normal(n),
        "hum": 0.05 * np.sin(2 * np.pi * 50 * t) + 0.01 * rng.standard_normal(n),
        "tone": 0.2 * np.sin(2 * np.pi * 440 * t),
    }[kind].astype(np.float32)
    b = ProfileBuilder()
    for i in range(0, n, 4000):
        b.add(pcm[i:i + 4000])
        assert b.profile is None


def test_speaking_rate_from_word_timings():
    b = ProfileBuilder(language="en")
    assert b.speaking_rate is None
    b.add_words([Word(" one", 0.0, 0.3), Word(" two", 0.3, 0.6), Word(" three", 0.6, 1.0)])
    b.add_words([Word(f" w{i}", 5 + 0.25 * i, 5 + 0.25 * (i + 1)) for i in range(6)])
    assert b.speaking_rate == pytest.approx(9 / 2.5)
    b.add(speech("fleurs-en-001"))
    prof = b.profile
    assert prof.speaking_rate == pytest.approx(3.6) and prof.language == "en"


def test_two_speakers_fed_interleaved_stay_apart():
    a_pcm, b_pcm = speech("fleurs-en-001"), speech("fleurs-en-002")
    a, b = ProfileBuilder(), ProfileBuilder()
    step = 4000
    for i in range(0, max(len(a_pcm), len(b_pcm)), step):
        a.add(a_pcm[i:i + step])
        b.add(b_pcm[i:i + step])
        pa, pb = a.profile, b.profile
        if pa is not None and pb is not None:
            assert pa.f0_median < 150 < pb.f0_median
    assert a.profile.f0_median == pytest.approx(profile_of("fleurs-en-001").f0_median, rel=0.03)
    assert b.profile.f0_median == pytest.approx(profile_of("fleurs-en-002").f0_median, rel=0.03)


class _CountingEncoder:
    """Stands in for Resemblyzer (torch) to check the plumbing only."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def embed(self, pcm: np.ndarray, rate: int) -> np.ndarray:
        self.calls.append(len(pcm))
        return np.full(4, len(pcm) / rate, np.float32)


def test_embedding_is_optional_and_refreshed_sparingly():
    pcm = speech("fleurs-fr-003")
    assert analyse(pcm).embedding is None  # no encoder: no torch, no embedding
    enc = _CountingEncoder()
    b = ProfileBuilder(encoder=enc)
    for i in range(0, len(pcm), RATE // 2):
        b.add(pcm[i:i + RATE // 2])
        assert b.profile is None or b.profile.embedding is not None
    prof = b.profile
    assert prof.embedding is not None
    assert prof.speech_s / 1.5 <= prof.embedding[0] <= prof.speech_s  # recent enough
    # Each embedding covers at least 1.5x the speech of the one before.
    assert 1 <= len(enc.calls) <= 3
    assert all(b >= 1.5 * a for a, b in zip(enc.calls, enc.calls[1:], strict=False))
