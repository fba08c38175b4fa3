"""Speech measurements shared by the profile (caller's speech) and the converter (synthesised
speech): f0 statistics, active-speech loudness and formant frequencies. Numpy only."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from babelcall.engines.voice import pitch
from babelcall.engines.voice.sigproc import resample

LPC_RATE = 10000  # formants F1-F3 lie under 4 kHz; 10 kHz keeps LPC small (order 12)
LPC_ORDER = 12
FORMANT_WINDOW_S = 0.025
MAX_FORMANT_FRAMES = 300
_FORMANT_BANDS = ((200.0, 1000.0), (550.0, 2800.0), (1500.0, 3800.0))
_MAX_BANDWIDTH = 500.0  # Hz: wider resonances are not formants
FRAME_S = 0.02  # loudness frames
ACTIVE_GATE_DB = 30.0  # frames this far under the loud ones are pauses, not speech
SILENCE_DB = -90.0


@dataclass(frozen=True)
class F0Stats:
    median: float
    p10: float
    p90: float
    voiced_s: float


def f0_stats(track: pitch.PitchTrack) -> F0Stats | None:
    """Robust f0 statistics: octave jumps of the tracker are folded back towards the median
    before the percentiles are taken. None if nothing is voiced."""
    f = track.f0[track.f0 > 0]
    if len(f) == 0:
        return None
    med = np.median(f)
    octaves = np.log2(f / med)
    octaves = np.where(octaves > 0.75, octaves - 1, np.where(octaves < -0.75, octaves + 1,
                                                              octaves))
    folded = med * 2.0 ** octaves
    p10, p50, p90 = np.percentile(folded, [10, 50, 90])
    return F0Stats(float(p50), float(p10), float(p90), track.voiced_s)


def loudness_db(pcm: np.ndarray, rate: int) -> float:
    """RMS level in dBFS of the active frames (pauses gated out, as loudness meters do)."""
    x = np.asarray(pcm, dtype=np.float32).reshape(-1)
    frame = max(1, int(rate * FRAME_S))
    n = len(x) // frame
    if n == 0:
        return SILENCE_DB
    power = np.mean(x[: n * frame].reshape(n, frame).astype(np.float64) ** 2, axis=1)
    level = 10 * np.log10(np.maximum(power, 1e-12))
    loud = np.percentile(level, 95)
    active = level > max(loud - ACTIVE_GATE_DB, SILENCE_DB)
    if not active.any():
        return SILENCE_DB
    return float(10 * np.log10(max(float(np.mean(power[active])), 1e-12)))


def formants(pcm: np.ndarray, rate: int, track: pitch.PitchTrack) -> tuple[float, ...] | None:
    """Median F1, F2, F3 (Hz) over voiced frames, by LPC (autocorrelation method, roots of
    the predictor). None if too few voiced frames give all three."""
    x = np.asarray(pcm, dtype=np.float32).reshape(-1)
    voiced = np.flatnonzero(track.f0 > 0)
    if len(voiced) < 20:
        return None
    if len(voiced) > MAX_FORMANT_FRAMES:
        voiced = voiced[np.linspace(0, len(voiced) - 1, MAX_FORMANT_FRAMES).astype(int)]
    y = resample(x, max(1, round(len(x) * LPC_RATE / rate)))
    y = np.append(y[0], y[1:] - 0.97 * y[:-1])  # pre-emphasis
    win = int(LPC_RATE * FORMANT_WINDOW_S)
    centres = (voiced * track.hop * LPC_RATE).astype(np.int64)
    padded = np.pad(y, (win // 2, win))
    frames = padded[centres[:, None] + np.arange(win)[None, :]] * np.hamming(win)
    nfft = 1 << int(np.ceil(np.log2(2 * win)))
    spec = np.fft.rfft(frames, nfft)
    r = np.fft.irfft(np.abs(spec) ** 2, nfft)[:, : LPC_ORDER + 1]
    keep = r[:, 0] > 1e-10
    if keep.sum() < 20:
        return None
    a = _levinson(r[keep], LPC_ORDER)
    # Roots of each predictor polynomial as eigenvalues of its companion matrix (batched).
    comp = np.zeros((len(a), LPC_ORDER, LPC_ORDER))
    comp[:, 0, :] = -a[:, 1:]
    comp[:, 1:, :-1] = np.eye(LPC_ORDER - 1)
    roots = np.linalg.eigvals(comp)
    freq = np.angle(roots) * LPC_RATE / (2 * np.pi)
    bw = -np.log(np.maximum(np.abs(roots), 1e-9)) * LPC_RATE / np.pi
    good = (roots.imag > 0) & (bw < _MAX_BANDWIDTH) & (freq > 150)
    freq = np.where(good, freq, np.inf)
    freq.sort(axis=1)
    found = []
    for i, (lo, hi) in enumerate(_FORMANT_BANDS):
        col = freq[:, i] if freq.shape[1] > i else np.full(len(freq), np.inf)
        ok = (col >= lo) & (col <= hi)
        if ok.sum() < 10:
            return None
        found.append(float(np.median(col[ok])))
    return tuple(found)


def _levinson(r: np.ndarray, order: int) -> np.ndarray:
    """LPC coefficients a (a[:, 0] = 1) from autocorrelations r[:, :order + 1], per row."""
    n = len(r)
    a = np.zeros((n, order + 1))
    a[:, 0] = 1.0
    err = r[:, 0].copy()
    for i in range(1, order + 1):
        acc = r[:, i] + np.sum(a[:, 1:i] * r[:, i - 1:0:-1], axis=1)
        k = -acc / np.maximum(err, 1e-12)
        a[:, 1:i] = a[:, 1:i] + k[:, None] * a[:, i - 1:0:-1]
        a[:, i] = k
        err = err * (1 - k**2)
    return a
