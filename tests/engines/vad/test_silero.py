"""Silero VAD (real model from the faster-whisper wheel) run as a stream."""

import numpy as np
import pytest
from conftest import load_clip

from babelcall.engines.vad.silero import SileroVad
from babelcall.realtime.phrases import PhraseAudio, PhraseDetector, PhraseEnd, PhraseStart


@pytest.fixture(scope="module")
def vad():
    return SileroVad()


def test_stream_matches_faster_whisper_batch(vad):
    from faster_whisper.vad import get_vad_model

    audio = load_clip("fleurs-en-001")
    audio = audio[: len(audio) // 512 * 512]
    stream = vad.stream()
    # Uneven block sizes, as frames arrive in a call.
    sizes = [512, 1536, 512 * 7, 1024] * 200
    probs, i = [], 0
    for size in sizes:
        if i >= len(audio):
            break
        probs.append(stream.probs(audio[i:i + size][: (min(size, len(audio) - i)) // 512 * 512]))
        i += size
    got = np.concatenate(probs)
    ref = get_vad_model()(audio[: len(got) * 512]).reshape(-1)
    assert np.abs(got - ref).max() < 1e-3


def test_rejects_partial_window(vad):
    with pytest.raises(ValueError, match="multiple of 512"):
        vad.stream().probs(np.zeros(100, dtype=np.float32))


def test_listener_finds_the_phrase_in_a_clip(vad):
    audio = load_clip("fleurs-en-000")
    silence = np.zeros(16000, dtype=np.float32)
    audio = np.concatenate([silence, audio, silence])
    listener = PhraseDetector(vad)
    heard = []
    for i in range(0, len(audio), 320):  # 20 ms frames
        heard += listener.feed(audio[i:i + 320])
    heard += listener.flush()
    starts = [h for h in heard if isinstance(h, PhraseStart)]
    ends = [h for h in heard if isinstance(h, PhraseEnd)]
    assert starts and len(starts) == len(ends)
    assert 0.8 < starts[0].time < 2.0  # speech begins after the added second of silence
    assert ends[-1].time < len(audio) / 16000
    speech = sum(len(h.pcm) for h in heard if isinstance(h, (PhraseStart, PhraseAudio)))
    assert speech / 16000 > 5.0


def test_listener_hears_nothing_in_silence_and_quiet_noise(vad):
    rng = np.random.default_rng(0)
    listener = PhraseDetector(vad)
    heard = listener.feed(np.zeros(16000 * 5, dtype=np.float32))
    heard += listener.feed((rng.standard_normal(16000 * 5) * 0.01).astype(np.float32))
    heard += listener.flush()
    assert heard == []
