"""espeak-ng phonemes mapped to Kokoro's vocabulary (real espeak from piper-tts; no model run).

The vocabulary comes from the real Kokoro model directory, so a symbol the mapping lets through
but the model does not know fails here rather than being silently dropped at synthesis."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from babelcall.engines.models import resolve
from babelcall.engines.tts.phonemes import ESPEAK_VOICES, Phonemizer, to_kokoro
from babelcall.realtime.errors import UnsupportedLanguage

SAMPLES = {
    "es": "No obstante, debido a la lentitud de los canales, hay 25 años de retraso.",
    "en": "However, due to the slow communication channels, styles could lag behind.",
    "fr": "Cependant, le garçon mange du pain à l'école depuis trente ans.",
    "pt": "Não sei, coração. Ontem eu comi pão na cidade.",
    "it": "Ciao, come stai? Una pizza, grazie.",
    "hi": "नमस्ते, आप कैसे हैं?",
}


@pytest.fixture(scope="module")
def vocab() -> dict[str, int]:
    path = resolve("kokoro-82m", required=("vocab.json",))
    return json.loads((path / "vocab.json").read_text(encoding="utf-8"))["vocab"]


@pytest.fixture(scope="module")
def phonemizer(vocab: dict[str, int]) -> Phonemizer:
    return Phonemizer(vocab)


def test_every_language_gives_vocabulary_symbols_only(phonemizer, vocab):
    assert set(SAMPLES) == set(ESPEAK_VOICES)
    for lang, text in SAMPLES.items():
        ps = phonemizer.phonemize(text, lang)
        assert len(ps) > 10, lang
        assert set(ps) <= set(vocab), (lang, sorted(set(ps) - set(vocab)))


def test_mapping_alone_stays_in_vocabulary(vocab):
    """Without the final filter the table itself should produce only model symbols, so the
    filter is a safety net and not a place where sounds silently disappear."""
    unfiltered = Phonemizer()
    for lang in ("es", "en", "fr", "pt"):
        ps = unfiltered.phonemize(SAMPLES[lang], lang)
        assert set(ps) <= set(vocab), (lang, sorted(set(ps) - set(vocab)))


def test_clause_punctuation_is_kept(phonemizer):
    clauses = phonemizer.clauses("Hola, ¿qué tal? Muy bien.", "es")
    assert [c.phonemes[-1] for c in clauses] == [",", "?", "."]
    assert [c.end_of_sentence for c in clauses] == [False, True, True]


def test_espeak_reads_spanish_digits(phonemizer):
    assert "θ" in phonemizer.phonemize("25", "es")  # veinticinco


def test_misaki_symbols(phonemizer):
    assert "A" in phonemizer.phonemize("day", "en")  # eɪ -> A, as in Kokoro's lexicon
    assert "ʧ" in phonemizer.phonemize("chico", "es")  # tied t͡ʃ -> ʧ
    assert "ɔ̃" in phonemizer.phonemize("bonjour", "fr")  # nasal vowel + U+0303 token
    assert to_kokoro("le-z ɑ̃fˈɑ̃", "fr") == "lez ɑ̃fˈɑ̃"  # espeak's liaison hyphen goes
    assert to_kokoro("(en)ɡˈʊɡəl(es)", "es") == "ɡˈʊɡəl"  # language-switch flags go


def test_only_tied_phonemes_become_single_symbols(phonemizer):
    """espeak's ties say which letter pairs are one phoneme: Italian "pizza" has t͡s and
    Brazilian "direito" d͡ʒ and e͡ɪ, but French "vingt-cinq" and "modes" only have t and s,
    d and z side by side (mapping every "ts" to ʦ made French speech worse)."""
    assert "ʦ" in phonemizer.phonemize("pizza", "it")
    direito = phonemizer.phonemize("direito", "pt")
    assert "ʤ" in direito and "A" in direito
    for text in ("vingt-cinq", "des modes occidentales", "tchèque"):
        ps = phonemizer.phonemize(text, "fr")
        assert not {"ʦ", "ʣ", "ʧ"} & set(ps), (text, ps)
    assert "ts" in phonemizer.phonemize("vingt-cinq", "fr")
    assert "\u0361" not in phonemizer.phonemize("canais, meio, oito, muito", "pt")  # no ties
    assert to_kokoro("kɐnˈa͡ɪz ɐ̃͡ʊ̃", "pt") == "kɐnˈIz ɐ̃ʊ̃"
    assert to_kokoro("bˈɑɾə͡l", "en") == "bˈɑTᵊl"  # misaki's tied ə͡l


def test_clause_terminators(phonemizer):
    clauses = phonemizer.clauses("Oui; non: peut-être! Vraiment? Bon.", "fr")
    assert [c.phonemes[-1] for c in clauses] == [";", ":", "!", "?", "."]
    assert [c.end_of_sentence for c in clauses] == [False, False, True, True, True]


def test_empty_and_punctuation_only(phonemizer):
    for text in ("", "   ", "¡...!", "--"):
        assert phonemizer.clauses(text, "es") == []
        assert phonemizer.phonemize(text, "es") == ""


def test_unsupported_language(phonemizer):
    assert not phonemizer.supports("xx")
    with pytest.raises(UnsupportedLanguage, match="supported: en, es, fr, hi, it, pt"):
        phonemizer.phonemize("hello", "xx")


def test_threads_do_not_mix_voices(phonemizer):
    """espeak's voice is global: without the lock a Spanish call could run with French set."""
    expected = {lang: phonemizer.phonemize(text, lang) for lang, text in SAMPLES.items()}
    jobs = list(SAMPLES.items()) * 8
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda job: phonemizer.phonemize(job[1], job[0]), jobs))
    assert got == [expected[lang] for lang, _ in jobs]
