"""Where to cut committed target text for speech synthesis: at a clause end, or after
``max_words`` words when the speaker runs on, so the first audio of a phrase comes from its
first clause instead of the whole sentence."""

from __future__ import annotations

import re

_CLAUSE_END = re.compile(r"[,;:.!?…。！？、]['\"”»)]*$")


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
        self._words.extend(text.split())
        pieces: list[str] = []
        start = 0
        for i, word in enumerate(self._words):
            limit = self.first_max_words if self._first and not pieces else self.max_words
            if _CLAUSE_END.search(word) or i + 1 - start >= limit:
                pieces.append(" ".join(self._words[start:i + 1]))
                start = i + 1
        self._words = self._words[start:]
        if final and self._words:
            pieces.append(" ".join(self._words))
            self._words = []
        pieces = [p for p in pieces if re.search(r"\w", p)]
        if pieces:
            self._first = False
        if final:
            self._first = True
        return pieces
