"""Voice cloning: the translation speaks with the caller's voice.

``ProfileBuilder`` (one per participant) measures the caller's voice from their first seconds
of speech; a ``VoiceCloner`` picks the nearest TTS voice, decides whether converting it is
safe (``decide``) and converts its output towards the profile. ``DspCloner`` is the embedded
CPU path: ``dsp`` converts with the WORLD vocoder (pyworld), ``praat`` with Praat's "Change
gender" (praat-parselmouth); ``OpenVoiceConverter`` the neural one for GPU machines
(user-supplied weights).
``rate_factor`` gives the TTS speed that follows the caller's pace.

The profile's pitch tracking is a numpy YIN (``pitch.py``, measured against WORLD's dio
there); its formants are LPC (``analysis.py``)."""

from __future__ import annotations

import os

from babelcall.engines.voice.base import PassThrough, VoiceCloner, VoiceDecision
from babelcall.engines.voice.delivery import match_loudness, rate_factor
from babelcall.engines.voice.dsp import DspCloner
from babelcall.engines.voice.profile import ProfileBuilder, VoiceProfile

CLONER_CHOICES = ("off", "dsp", "praat", "openvoice")

__all__ = ["CLONER_CHOICES", "DspCloner", "PassThrough", "ProfileBuilder", "VoiceCloner",
           "VoiceDecision", "VoiceProfile", "load_cloner", "match_loudness", "rate_factor"]


def load_cloner(kind: str = "dsp", *, model: str | None = None, device: str = "cpu",
                models_dir: str | os.PathLike[str] | None = None) -> VoiceCloner:
    """``off``, ``dsp`` (CPU, WORLD vocoder; default), ``praat`` (CPU, Praat) or
    ``openvoice`` (``model``: its converter directory or name under the models folder).
    Errors name what is missing, before any audio flows."""
    if kind == "off":
        return PassThrough()
    if kind == "dsp":
        from babelcall.engines.voice import world

        world.check()
        return DspCloner()
    if kind == "praat":
        from babelcall.engines.voice import praat

        return DspCloner(converter=praat.convert, name="praat")
    if kind == "openvoice":
        from babelcall.engines.voice.neural import DEFAULT_MODEL, OpenVoiceConverter

        return OpenVoiceConverter(model or DEFAULT_MODEL, device=device, models_dir=models_dir)
    raise ValueError(f"voice cloning must be one of {', '.join(CLONER_CHOICES)}, got '{kind}'")
