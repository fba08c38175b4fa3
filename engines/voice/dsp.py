"""The embedded CPU voice cloner: pick the nearest Kokoro voice, then convert its speech
towards the caller's voice with signal processing (no model, no torch).

* base voice: ``jm_kumo`` for low voices, else a mix of two Kokoro styles chosen for being
  both intelligible and close to the FLEURS women (``FEMALE_VOICES``); median f0 decides,
  except between 150 and 200 Hz where the third formant does (``is_high``);
* pitch: f0 is mapped in log-f0 around the base voice's long-term median, so the converted
  median is the caller's and every contour (sentence-final rises and falls, stress) keeps
  its shape; the contour's span is scaled part of the way (``range_match``) towards the
  caller's own span;
* timbre: the spectral envelope is warped by the ratio of the caller's F2 and F3 (LPC
  medians) to the voice's, damped by ``formant_match`` and bounded;
* loudness: the caller's active-speech level, bounded to a range a listener can use;
* safety: a caller whose pitch is too far from every base voice (``is_safe``) hears the
  nearest voice unconverted, and ``decide`` says so.

The plan (``Conversion``) is carried out by a converter: the WORLD vocoder (``world.py``:
f0, envelope and aperiodicity; the envelope warped on its frequency axis) by default, or
Praat's "Change gender" (``praat.py``: resampling for the formants, then PSOLA for the pitch).
Both replaced a hand-written resampling + TD-PSOLA that did what Praat does. In the voice
ablation (``babelcall bench``, FLEURS en->es and es->en) both kept the meaning within the
corpus margin; WORLD kept every clip within 3 ASR-chrF points of the fixed voice, Praat lost
one clip by 3.9; speaker similarity was the same (0.60 en->es); WORLD costs ~88 ms of CPU per
2 s chunk, Praat ~20 ms.

The voice's reference figures come from ``VOICE_STATS`` (measured once over many sentences,
so the conversion is the same for every chunk of a call); an unknown voice is measured on the
chunk itself."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from babelcall.engines.voice import analysis, pitch, world
from babelcall.engines.voice.base import VoiceDecision
from babelcall.engines.voice.delivery import LOUDNESS_BOUNDS, target_loudness
from babelcall.engines.voice.profile import VoiceProfile

MALE_VOICE = "jm_kumo"
# Women get a mix of the styles of jm_kumo and jf_tebukuro (Kokoro styles average into a voice
# between the two), chosen for intelligibility as well as closeness. Heard back by the judge
# (round-trip chrF, the 5 Spanish reference sentences): jm_kumo 93.2, the stock female voices
# 85.8-88.8 (jf_alpha, the earlier choice, 85.9), the 3:1 mix 92.7 (91.9 converted towards
# fleurs-en-003), the even mix 91.5 (90.0). Mean Resemblyzer similarity to the three FLEURS
# women after conversion: jf_alpha 0.641, even mix 0.648, 3:1 mix 0.599 (fixed voice 0.47). In
# the session the even mix still lost fleurs-en-004 two words ("plumas" -> "plomas") with or
# without conversion; the 3:1 mix did not. The voices are tried in this order, the first one
# the caller's pitch can be safely converted to is taken (``is_safe``): the 3:1 mix (132 Hz)
# up to ~238 Hz callers, then the even mix (190 Hz), then jf_tebukuro (319 Hz).
FEMALE_VOICES = ("jm_kumo*3+jf_tebukuro", "jm_kumo+jf_tebukuro", "jf_tebukuro")
FEMALE_VOICE = FEMALE_VOICES[0]
# Median f0 alone decides outside this band; inside it (high men's, low women's voices) the
# third formant does, F3 being the formant that follows vocal-tract length most closely.
AMBIGUOUS_F0_HZ = (150.0, 200.0)
F3_SPLIT_HZ = 2700.0
F0_SPLIT_HZ = 155.0  # ... and without formants, median f0 (log-midpoint of jm_kumo and jf_alpha)
RANGE_MATCH = 0.5  # 0: keep the voice's f0 span, 1: take the caller's
FORMANT_MATCH = 0.5  # share of the formant ratio applied (estimates are noisy)
# x1.12 cost jf_alpha 0.6 round-trip chrF points (WER 0.095 -> 0.133), x1.25 2.4; women's
# callers reached x1.11. Bounded tighter: the formant warp added little similarity for women.
FORMANT_BOUNDS = (0.9, 1.06)
F0_RATIO_BOUNDS = (0.5, 2.0)
# Caller / voice median f0 that conversion may bridge. Measured on Kokoro's Spanish for the 5
# FLEURS reference sentences, heard back by the judge (round-trip chrF, unconverted: jm_kumo
# 93.2, jf_alpha 85.9): f0 x0.6 cost jm_kumo 2.9 points, x0.75 2.3, x0.9-x1.8 at most 0.9;
# jf_alpha stayed within 1 point from x0.6 to x1.8 (x1.8: WER 0.095 -> 0.143).
SAFE_F0_RATIO = (0.65, 1.8)
RANGE_BOUNDS = (0.6, 1.6)


@dataclass(frozen=True)
class VoiceStats:
    """Long-term figures of one TTS voice (or of any speech)."""

    f0_median: float
    f0_p10: float
    f0_p90: float
    loudness_db: float
    formants: tuple[float, ...] | None = None

    @property
    def f0_range(self) -> float:
        return float(np.log2(self.f0_p90 / self.f0_p10))


# Kokoro-82M voices (and the mix the cloner uses), measured with ``measure_voice`` on the
# benchmark's reference translations as Kokoro speaks them at speed 1.0 (jm_kumo: 10 sentences,
# 5 es + 5 en; the others: 6, 5 es + 1 en). Formants are LPC medians: only their ratios to
# the caller's are used.
VOICE_STATS: dict[str, VoiceStats] = {
    "jm_kumo": VoiceStats(92.1, 74.6, 115.6, -18.9, (357.0, 1296.0, 2578.0)),
    "jf_alpha": VoiceStats(260.9, 203.9, 320.8, -19.1, (502.0, 1788.0, 3448.0)),
    "jf_gongitsune": VoiceStats(222.8, 176.0, 275.1, -19.4, (361.0, 1132.0, 2975.0)),
    "jf_nezumi": VoiceStats(239.5, 201.5, 284.5, -19.0, (484.0, 1426.0, 3069.0)),
    "jf_tebukuro": VoiceStats(319.0, 255.3, 382.5, -19.5, (411.0, 1047.0, 2681.0)),
    "jm_kumo*3+jf_tebukuro": VoiceStats(132.2, 107.6, 178.0, -18.8, (380.0, 1364.0, 2647.0)),
    "jm_kumo+jf_tebukuro": VoiceStats(189.7, 148.3, 260.7, -18.9, (413.0, 1486.0, 2778.0)),
}


def measure_voice(pcm: np.ndarray, rate: int) -> VoiceStats | None:
    """The figures of ``pcm`` (speech), or None if it has no voiced frames."""
    track = pitch.track(pcm, rate)
    stats = analysis.f0_stats(track)
    if stats is None:
        return None
    return VoiceStats(stats.median, stats.p10, stats.p90, analysis.loudness_db(pcm, rate),
                      analysis.formants(pcm, rate, track))


@dataclass(frozen=True)
class Conversion:
    """What ``apply`` does to one voice for one profile."""

    voice_f0: float  # centre of the mapping (the voice's median f0)
    target_f0: float  # ... mapped here (the caller's median f0)
    range_factor: float  # log-f0 deviations from the centre are scaled by this
    formant_ratio: float  # spectral envelope frequencies are multiplied by this
    gain_db: float

    def f0(self, f0: np.ndarray) -> np.ndarray:
        """Target f0 for source f0 (Hz, > 0): log-linear around the medians."""
        octaves = np.log2(np.asarray(f0, dtype=np.float64) / self.voice_f0)
        return self.target_f0 * 2.0 ** (self.range_factor * octaves)


def plan(profile: VoiceProfile, voice: VoiceStats, *, range_match: float = RANGE_MATCH,
         formant_match: float = FORMANT_MATCH,
         loudness_bounds: tuple[float, float] | None = LOUDNESS_BOUNDS) -> Conversion:
    lo, hi = F0_RATIO_BOUNDS
    target = float(np.clip(profile.f0_median, voice.f0_median * lo, voice.f0_median * hi))
    spread = max(profile.f0_range, 0.05) / max(voice.f0_range, 0.05)
    k = float(np.clip(spread ** range_match, *RANGE_BOUNDS))
    alpha = 1.0
    if profile.formants and voice.formants and formant_match > 0:
        # F2 and F3 carry the vocal tract's length; F1 mostly the vowel.
        ratios = [p / v for p, v in zip(profile.formants[1:3], voice.formants[1:3],
                                        strict=True)]
        alpha = float(np.clip(np.exp(formant_match * np.mean(np.log(ratios))),
                              *FORMANT_BOUNDS))
    gain = 0.0
    if loudness_bounds is not None:
        gain = target_loudness(profile, loudness_bounds) - voice.loudness_db
    return Conversion(voice.f0_median, target, k, alpha, gain)


def is_safe(profile: VoiceProfile, voice: VoiceStats) -> tuple[bool, str]:
    """Can ``voice`` be converted to this caller without blurring words? Shifting f0 further
    than ``SAFE_F0_RATIO`` from the base voice was measured to cost intelligibility; a caller
    that far from the nearest base voice hears that voice unconverted. (Formant warps are
    bounded by ``FORMANT_BOUNDS``, inside which they cost nothing measurable: x1.25 cost
    2.4-4.5 points, x0.8-x1.12 none.) Returns the answer and the reason in words."""
    ratio = profile.f0_median / voice.f0_median
    lo, hi = SAFE_F0_RATIO
    if not lo <= ratio <= hi:
        return False, (f"not converted: the caller's pitch ({profile.f0_median:.0f} Hz) is "
                       f"{ratio:.2f} times the voice's ({voice.f0_median:.0f} Hz), outside the "
                       f"{lo:g}-{hi:g} that keeps words intelligible; nearest voice as it is")
    return True, (f"converted: pitch x{ratio:.2f} ({voice.f0_median:.0f} -> "
                  f"{profile.f0_median:.0f} Hz)")


Converter = Callable[[np.ndarray, int, "Conversion"], np.ndarray]


def _offered(voice: str, available_voices: Sequence[str]) -> bool:
    """Is ``voice`` (a voice, or a mix "a*3+b" of voices) one the TTS can speak?"""
    return all(part.partition("*")[0] in available_voices for part in voice.split("+"))


class DspCloner:
    """See the module docstring. Thread-safe and stateless per session (conversions are
    cached per profile object and voice). ``converter``: the signal processing that carries
    out a plan (``world.convert`` by default, or ``praat.convert``)."""

    def __init__(self, *, male_voice: str = MALE_VOICE,
                 female_voices: Sequence[str] = FEMALE_VOICES,
                 voice_stats: Mapping[str, VoiceStats] | None = None,
                 range_match: float = RANGE_MATCH, formant_match: float = FORMANT_MATCH,
                 loudness_bounds: tuple[float, float] | None = LOUDNESS_BOUNDS,
                 converter: Converter | None = None, name: str = "dsp") -> None:
        self.name = name
        self.male_voice, self.female_voices = male_voice, tuple(female_voices)
        self.voice_stats = dict(VOICE_STATS if voice_stats is None else voice_stats)
        self.range_match, self.formant_match = range_match, formant_match
        self.loudness_bounds = loudness_bounds
        self._convert = converter or world.convert
        # WORLD converts and re-times in one pass (``apply(tempo=)``); Praat does not
        self.retimes = converter is None
        self._plans: OrderedDict[tuple[int, str | None], tuple[VoiceProfile, Conversion]] = \
            OrderedDict()
        self._lock = threading.Lock()

    def is_high(self, profile: VoiceProfile) -> bool:
        """Does the caller get the female (high) voice?"""
        lo, hi = AMBIGUOUS_F0_HZ
        if profile.f0_median < lo or profile.f0_median >= hi:
            return profile.f0_median >= hi
        if profile.formants is not None and len(profile.formants) >= 3:
            return profile.formants[2] >= F3_SPLIT_HZ
        return profile.f0_median >= F0_SPLIT_HZ

    def nearest_voice(self, profile: VoiceProfile,
                      available_voices: Sequence[str]) -> str | None:
        """The base voice for the caller: the male voice, or by ``is_high`` the first female
        voice that can be safely converted to them (else the first offered); with another voice
        set, the one whose median f0 is nearest (in octaves)."""
        if self.is_high(profile):
            offered = [v for v in self.female_voices if _offered(v, available_voices)]
            safe = [v for v in offered if v not in self.voice_stats
                    or is_safe(profile, self.voice_stats[v])[0]]
            if safe or offered:
                return (safe or offered)[0]
        elif _offered(self.male_voice, available_voices):
            return self.male_voice
        known = [v for v in self.voice_stats if _offered(v, available_voices)]
        if not known:
            return None
        return min(known, key=lambda v: abs(np.log2(self.voice_stats[v].f0_median /
                                                   profile.f0_median)))

    def decide(self, profile: VoiceProfile | None,
               available_voices: Sequence[str]) -> VoiceDecision:
        """The base voice for this caller and whether its output is converted (see
        ``is_safe``): the session voices each phrase with ``voice`` and says ``reason`` in its
        events when ``convert`` is False."""
        if profile is None:
            return VoiceDecision(None, False, "no voice profile yet")
        voice = self.nearest_voice(profile, available_voices)
        if voice is None:
            return VoiceDecision(None, False, "no known base voice to convert")
        stats = self.voice_stats.get(voice)
        if stats is None:
            return VoiceDecision(voice, True, "converted (voice measured on its own output)")
        safe, why = is_safe(profile, stats)
        return VoiceDecision(voice, safe, why)

    def choose_voice(self, profile: VoiceProfile | None,
                     available_voices: Sequence[str]) -> str | None:
        return self.decide(profile, available_voices).voice

    def plan(self, profile: VoiceProfile, voice: str | None,
             pcm: np.ndarray | None = None, rate: int = 0) -> Conversion | None:
        """The conversion for ``profile`` and ``voice`` (measured on ``pcm`` if the voice has
        no reference figures); None if nothing can be measured."""
        key = (id(profile), voice)
        with self._lock:
            hit = self._plans.get(key)
            if hit is not None and hit[0] is profile:
                return hit[1]
        stats = self.voice_stats.get(voice) if voice else None
        if stats is None:
            if pcm is None:
                return None
            stats = measure_voice(pcm, rate)
            if stats is None:
                return None
        conv = plan(profile, stats, range_match=self.range_match,
                    formant_match=self.formant_match, loudness_bounds=self.loudness_bounds)
        if voice in self.voice_stats:
            with self._lock:
                self._plans[key] = (profile, conv)
                while len(self._plans) > 256:
                    self._plans.popitem(last=False)
        return conv

    def apply(self, pcm: np.ndarray, rate: int, profile: VoiceProfile | None, *,
              voice: str | None = None, tempo: float = 1.0) -> np.ndarray:
        """``pcm`` converted towards ``profile``; unchanged without a profile, or where the
        conversion for this caller and voice is not safe (``is_safe``). ``tempo`` > 1: also
        ``tempo`` times faster, pitch kept (``world.retime``), in the conversion's own pass
        where WORLD converts."""
        conv = None
        if profile is not None and len(pcm):
            stats = self.voice_stats.get(voice) if voice else None
            if stats is None or is_safe(profile, stats)[0]:
                conv = self.plan(profile, voice, pcm, rate)
        if conv is None:
            return world.retime(pcm, rate, tempo) if tempo > 1.0 else pcm
        if tempo > 1.0 and self.retimes:
            return world.convert(pcm, rate, conv, tempo=tempo)
        if tempo > 1.0:
            pcm = world.retime(pcm, rate, tempo)
        return self._convert(pcm, rate, conv)
