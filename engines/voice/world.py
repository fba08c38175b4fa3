"""Voice conversion with the WORLD vocoder (``pyworld``; the default ``--clone dsp``): analysis
into f0, spectral envelope and aperiodicity, f0 mapped by the plan, the envelope warped on its
frequency axis by the formant ratio, then resynthesis. The usual analysis/synthesis of
voice-conversion research; it replaces Kokoro's own excitation with WORLD's."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from babelcall.engines.voice.sigproc import limit

if TYPE_CHECKING:
    from babelcall.engines.voice.dsp import Conversion
from babelcall.engines.voice.encoder import _pkg_resources_shim

FRAME_MS = 5.0
MIN_SAMPLES_S = 0.05  # shorter pieces are only level-matched
F0_FLOOR, F0_CEIL = 60.0, 500.0


def check() -> None:
    """EngineUnavailable, saying what to install, if pyworld is missing."""
    from babelcall.realtime.errors import EngineUnavailable

    _pkg_resources_shim()
    try:
        import pyworld  # noqa: F401
    except ImportError as exc:
        raise EngineUnavailable("the WORLD voice converter needs pyworld: "
                                "pip install pyworld") from exc


def warp_envelope(sp: np.ndarray, ratio: float) -> np.ndarray:
    """Envelope frames (frames x bins) with every frequency multiplied by ``ratio``."""
    if abs(ratio - 1) < 1e-3:
        return sp
    bins = sp.shape[1]
    src = np.clip(np.arange(bins) / ratio, 0, bins - 1)
    lo = np.minimum(src.astype(np.int64), bins - 2)
    w = src - lo
    return sp[:, lo] * (1 - w) + sp[:, lo + 1] * w


def convert(pcm: np.ndarray, rate: int, conv: Conversion) -> np.ndarray:
    """``conv`` applied to ``pcm`` through WORLD: same length, within [-1, 1]."""
    _pkg_resources_shim()  # pyworld 0.3.5 imports pkg_resources for its version string
    import pyworld

    x = np.asarray(pcm, dtype=np.float32).reshape(-1)
    gain = np.float32(10 ** (conv.gain_db / 20))
    if len(x) < rate * MIN_SAMPLES_S:
        return limit(x * gain)
    xd = x.astype(np.float64)
    f0, t = pyworld.dio(xd, rate, f0_floor=F0_FLOOR, f0_ceil=F0_CEIL, frame_period=FRAME_MS)
    f0 = pyworld.stonemask(xd, f0, t, rate)
    sp = pyworld.cheaptrick(xd, f0, t, rate)
    ap = pyworld.d4c(xd, f0, t, rate)
    voiced = f0 > 0
    f0 = np.where(voiced, conv.f0(np.where(voiced, f0, 1.0)), 0.0)
    sp = np.ascontiguousarray(warp_envelope(sp, conv.formant_ratio))
    y = pyworld.synthesize(np.ascontiguousarray(f0), sp, ap, rate, FRAME_MS)
    y = y[: len(x)] if len(y) >= len(x) else np.pad(y, (0, len(x) - len(y)))
    return limit(y.astype(np.float32) * gain)
