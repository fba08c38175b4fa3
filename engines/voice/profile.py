"""A caller's voice, measured from their first seconds of speech: pitch (median and range),
loudness, formants, speaking rate and, when an encoder is given, a speaker embedding.

One ``ProfileBuilder`` per participant. The session feeds it the speech audio the VAD let
through (16 kHz float32) and, optionally, the words the recogniser committed with their
times. ``profile`` is None until enough speech has been heard, then refines as more arrives;
analysis stops at ``max_speech_s`` so its cost stays bounded (at most ~60 ms of CPU per refresh on
this machine, a handful of refreshes per participant). Silence, noise and steady tones never
make a profile: the pitch tracker must find periodic frames, and a speaker's f0 must move."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

from babelcall.engines.voice import analysis, pitch
from babelcall.realtime.types import Word

RATE = 16000
MIN_SPEECH_S = 2.5  # speech audio before a first profile
MIN_VOICED_S = 1.0  # ... of which pitched (voiced) frames
MAX_SPEECH_S = 12.0  # analysis stops here: later speech changes nothing
REFRESH_S = 1.5  # re-analyse after this much new speech
RETRY_S = 0.5  # ... or this much while no profile was found (nothing to lose: try sooner)
MIN_F0_SPREAD = 1.03  # p90/p10 of a speaker's f0 is wider than this; a steady tone is not
MIN_RATE_SPAN_S = 1.0  # speaking-rate input shorter than this (in total) is ignored


class SpeakerEncoder(Protocol):
    """Speaker embedding of 16 kHz speech (e.g. Resemblyzer's d-vector); optional, may need
    torch, never required by the embedded path."""

    def embed(self, pcm: np.ndarray, rate: int) -> np.ndarray: ...


@dataclass(frozen=True, eq=False)
class VoiceProfile:
    """Measured voice of one participant. Pitch in Hz, loudness in dBFS (active speech)."""

    f0_median: float
    f0_p10: float
    f0_p90: float
    loudness_db: float
    speech_s: float  # seconds of speech analysed
    voiced_s: float  # ... of which voiced
    formants: tuple[float, ...] | None = None  # median F1, F2, F3 in Hz
    speaking_rate: float | None = None  # words per second, from ASR word timings
    language: str | None = None  # the language the rate was measured in
    embedding: np.ndarray | None = field(default=None, repr=False)
    reference: np.ndarray | None = field(default=None, repr=False)  # the analysed speech

    @property
    def f0_range(self) -> float:
        """Spread of the pitch in octaves (10th to 90th percentile)."""
        return float(np.log2(self.f0_p90 / self.f0_p10))


def analyse(pcm: np.ndarray, rate: int = RATE, *, min_voiced_s: float = MIN_VOICED_S,
            keep_reference: bool = True) -> VoiceProfile | None:
    """Profile of ``pcm`` (speech only), or None if it holds too little voiced speech."""
    x = np.nan_to_num(np.asarray(pcm, dtype=np.float32).reshape(-1))
    track = pitch.track(x, rate)
    stats = analysis.f0_stats(track)
    if stats is None or stats.voiced_s < min_voiced_s or stats.p90 / stats.p10 < MIN_F0_SPREAD:
        return None
    return VoiceProfile(
        f0_median=stats.median, f0_p10=stats.p10, f0_p90=stats.p90,
        loudness_db=analysis.loudness_db(x, rate), speech_s=len(x) / rate,
        voiced_s=stats.voiced_s, formants=analysis.formants(x, rate, track),
        reference=x.copy() if keep_reference else None)


class ProfileBuilder:
    """Accumulates one participant's speech and words; ``profile`` is their VoiceProfile.

    Thread-safe: the session may feed audio from one worker and read the profile from another.
    """

    def __init__(self, *, rate: int = RATE, language: str | None = None,
                 encoder: SpeakerEncoder | None = None, min_speech_s: float = MIN_SPEECH_S,
                 max_speech_s: float = MAX_SPEECH_S, refresh_s: float = REFRESH_S) -> None:
        if not 0 < min_speech_s <= max_speech_s:
            raise ValueError("need 0 < min_speech_s <= max_speech_s")
        self.rate = rate
        self.language = language
        self._encoder = encoder
        self._min = int(min_speech_s * rate)
        self._max = int(max_speech_s * rate)
        self._refresh = int(refresh_s * rate)
        self._retry = int(min(RETRY_S, refresh_s) * rate)
        self._blocks: list[np.ndarray] = []
        self._buffered = 0
        self._analysed = 0  # buffered samples at the last analysis
        self._embedded = 0  # ... at the last embedding
        self._profile: VoiceProfile | None = None
        self._embedding: np.ndarray | None = None
        self._words = 0
        self._word_s = 0.0
        self._out: VoiceProfile | None = None  # the profile as last handed out
        self._lock = threading.Lock()  # guards the fields; held for microseconds
        self._analysing = threading.Lock()

    @property
    def speech_s(self) -> float:
        """Seconds of speech kept for analysis (at most ``max_speech_s``)."""
        return self._buffered / self.rate

    @property
    def heard_enough(self) -> bool:
        """Enough speech for a first analysis (it may still find no voiced frames)."""
        return self._buffered >= self._min

    @property
    def complete(self) -> bool:
        """True once the analysis cap is reached: later audio is ignored."""
        return self._buffered >= self._max

    def add(self, pcm: np.ndarray) -> None:
        """Speech audio (16 kHz mono float32, the VAD's speech only)."""
        x = np.asarray(pcm, dtype=np.float32).reshape(-1)
        with self._lock:
            room = self._max - self._buffered
            if room <= 0 or len(x) == 0:
                return
            block = x[:room].copy()
            self._blocks.append(block)
            self._buffered += len(block)

    def add_words(self, words: Sequence[Word]) -> None:
        """Recognised words of one stretch of speech (their times give the speaking rate)."""
        words = [w for w in words if w.text.strip()]
        if not words:
            return
        span = max(w.end for w in words) - min(w.start for w in words)
        if span <= 0:
            return
        with self._lock:
            self._words += len(words)
            self._word_s += span
            self._out = None

    @property
    def speaking_rate(self) -> float | None:
        """Words per second over the words given so far (None before ~1 s of them)."""
        if self._word_s < MIN_RATE_SPAN_S:
            return None
        return self._words / self._word_s

    def _due(self) -> bool:
        """Enough new speech since the last analysis for another (caller holds the lock).
        While none was found (too few pitched frames in the first seconds), sooner: a short
        first phrase must not end before the speaker is profiled."""
        refresh = self._refresh if self._profile is not None else self._retry
        return self._buffered >= self._min and (
            self._analysed == 0 or self._buffered - self._analysed >= refresh
            or (self._buffered >= self._max and self._analysed < self._max))

    @property
    def due(self) -> bool:
        """Reading ``profile`` now would run an analysis (a session runs it ahead, in the
        background, so the first piece of a phrase never waits for it)."""
        with self._lock:
            return self._due()

    @property
    def latest(self) -> VoiceProfile | None:
        """The profile as last analysed, without analysing again."""
        with self._lock:
            return self._handed_out()

    def _handed_out(self) -> VoiceProfile | None:
        if self._profile is None:
            return None
        if self._out is None:  # one object per state: converters may cache on it
            self._out = replace(self._profile, speaking_rate=self.speaking_rate,
                                language=self.language, embedding=self._embedding)
        return self._out

    @property
    def profile(self) -> VoiceProfile | None:
        """The current profile (None until enough voiced speech); analysis runs here, at most
        once per ``refresh_s`` of new speech, outside the lock so ``add`` never waits on it."""
        with self._analysing:  # one analysis at a time; readers meanwhile wait for its result
            with self._lock:
                due = self._due()
                if due:
                    pcm = np.concatenate(self._blocks) if len(self._blocks) > 1 \
                        else self._blocks[0]
                    self._blocks = [pcm]
                    self._analysed = size = self._buffered
                    embed = self._encoder is not None and (
                        self._embedded == 0 or size >= 1.5 * self._embedded)
            if due:
                found = analyse(pcm, self.rate)
                embedding = self._embedding
                if found is not None and embed and self._encoder is not None:
                    embedding = np.asarray(self._encoder.embed(pcm, self.rate))
                with self._lock:
                    self._profile, self._embedding = found, embedding
                    if found is not None and embed:
                        self._embedded = size
                    self._out = None
            with self._lock:
                return self._handed_out()
