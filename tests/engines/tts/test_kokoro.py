"""Kokoro-82M on the real model: round trips through an independent transcriber (plain
faster-whisper, full window, beam 5, VAD: benchmarks/judge.py) measure that the speech is
intelligible in each language it is asked for, plus the streaming and error contract.

The round trips pad the audio with 0.5 s of silence, as a call has after speech: Whisper base
tends to drop the last word of audio that stops dead."""

from __future__ import annotations

import shutil
import threading

import jiwer
import numpy as np
import pytest
from conftest import eval_dir, normalize, reference

from babelcall.benchmarks.judge import hear
from babelcall.benchmarks.pairs import tts_round_trip, tts_texts
from babelcall.engines.base import Synthesizer
from babelcall.engines.models import resolve
from babelcall.engines.tts.kokoro import MAX_TOKENS, KokoroSynth, plan, split_phonemes
from babelcall.engines.tts.phonemes import Clause
from babelcall.realtime.errors import ModelNotFound, UnsupportedLanguage

pytestmark = pytest.mark.slow

@pytest.fixture(scope="session")
def tts() -> KokoroSynth:
    return KokoroSynth("kokoro-82m")


@pytest.fixture(scope="module")
def spanish(tts) -> tuple[str, list[np.ndarray]]:
    text = reference("fleurs-en-000", "en", "es")["tgt_ref"]
    return text, list(tts.synthesize(text, language="es"))


@pytest.fixture(scope="module")
def judge():
    return hear


def round_trip_wer(judge, text: str, chunks: list[np.ndarray], language: str) -> float:
    audio = np.concatenate([*chunks, np.zeros(12000, dtype=np.float32)])
    return jiwer.wer(normalize(text), normalize(judge(audio, 24000, language)))


def seconds(chunks: list[np.ndarray]) -> float:
    return sum(len(c) for c in chunks) / 24000


def test_is_a_synthesizer(tts):
    assert isinstance(tts, Synthesizer)
    assert tts.sample_rate == 24000
    assert "jm_kumo" in tts.voices and tts.voice == "jm_kumo"
    assert all(tts.supports(lang) for lang in ("en", "es", "fr", "pt", "it", "hi"))
    assert not tts.supports("xx")


def test_spanish_round_trip(judge, spanish):
    text, chunks = spanish
    assert round_trip_wer(judge, text, chunks, "es") < 0.2


# Measured on these 3 sentences (2026-11-27): en 0.055, es 0.047, fr 0.364, pt 0.127, it 0.141.
# The judge itself mishears human FLEURS speech at WER 0.09 es, 0.08 en, 0.30 fr, 0.23 pt, so
# French and Portuguese cannot score like Spanish.
@pytest.mark.parametrize(("language", "ceiling"), [
    ("en", 0.15), ("es", 0.15), ("fr", 0.45), ("pt", 0.3), ("it", 0.3)])
def test_round_trip_in_every_language(tts, judge, language, ceiling):
    texts = tts_texts(eval_dir(), language, limit=3)
    wer = tts_round_trip(tts, judge, texts, language)
    print(f"Kokoro {language} round-trip WER {wer:.3f} on {len(texts)} sentences")
    assert wer < ceiling


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


def test_voices_that_cannot_speak_a_language_are_not_offered_for_it(tts, caplog):
    """jf_alpha's French is heard as another text altogether (round-trip WER 1.0): a voice
    cloner choosing among ``voices_for("fr")`` never gets it, and a caller asking for it gets
    the usable voice nearest in pitch instead, with one warning."""
    assert set(tts.voices_for("fr")) == {"jm_kumo", "jf_gongitsune", "jf_nezumi"}
    assert tts.voices_for("es") == tts.voices and tts.voices_for("pt") == tts.voices
    text = "Bonjour à tous."
    with caplog.at_level("WARNING"):
        alpha = np.concatenate(list(tts.synthesize(text, language="fr", voice="jf_alpha")))
        list(tts.synthesize(text, language="fr", voice="jf_alpha"))
    nezumi = np.concatenate(list(tts.synthesize(text, language="fr", voice="jf_nezumi")))
    assert len(alpha) == len(nezumi) and np.max(np.abs(alpha - nezumi)) < 1e-3
    assert [r.getMessage() for r in caplog.records].count(
        "Kokoro voice jf_alpha cannot be understood in 'fr' (round-trip WER 1.00); speaking "
        "it with jf_nezumi") == 1


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
