"""When each source sample arrived: the session's one map from the speaker's stream position
(integer samples) to wall time, so every latency is a subtraction. Bounded: a day-long call
keeps only the last ``keep`` arrivals (minutes of audio, far beyond any phrase)."""

from __future__ import annotations

import bisect


class ArrivalIndex:
    def __init__(self, rate: int, keep: int = 6000) -> None:
        """``keep``: arrivals kept (6000 20 ms frames = 2 min); lookups further back get the
        oldest kept one."""
        if keep < 1:
            raise ValueError("keep must be at least 1")
        self.rate = rate
        self.keep = keep
        self.samples = 0  # stream position after the last arrival
        self._marks: list[tuple[int, int]] = []  # (stream position after a block, wall ns)

    def add(self, n: int, wall_ns: int) -> None:
        """``n`` samples arrived at ``wall_ns``."""
        if n <= 0:
            return
        self.samples += n
        self._marks.append((self.samples, wall_ns))
        if len(self._marks) > 2 * self.keep:  # amortised trim: one slice per ``keep`` adds
            del self._marks[: len(self._marks) - self.keep]

    def __len__(self) -> int:
        return len(self._marks)

    def wall_ns(self, sample: int) -> int | None:
        """Wall time at which stream position ``sample`` had arrived (None before any)."""
        if not self._marks:
            return None
        i = bisect.bisect_left(self._marks, sample, key=lambda m: m[0])
        return self._marks[min(i, len(self._marks) - 1)][1]

    def wall_ns_at(self, seconds: float) -> int | None:
        """The same for a stream time in seconds (spans and words carry seconds)."""
        return self.wall_ns(round(seconds * self.rate))

    @property
    def heard_s(self) -> float:
        return self.samples / self.rate
