"""The translated audio babelcall sends: lanes of speech and live audio, the pts-paced Mixer
that sums them, and the Output that runs it on its own clock and fans it out.

Every outgoing frame is 20 ms at 48 kHz (Opus' native rate, so the encoder never resamples)
with pts from a sample counter (see ``tracks.Pacer``); the mixer sends silence when there is
nothing to say, so the far end hears one continuous stream with no gaps and no drift however
bursty the synthesiser is."""

from __future__ import annotations

import asyncio
import collections
import fractions
import logging
import uuid
from collections.abc import Callable

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from babelcall.realtime.audio import Resampler, frame_from_array
from babelcall.realtime.clock import Clock, SystemClock
from babelcall.realtime.tasks import cancel_and_wait
from babelcall.transports import compat
from babelcall.transports.relay import BoundedRelay
from babelcall.transports.tracks import FRAME, TRACK_PREFIX, WIRE_RATE, OpusTrack, Pacer

__all__ = ["FRAME", "WIRE_RATE", "Mixer", "MixerInput", "Output", "Upsampler"]
log = logging.getLogger(__name__)


class MixerInput:
    """A FIFO of 48 kHz mono float32 audio feeding a Mixer. ``speech`` lanes carry translated
    speech (their activity ducks the others); bed lanes carry live audio (the original voice) and
    stay short: they drop their oldest audio beyond ``max_queue_s`` and wait for ``preroll_s``
    after an underrun, so network jitter neither piles up delay nor makes the bed choppy."""

    def __init__(self, *, gain: float = 1.0, speech: bool = True, duck_gain: float | None = None,
                 max_queue_s: float | None = None, preroll_s: float = 0.0) -> None:
        self.gain = gain
        self.duck_gain = gain if duck_gain is None else duck_gain
        self.speech = speech
        self.max_queue = int(max_queue_s * WIRE_RATE) if max_queue_s else None
        self.preroll = int(preroll_s * WIRE_RATE)
        self.queued = 0
        self._chunks: collections.deque[
            tuple[np.ndarray, Callable[[int, int], None] | None]] = collections.deque()
        self._offset = 0  # samples of the head chunk already played
        self._primed = self.preroll == 0

    @property
    def queued_s(self) -> float:
        return self.queued / WIRE_RATE

    def push(self, pcm: np.ndarray,
             on_start: Callable[[int, int], None] | None = None) -> None:
        """Queue audio; ``on_start(now_ns, pts)`` runs when its first sample goes out, with
        the pts of the output frame that carries it."""
        if not len(pcm):
            return
        self._chunks.append((pcm.astype(np.float32, copy=False), on_start))
        self.queued += len(pcm)
        if self.max_queue is not None:
            while self.queued > self.max_queue and len(self._chunks) > 1:
                head, _ = self._chunks.popleft()
                self.queued -= len(head) - self._offset
                self._offset = 0

    def clear(self) -> None:
        self._chunks.clear()
        self.queued = self._offset = 0

    def take(self, n: int, now_ns: int, pts: int = 0) -> np.ndarray | None:
        """The next ``n`` samples (zero-padded), or None when the lane has nothing to play."""
        if not self._primed:
            if self.queued < self.preroll:
                return None
            self._primed = True
        if not self.queued:
            self._primed = self.preroll == 0
            return None
        out = np.zeros(n, dtype=np.float32)
        filled = 0
        while filled < n and self._chunks:
            pcm, on_start = self._chunks[0]
            if self._offset == 0 and on_start is not None:
                on_start(now_ns, pts + filled)
            k = min(n - filled, len(pcm) - self._offset)
            out[filled:filled + k] = pcm[self._offset:self._offset + k]
            filled += k
            self._offset += k
            if self._offset == len(pcm):
                self._chunks.popleft()
                self._offset = 0
        self.queued -= filled
        return out


