"""Speaker similarity (Resemblyzer, torch) of the cloned voice to the caller. Runs where the
optional ``resemblyzer`` is installed (pip install torch==2.13.0 && pip install resemblyzer);
the embedded cloner itself never needs it."""

from __future__ import annotations

import importlib.util

import pytest
from conftest import load_clip

from babelcall.engines.voice.dsp import MALE_VOICE, DspCloner
from babelcall.engines.voice.sigproc import resample

from .conftest import profile_of

pytestmark = pytest.mark.skipif(importlib.util.find_spec("resemblyzer") is None,
                                reason="resemblyzer (and torch) not installed")


@pytest.fixture(scope="module")
def similarity():
    from babelcall.benchmarks.similarity import similarity

    return similarity


def test_similarity_tells_speakers_apart(similarity):
    a, b = load_clip("fleurs-en-001"), load_clip("fleurs-en-002")
    same = similarity(a[: len(a) // 2], a[len(a) // 2:])
    assert same > 0.75
    assert similarity(a, b) < same - 0.15


@pytest.mark.parametrize("name, margin", [("fleurs-en-003", 0.1), ("fleurs-es-003", 0.02)])
def test_cloning_brings_the_voice_closer_to_the_caller(name, margin, similarity, tts_speech):
    """Measured on the full benchmark sentences: en-003 0.42 -> 0.69, es-003 0.55 -> 0.62."""
    caller = load_clip(name)
    prof = profile_of(name)
    cloner = DspCloner()
    voice = cloner.choose_voice(prof, ("jf_alpha", "jm_kumo"))
    off = tts_speech(MALE_VOICE)
    on = cloner.apply(tts_speech(voice), 24000, prof, voice=voice)

    def to16k(pcm):
        return resample(pcm, round(len(pcm) * 16000 / 24000))

    assert similarity(caller, to16k(on)) > similarity(caller, to16k(off)) + margin
