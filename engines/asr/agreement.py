"""LocalAgreement-2 streaming policy over any ``Asr`` (after whisper_streaming / WhisperLiveKit).

The buffer of the current phrase is re-transcribed on each update; a word is committed once two
consecutive hypotheses agree on it, and committed words are never emitted again. The audio
buffer is trimmed at the end of a committed sentence so each update stays short. The policy is
pure apart from the one ``asr.transcribe`` call, so it is tested with a scripted Asr."""

from __future__ import annotations

import re

import numpy as np

from babelcall.engines.base import Asr
from babelcall.realtime.types import Word

_SENTENCE_END = re.compile(r"[.!?。！？]['\"”)]*$")


def _norm(word: Word) -> str:
    return re.sub(r"[^\w]", "", word.text.lower())


def ends_sentence(word: Word) -> bool:
    return bool(_SENTENCE_END.search(word.text.strip()))


# Words whose doubling is grammar, not a stutter ("that that", "had had").
_DOUBLES = frozenset({"that", "had"})
# A seam fragment: Whisper's attempt at the last sliver of a word the buffer was cut after.
# On the en->es talk, the buffer cut after "...the word Sie for you." began each pass with
# "Have" (0.06 s, p 0.01), "Now," (0 s, p 0.05), "Enough" (0.08 s, p 0.00) before "always
# begin...": no two passes agreed on their first word, so nothing after it could commit for
# 3.5 s of speech. A real first word there ("To foreigners", p 0.01) lasts 0.76 s.
_FRAGMENT_S = 0.1
_FRAGMENT_PROB = 0.1
# A pass that ends this much earlier than the one before dropped out: Whisper base, on a
# buffer that starts mid-sentence, sometimes loops and stops ("The word of the word of the")
# and the phrase's last words, heard by the pass before, were lost at the phrase's end.
_DROPOUT_S = 1.0
# Whisper gives the first word of a pass a low probability whatever it is ("people" p 0.06,
# "the" p 0.19-0.27, then "don't" p 0.85): the decoder has just chosen among every possible
# start. An early commit's probability gate would stop at it and hold back the whole
# sentence until two passes agree (the long-form talk's last sentence: 3.3 s from its first
# word to its first voiced piece). The opening word passes the gate when the word after it
# is this sure; a hallucinated pass is unsure on (the chemical p 0.01, is 0.14, on 0.15...).
_OPENING_NEXT_PROB: float | None = 0.5
_OPENING_S = 0.3  # a word starting this close to the pass's start opens it


