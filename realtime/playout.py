"""Where translated speech lands on the listener's timeline.

Chunks play one after another: a chunk starts when it is produced, or when the previous one
ends if that is later (a listener can't hear two at once). ``PlayoutClock`` is that rule and
nothing else (a WebSocket sink uses it to know its listener's backlog); ``Playout`` also keeps
what it placed, for the file writer of ``babelcall translate`` and the latency figures, so
both tell the same story."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from babelcall.realtime.types import SynthAudio


class PlayoutClock:
    """When the next chunk can start playing, given when each chunk was ready."""

    def __init__(self) -> None:
        self.end_ns: int | None = None  # when everything placed so far has played

    def place(self, ready_ns: int, duration_s: float) -> int:
        """Start time of a chunk ready at ``ready_ns``; it then occupies ``duration_s``."""
        start = ready_ns if self.end_ns is None else max(ready_ns, self.end_ns)
        self.end_ns = start + int(duration_s * 1e9)
        return start

    def backlog_s(self, now_ns: int) -> float:
        """Audio placed but not yet played at ``now_ns``."""
        return 0.0 if self.end_ns is None else max(0.0, (self.end_ns - now_ns) / 1e9)


@dataclass(frozen=True)
class Placed:
    event: SynthAudio
    start_ns: int

    @property
    def end_ns(self) -> int:
        return self.start_ns + int(self.event.duration * 1e9)


class Playout:
    def __init__(self, rate: int, *, keep: bool = True) -> None:
        """``keep``: remember what was placed, to ``render`` it (a soak that only measures
        keeps nothing, so its memory is the server's alone)."""
        self.rate = rate
        self.keep = keep
        self.placed: list[Placed] = []
        self._clock = PlayoutClock()

    def add(self, event: SynthAudio, ready_ns: int | None = None) -> Placed:
        if event.rate != self.rate:
            raise ValueError(f"playout at {self.rate} Hz got a chunk at {event.rate} Hz")
        ready = event.wall_ns if ready_ns is None else ready_ns
        placed = Placed(event, self._clock.place(ready, event.duration))
        if self.keep:
            self.placed.append(placed)
        return placed

    def render(self, origin_ns: int, min_duration_s: float = 0.0) -> np.ndarray:
        """The whole timeline as PCM; ``origin_ns`` is the wall time of source time 0."""
        if not self.keep:
            raise ValueError("this playout kept nothing to render")
        end_s = max([min_duration_s] + [(p.end_ns - origin_ns) / 1e9 for p in self.placed])
        out = np.zeros(int(np.ceil(end_s * self.rate)) + 1, dtype=np.float32)
        for p in self.placed:
            i = max(0, round((p.start_ns - origin_ns) / 1e9 * self.rate))
            pcm = p.event.pcm[: len(out) - i]
            out[i: i + len(pcm)] = pcm
        return out
