"""Text to Kokoro phonemes through the espeak-ng that piper-tts bundles (no system package).

Kokoro-82M was trained on phonemes from misaki, which for every language but English and the
CJK ones is espeak-ng IPA run through a small table (misaki's ``espeak.py``): tied multi-letter
phonemes become single vocabulary letters (``t͡ʃ`` -> ``ʧ``, ``a͡ɪ`` -> ``I``) and the tie
bars, hyphens and language-switch flags go. English in misaki comes from a lexicon whose
symbols differ from espeak's (``eɪ`` -> ``A``, flap ``ɾ`` -> ``T``, no length marks); misaki's
espeak fallback maps espeak onto them, and our tables are modelled on it. piper's bridge
writes no tie bars (espeak does tie these pairs, e.g. Spanish ``a͡ɪ``, Italian ``t͡s``), so
the two-letter sequences are replaced wherever they occur; in the languages mapped here they
almost never occur other than as the tied phoneme.

espeak-ng keeps its voice and buffers in process-global state, so every call runs under one
module-level lock: the engines are called from worker threads."""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from babelcall.realtime.errors import EngineUnavailable, UnsupportedLanguage

# ISO 639-1 -> espeak-ng voice file name in piper's espeak-ng-data/lang (``fr`` is France's
# French there; ``fr-fr`` is only a language tag and set_voice rejects it).
ESPEAK_VOICES: dict[str, str] = {
    "en": "en-us",
    "es": "es",
    "fr": "fr",
    "pt": "pt-br",
    "it": "it",
    "hi": "hi",
}

# Punctuation Kokoro's vocabulary has and uses for prosody; espeak reports it as a clause
# terminator rather than inside the phonemes.
CLAUSE_PUNCT = ",.!?;:"

# misaki espeak.py, for the tied phonemes of non-English voices (ties already dropped).
_GENERIC = {
    "aɪ": "I", "aʊ": "W", "dz": "ʣ", "dʒ": "ʤ", "eɪ": "A", "oʊ": "O", "əʊ": "Q",
    "ts": "ʦ", "tʃ": "ʧ", "ɔɪ": "Y",
}

# misaki's EspeakFallback for American English (its lexicon's symbol set).
_ENGLISH = {
    "ʔˌn̩": "tᵊn", "ʔn̩": "tᵊn", "ʔn": "tᵊn", "ʔ": "t",
    "aɪ": "I", "aʊ": "W", "dʒ": "ʤ", "eɪ": "A", "e": "A", "r": "ɹ", "tʃ": "ʧ",
    "x": "k", "ç": "k", "ɐ": "ə", "ɔɪ": "Y", "ɚ": "əɹ", "ɬ": "l", "ʲ": "",
    "oʊ": "O", "ɜːɹ": "ɜɹ", "ɜː": "ɜɹ", "ɪə": "iə", "ɾ": "T",
}

_LANG_FLAG = re.compile(r"\([^)]*\)")  # espeak's "(en)word(es)" language switches
_SYLLABIC = re.compile(r"(\S)\u0329")  # n̩ -> ᵊn, as misaki writes syllabic consonants
_FINAL_L = re.compile(r"əl(?=\s|$)")  # espeak's tied ə͡l (bottle) -> misaki's ᵊl


def _table_regex(table: dict[str, str]) -> re.Pattern[str]:
    keys = sorted(table, key=len, reverse=True)  # longest match first, like misaki
    return re.compile("|".join(re.escape(k) for k in keys))


_GENERIC_RE = _table_regex(_GENERIC)
_ENGLISH_RE = _table_regex(_ENGLISH)


@dataclass(frozen=True)
class Clause:
    """One espeak clause: phonemes ending in their punctuation (if any)."""

    phonemes: str
    end_of_sentence: bool


_LOCK = threading.Lock()
_bridge = None  # piper.espeakbridge once initialised


def _espeak():  # -> piper.espeakbridge module
    global _bridge
    if _bridge is None:
        try:
            from piper import espeakbridge
            from piper.phonemize_espeak import ESPEAK_DATA_DIR
        except ImportError as exc:
            raise EngineUnavailable(
                "Kokoro phonemes need espeak-ng from piper-tts: pip install 'piper-tts>=1.2' "
                "(or pip install 'babelcall[offline]')") from exc
        espeakbridge.initialize(str(ESPEAK_DATA_DIR))
        _bridge = espeakbridge
    return _bridge


def to_kokoro(ipa: str, language: str) -> str:
    """Rewrite one clause of espeak IPA into Kokoro's symbols (before the vocabulary filter)."""
    ps = _LANG_FLAG.sub("", ipa)
    # NFD splits nasal vowels into vowel + U+0303, which Kokoro has as a token (there is no
    # composed ɐ̃ or ɔ̃); ç is the one composed letter in the vocabulary, so put it back.
    ps = unicodedata.normalize("NFD", ps).replace("c\u0327", "ç")
    if language == "en":
        ps = _FINAL_L.sub("ᵊl", ps)
        ps = _ENGLISH_RE.sub(lambda m: _ENGLISH[m.group(0)], ps)
        ps = _SYLLABIC.sub(r"ᵊ\1", ps)
        ps = ps.replace("ː", "").replace("o", "ɔ")
    else:
        ps = _GENERIC_RE.sub(lambda m: _GENERIC[m.group(0)], ps)
    return ps.replace("-", "").replace("^", "")


class Phonemizer:
    """Text + ISO 639-1 language -> Kokoro phoneme string, keeping the clause punctuation.

    ``vocab`` (the model's ``vocab.json`` keys) limits the output to symbols the model has;
    without it only the mapping is applied."""

    languages: tuple[str, ...] = tuple(ESPEAK_VOICES)

    def __init__(self, vocab: Iterable[str] | None = None) -> None:
        self._vocab = frozenset(vocab) if vocab is not None else None
        with _LOCK:
            _espeak()  # fail at construction, not on the first call

    def supports(self, language: str) -> bool:
        return language in ESPEAK_VOICES

    def _voice(self, language: str) -> str:
        voice = ESPEAK_VOICES.get(language)
        if voice is None:
            raise UnsupportedLanguage(
                f"Kokoro TTS does not support language '{language}'; supported: "
                f"{', '.join(sorted(ESPEAK_VOICES))}")
        return voice

    def clauses(self, text: str, language: str) -> list[Clause]:
        """Phonemes per clause, so the synthesizer can start on the first one."""
        voice = self._voice(language)
        if not text.strip():
            return []
        with _LOCK:
            bridge = _espeak()
            bridge.set_voice(voice)
            raw = bridge.get_phonemes(text)
        out: list[Clause] = []
        for ipa, terminator, end in raw:
            ps = self._filter(" ".join(to_kokoro(ipa, language).split()))
            if not any(ch not in CLAUSE_PUNCT and not ch.isspace() for ch in ps):
                continue  # punctuation only: nothing to say
            punct = terminator if terminator in CLAUSE_PUNCT else ""
            out.append(Clause(ps + self._filter(punct), bool(end)))
        return out

    def phonemize(self, text: str, language: str) -> str:
        return " ".join(c.phonemes for c in self.clauses(text, language))

    def _filter(self, ps: str) -> str:
        if self._vocab is None:
            return ps
        return "".join(ch for ch in ps if ch in self._vocab)
