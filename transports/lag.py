"""How far the translated speech of one speaker runs behind them, read from the caption records
their Link emits (``link.add_sink(tracker.observe)``), so a video relay can show the speaker's
picture as late as their translated voice is heard (``tracks.DelayedTrack``).

The lag is read from the ``audio_out`` records: ``latency_ms`` is from the arrival of a
clause's source end to the moment its translation starts playing. One clause's lag differs from
the next by up to a second or two (clause length, a synthesis queue, the CPU), more than a picture
can follow smoothly, so the current lag is the median of the last few clauses': steady, yet it
moves within a few clauses when the lag really changes. The records also say when
the speaker talks (``speech_started``/``speech_ended``, placed at the arrival time of the
source sample they mark), so the delay changes quickly between phrases and barely while the
speaker talks: speeding up or slowing down a picture of someone listening is not noticed,
of someone talking it is."""

from __future__ import annotations

import collections
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from babelcall.realtime.clock import Clock

TALKING_SLEW = 0.2   # delay change per second of video while the speaker talks (0.8x-1.2x)
PAUSE_SLEW = 0.6    # ... between phrases (0.4x-1.6x)
LIVE_SLEW = 0.8     # catching up when a viewer asks for live video
DEFAULT_PRIOR_S = 2.0  # the lag assumed before any clause has played (this CPU: 2-3 s)
CLAUSES = 5         # the current lag is the median over this many latest clauses


class LagTracker:
    """Sink for one Link's records; the ``DelayTarget`` of every listener who hears that link's
    translation. ``prior_s``: the lag assumed until this link's first clause plays (the room
    passes what its other links measured)."""

    def __init__(self, clock: Clock, origin_ns: int, *,
                 prior_s: float | Callable[[], float] = DEFAULT_PRIOR_S,
                 max_lag_s: float = 3.0) -> None:
        self.clock = clock
        self.origin_ns = origin_ns
        self.prior_s = prior_s
        self.max_lag_s = max_lag_s
        self.lag_s: float | None = None  # the current lag: median of the latest clauses'
        self.lags: collections.deque[float] = collections.deque(maxlen=CLAUSES)
        self.updated_ns = 0
        self.clauses = 0
        # (start, end) arrival times in ns of the phrases heard; end None while one is open
        self._phrases: collections.deque[list[int | None]] = collections.deque(maxlen=32)

    def observe(self, rec: dict[str, Any]) -> None:
        kind = rec.get("type")
        if kind == "audio_out" and isinstance(rec.get("latency_ms"), int | float):
            self.lags.append(rec["latency_ms"] / 1000)
            self.lag_s = statistics.median(self.lags)
            self.updated_ns = self.clock.now_ns()
            self.clauses += 1
        elif kind in ("speech_started", "speech_ended"):
            at = self._arrival_ns(rec)
            if at is None:
                return
            if kind == "speech_started":
                self._phrases.append([at, None])
            elif self._phrases and self._phrases[-1][1] is None:
                self._phrases[-1][1] = at

    def _arrival_ns(self, rec: dict[str, Any]) -> int | None:
        """Wall time at which the record's source end arrived: emitted ``latency_ms`` after it."""
        wall, latency = rec.get("wall_ms"), rec.get("latency_ms")
        if not isinstance(wall, int | float) or not isinstance(latency, int | float):
            return None
        return self.origin_ns + int((wall - latency) * 1e6)

    @property
    def talking(self) -> bool:
        """A phrase of the speaker is open (started, not ended)."""
        return bool(self._phrases) and self._phrases[-1][1] is None

    def speaking(self, arrival_ns: int) -> bool:
        """The speaker was talking when this instant of their stream arrived."""
        for start, end in reversed(self._phrases):
            assert start is not None
            if start <= arrival_ns and (end is None or arrival_ns <= end):
                return True
            if end is not None and end < arrival_ns:
                return False
        return False

    # -- DelayTarget ------------------------------------------------------------------------
    def target_s(self) -> float:
        if self.lag_s is not None:
            lag = self.lag_s
        else:
            lag = self.prior_s() if callable(self.prior_s) else self.prior_s
        return min(max(lag, 0.0), self.max_lag_s)

    def rate(self, arrival_ns: int) -> float:
        return TALKING_SLEW if self.speaking(arrival_ns) else PAUSE_SLEW


@dataclass
class Playout:
    """How much longer a listener's page holds audio than video before playing them (its
    jitter buffers, as its getStats reports them, smoothed): pictures leave the server that
    much later, so lips and translated voice meet on the screen, not at the server."""

    audio_minus_video_s: float = 0.0
    reports: int = 0

    def update(self, audio_ms: Any, video_ms: Any) -> None:
        if not all(isinstance(v, int | float) and 0 <= v < 5000 for v in (audio_ms, video_ms)):
            return
        now = (audio_ms - video_ms) / 1000
        weight = 0.3 if self.reports else 1.0
        self.audio_minus_video_s += weight * (now - self.audio_minus_video_s)
        self.reports += 1


@dataclass
class ViewerDelay:
    """One listener's delay for one speaker's video: the speaker's lag (plus what the
    listener's page holds audio longer than video), or live on request (same-language
    listeners hear the original voice, so their video is live from the start)."""

    lag: LagTracker | None
    live: bool = False
    playout: Playout | None = None

    def target_s(self) -> float:
        if self.live or self.lag is None:
            return 0.0
        extra = self.playout.audio_minus_video_s if self.playout is not None else 0.0
        return min(max(self.lag.target_s() + extra, 0.0), self.lag.max_lag_s)

    def rate(self, arrival_ns: int) -> float:
        if self.live or self.lag is None:
            return LIVE_SLEW
        return self.lag.rate(arrival_ns)
