"""The one way audio enters a session, whatever the transport (a WebRTC track, a WebSocket's
PCM, a conference server's feed).

It resamples once, straight to the session's 16 kHz (and, only when the caller's own voice is
mixed under the translation, once more to the wire rate for that), turns pts gaps (lost
packets, a muted sender) into silence so the session's timeline stays on the wall clock,
feeds silence while the echo gate is closed, and bounds how far ahead of real time a sender
may get: a transport that can push back (a WebSocket: stop reading) waits in ``wait()``; what
still arrives beyond the hard cap is dropped and counted, so a flooding peer can never queue
minutes of work or memory."""

from __future__ import annotations

import logging
from collections.abc import Callable

import av
import numpy as np

from babelcall.realtime.audio import SPEECH_RATE, Resampler, frame_from_array
from babelcall.realtime.session import Session
from babelcall.transports.media import MixerInput
from babelcall.transports.tracks import WIRE_RATE

log = logging.getLogger(__name__)
MAX_GAP_S = 2.0  # longer pts gaps are a paused sender, not loss: no silence is invented


class RateGuard:
    """Input time against the wall clock since the first block."""

    def __init__(self, max_ahead_s: float, hard_cap_s: float | None = None) -> None:
        """``max_ahead_s``: where backpressure starts; ``hard_cap_s`` (>= it, default equal):
        beyond it input is dropped."""
        cap = max_ahead_s if hard_cap_s is None else hard_cap_s
        if max_ahead_s <= 0 or cap < max_ahead_s:
            raise ValueError("need 0 < max_ahead_s <= hard_cap_s")
        self.max_ahead_s = max_ahead_s
        self.hard_cap_s = cap
        self.accepted_s = 0.0
        self.dropped_s = 0.0
        self._t0: float | None = None

    def begin(self, t0_s: float) -> None:
        """Count real time from ``t0_s`` rather than from the first block: what queued at a
        real-time sender before it was first read (a room's subscription, read only after a
        language probe and a publish) is on time, not ahead, and must not be dropped."""
        if self._t0 is None:
            self._t0 = t0_s

    def ahead_s(self, now_s: float) -> float:
        if self._t0 is None:
            self._t0 = now_s
        return self.accepted_s - (now_s - self._t0)

    def wait_s(self, now_s: float) -> float:
        """How long to stop reading before the sender is back within ``max_ahead_s``."""
        return max(0.0, self.ahead_s(now_s) - self.max_ahead_s)

    def admit(self, seconds: float, now_s: float) -> bool:
        """Count ``seconds`` of input in, or drop them (False) beyond the hard cap."""
        if self.ahead_s(now_s) + seconds > self.hard_cap_s + 1e-6:
            self.dropped_s += seconds
            return False
        self.accepted_s += seconds
        return True


class Inbound:
    """Audio into ``session``; see the module docstring. ``bed``: a mixer input that gets
    the caller's own voice (at the wire rate); ``gate``: while it returns True the session
    hears silence (the echo guard)."""

    def __init__(self, session: Session, *, max_ahead_s: float,
                 hard_cap_s: float | None = None, bed: MixerInput | None = None,
                 gate: Callable[[], bool] | None = None) -> None:
        self.session = session
        self.clock = session.clock
        self.guard = RateGuard(max_ahead_s, hard_cap_s)
        self.bed = bed
        self.gate = gate
        self._to_speech: Resampler | None = None
        self._to_wire: Resampler | None = None
        self._next_pts: int | None = None

    @property
    def dropped_s(self) -> float:
        return self.guard.dropped_s

    def _now_s(self) -> float:
        return self.clock.now_ns() / 1e9

    async def wait(self) -> None:
        """Backpressure: return once the sender is no more than ``max_ahead_s`` ahead."""
        delay = self.guard.wait_s(self._now_s())
        if delay > 0:
            await self.clock.sleep(delay)

    def frame(self, frame: av.AudioFrame) -> None:
        """A decoded frame (any rate, layout and format) from a media track."""
        gap = 0.0
        if frame.pts is not None and frame.time_base is not None:
            if self._next_pts is not None and frame.pts > self._next_pts:
                gap = float((frame.pts - self._next_pts) * frame.time_base)
            self._next_pts = frame.pts + frame.samples
        if not self.guard.admit(frame.samples / frame.sample_rate, self._now_s()):
            return
        if self._to_speech is None:
            self._to_speech = Resampler(SPEECH_RATE)
        try:
            pcm = self._to_speech.push(frame)
            if self.bed is not None:
                self._to_wire = self._to_wire or Resampler(WIRE_RATE)
                self.bed.push(self._to_wire.push(frame))
        except Exception as exc:  # a frame PyAV cannot convert: skip it
            log.debug("undecodable frame: %s", exc)
            return
        if 0.02 < gap <= MAX_GAP_S:
            self.session.push(np.zeros(int(gap * SPEECH_RATE), np.float32), SPEECH_RATE)
        self._push(pcm)

    def pcm(self, pcm: np.ndarray, rate: int) -> bool:
        """PCM16 (or float) mono at ``rate``; False when it was dropped (over the cap).
        Raises BadAudio for a rate the session cannot take."""
        if not len(pcm) or not self.guard.admit(len(pcm) / rate, self._now_s()):
            return not len(pcm)
        if rate != SPEECH_RATE:
            self._to_speech = self._to_speech or Resampler(SPEECH_RATE)
            pcm = self._to_speech.push(frame_from_array(pcm, rate))
        elif pcm.dtype == np.int16:
            pcm = pcm.astype(np.float32) / 32768.0
        self._push(pcm)
        return True

    def _push(self, pcm: np.ndarray) -> None:
        if self.gate is not None and self.gate():
            pcm = np.zeros_like(pcm)
        self.session.push(pcm, SPEECH_RATE)
