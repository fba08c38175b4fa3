"""Kokoro-82M on the real model: round trips through the project's Whisper measure that the
speech is intelligible in the language asked for, plus the streaming and error contract.

The round trips pad the audio with 0.5 s of silence, as a call has after speech: Whisper base
tends to drop the last word of audio that stops dead."""

from __future__ import annotations

import shutil
import threading

import jiwer
import numpy as np
import pytest
from conftest import normalize, reference

from babelcall.engines.base import Synthesizer
from babelcall.engines.models import resolve
from babelcall.engines.tts.kokoro import MAX_TOKENS, KokoroSynth, plan, split_phonemes
from babelcall.engines.tts.phonemes import Clause
from babelcall.realtime.audio import Resampler, frame_from_array
from babelcall.realtime.errors import ModelNotFound, UnsupportedLanguage
from babelcall.realtime.types import join_words

pytestmark = pytest.mark.slow

@pytest.fixture(scope="session")
def tts() -> KokoroSynth:
    return KokoroSynth("kokoro-82m")


@pytest.fixture(scope="module")
def spanish(tts) -> tuple[str, list[np.ndarray]]:
    text = reference("fleurs-en-000", "en", "es")["tgt_ref"]
    return text, list(tts.synthesize(text, language="es"))


def to_16k(pcm: np.ndarray) -> np.ndarray:
    resampler = Resampler(16000)
    return np.concatenate([resampler.push(frame_from_array(pcm, 24000)), resampler.flush()])


def round_trip_wer(asr, text: str, chunks: list[np.ndarray], language: str) -> float:
    audio = np.concatenate([*chunks, np.zeros(12000, dtype=np.float32)])
    heard = join_words(asr.transcribe(to_16k(audio), language=language))
    return jiwer.wer(normalize(text), normalize(heard))


def seconds(chunks: list[np.ndarray]) -> float:
    return sum(len(c) for c in chunks) / 24000


def test_is_a_synthesizer(tts):
    assert isinstance(tts, Synthesizer)
    assert tts.sample_rate == 24000
    assert "jm_kumo" in tts.voices and tts.voice == "jm_kumo"
    assert all(tts.supports(lang) for lang in ("en", "es", "fr", "pt", "it", "hi"))
    assert not tts.supports("xx")


def test_spanish_round_trip(asr, spanish):
    text, chunks = spanish
    assert round_trip_wer(asr, text, chunks, "es") < 0.3


def test_english_round_trip(asr, tts):
    text = reference("fleurs-en-000", "en", "es")["src_ref"]
    chunks = list(tts.synthesize(text, language="en"))
    assert round_trip_wer(asr, text, chunks, "en") < 0.35


def test_chunks_are_mono_float32_in_range(spanish):
    _, chunks = spanish
    assert len(chunks) >= 2  # the sentence has commas: it streams in pieces
    for chunk in chunks:
        assert chunk.dtype == np.float32 and chunk.ndim == 1 and len(chunk) > 0
        assert np.all(np.abs(chunk) <= 1.0)
    assert 4.0 < seconds(chunks) < 15.0  # ~25 words of speech at 24 kHz


def test_silence_between_pieces_is_short(spanish):
    """Each piece keeps at most ~50 ms of silence at either end, so clauses join naturally."""
    _, chunks = spanish
    for chunk in chunks:
        loud = np.flatnonzero(np.abs(chunk) > 0.01)
        assert loud[0] < 0.15 * 24000 and len(chunk) - loud[-1] < 0.15 * 24000


def test_first_chunk_comes_before_the_whole(tts, spanish):
    text, chunks = spanish
    assert text.count(",") == 2  # three clauses
    assert len(chunks) >= 2
    assert len(chunks[0]) < 0.7 * sum(len(c) for c in chunks)


def test_nothing_to_say_yields_nothing(tts):
    for text in ("", "   \n", "¡...!", "—"):
        assert list(tts.synthesize(text, language="es")) == []


def test_unsupported_language(tts):
    with pytest.raises(UnsupportedLanguage, match="xx"):
        tts.synthesize("hello", language="xx")  # raised at the call, not on first next()


def test_voice_and_speed_are_checked(tts):
    with pytest.raises(ValueError, match="jm_kumo"):
        tts.synthesize("hola", language="es", voice="af_heart")
    for bad in (0.49, 2.01, 0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="speed"):
            tts.synthesize("hola", language="es", speed=bad)
    for ok in (0.5, 2.0):
        tts.synthesize("hola", language="es", speed=ok)  # validated eagerly; not run
    with pytest.raises(ValueError, match="available"):
        KokoroSynth(voice="nobody")


def test_faster_speed_gives_shorter_audio(tts):
    text = "Buenos días a todos."
    normal = seconds(list(tts.synthesize(text, language="es", speed=1.0)))
    fast = seconds(list(tts.synthesize(text, language="es", speed=1.5)))
    assert fast < 0.85 * normal


def test_missing_model_dir(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelNotFound, match=str(missing)):
        KokoroSynth(str(missing))


def test_corrupt_model(tmp_path):
    src = resolve("kokoro-82m", required=("model.onnx", "vocab.json", "voices.npz"))
    for name in ("vocab.json", "voices.npz"):
        shutil.copyfile(src / name, tmp_path / name)
    (tmp_path / "model.onnx").write_bytes(b"not an onnx model" * 64)
    with pytest.raises(ModelNotFound, match=str(tmp_path / "model.onnx")):
        KokoroSynth(str(tmp_path))


def test_concurrent_synthesis(tts):
    """One session serves every caller: two threads at once get what each gets alone."""
    texts = ["Hola, ¿qué tal?", "Good morning."]
    langs = ["es", "en"]
    alone = [np.concatenate(list(tts.synthesize(t, language=lang)))
             for t, lang in zip(texts, langs, strict=True)]
    results: list[np.ndarray | None] = [None, None]
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            results[i] = np.concatenate(list(tts.synthesize(texts[i], language=langs[i])))
        except BaseException as exc:  # surfaced below: a thread's error would be lost
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    for got, ref in zip(results, alone, strict=True):
        assert got is not None and len(got) == len(ref)
        assert np.max(np.abs(got - ref)) < 1e-3


def test_plan_grows_pieces_from_a_short_first_one():
    clauses = [Clause("a" * 20 + ",", False), Clause("b" * 20 + ",", False)]
    clauses += [Clause("c" * 15 + ",", False) for _ in range(40)]
    pieces = plan(clauses)
    assert pieces[0] == "a" * 20 + ", " + "b" * 20 + ","  # whole clauses, >= 30 symbols
    for prev, cur in zip(pieces, pieces[1:], strict=False):
        assert len(cur) <= 2 * max(len(prev), 30)  # next piece ready before this one ends
    assert max(len(p) for p in pieces) > 200  # later pieces keep long stretches together
    assert all(len(p) <= MAX_TOKENS for p in pieces)
    assert "".join(pieces).replace(" ", "") == "".join(c.phonemes for c in clauses)


def test_plan_splits_a_clause_over_the_model_limit():
    clauses = [Clause(("d" * 60 + " ") * 20 + ".", True)]
    pieces = plan(clauses)
    assert len(pieces) == 3 and all(len(p) <= MAX_TOKENS for p in pieces)


def test_split_long_phonemes():
    text = "ab cd, " * 200 + "x" * 1200
    parts = split_phonemes(text, 100)
    assert all(0 < len(p) <= 100 for p in parts)
    assert "".join(parts).replace(" ", "") == text.replace(" ", "")
    assert parts[0].endswith(",")  # cut at punctuation first
