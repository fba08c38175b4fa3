"""Voice-cloning fixtures: caller speech is real FLEURS audio gated by the real VAD (as the
session hands it over), TTS output is real Kokoro speech. Clips come from ../shared/eval,
never copied into the repo.

This folder is a package (``voice``) only so that this file is not imported as a second
top-level ``conftest`` module, which would shadow the root one that other tests import from."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from conftest import load_clip

# f0 medians measured on these clips (YIN, cross-checked with WORLD's dio): the low voices
# are men's, the high ones women's.
LOW_CLIPS = ("fleurs-en-001", "fleurs-es-003", "fleurs-de-000")  # ~113, ~108, ~108 Hz
HIGH_CLIPS = ("fleurs-en-002", "fleurs-fr-003", "fleurs-pt-001")  # ~210, ~195, ~300 Hz
SENTENCE = "Hola, ¿cómo estás? Hoy vamos a hablar del viaje a Lisboa."


@functools.cache
def speech(name: str) -> np.ndarray:
    """The VAD's speech audio of a clip (16 kHz), phrases joined, as a session sees it."""
    from babelcall.engines.vad.silero import SileroVad
    from babelcall.realtime.phrases import PhraseAudio, PhraseDetector, PhraseStart

    listener = PhraseDetector(SileroVad())
    heard = listener.feed(load_clip(name)) + listener.flush()
    parts = [h.pcm for h in heard if isinstance(h, PhraseStart | PhraseAudio)]
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


@functools.cache
def profile_of(name: str):
    from babelcall.engines.voice.profile import ProfileBuilder

    builder = ProfileBuilder()
    pcm = speech(name)
    for i in range(0, len(pcm), 8000):
        builder.add(pcm[i:i + 8000])
    return builder.profile


@pytest.fixture(scope="session")
def tts_speech(kokoro):
    """Kokoro's first chunk of one Spanish sentence, per base voice (24 kHz)."""
    cache: dict[str, np.ndarray] = {}

    def get(voice: str) -> np.ndarray:
        if voice not in cache:
            cache[voice] = next(iter(kokoro.synthesize(SENTENCE, language="es", voice=voice)))
        return cache[voice]

    return get