class Mixer(MediaStreamTrack):
    """The outgoing audio track: sums its lanes into continuous 20 ms frames at 48 kHz.

    Bed lanes fade (over one frame, no clicks) to their ``duck_gain`` while any speech lane
    plays and back to ``gain`` ``hold_s`` after it stops. ``last_speech_ns`` tells the echo
    guard when translated speech last went out."""

    kind = "audio"

    def __init__(self, *, clock: Clock | None = None, hold_s: float = 0.3) -> None:
        super().__init__()
        self._id = f"{TRACK_PREFIX}{uuid.uuid4()}"
        self.clock = clock or SystemClock()
        self.lanes: list[MixerInput] = []
        self.hold_ns = int(hold_s * 1e9)
        self.last_speech_ns = -(1 << 62)
        self.frames = 0
        self.speech_frames = 0
        self._pacer = Pacer(WIRE_RATE, FRAME, self.clock)
        self.senders = 0  # encoders that report what they sent (see ``sent``)
        self._sent_watch: list[tuple[int, asyncio.Future[tuple[int, int]]]] = []
        self._duck = 0.0  # 0: bed at gain, 1: bed at duck_gain
        self._time_base = fractions.Fraction(1, WIRE_RATE)

    def add_lane(self, **kw: float | bool | None) -> MixerInput:
        lane = MixerInput(**kw)  # type: ignore[arg-type]
        self.lanes.append(lane)
        return lane

    def remove_lane(self, lane: MixerInput) -> None:
        if lane in self.lanes:
            self.lanes.remove(lane)

    def when_sent(self, pts: int) -> asyncio.Future[tuple[int, int]] | None:
        """A future for (wall ns, packet pts) of the first encoded packet that carries the
        mixer's sample ``pts``; None when no encoder of this mixer reports."""
        if not self.senders:
            return None
        fut: asyncio.Future[tuple[int, int]] = asyncio.get_running_loop().create_future()
        self._sent_watch.append((pts, fut))
        return fut

    def sent(self, pts: int, samples: int, packet_pts: int) -> None:
        """An encoder handed the sender a packet made of this mixer's samples
        ``[pts, pts + samples)``, now."""
        if not self._sent_watch:
            return
        now_ns = self.clock.now_ns()
        keep = []
        for want, fut in self._sent_watch:
            if fut.done():
                continue
            if want < pts + samples:
                fut.set_result((now_ns, packet_pts + max(0, want - pts)))
            else:
                keep.append((want, fut))
        self._sent_watch = keep

    def speaking(self, within_s: float = 0.0) -> bool:
        """Translated speech went out within the last ``within_s`` seconds (or is queued)."""
        if any(lane.speech and lane.queued for lane in self.lanes):
            return True
        return self.clock.now_ns() - self.last_speech_ns <= within_s * 1e9

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        pts = await self._pacer.next()
        if self.readyState != "live":
            raise MediaStreamError
        now = self.clock.now_ns()
        out = np.zeros(FRAME, dtype=np.float32)
        spoke = False
        for lane in [lane for lane in self.lanes if lane.speech]:
            pcm = lane.take(FRAME, now, pts)
            if pcm is not None:
                out += pcm * lane.gain
                spoke = True
        if spoke:
            self.last_speech_ns = now
            self.speech_frames += 1
        target = 1.0 if now - self.last_speech_ns <= self.hold_ns else 0.0
        ramp = np.linspace(self._duck, target, FRAME, dtype=np.float32)
        self._duck = target
        for lane in [lane for lane in self.lanes if not lane.speech]:
            pcm = lane.take(FRAME, now)
            if pcm is not None:
                out += pcm * (lane.gain + (lane.duck_gain - lane.gain) * ramp)
        self.frames += 1
        frame = frame_from_array((np.clip(out, -1.0, 1.0) * 32767).astype(np.int16), WIRE_RATE)
        frame.pts = pts
        frame.time_base = self._time_base
        return frame


class Output:
    """A Mixer that runs on its own clock whether or not anyone listens (a WHIP ingest may
    have no viewer yet), fanned out to any number of consumers through a bounded relay
    (``relay.py``: a consumer that stops reading loses its oldest frames, never memory)."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.mixer = Mixer(clock=clock)
        self.relay = BoundedRelay()
        self._subscribers: list[MediaStreamTrack] = []
        self._pump: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._pump is None:
            self._pump = asyncio.create_task(self._run(), name="output-pump")

    async def _run(self) -> None:
        track = self.relay.subscribe(self.mixer, buffered=False)
        try:
            while True:
                await track.recv()
        except MediaStreamError:
            pass

    def original_voice(self, mix: float, mix_idle: float | None = None
                       ) -> MixerInput | None:
        """An input for the speaker's own voice under the translation: at ``mix`` while
        translated speech plays, at ``mix_idle`` (default: ``mix``) between phrases; short
        (jitter neither piles up delay nor makes it choppy). None when both levels are 0."""
        idle = mix if mix_idle is None else mix_idle
        if mix <= 0 and idle <= 0:
            return None
        return self.mixer.add_lane(speech=False, gain=idle, duck_gain=mix, max_queue_s=0.3,
                                   preroll_s=0.06)

    def echo_gate(self, hold_s: float = 0.4) -> Callable[[], bool]:
        """True while translated speech goes out (and ``hold_s`` after): the input is then
        fed silence, so an open speaker's translation is never translated back."""
        return lambda: self.mixer.speaking(hold_s)

    def subscribe(self, *, opus: bool = False) -> MediaStreamTrack:
        """A new consumer's track; every frame in order (buffered relay, bounded). ``opus``: packets
        encoded on the loop, for an RTCPeerConnection sender that negotiated Opus."""
        track = self.relay.subscribe(self.mixer, buffered=True)
        compat.set_track_id(track, f"{TRACK_PREFIX}{uuid.uuid4()}")  # the loop guard's mark
        self._subscribers.append(track)
        return OpusTrack(track, mixer=self.mixer) if opus else track

    def unsubscribe(self, track: MediaStreamTrack) -> None:
        if isinstance(track, OpusTrack):
            track.stop()
            track = track.source
        if track in self._subscribers:
            self._subscribers.remove(track)
            track.stop()

    async def stop(self) -> None:
        for track in self._subscribers:
            track.stop()
        self._subscribers.clear()
        self.mixer.stop()
        if self._pump is not None:
            await cancel_and_wait([self._pump])


class Upsampler:
    """Synthesised speech (any rate) to the wire rate, one stream per sink: a resampler built
    per chunk costs ~1 ms each time, and one kept across chunks carries its filter state from
    one piece of speech into the next (it holds back a few samples, under 1 ms, until the
    next chunk)."""

    def __init__(self, target: int = WIRE_RATE) -> None:
        self.target = target
        self._rate: int | None = None
        self._resampler: Resampler | None = None

    def convert(self, pcm: np.ndarray, rate: int) -> np.ndarray:
        if rate == self.target or not len(pcm):
            return pcm.astype(np.float32, copy=False)
        if rate != self._rate or self._resampler is None:
            self._rate, self._resampler = rate, Resampler(self.target)
        return self._resampler.push(frame_from_array(pcm, rate))
