"""Per-session policy that turns a growing committed source into a growing committed target.

Speech must be voiced before the speaker finishes, but a translation's last words change as the
source grows (word order differs between languages). So the target is committed in pieces that
are not taken back:

(a) end of utterance (``final``): commit the whole hypothesis;
(b) the source ends at a clause or sentence boundary (``, ; : . ? !``): commit the whole
    hypothesis, since a clause translates as a unit and TTS can start on it;
(c) otherwise LocalAgreement-2: commit the longest common word prefix of this hypothesis and the
    previous one, beyond what is already committed;
(d) with ``holdback`` N, also commit all but the hypothesis's last N words (whichever of (c)
    and (d) commits more): a word waits for the next source update only near the tail.

Prefix engines (CTranslate2) are asked to continue the committed target, so their hypothesis
always extends it. Other engines (Apertium, Bergamot, pivots) re-translate the sentence; we take
the words of the new translation after as many words as are committed as its continuation. That
is an approximation: when a longer source reorders or merges words the continuation can repeat or
skip a word, but committed text is never rewritten and a clause boundary resynchronises it; a
word inserted or merged just before the last committed word is found by that word
(``_resume_at``), since a repeated word costs the listener time as well as meaning.
(Aligning the committed words to the new translation by edit distance instead was measured and
dropped: on the dev sentences it changed incremental chrF by at most 0.3 either way.)

MT input stays bounded: once a sentence (``. ? !``) is fully committed, later calls translate only
the source after it and ``committed`` restarts for the new sentence. A sentence end followed by a
capitalised word inside newly arrived text is treated the same way (so "Mr. Smith" splits; a
harmless cost of not translating ever longer inputs)."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from babelcall.engines.base import Translator
from babelcall.engines.mt.router import text_engine
from babelcall.realtime.errors import UnsupportedLanguage

SENTENCE_END = ".?!…。！？"
CLAUSE_END = ",;:，；：、"
_CLOSERS = "\"'”’»)]} "
_OPENERS = "¿¡\"'“‘«(["
_INNER_END = re.compile(r"[.?!…]+[\"'”’»)\]]*\s+")
_CHUNK = re.compile(r"\s*\S+")  # a word with the whitespace before it


@dataclass(frozen=True)
class MtStep:
    """The result of one ``update``.

    ``new_committed`` is exactly what this call appended to the utterance's committed target:
    joining every step's ``new_committed`` gives the whole translation (a new sentence's first
    piece carries the space that separates it from the previous one). ``committed`` is the
    current sentence's committed target, and ``committed + draft`` its latest hypothesis."""

    new_committed: str
    committed: str
    draft: str
    final: bool


@dataclass(frozen=True)
class _State:
    offset: int = 0  # where the current sentence starts in the committed source
    committed: str = ""  # target committed for the current sentence
    source: str = ""  # the sentence source ``hypothesis`` translates
    hypothesis: str | None = None  # starts with ``committed``; LA-2 compares against it
    spoken: bool = False  # something was committed earlier in this utterance


def boundary(text: str) -> str | None:
    """'sentence', 'clause' or None for how the (source) text ends."""
    end = text.rstrip(_CLOSERS)
    if end and end[-1] in SENTENCE_END:
        return "sentence"
    if end and end[-1] in CLAUSE_END:
        return "clause"
    return None


def _inner_sentence_end(text: str, start: int) -> int | None:
    """Offset just after the first sentence that ends inside ``text[start:]`` and is followed by
    the capitalised start of another."""
    for m in _INNER_END.finditer(text, start):
        rest = text[m.end():].lstrip(_OPENERS)
        if rest and (rest[0].isupper() or rest[0].isdigit()):
            return m.end()
    return None


def _agreed(previous: str | None, current: str, start: int) -> str:
    """Longest common run of whole words of two hypotheses after their shared ``start`` chars."""
    if previous is None:
        return ""
    out = []
    for a, b in zip(_CHUNK.findall(previous[start:]), _CHUNK.findall(current[start:]),
                    strict=False):
        if a != b:
            break
        out.append(a)
    return "".join(out)


def _all_but(hypothesis: str, start: int, holdback: int) -> str:
    """The whole words of ``hypothesis`` after ``start`` chars, less the last ``holdback``."""
    chunks = _CHUNK.findall(hypothesis[start:])
    return "".join(chunks[:max(0, len(chunks) - holdback)])