def tidy(words: list[Word], *, seam: float | None = None) -> list[Word]:
    """One pass's words without what no listener should hear: a word or run of up to five
    that repeats the run just before it (Whisper's loops, "However, however"; a speaker's
    stutter), and, when the buffer was cut mid-phrase at ``seam``, a first word that is only
    a fragment of the word before the cut (short, and one the decoder barely believed)."""
    out: list[Word] = []
    for word in words:
        out.append(word)
        for n in range(min(5, len(out) // 2), 0, -1):
            run = [_norm(w) for w in out[-n:]]
            if run == [_norm(w) for w in out[-2 * n:-n]] and (n > 1 or run[0] not in _DOUBLES):
                del out[-n:]
                break
    if seam is not None and out:
        first = out[0]
        if abs(first.start - seam) <= 0.05 and first.end - first.start <= _FRAGMENT_S \
                and (first.prob or 0.0) < _FRAGMENT_PROB:
            out = out[1:]
    return out


def dropped_out(before: list[Word], end: float) -> list[Word]:
    """The words of the previous pass's uncommitted tail ``before`` that a new pass ending at
    ``end`` lost by stopping short (``_DROPOUT_S`` or more before them): a later pass hearing
    less is not evidence the words were not said, so they are kept in its place."""
    if not before or before[-1].end - end < _DROPOUT_S:
        return []
    return [w for w in before if w.start >= end]


class HypothesisBuffer:
    """Holds the uncommitted tail of the last hypothesis and commits what the next one confirms."""

    def __init__(self) -> None:
        self.tail: list[Word] = []  # previous hypothesis, after what is committed
        self._new: list[Word] = []
        self.last_committed_end = 0.0
        self._recent: list[Word] = []  # last committed words, to cut seam repeats
        self._pass_start = 0.0  # where the latest pass's audio starts (source seconds)

    def insert(self, words: list[Word], offset: float, *, seam: bool = False) -> None:
        """``seam``: the buffer (which starts at ``offset``) was cut mid-phrase."""
        shifted = tidy([w.shifted(offset) for w in words], seam=offset if seam else None)
        new = [w for w in shifted if w.start > self.last_committed_end - 0.1]
        # Drop an n-gram at the seam that repeats the end of what is already committed.
        if new and self._recent and abs(new[0].start - self.last_committed_end) < 1.0:
            for n in range(min(5, len(self._recent), len(new)), 0, -1):
                if [_norm(w) for w in self._recent[-n:]] == [_norm(w) for w in new[:n]]:
                    new = new[n:]
                    break
        self._new = new + dropped_out(self.tail, shifted[-1].end if shifted else offset)
        self._pass_start = offset

    def flush(self) -> list[Word]:
        """Commit the longest common prefix of the previous and the new hypothesis."""
        committed: list[Word] = []
        while self._new and self.tail and _norm(self._new[0]) == _norm(self.tail[0]):
            word = self._new.pop(0)
            self.tail.pop(0)
            committed.append(word)
        self._commit(committed)
        self.tail = self._new
        self._new = []
        return committed

    def commit_all(self) -> list[Word]:
        words, self.tail = self.tail, []
        self._commit(words)
        return words

    def commit_until(self, t: float, min_prob: float | None = None) -> list[Word]:
        """Force-commit tail words that end by ``t`` (bounded lag on run-on speech); with
        ``min_prob``, only up to the first word the decoder was less sure of than that."""
        k = 0
        while k < len(self.tail) and self.tail[k].end <= t and (
                min_prob is None or (self.tail[k].prob or 0.0) >= min_prob
                or (k == 0 and self._opens_surely())):
            k += 1
        words, self.tail = self.tail[:k], self.tail[k:]
        self._commit(words)
        return words

    def _opens_surely(self) -> bool:
        """The tail's first word opens the latest pass and the word after it is sure (see
        ``_OPENING_NEXT_PROB``)."""
        tail = self.tail
        return (_OPENING_NEXT_PROB is not None and len(tail) > 1
                and tail[0].start - self._pass_start < _OPENING_S
                and (tail[1].prob or 0.0) >= _OPENING_NEXT_PROB)

    def _commit(self, words: list[Word]) -> None:
        if words:
            self.last_committed_end = words[-1].end
            self._recent = (self._recent + words)[-5:]


class OnlineAsr:
    """One speaker's phrase-by-phrase streaming recognition (per-session state)."""

    def __init__(self, asr: Asr, *, language: str, task: str = "transcribe",
                 max_buffer_s: float = 15.0, prompt_chars: int = 200,
                 stable_after_s: float | None = None,
                 stable_min_prob: float | None = None) -> None:
        if max_buffer_s < 3:
            raise ValueError("max_buffer_s must be at least 3 s")
        if stable_after_s is not None and stable_after_s <= 0:
            raise ValueError("stable_after_s must be positive")
        # A hypothesis word this far before the end of the audio read is committed without
        # waiting for a second pass to agree: Whisper rarely changes a word once it has
        # heard this much after it, and agreement can take passes on a fast speaker.
        self.stable_after_s = stable_after_s
        # ... but only words the decoder was this sure of (Whisper's word probability): the
        # words a later pass changes are mostly the ones it hesitated on.
        self.stable_min_prob = stable_min_prob
        self.asr = asr
        self.language = language
        self.task = task
        self.max_buffer_s = max_buffer_s
        self.prompt_chars = prompt_chars
        self.rate = asr.sample_rate
        self._audio = np.zeros(0, dtype=np.float32)
        self._offset = 0.0  # stream time of the buffer's first sample
        self._cut = False  # the buffer starts where a pass cut the phrase, not at its onset
        self._hyp = HypothesisBuffer()
        self._committed: list[Word] = []  # recent committed words, for the decoder prompt

    @property
    def buffer_end(self) -> float:
        return self._offset + len(self._audio) / self.rate

    @property
    def partial(self) -> list[Word]:
        return list(self._hyp.tail)

    def start(self, at: float, pcm: np.ndarray | None = None) -> None:
        """Begin a phrase at stream time ``at`` (the VAD onset, padded)."""
        self._audio = np.zeros(0, dtype=np.float32) if pcm is None else pcm.astype(np.float32)
        self._offset = at
        self._cut = False
        self._hyp = HypothesisBuffer()
        self._hyp.last_committed_end = at

    def insert_audio(self, pcm: np.ndarray) -> None:
        self._audio = np.concatenate([self._audio, np.asarray(pcm, dtype=np.float32)])

    def process(self, *, settle: bool = False) -> list[Word]:
        """Transcribe the buffer with the engine; return the newly committed words (the
        synchronous form of ``request`` + ``accept``)."""
        audio, prompt = self.request()
        words = self.asr.transcribe(audio, language=self.language, prompt=prompt,
                                    task=self.task)
        return self.accept(words, settle=settle)

    def request(self) -> tuple[np.ndarray, str]:
        """What the next pass transcribes: the phrase buffer and the decoder prompt. A live
        session sends these through the scheduler and hands the words to ``accept``; no
        audio may be inserted in between."""
        return self._audio, self._prompt()

    def accept(self, words: list[Word], *, settle: bool = False) -> list[Word]:
        """The words of a pass over ``request()``'s buffer (times from its start); returns
        the newly committed words.

        ``settle``: the speaker has paused, so this pass saw every word of the open phrase with
        silence after it; commit its whole hypothesis instead of waiting for a second pass to
        agree (or for the end of the phrase). It is what lets the translation of a short phrase
        start at a 0.2 s pause rather than when the voice detector declares the phrase over."""
        self._hyp.insert(words, self._offset, seam=self._cut)
        committed = self._hyp.flush()
        if settle:
            committed += self._hyp.commit_all()
        elif self.stable_after_s is not None:
            committed += self._hyp.commit_until(self.buffer_end - self.stable_after_s,
                                                self.stable_min_prob)
        if len(self._audio) / self.rate > self.max_buffer_s:
            committed += self._hyp.commit_until(self.buffer_end - 3.0)
        self._remember(committed)
        self._trim(committed)
        return committed

    def finish(self) -> list[Word]:
        """End of phrase: everything pending is committed at once."""
        committed = self._hyp.commit_all()
        self._remember(committed)
        self._audio = np.zeros(0, dtype=np.float32)
        return committed

    def _prompt(self) -> str:
        """Committed text that lies before the buffer: words inside it are still in the audio,
        and prompting with them makes Whisper skip them."""
        before = "".join(w.text for w in self._committed if w.end <= self._offset + 0.05)
        return before[-self.prompt_chars:]

    def _remember(self, words: list[Word]) -> None:
        self._committed = (self._committed + words)[-200:]

    def _trim(self, committed: list[Word]) -> None:
        """Cut the audio after the last committed sentence end (or, on a long buffer, after the
        last committed word) so the next update re-reads only the open sentence."""
        cut = None
        for word in committed:
            if ends_sentence(word):
                cut = word.end
        if cut is None and len(self._audio) / self.rate > self.max_buffer_s and committed:
            cut = committed[-1].end
        if cut is None or cut <= self._offset:
            return
        drop = int((cut - self._offset) * self.rate)
        self._audio = self._audio[drop:]
        self._offset += drop / self.rate
        self._cut = True
