"""Voice conversion with Praat (``praat-parselmouth``; ``--clone praat``): its "Change gender"
command, i.e. resampling to shift the formants, then PSOLA to set the pitch, as Praat does.

The conversion plan (``dsp.Conversion``) is the same as the embedded cloner's: the caller's
median f0 (the mapping of the base voice's long-term median through ``Conversion.f0``), the
contour's span scaled by ``range_factor``, the envelope scaled by ``formant_ratio``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from babelcall.engines.voice.sigproc import limit

if TYPE_CHECKING:
    from babelcall.engines.voice.dsp import Conversion

PITCH_FLOOR, PITCH_CEILING = 60.0, 500.0
MIN_SAMPLES_S = 0.05  # shorter pieces are only level-matched


def convert(pcm: np.ndarray, rate: int, conv: Conversion) -> np.ndarray:
    """``conv`` applied to ``pcm`` by Praat: same length, within [-1, 1]."""
    import parselmouth
    from parselmouth.praat import call

    x = np.asarray(pcm, dtype=np.float32).reshape(-1)
    gain = np.float32(10 ** (conv.gain_db / 20))
    if len(x) < rate * MIN_SAMPLES_S:
        return limit(x * gain)
    sound = parselmouth.Sound(x.astype(np.float64), sampling_frequency=rate)
    pitch = call(sound, "To Pitch", 0.0, PITCH_FLOOR, PITCH_CEILING)
    median = call(pitch, "Get quantile", 0, 0, 0.5, "Hertz")
    if not np.isfinite(median) or median <= 0:  # nothing voiced: only the envelope moves
        new_median = 0.0
    else:
        new_median = float(conv.f0(np.array([median]))[0])
    out = call(sound, "Change gender", PITCH_FLOOR, PITCH_CEILING, conv.formant_ratio,
               new_median, conv.range_factor, 1.0)
    y = np.asarray(out.values, dtype=np.float32).reshape(-1)
    y = y[: len(x)] if len(y) >= len(x) else np.pad(y, (0, len(x) - len(y)))
    return limit(y * gain)