class IncrementalTranslator:
    """One per session and language pair; not thread-safe (a session updates it serially, and
    sessions share the engines, which are).

    ``engine`` may be a router over many pairs (the pair's own engine is used) or None. With
    None, or for a pair into English that the engine leaves to Whisper, the recogniser already
    produced the target text (``Engines.asr_task`` is "translate" by the same rule,
    ``router.text_engine``) and every update commits the new source as it is."""

    def __init__(self, engine: Translator | None, source: str, target: str, *,
                 holdback: int | None = None) -> None:
        try:
            self.engine = text_engine(engine, source, target)
        except UnsupportedLanguage:
            raise UnsupportedLanguage(
                f"MT engine {getattr(engine, 'name', None)} cannot translate "
                f"{source}->{target}") from None
        self.source = source
        self.target = target
        if holdback is not None and holdback < 0:
            raise ValueError("holdback must be >= 0")
        # (d) commit all but the last ``holdback`` words of a grown hypothesis without waiting
        # for the next one to agree: the tail is where word order still changes (adjective
        # after noun, verb at the end), the rest rarely does once its source is committed.
        self.holdback = holdback
        self._state = _State()

    def reset(self) -> None:
        """Start a new utterance (its committed source starts again from empty)."""
        self._state = _State()

    def update(self, committed_source: str, *, final: bool = False,
               settled: bool = False) -> MtStep:
        """Translate the utterance's committed source so far; see the module docstring.
        ``settled``: the speaker paused and the recogniser committed every word it heard;
        commit the whole hypothesis as at a clause boundary (the sentence may go on).

        State is only replaced once every engine call succeeded, so an engine error leaves the
        policy as it was and the same update can be retried."""
        st = self._state
        appended: list[str] = []
        shown: tuple[str, str] = (st.committed, "")
        if st.hypothesis is not None:
            shown = (st.committed, st.hypothesis[len(st.committed):])
        # whole sentences that arrived inside the new text, then the rest
        while (end := _inner_sentence_end(committed_source, st.offset)) is not None:
            st, piece, shown = self._segment(st, committed_source[st.offset:end], True)
            appended.append(piece)
            st = _State(offset=end, spoken=st.spoken)
        rest = committed_source[st.offset:]
        if rest.strip():
            kind = boundary(rest)
            st, piece, shown = self._segment(st, rest, final or settled or kind is not None)
            appended.append(piece)
            if final or kind == "sentence":
                st = _State(offset=len(committed_source), spoken=st.spoken)
        elif final:
            st = replace(st, offset=len(committed_source))
            shown = (st.committed, "")
        self._state = st
        return MtStep("".join(appended), shown[0], shown[1], final)

    def _segment(self, st: _State, text: str, commit_all: bool
                 ) -> tuple[_State, str, tuple[str, str]]:
        """Advance one sentence; returns the new state, the appended text (with its separator)
        and the (committed, draft) pair to report."""
        text = text.strip()
        if text == st.source and st.hypothesis is not None:
            hyp, grown = st.hypothesis, False  # nothing new to translate
        else:
            hyp, grown = self._hypothesis(text, st.committed), True
        if commit_all or self.engine is None:  # (None: committed source is final text)
            committed = hyp
        elif grown:
            committed = st.committed + _agreed(st.hypothesis, hyp, len(st.committed))
            if self.holdback is not None:
                ahead = _all_but(hyp, len(st.committed), self.holdback)
                committed = max(committed, st.committed + ahead, key=len)
        else:  # an identical hypothesis twice is no agreement: the source did not grow
            committed = st.committed
        new = committed[len(st.committed):]
        if not new.strip():
            new, committed = "", st.committed
        piece = new
        if new and not st.committed and st.spoken:
            piece = " " + new  # first words of a new sentence
        st = replace(st, committed=committed, source=text, hypothesis=hyp,
                     spoken=st.spoken or bool(new))
        return st, piece, (committed, hyp[len(committed):])

    def _hypothesis(self, text: str, committed: str) -> str:
        """A full target for the sentence that starts with ``committed``."""
        if self.engine is None:  # the text is already in the target language
            return text
        prefixes = [committed] if self.engine.supports_prefix else None
        out = self.engine.translate([text], source=self.source, target=self.target,
                                    target_prefixes=prefixes)[0]
        if self.engine.supports_prefix and out.startswith(committed):
            return committed + out[len(committed):].rstrip() if committed else out.strip()
        words = out.split()
        continuation = words[_resume_at(committed.split(), words):]
        return " ".join(filter(None, [committed, " ".join(continuation)]))


def _resume_at(committed: list[str], words: list[str]) -> int:
    """Where the continuation of ``committed`` starts in a re-translation's ``words``: after
    as many words as are committed, unless the last committed word sits one word earlier or
    up to two later (a word inserted or merged before it: 'un glowing cuenta' then 'un glowing
    la cuenta de su' gave 'cuenta cuenta de su'), when it is after that word. Further away the
    sentence was reordered and the count is kept (skipping there lost the verb)."""
    n = len(committed)
    if not n:
        return 0
    last = committed[-1].lower()
    for at in (n - 1, n, n + 1, n - 2):
        if 0 <= at < len(words) and words[at].lower() == last:
            return at + 1
    return n
