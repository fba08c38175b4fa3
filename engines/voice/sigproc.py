"""Small signal helpers shared by the voice code: band-limited resampling (FFT) and a soft
peak limiter. Numpy only."""

from __future__ import annotations

import numpy as np

PEAK = 0.98
_FAST_SIZES = np.array(sorted({2**a * 3**b * 5**c for a in range(24) for b in range(4)
                               for c in range(3) if 2**a * 3**b * 5**c <= 1 << 24}))


def resample(x: np.ndarray, length: int) -> np.ndarray:
    """``x`` stretched or squeezed to ``length`` samples, band-limited (FFT). Played at the
    same rate, every frequency is scaled by ``len(x) / length``."""
    n = len(x)
    if length == n or n == 0:
        return np.asarray(x, dtype=np.float32).copy()
    # Zero padding to a fast FFT size (and against wrap-around at the ends).
    pad = int(_FAST_SIZES[np.searchsorted(_FAST_SIZES, int(n * 1.05) + 64)])
    out_pad = max(2, round(pad * length / n))
    spec = np.fft.rfft(x, pad)
    bins = out_pad // 2 + 1
    if bins <= len(spec):
        spec = spec[:bins]
    else:
        spec = np.concatenate([spec, np.zeros(bins - len(spec), spec.dtype)])
    y = np.fft.irfft(spec, out_pad) * (out_pad / pad)
    return y[:length].astype(np.float32)



def limit(x: np.ndarray, peak: float = PEAK) -> np.ndarray:
    """Soft-limit peaks above ``0.9 * peak`` so the output stays within +-peak."""
    x = np.asarray(x, dtype=np.float32)
    knee = 0.9 * peak
    over = np.abs(x) > knee
    if over.any():
        x = x.copy()
        mag = np.abs(x[over])
        x[over] = np.sign(x[over]) * (knee + (peak - knee) * np.tanh((mag - knee) /
                                                                    (peak - knee)))
    return x
