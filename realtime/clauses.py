"""Where to cut committed target text for speech synthesis: at a clause end, or after
``max_words`` words when the speaker runs on, so the first audio of a phrase comes from its
first clause instead of the whole sentence."""

from __future__ import annotations

import re

_CLAUSE_END = re.compile(r"[,;:.!?…。！？、]['\"”»)]*$")


class ClauseCutter:
    def __init__(self, max_words: int = 8) -> None:
        if max_words < 2:
            raise ValueError("max_words must be at least 2")
        self.max_words = max_words
        self._words: list[str] = []

    @property
    def pending(self) -> str:
        return " ".join(self._words)

    def push(self, text: str, *, final: bool = False) -> list[str]:
        """Add committed text; return the pieces that are ready to be spoken."""
        self._words.extend(text.split())
        pieces: list[str] = []
        start = 0
        for i, word in enumerate(self._words):
            if _CLAUSE_END.search(word) or i + 1 - start >= self.max_words:
                pieces.append(" ".join(self._words[start:i + 1]))
                start = i + 1
        self._words = self._words[start:]
        if final and self._words:
            pieces.append(" ".join(self._words))
            self._words = []
        return [p for p in pieces if re.search(r"\w", p)]
