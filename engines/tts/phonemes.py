"""Text to Kokoro phonemes through the espeak-ng that piper-tts bundles (no system package).

Kokoro-82M was trained on phonemes from misaki, which for every language but English and the
CJK ones is espeak-ng IPA with ties (phonemizer's ``tie='^'``) run through a small table
(misaki's ``espeak.py``): tied multi-letter phonemes become single vocabulary letters
(``t͡ʃ`` -> ``ʧ``, ``a͡ɪ`` -> ``I``), then the remaining ties, hyphens and language-switch
flags go. English in misaki comes from a lexicon whose symbols differ from espeak's (``eɪ`` ->
``A``, flap ``ɾ`` -> ``T``, no length marks); misaki's espeak fallback maps espeak onto them,
and our English table is modelled on it.

We ask espeak for the ties too (``espeak_TextToPhonemesWithTerminator`` with a tie character,
called through ctypes on the library inside piper's bridge, whose own ``get_phonemes`` writes
no ties). Without them a table can only replace letter pairs wherever they occur, which is
wrong where two phonemes merely meet: French "vingt-cinq" [vɛ̃tsɛ̃k] and "modes" [mɔdz] came
out with the affricates ʦ and ʣ, "tchèque" with ʧ. (Measured by an independent Whisper base on
10 FLEURS sentences, the round trip barely moved: French WER 0.275 -> 0.272, Portuguese 0.132
either way; the phoneme strings are now the ones the model was trained on.)

espeak-ng keeps its voice and buffers in process-global state, so every call runs under one
module-level lock: the engines are called from worker threads."""

from __future__ import annotations

import ctypes
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

TIE = "\u0361"  # the tie espeak writes inside multi-letter phonemes (a͡ɪ, t͡ʃ)

# misaki espeak.py (E2M), for the tied phonemes of non-English voices.
_GENERIC = {
    "a͡ɪ": "I", "a͡ʊ": "W", "d͡z": "ʣ", "d͡ʒ": "ʤ", "e͡ɪ": "A", "o͡ʊ": "O", "ə͡ʊ": "Q",
    "s͡s": "S", "t͡s": "ʦ", "t͡ʃ": "ʧ", "ɔ͡ɪ": "Y",
}

# misaki's EspeakFallback for American English (its lexicon's symbol set).
_ENGLISH = {
    "ʔˌn̩": "tᵊn", "ʔn̩": "tᵊn", "ʔn": "tᵊn", "ʔ": "t",
    "a͡ɪ": "I", "a͡ʊ": "W", "d͡ʒ": "ʤ", "e͡ɪ": "A", "e": "A", "r": "ɹ", "t͡ʃ": "ʧ",
    "x": "k", "ç": "k", "ɐ": "ə", "ɔ͡ɪ": "Y", "ə͡l": "ᵊl", "ɚ": "əɹ", "ɬ": "l", "ʲ": "",
    "o͡ʊ": "O", "ɜːɹ": "ɜɹ", "ɜː": "ɜɹ", "ɪ͡ə": "iə", "ɾ": "T",
}

_LANG_FLAG = re.compile(r"\([^)]*\)")  # espeak's "(en)word(es)" language switches
_SYLLABIC = re.compile(r"(\S)\u0329")  # n̩ -> ᵊn, as misaki writes syllabic consonants

# espeak_TextToPhonemesWithTerminator: IPA output, with TIE inside multi-letter phonemes
_PHONEME_MODE = 0x02 | 0x80 | (ord(TIE) << 8)
_CHARS_UTF8 = 1
# the clause terminators espeak reports (translate.h), and CLAUSE_TYPE_SENTENCE
_TERMINATORS = {0x80028: ".", 0x82028: "?", 0x8302D: "!", 0x41014: ",", 0x4001E: ":",
                0x4101E: ";"}
_SENTENCE = 0x80000


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
_to_phonemes = None  # its library's espeak_TextToPhonemesWithTerminator


def _espeak():  # -> piper.espeakbridge module
    global _bridge, _to_phonemes
    if _bridge is None:
        try:
            from piper import espeakbridge
            from piper.phonemize_espeak import ESPEAK_DATA_DIR
        except ImportError as exc:
            raise EngineUnavailable(
                "Kokoro phonemes need espeak-ng from piper-tts: pip install 'piper-tts>=1.3' "
                "(or pip install 'babelcall[offline]')") from exc
        try:
            fn = ctypes.CDLL(espeakbridge.__file__).espeak_TextToPhonemesWithTerminator
        except (OSError, AttributeError) as exc:
            raise EngineUnavailable(f"piper-tts's espeak-ng library lacks "
                                    f"espeak_TextToPhonemesWithTerminator: {exc}") from exc
        fn.restype = ctypes.c_char_p
        fn.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, ctypes.c_int,
                       ctypes.POINTER(ctypes.c_int)]
        espeakbridge.initialize(str(ESPEAK_DATA_DIR))
        _bridge, _to_phonemes = espeakbridge, fn
    return _bridge


def _espeak_clauses(text: str) -> list[tuple[str, str, bool]]:
    """(tied IPA, terminator, end of sentence) per clause, in the current voice; what piper's
    ``get_phonemes`` returns, with ties. Call under ``_LOCK``."""
    assert _to_phonemes is not None
    buf = ctypes.c_char_p(text.encode("utf-8"))
    ptr = ctypes.pointer(buf)  # espeak advances it clause by clause; NULL at the end
    flags = ctypes.c_int(0)
    out = []
    while ptr.contents.value:
        ipa = _to_phonemes(ptr, _CHARS_UTF8, _PHONEME_MODE, ctypes.byref(flags))
        kind = flags.value & 0xFFFFF
        out.append(((ipa or b"").decode("utf-8", errors="replace"), _TERMINATORS.get(kind, ""),
                    bool(kind & _SENTENCE)))
    return out


def to_kokoro(ipa: str, language: str) -> str:
    """Rewrite one clause of espeak IPA into Kokoro's symbols (before the vocabulary filter)."""
    ps = _LANG_FLAG.sub("", ipa)
    # NFD splits nasal vowels into vowel + U+0303, which Kokoro has as a token (there is no
    # composed ɐ̃ or ɔ̃); ç is the one composed letter in the vocabulary, so put it back. (The
    # tie's combining class, 234, keeps it after a vowel's tilde, 230: "ɐ̃͡ʊ̃" stays in order.)
    ps = unicodedata.normalize("NFD", ps).replace("c\u0327", "ç")
    if language == "en":
        ps = _ENGLISH_RE.sub(lambda m: _ENGLISH[m.group(0)], ps)
        ps = _SYLLABIC.sub(r"ᵊ\1", ps)
        ps = ps.replace("ː", "").replace("o", "ɔ")
    else:
        ps = _GENERIC_RE.sub(lambda m: _GENERIC[m.group(0)], ps)
    return ps.replace(TIE, "").replace("-", "").replace("^", "")


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
            _espeak().set_voice(voice)
            raw = _espeak_clauses(text)
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
