"""Where to cut committed target text for speech synthesis: at a clause end, or after
``max_words`` words when the speaker runs on, so the first audio of a phrase comes from its
first clause instead of the whole sentence."""

from __future__ import annotations

import re

_CLAUSE_END = re.compile(r"[,;:.!?…。！？、]['\"”»)]*$")
# (piece, first piece of a phrase) in words, per target language. Kokoro reads short French
# pieces badly: round-trip WER (independent Whisper) 0.384 at 8/5 words, 0.341 at 12/8, 0.254
# for whole sentences; Spanish 0.06 / 0.06 / 0.032, Portuguese 0.141 / 0.128 / 0.132.
CLAUSE_WORDS: dict[str, tuple[int, int]] = {"fr": (12, 8)}
DEFAULT_CLAUSE_WORDS = (8, 5)
TINY_LAST_PIECE = 2  # words: a phrase's last piece this short joins the one before it
# The fewest words voiced ahead of a full piece when the listener would otherwise wait
# (``ClauseCutter.flush``); French reads short pieces badly (see above).
MIN_EARLY_WORDS: dict[str, int] = {"fr": 6}
DEFAULT_MIN_EARLY_WORDS = 3


def ends_clause(word: str) -> bool:
    """Whether ``word`` carries the punctuation that ends a clause ("lentos,", "años.")."""
    return _CLAUSE_END.search(word) is not None


def early_words(language: str) -> int:
    return MIN_EARLY_WORDS.get(language, DEFAULT_MIN_EARLY_WORDS)


def clause_words(language: str) -> tuple[int, int]:
    """(max words of a piece, of a phrase's first piece) for speech in ``language``."""
    return CLAUSE_WORDS.get(language, DEFAULT_CLAUSE_WORDS)


class ClauseCutter:
    """``first_max_words`` caps the first piece of each phrase lower than the rest: synthesis
    time grows with the piece, and the first piece is what the listener waits for."""

    def __init__(self, max_words: int = 8, first_max_words: int = 5) -> None:
        if max_words < 2 or first_max_words < 2:
            raise ValueError("max_words and first_max_words must be at least 2")
        self.max_words = max_words
        self.first_max_words = first_max_words
        self._words: list[str] = []
        self._first = True  # the next piece opens a phrase

    @property
    def pending(self) -> str:
        return " ".join(self._words)

    def push(self, text: str, *, final: bool = False) -> list[str]:
        """Add committed text; return the pieces that are ready to be spoken."""
        pieces, self._words, self._first = self._cut(self._words + text.split(), final)
        return pieces

    def flush(self, min_words: int) -> str | None:
        """The pending words as a piece now, if there are at least ``min_words`` of them:
        the listener has nothing left to hear, and a full piece would keep them waiting for
        words the speaker has not said yet."""
        if len(self._words) < min_words:
            return None
        piece, self._words, self._first = " ".join(self._words), [], False
        return piece if re.search(r"\w", piece) else None

    def preview(self, text: str, *, final: bool = False) -> list[str]:
        """The pieces ``push(text, final=final)`` would return, without pushing (what a
        speculative synthesis voices before the text is committed)."""
        return self._cut(self._words + text.split(), final)[0]

    def _cut(self, words: list[str], final: bool) -> tuple[list[str], list[str], bool]:
        """(pieces, the words left pending, whether the next piece opens a phrase)."""
        pieces: list[str] = []
        start = 0
        for i, word in enumerate(words):
            limit = self.first_max_words if self._first and not pieces else self.max_words
            full = i + 1 - start >= limit and not _ends_soon(words, i + 1)
            if ends_clause(word) or full:
                pieces.append(" ".join(words[start:i + 1]))
                start = i + 1
        rest = words[start:]
        if final and rest:
            if len(rest) <= TINY_LAST_PIECE and pieces:  # a lone word or two sounds wrong
                pieces[-1] = " ".join([pieces[-1], *rest])
            else:
                pieces.append(" ".join(rest))
            rest = []
        pieces = [p for p in pieces if re.search(r"\w", p)]
        return pieces, rest, final or (self._first and not pieces)


def _ends_soon(words: list[str], at: int) -> bool:
    """A clause ends within ``TINY_LAST_PIECE`` words from ``at``, among the words there
    already are: a piece full by its count takes them rather than leave them to be voiced
    alone ('... porque tienen plumas y puede' / 'volar.')."""
    return any(ends_clause(w) for w in words[at:at + TINY_LAST_PIECE])
