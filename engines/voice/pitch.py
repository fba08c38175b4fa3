"""Cheap, robust f0 tracking in numpy: YIN (de Cheveigné & Kawahara 2002), vectorised over
frames with one FFT per frame, with octave-error-resistant period choice, level gates and
clean-up of isolated voiced frames.

Chosen over WORLD's dio+stonemask (pyworld) after measuring both on the 25 FLEURS clips
(290 s): median f0 per clip within 2.6 % of dio's on average (max 11 %), frames more than 20 %
apart 3.5 %, at 4.7 ms of CPU per second of audio against 7.8 ms, and no compiled extension
(pyworld 0.3.5 also fails to import beside setuptools >= 81, which torch pulls in)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HOP_S = 0.01
F0_MIN, F0_MAX = 60.0, 500.0
THRESHOLD = 0.2  # YIN threshold on the cumulative-mean-normalised difference (voicing)
DIP_TOLERANCE = 0.3  # a shorter-lag dip this close to the deepest one is the period
DIP_CEILING = 0.45
DEPTH_WEIGHT = 2.0  # octaves of distance from the typical f0 worth one unit of dip depth
WINDOW_S = 0.025  # integration window (>= the longest period)
ABS_FLOOR_DB = -80.0  # frames quieter than this (dBFS) are never voiced
REL_FLOOR_DB = 35.0  # ... nor frames this far under the loud frames of the same signal
MIN_RUN = 3  # voiced runs shorter than this many frames are dropped (clicks, noise)


@dataclass(frozen=True)
class PitchTrack:
    """f0 in Hz per frame (0 where unvoiced); frame ``i`` is centred at ``i * hop`` seconds."""

    f0: np.ndarray
    hop: float
    level_db: np.ndarray  # frame RMS in dBFS

    @property
    def voiced(self) -> np.ndarray:
        return self.f0 > 0

    @property
    def voiced_s(self) -> float:
        return float(np.count_nonzero(self.f0 > 0) * self.hop)


def track(pcm: np.ndarray, rate: int, *, f0_min: float = F0_MIN, f0_max: float = F0_MAX,
          hop_s: float = HOP_S, threshold: float = THRESHOLD) -> PitchTrack:
    """f0 of mono ``pcm`` at ``rate`` every ``hop_s`` seconds."""
    x = np.asarray(pcm, dtype=np.float32).reshape(-1)
    hop = max(1, round(rate * hop_s))
    tau_min = max(2, int(rate / f0_max))
    tau_max = int(np.ceil(rate / f0_min))
    win = max(tau_max, round(rate * WINDOW_S))
    size = win + tau_max
    n = len(x) // hop
    if n == 0 or not np.any(x):
        return PitchTrack(np.zeros(n), hop / rate, np.full(n, -120.0))
    padded = np.pad(x, (win // 2, size))
    frames = np.lib.stride_tricks.sliding_window_view(padded, size)[: n * hop: hop][:n]
    frames = frames - frames[:, :win].mean(axis=1, keepdims=True)
    nfft = 1 << int(np.ceil(np.log2(size)))
    spec_a = np.fft.rfft(frames[:, :win], nfft)
    spec_b = np.fft.rfft(frames, nfft)
    cross = np.fft.irfft(np.conj(spec_a) * spec_b, nfft)[:, : tau_max + 1]
    csum = np.concatenate([np.zeros((n, 1), np.float32), np.cumsum(frames**2, axis=1)], axis=1)
    taus = np.arange(tau_max + 1)
    energy = csum[:, taus + win] - csum[:, taus]  # energy of the window starting at lag tau
    diff = np.maximum(energy[:, :1] + energy - 2.0 * cross, 0.0)
    cum = np.cumsum(diff[:, 1:], axis=1)
    cmnd = np.ones_like(diff)
    cmnd[:, 1:] = diff[:, 1:] * taus[1:] / np.maximum(cum, 1e-12)

    # Voiced where the deepest dip is under the threshold. Candidate periods are the dips nearly
    # as deep as the deepest: plain YIN (the first dip under a fixed threshold) halves the f0 of
    # high or breathy voices, whose one-period dip is often shallower than their two-period one,
    # while voices with a strong second harmonic show a deep dip at half the period. Frames with
    # one clear candidate give the speaker's typical f0; each frame then takes the candidate
    # nearest to it (in octaves), depth breaking near-ties.
    inner = cmnd[:, tau_min:tau_max]
    local_min = (inner <= cmnd[:, tau_min - 1:tau_max - 1]) & (inner <= cmnd[:, tau_min + 1:])
    depth = np.where(local_min, inner, np.inf)
    deepest = depth.min(axis=1)
    has = deepest < threshold
    if not has.any():
        return PitchTrack(np.zeros(n), hop / rate, _level(energy, win))
    ok = depth < np.minimum(deepest + DIP_TOLERANCE, DIP_CEILING)[:, None]
    octaves = np.log2(rate / np.arange(tau_min, tau_max))
    first, best = np.argmax(ok, axis=1), np.argmin(depth, axis=1)
    clear = has & (first == best)
    typical = np.median(octaves[first[clear]] if clear.sum() >= 10 else octaves[best[has]])
    cost = np.where(ok, np.abs(octaves - typical) + DEPTH_WEIGHT * inner, np.inf)
    idx = np.argmin(cost, axis=1) + tau_min
    rows = np.arange(n)
    # Parabolic interpolation around the chosen lag.
    a, b, c = cmnd[rows, idx - 1], cmnd[rows, idx], cmnd[rows, idx + 1]
    den = a - 2 * b + c
    shift = np.where(np.abs(den) > 1e-12, 0.5 * (a - c) / np.where(den == 0, 1, den), 0.0)
    lag = idx + np.clip(shift, -1.0, 1.0)

    level = _level(energy, win)
    loud = np.percentile(level, 95)
    gate = (level > ABS_FLOOR_DB) & (level > loud - REL_FLOOR_DB)
    f0 = np.where(has & gate, rate / lag, 0.0)
    f0[(f0 < f0_min) | (f0 > f0_max)] = 0.0
    return PitchTrack(_clean(f0), hop / rate, level)


def _level(energy: np.ndarray, win: int) -> np.ndarray:
    return 10 * np.log10(np.maximum(energy[:, 0] / win, 1e-12))


def _clean(f0: np.ndarray) -> np.ndarray:
    """Drop short voiced runs and smooth single-frame octave spikes (3-frame median)."""
    voiced = f0 > 0
    if not voiced.any():
        return f0
    edges = np.diff(np.concatenate([[0], voiced.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    out = f0.copy()
    for s, e in zip(starts, ends, strict=True):
        if e - s < MIN_RUN:
            out[s:e] = 0.0
        elif e - s >= 3:
            seg = out[s:e]
            med = np.median(np.lib.stride_tricks.sliding_window_view(
                np.pad(seg, 1, mode="edge"), 3), axis=1)
            out[s:e] = med
    return out
