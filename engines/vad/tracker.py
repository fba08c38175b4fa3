"""Speech/silence decisions from VAD probabilities: a pure state machine, testable without a
model. Hysteresis (enter at ``threshold``, stay while above ``threshold - 0.15``) and a minimum
silence keep a phrase whole across short pauses; ``pad`` keeps the soft onset that the model
scores low, so Whisper hears the first phoneme."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VadParams:
    threshold: float = 0.5
    min_speech_s: float = 0.25
    min_silence_s: float = 0.45
    pad_s: float = 0.2
    # silence inside a phrase after which the recogniser reads it all (a settling pass): 0.15 s
    # commits at breath pauses too; on the dev clips WER 0.131 -> 0.125 and the last clause
    # of a phrase 1.2 s sooner (fast replays) than at 0.2 s
    pause_s: float = 0.15

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError("threshold must be in (0, 1)")
        if self.min_speech_s < 0 or self.min_silence_s <= 0 or self.pad_s < 0:
            raise ValueError("durations must be positive")
        if not 0 < self.pause_s <= self.min_silence_s:
            raise ValueError("pause_s must be positive and at most min_silence_s")


@dataclass(frozen=True)
class Boundary:
    """``start=True``: speech began at ``time``; else speech ended at ``time`` (seconds)."""

    start: bool
    time: float


class VadTracker:
    def __init__(self, params: VadParams | None = None, window_s: float = 512 / 16000) -> None:
        self.params = params or VadParams()
        self.window_s = window_s
        self._t = 0.0  # stream time after the last window seen
        self._speaking = False
        self._candidate: float | None = None  # time speech seemed to start
        self._silence_since: float | None = None
        self._last_voiced = 0.0

    @property
    def speaking(self) -> bool:
        return self._speaking

    @property
    def silence_s(self) -> float:
        """Length of the silence that is running inside an open phrase (0 when voiced)."""
        if not self._speaking or self._silence_since is None:
            return 0.0
        return self._t - self._silence_since

    def update(self, probs: list[float] | tuple[float, ...]) -> list[Boundary]:
        p = self.params
        off = p.threshold - 0.15
        out: list[Boundary] = []
        for prob in probs:
            t0, self._t = self._t, self._t + self.window_s
            if not self._speaking:
                if prob >= p.threshold:
                    self._candidate = t0 if self._candidate is None else self._candidate
                    if self._t - self._candidate >= p.min_speech_s:
                        self._speaking = True
                        self._last_voiced = self._t
                        self._silence_since = None
                        out.append(Boundary(True, max(0.0, self._candidate - p.pad_s)))
                elif prob < off:
                    self._candidate = None
                continue
            if prob >= off:
                self._silence_since = None
                self._last_voiced = self._t
            else:
                self._silence_since = t0 if self._silence_since is None else self._silence_since
                if self._t - self._silence_since >= p.min_silence_s:
                    out.append(self._end())
        return out

    def flush(self) -> list[Boundary]:
        """End of stream: close an open phrase."""
        return [self._end()] if self._speaking else []

    def _end(self) -> Boundary:
        self._speaking = False
        self._candidate = None
        self._silence_since = None
        return Boundary(False, min(self._t, self._last_voiced + self.params.pad_s))
