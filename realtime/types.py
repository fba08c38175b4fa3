"""Data that travels between stages. Time is data: source time in seconds on the speaker's
stream (``Span``) and wall time in ns from the session's clock travel with every item."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, slots=True)
class Span:
    """An interval of the speaker's stream, in seconds from the first sample the session got."""

    start: float
    end: float


@dataclass(frozen=True, slots=True)
class Word:
    """A recognised word; ``text`` keeps Whisper's leading space and punctuation."""

    text: str
    start: float
    end: float
    prob: float | None = None

    def shifted(self, offset: float) -> Word:
        return Word(self.text, self.start + offset, self.end + offset, self.prob)


def join_words(words: list[Word] | tuple[Word, ...]) -> str:
    return "".join(w.text for w in words).strip()


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    utt: int
    src: Span
    wall_ns: int
    kind: str = field(default="speech_started", init=False)


@dataclass(frozen=True, slots=True)
class SpeechEnded:
    utt: int
    src: Span
    wall_ns: int
    kind: str = field(default="speech_ended", init=False)


@dataclass(frozen=True, slots=True)
class Transcript:
    """Source text: ``committed`` words are final and never re-sent; ``partial`` may change."""

    utt: int
    src: Span
    wall_ns: int
    committed: tuple[Word, ...]
    partial: tuple[Word, ...]
    kind: str = field(default="transcript", init=False)

    @property
    def committed_text(self) -> str:
        return join_words(self.committed)

    @property
    def partial_text(self) -> str:
        return join_words(self.partial)


@dataclass(frozen=True, slots=True)
class Translation:
    """Target text: ``committed`` is appended to what was committed before and never rewritten;
    ``draft`` is the current guess for the rest and may change."""

    utt: int
    src: Span
    wall_ns: int
    committed: str
    draft: str
    final: bool
    kind: str = field(default="translation", init=False)


@dataclass(frozen=True, slots=True)
class SynthAudio:
    """A chunk of translated speech (mono float32 in [-1, 1]) for the source ``src``;
    ``text`` is the clause it voices and ``seq`` the chunk's index within that clause."""

    utt: int
    src: Span
    wall_ns: int
    pcm: np.ndarray = field(repr=False)
    rate: int
    text: str
    seq: int = 0
    clause: int = 0  # which clause of the session (its PhraseTiming names it)
    kind: str = field(default="synth_audio", init=False)

    @property
    def duration(self) -> float:
        return len(self.pcm) / self.rate


@dataclass(frozen=True, slots=True)
class StageError:
    """A stage failed on one item; the session goes on with the next one — unless ``fatal``:
    the session was ended by the fault (its last event)."""

    utt: int
    src: Span
    wall_ns: int
    stage: str
    message: str
    fatal: bool = False
    kind: str = field(default="stage_error", init=False)


@dataclass(frozen=True, slots=True)
class SpeechSkipped:
    """Overload's last resort: this committed clause is shown (captions) but not voiced,
    because by the time it could play the listener would hear it ``behind_s`` after the
    speaker said it. Logged and counted, never silent."""

    utt: int
    src: Span
    wall_ns: int
    text: str
    behind_s: float
    kind: str = field(default="speech_skipped", init=False)


@dataclass(frozen=True, slots=True)
class VoiceChosen:
    """The voice the translation speaks with, from this phrase on: ``voice`` (None: the
    session's default), whether it is converted towards the caller's, and why not when it
    is not (no profile yet, a conversion that would cost intelligibility...)."""

    utt: int
    src: Span
    wall_ns: int
    voice: str | None
    converted: bool
    reason: str
    kind: str = field(default="voice", init=False)


@dataclass(frozen=True, slots=True)
class PhraseTiming:
    """How the clause that carries the phrase's last word reached the speaker's output: the
    wall time of each hop the session saw (names in ``realtime/waterfall.py``). A sink adds
    its own hops (handed to the output, playing, sent, heard) to the clause's audio."""

    utt: int
    src: Span
    wall_ns: int
    clause: int
    marks: dict[str, int]
    kind: str = field(default="phrase_timing", init=False)


Event = (SpeechStarted | SpeechEnded | Transcript | Translation | SynthAudio | StageError
         | SpeechSkipped | PhraseTiming | VoiceChosen)
