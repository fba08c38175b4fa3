"""The embedded cloner on real Kokoro speech and real caller profiles: voice choice, f0 moved
to the caller with the contour kept, length and range kept, loudness, speed, CPU cost."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest

from babelcall.engines.voice import PassThrough, VoiceCloner, load_cloner, pitch
from babelcall.engines.voice.delivery import RATE_BOUNDS, match_loudness, rate_factor
from babelcall.engines.voice.dsp import (
    FEMALE_VOICE,
    FEMALE_VOICES,
    MALE_VOICE,
    VOICE_STATS,
    DspCloner,
)
from babelcall.engines.voice.profile import VoiceProfile

from .conftest import HIGH_CLIPS, LOW_CLIPS, profile_of

RATE = 24000
KOKORO_VOICES = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")


def _median_f0(pcm: np.ndarray, rate: int = RATE) -> float:
    track = pitch.track(pcm, rate)
    return float(np.median(track.f0[track.f0 > 0]))


def _octaves(a: float, b: float) -> float:
    return abs(float(np.log2(a / b)))


def test_cloners_follow_the_protocol():
    assert isinstance(DspCloner(), VoiceCloner)
    assert isinstance(PassThrough(), VoiceCloner)
    assert isinstance(load_cloner("off"), PassThrough)
    assert isinstance(load_cloner("dsp"), DspCloner)
    assert load_cloner("praat").name == "praat"
    with pytest.raises(ValueError, match="dsp"):
        load_cloner("magic")


def test_every_kokoro_voice_has_reference_figures():
    assert set(KOKORO_VOICES) <= set(VOICE_STATS)
    assert VOICE_STATS[MALE_VOICE].f0_median < 130 < VOICE_STATS[FEMALE_VOICE].f0_median


@pytest.mark.parametrize("name", LOW_CLIPS + HIGH_CLIPS)
def test_base_voice_follows_the_caller_pitch(name):
    voice = DspCloner().choose_voice(profile_of(name), KOKORO_VOICES)
    if name in LOW_CLIPS:
        assert voice == MALE_VOICE
    else:  # the most intelligible female voice the caller's pitch can safely be moved to
        assert voice in FEMALE_VOICES
        assert DspCloner().decide(profile_of(name), KOKORO_VOICES).convert


def test_no_profile_keeps_the_default_voice_and_the_audio(tts_speech):
    pcm = tts_speech(MALE_VOICE)
    cloner = DspCloner()
    assert cloner.choose_voice(None, KOKORO_VOICES) is None
    assert cloner.apply(pcm, RATE, None, voice=MALE_VOICE) is pcm
    assert PassThrough().apply(pcm, RATE, profile_of(LOW_CLIPS[0])) is pcm
    empty = np.zeros(0, np.float32)
    assert len(cloner.apply(empty, RATE, profile_of(LOW_CLIPS[0]), voice=MALE_VOICE)) == 0


def test_kokoro_speaks_a_mix_of_its_voices(kokoro):
    """The female base voices are mixes of two Kokoro styles: weighted means of their tables,
    speaking between the two."""
    a, b = "jm_kumo", "jf_tebukuro"
    assert np.allclose(kokoro.style(f"{a}+{b}"), (kokoro.style(a) + kokoro.style(b)) / 2)
    assert np.allclose(kokoro.style(f"{a}*3+{b}"), (3 * kokoro.style(a) + kokoro.style(b)) / 4)
    pcm = np.concatenate(list(kokoro.synthesize("Hola a todos, buenos días.", language="es",
                                                voice=FEMALE_VOICE)))
    f0 = _median_f0(pcm)
    assert VOICE_STATS[a].f0_median < f0 < VOICE_STATS[b].f0_median
    for bad in ("jm_kumo+nobody", "jm_kumo*0+jf_alpha", "jm_kumo*x"):
        with pytest.raises(ValueError, match="mix"):
            kokoro.synthesize("Hola.", language="es", voice=bad)


def test_other_voice_sets_get_the_nearest_voice_by_pitch():
    cloner = DspCloner()
    high, low = profile_of(HIGH_CLIPS[2]), profile_of(LOW_CLIPS[0])  # ~300 Hz, ~113 Hz
    assert cloner.choose_voice(high, ["jf_tebukuro", "jf_nezumi"]) == "jf_tebukuro"
    # the female voice is a mix, offered where both its voices are
    assert cloner.choose_voice(high, ["jf_tebukuro", "jm_kumo"]) in FEMALE_VOICES
    assert cloner.choose_voice(low, ["jf_nezumi", "jm_kumo"]) == "jm_kumo"
    assert cloner.choose_voice(low, ["jf_nezumi", "jf_alpha"]) in ("jf_nezumi", "jf_alpha")
    assert cloner.choose_voice(low, ["piper_joe"]) is None  # unknown voices: default


@pytest.mark.parametrize("kind, name", [
    ("dsp", LOW_CLIPS[0]), ("dsp", LOW_CLIPS[1]), ("dsp", HIGH_CLIPS[0]), ("dsp", HIGH_CLIPS[2]),
    ("praat", LOW_CLIPS[0]), ("praat", HIGH_CLIPS[0])])
def test_conversion_moves_f0_to_the_caller_and_keeps_length_and_range(kind, name, tts_speech):
    prof = profile_of(name)
    cloner = load_cloner(kind)
    voice = cloner.choose_voice(prof, KOKORO_VOICES)
    pcm = tts_speech(voice)
    out = cloner.apply(pcm, RATE, prof, voice=voice)
    assert out.dtype == np.float32
    assert abs(len(out) - len(pcm)) <= 0.02 * len(pcm)
    assert np.all(np.abs(out) <= 1.0)
    before, after = _median_f0(pcm), _median_f0(out)
    assert _octaves(after, prof.f0_median) < 0.1 + 0.5 * _octaves(before, prof.f0_median)


def test_unsafe_conversion_falls_back_to_the_nearest_voice_and_says_so(tts_speech):
    """A caller whose pitch is too far from the nearest base voice (a 190 Hz voice with a
    man's formants: jm_kumo, twice its pitch) hears that voice unconverted, and the decision
    says why; the same caller at their own pitch is converted."""
    cloner = DspCloner()
    prof = profile_of(LOW_CLIPS[0])
    near = cloner.decide(prof, KOKORO_VOICES)
    assert (near.voice, near.convert) == (MALE_VOICE, True) and "converted" in near.reason
    far = replace(prof, f0_median=190.0, f0_p10=160.0, f0_p90=230.0,
                  formants=(400.0, 1400.0, 2500.0))
    decision = cloner.decide(far, KOKORO_VOICES)
    assert decision.voice == MALE_VOICE == cloner.choose_voice(far, KOKORO_VOICES)
    assert not decision.convert and "not converted" in decision.reason
    assert "190 Hz" in decision.reason
    pcm = tts_speech(MALE_VOICE)
    assert cloner.apply(pcm, RATE, far, voice=MALE_VOICE) is pcm
    assert cloner.apply(pcm, RATE, prof, voice=MALE_VOICE) is not pcm
    assert not PassThrough().decide(prof, KOKORO_VOICES).convert
    assert not cloner.decide(None, KOKORO_VOICES).convert


def test_intonation_contour_is_kept(tts_speech):
    """A sentence-final question rise and the stress pattern survive the shift: frame by
    frame, log-f0 before and after are strongly correlated."""
    pcm = tts_speech(MALE_VOICE)
    prof = profile_of(LOW_CLIPS[0])
    prof = replace(prof, f0_median=prof.f0_median * 1.3, f0_p10=prof.f0_p10 * 1.3,
                   f0_p90=prof.f0_p90 * 1.3)  # a clear shift
    out = DspCloner().apply(pcm, RATE, prof, voice=MALE_VOICE)
    a, b = pitch.track(pcm, RATE).f0, pitch.track(out, RATE).f0
    m = min(len(a), len(b))
    both = (a[:m] > 0) & (b[:m] > 0)
    assert both.sum() > 50
    la, lb = np.log2(a[:m][both]), np.log2(b[:m][both])
    assert np.corrcoef(la, lb)[0, 1] > 0.8
    assert np.median(lb - la) == pytest.approx(np.log2(prof.f0_median / VOICE_STATS[
        MALE_VOICE].f0_median), abs=0.12)


def test_two_speakers_never_swap(tts_speech):
    """Two callers' profiles applied to the same TTS audio each pull f0 towards their own
    (two men on the male voice, two women on the female one: within the safe shift)."""
    cloner = DspCloner()
    man = profile_of(LOW_CLIPS[0])
    higher_man = replace(man, f0_median=man.f0_median * 1.4, f0_p10=man.f0_p10 * 1.4,
                         f0_p90=man.f0_p90 * 1.4)
    pairs = {MALE_VOICE: (man, higher_man),
             "jm_kumo+jf_tebukuro": (profile_of(HIGH_CLIPS[0]), profile_of(HIGH_CLIPS[2]))}
    for voice, (low, high) in pairs.items():
        assert cloner.decide(low, KOKORO_VOICES).convert
        pcm = tts_speech(voice)
        base = _median_f0(pcm)
        out_low = _median_f0(cloner.apply(pcm, RATE, low, voice=voice))
        out_high = _median_f0(cloner.apply(pcm, RATE, high, voice=voice))
        assert out_low < out_high
        assert _octaves(out_low, low.f0_median) < _octaves(base, low.f0_median) + 0.05
        assert _octaves(out_high, high.f0_median) < _octaves(base, high.f0_median) + 0.05


def test_loudness_matches_the_caller_within_bounds(tts_speech):
    from babelcall.engines.voice.analysis import loudness_db

    pcm = tts_speech(MALE_VOICE)
    prof = profile_of(LOW_CLIPS[0])
    cloner = DspCloner()
    for level, expect in ((-24.0, -24.0), (-60.0, -30.0), (-3.0, -14.0)):
        out = cloner.apply(pcm, RATE, replace(prof, loudness_db=level), voice=MALE_VOICE)
        assert np.all(np.abs(out) <= 1.0)
        assert loudness_db(out, RATE) == pytest.approx(expect, abs=2.5)
    quiet = match_loudness(pcm, RATE, replace(prof, loudness_db=-28.0))
    assert loudness_db(quiet, RATE) == pytest.approx(-28.0, abs=1.0)
    assert match_loudness(pcm, RATE, None) is pcm


def test_speaking_rate_sets_tts_speed():
    prof = VoiceProfile(120, 100, 150, -20, 5, 3, language="es")
    assert rate_factor(None, "en") == 1.0
    assert rate_factor(prof, "en") == 1.0  # rate not measured yet
    assert rate_factor(replace(prof, speaking_rate=3.0), "en") == pytest.approx(1.0)
    assert rate_factor(replace(prof, speaking_rate=2.7), "en") == pytest.approx(0.9)
    # A fast caller never makes the voice faster than its own pace: that cost words.
    assert rate_factor(replace(prof, speaking_rate=9.0), "en") == RATE_BOUNDS[1] == 1.0
    assert rate_factor(replace(prof, speaking_rate=1.0), "en") == RATE_BOUNDS[0]
    # The TTS voice's own pace at speed 1 is taken into account when known.
    assert rate_factor(replace(prof, speaking_rate=3.0), "en", tts_wps=2.9) == \
        pytest.approx(2.7 / 2.9)


def test_first_chunk_costs_little_cpu(tts_speech):
    """The first chunk (1-3 s) waits for apply(): budget 150 ms; measured ~10 ms/s of audio.
    CPU time, so a busy machine does not make the test flaky."""
    pcm = tts_speech(MALE_VOICE)
    chunk = np.resize(pcm, 2 * RATE) if len(pcm) < 2 * RATE else pcm[: 2 * RATE]
    cloner = DspCloner()
    prof = profile_of(HIGH_CLIPS[0])
    cloner.apply(chunk, RATE, prof, voice=MALE_VOICE)  # warm caches
    costs = []
    for _ in range(3):
        t = time.process_time()
        cloner.apply(chunk, RATE, prof, voice=MALE_VOICE)
        costs.append(time.process_time() - t)
    assert np.median(costs) < 0.15


def test_embedded_path_never_imports_torch():
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from babelcall.engines.voice import DspCloner, ProfileBuilder, rate_factor\n"
        "t = np.arange(48000) / 16000\n"
        "b = ProfileBuilder(); b.add((0.1 * np.sin(2 * np.pi * (120 + 20 * t) * t))"
        ".astype(np.float32))\n"
        "p = b.profile\n"
        "DspCloner().apply(np.zeros(24000, np.float32), 24000, p, voice='jm_kumo')\n"
        "rate_factor(p, 'en')\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.parametrize("tempo", [1.25, 1.5])
def test_re_timing_shortens_speech_and_keeps_its_pitch(tempo, tts_speech):
    """``world.retime`` (no conversion) and ``apply(tempo=)`` (conversion and re-timing in one
    vocoder pass) both make the speech ``tempo`` times shorter without moving its pitch."""
    from babelcall.engines.voice import world

    pcm = tts_speech(MALE_VOICE)
    fast = world.retime(pcm, RATE, tempo)
    assert abs(len(fast) * tempo - len(pcm)) <= 0.02 * len(pcm)
    assert np.all(np.abs(fast) <= 1.0)
    assert _octaves(_median_f0(fast), _median_f0(pcm)) < 0.05
    prof = profile_of(LOW_CLIPS[0])
    cloner = DspCloner()
    converted = cloner.apply(pcm, RATE, prof, voice=MALE_VOICE)
    both = cloner.apply(pcm, RATE, prof, voice=MALE_VOICE, tempo=tempo)
    assert abs(len(both) * tempo - len(pcm)) <= 0.02 * len(pcm)
    assert _octaves(_median_f0(both), _median_f0(converted)) < 0.05
    # nothing to convert: still re-timed
    assert abs(len(cloner.apply(pcm, RATE, None, tempo=tempo)) - len(fast)) <= 0.01 * len(pcm)
    assert len(world.retime(pcm, RATE, 1.0)) == len(pcm)  # at 1.0: untouched
