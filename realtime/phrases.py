"""Phrases of one speaker: 16 kHz audio in, phrase boundaries and phrase audio out.

Keeps the last ``pad`` of audio before an onset so the phrase starts where the VAD's padded
onset says, and hands the recogniser only speech (VAC in whisper_streaming's terms): silence
and noise between phrases cost no ASR time."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from babelcall.engines.base import Vad
from babelcall.engines.vad.tracker import VadParams, VadTracker
from babelcall.realtime.audio import SPEECH_RATE


@dataclass(frozen=True)
class PhraseStart:
    time: float
    pcm: np.ndarray  # audio from ``time`` up to now


@dataclass(frozen=True)
class PhraseAudio:
    pcm: np.ndarray
    voiced_s: float  # how much of it the VAD scored as speech


@dataclass(frozen=True)
class PhrasePause:
    """The speaker has paused for ``pause_s`` inside a phrase: the phrase may be ending, so the
    recogniser can run its final pass now, while the VAD waits to be sure."""

    time: float


@dataclass(frozen=True)
class PhraseEnd:
    time: float


Heard = PhraseStart | PhraseAudio | PhrasePause | PhraseEnd


# Digital silence (every sample under -80 dBFS, a few 16-bit steps: a muted or idle microphone
# as a WebRTC decoder gives it — in the room bench 70 % of a silent caller's 64 ms chunks peak
# between 1e-5 and 1e-4) that has lasted this long is scored without the VAD. In a room most
# participants are silent at any time: their VAD calls were ~13 % of a core with four people
# (the room bench, 2 cores). Only after a while: by then any phrase has ended (min_silence_s),
# and pauses inside a talk are left to the model — gated at once, the 0.4 s gaps of the
# long-form talk segmented its phrases differently (en->es heard chrF 42.3 and 35.6 instead of
# 42.7). What follows a skipped stretch is scored from a slightly different model state
# (boundaries within one 32 ms window; tests/engines/vad). Not a higher floor: FLEURS has
# speech whose 64 ms chunks peak at 1.2e-4 (none of its speech chunks is under 1e-4).
SILENT_PEAK = 1e-4
SILENT_HOLD_S = 1.0


def silent(pcm: np.ndarray) -> bool:
    """True when ``pcm`` is digital silence."""
    return not len(pcm) or float(np.max(np.abs(pcm))) < SILENT_PEAK


class PhraseDetector:
    """Not thread-safe: one session's listen stage calls it, one call at a time (on the
    scheduler's VAD lane, or on the loop for audio ``quiet`` says needs no model)."""

    rate = SPEECH_RATE

    def __init__(self, vad: Vad, params: VadParams | None = None) -> None:
        self._vad = vad
        self._stream = vad.stream()
        self.window = self._stream.window
        self._tracker = VadTracker(params, window_s=self.window / self.rate)
        self._pending = np.zeros(0, dtype=np.float32)  # < one VAD window, not yet scored
        keep = int((self._tracker.params.pad_s + self._tracker.params.min_speech_s + 0.1)
                   * self.rate)
        self._history = np.zeros(0, dtype=np.float32)  # recent scored audio, for onsets
        self._keep = keep
        self._scored = 0  # samples scored so far (stream position of _history's end)
        self._silent_s = 0.0  # digital silence just before what comes next

    @property
    def speaking(self) -> bool:
        return self._tracker.speaking

    def quiet(self, pcm: np.ndarray) -> bool:
        """True when ``feed(pcm)`` needs no model call (long digital silence)."""
        return self._silent_s >= SILENT_HOLD_S and not self.speaking \
            and silent(self._pending) and silent(pcm)

    def feed(self, pcm: np.ndarray) -> list[Heard]:
        """Score whole VAD windows of ``pcm`` (the rest waits for the next call)."""
        gated = self.quiet(pcm)
        buf = np.concatenate([self._pending, pcm.astype(np.float32)])
        n = len(buf) // self.window * self.window
        block, self._pending = buf[:n], buf[n:]
        if not n:
            return []
        self._silent_s = self._silent_s + n / self.rate if silent(block) else 0.0
        probs = np.zeros(n // self.window, dtype=np.float32) if gated \
            else self._stream.probs(block)
        out: list[Heard] = []
        # Replay windows one by one so audio is routed on the right side of each boundary.
        for i in range(len(probs)):
            prob = probs[i]
            win = block[i * self.window:(i + 1) * self.window]
            was = self._tracker.speaking
            events = self._tracker.update([float(prob)])
            self._history = np.concatenate([self._history, win])[-self._keep:]
            self._scored += len(win)
            for ev in events:
                if ev.start:
                    start_sample = max(int(ev.time * self.rate), self._scored - len(self._history))
                    pre = self._history[len(self._history) - (self._scored - start_sample):]
                    out.append(PhraseStart(ev.time, pre.copy()))
                else:
                    out.append(PhraseEnd(ev.time))
                    probs[i + 1:] = self._forget(block[(i + 1) * self.window:], gated)
            if was and self._tracker.speaking:
                voiced = self.window / self.rate if self._tracker.silence_s == 0 else 0.0
                out.append(PhraseAudio(win, voiced))
                pause = self._tracker.params.pause_s
                if pause <= self._tracker.silence_s < pause + self.window / self.rate:
                    out.append(PhrasePause(self._scored / self.rate))
        return _merge_audio(out)

    def _forget(self, rest: np.ndarray, gated: bool) -> np.ndarray:
        """A phrase has ended: the detector starts afresh, and scores ``rest`` (what follows
        in this block) anew. Its memory of the phrase is no help with the next and can be
        harm: after a loud reader (fleurs-en-001) Silero scored the first 2.2 s of a softer
        one (fleurs-en-002) at 0.1-0.4 where a fresh detector gives 0.5-0.97, so the long-form
        talk lost "To the north and within easy reach". Silence and the 0.45 s that end a
        phrase lie between, so no speech is scored without what came just before it."""
        self._stream = self._vad.stream()
        if not gated:  # warmed on the pause that ended the phrase: onsets come as soon
            keep = len(self._history) // self.window * self.window
            self._stream.probs(self._history[len(self._history) - keep:])
        if gated or not len(rest):
            return np.zeros(len(rest) // self.window, dtype=np.float32)
        return self._stream.probs(rest)

    def flush(self) -> list[Heard]:
        """End of stream: score the last partial window (zero-padded) and close the phrase."""
        out: list[Heard] = []
        if len(self._pending):
            tail = np.zeros(self.window, dtype=np.float32)
            tail[: len(self._pending)] = self._pending
            self._pending = np.zeros(0, dtype=np.float32)
            out = self.feed(tail)
        return out + [PhraseEnd(b.time) for b in self._tracker.flush()]


def _merge_audio(items: list[Heard]) -> list[Heard]:
    merged: list[Heard] = []
    for item in items:
        if isinstance(item, PhraseAudio) and merged and isinstance(merged[-1], PhraseAudio):
            merged[-1] = PhraseAudio(np.concatenate([merged[-1].pcm, item.pcm]),
                                     merged[-1].voiced_s + item.voiced_s)
        else:
            merged.append(item)
    return merged
