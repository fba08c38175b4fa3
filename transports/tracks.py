"""Audio/video tracks babelcall sends besides the mixer: the pacing rule they share, a paced
PCM source (a file, for ``babelcall call`` and tests), an on-loop Opus encoder and a delayed
video relay. Every audio frame is 20 ms at 48 kHz (Opus' native rate) with pts from a sample
counter; a track sleeps until ``start + pts`` (aiortc's ``AudioStreamTrack`` rule)."""

from __future__ import annotations

import asyncio
import collections
import fractions
from dataclasses import dataclass
from typing import Protocol

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from babelcall.realtime.audio import frame_from_array
from babelcall.realtime.clock import Clock, SystemClock

WIRE_RATE = 48000  # what goes over WebRTC: Opus' native rate, so the encoder never resamples
PTIME = 0.02
FRAME = int(WIRE_RATE * PTIME)
# Tracks babelcall produces carry this id prefix (it travels in the SDP msid), so an offer
# that sends one of them back is recognised and never translated again (the loop guard).
TRACK_PREFIX = "babelcall-"


class Pacer:
    """Release one frame every ``samples / rate`` seconds: pts from a sample counter, sleep until
    ``start + pts``. A consumer stalled by more than ``max_lag_s`` (event loop blocked) moves the
    start instead of bursting, so pts stay continuous and later frames stay on time."""

    def __init__(self, rate: int, samples: int, clock: Clock, max_lag_s: float = 0.5) -> None:
        self.rate, self.samples, self.clock = rate, samples, clock
        self.max_lag_ns = int(max_lag_s * 1e9)
        self.pts = -samples
        self.resyncs = 0
        self._start_ns: int | None = None

    async def next(self) -> int:
        now = self.clock.now_ns()
        self.pts += self.samples
        if self._start_ns is None:
            self._start_ns = now
            return self.pts
        wait = self._start_ns + self.pts * 1_000_000_000 // self.rate - now
        if wait > 0:
            await self.clock.sleep(wait / 1e9)
        elif -wait > self.max_lag_ns:
            self._start_ns -= wait
            self.resyncs += 1
        return self.pts


class SentReport(Protocol):
    """What an encoder tells about the packets it hands the sender (the mixer it encodes)."""

    senders: int

    def sent(self, pts: int, samples: int, packet_pts: int) -> None: ...


class OpusTrack(MediaStreamTrack):
    """An audio track encoded to Opus right here, on the event loop; aiortc's sender then only
    packs the packets. Its own path hands every 20 ms frame to a worker thread and waits for
    it before taking the next: under CPU load (model threads contending for the GIL) that hop
    takes 30-60 ms, the sender falls behind real time and the far end hears the translation
    seconds late. Encoding 20 ms of Opus costs about 0.1 ms. Only for an Opus-negotiated
    sender. It keeps the source's track id (babelcall's prefix on our output: the loop guard
    reads it in SDP)."""

    kind = "audio"

    def __init__(self, source: MediaStreamTrack, *, bitrate: int = 64000,
                 mixer: SentReport | None = None) -> None:
        """``mixer``: told which of its samples each packet carries, and when it went out
        (the waterfall's "sent" hop)."""
        super().__init__()
        self._id = source.id
        self.source = source
        self.mixer = mixer
        if mixer is not None:
            mixer.senders += 1
        self.codec = av.CodecContext.create("libopus", "w")
        self.codec.bit_rate = bitrate
        self.codec.format = "s16"
        self.codec.layout = "mono"
        self.codec.sample_rate = WIRE_RATE
        self.codec.time_base = fractions.Fraction(1, WIRE_RATE)
        self.codec.options = {"application": "voip"}
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=WIRE_RATE,
                                            frame_size=FRAME)
        self._packets: collections.deque[tuple[av.Packet, int]] = collections.deque()
        self._count = 0
        self._source_pts = 0  # the source pts of the next sample to be encoded

    @property
    def pending_pts(self) -> int:
        """The pts just after everything already handed to this track: once the far end has
        received up to here, it has heard all of it."""
        queue = getattr(self.source, "queue", None)  # a relayed track's backlog (relay.py)
        waiting = queue.qsize() if queue is not None else 0
        return (self._count + len(self._packets) + waiting) * FRAME

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        while not self._packets:
            try:
                frame = await self.source.recv()
            except MediaStreamError:
                self.stop()
                raise
            if frame.pts is not None:
                self._source_pts = frame.pts
            for chunk in self._resampler.resample(frame):
                self._packets.extend((p, self._source_pts) for p in self.codec.encode(chunk))
            self._source_pts += frame.samples
        packet, source_pts = self._packets.popleft()
        packet.pts = self._count * FRAME  # one packet per 20 ms, on a continuous clock
        packet.time_base = fractions.Fraction(1, WIRE_RATE)
        self._count += 1
        if self.mixer is not None:
            self.mixer.sent(source_pts, FRAME, packet.pts)
        return packet

    def stop(self) -> None:
        if self.mixer is not None and self.readyState == "live":
            self.mixer.senders = max(0, self.mixer.senders - 1)
        super().stop()
        self.source.stop()


class DelayTarget(Protocol):
    """How late a video should run: ``target_s()`` is the delay wanted now (the translated
    speech's current lag), ``rate(arrival_ns)`` how fast the delay may change, in seconds of
    delay per second of video, for a frame that arrived at ``arrival_ns``."""

    def target_s(self) -> float: ...

    def rate(self, arrival_ns: int) -> float: ...


@dataclass(frozen=True)
class FixedDelay:
    """A constant target, reached from live at ``rate`` (never a frozen start)."""

    delay_s: float
    slew: float = 0.5

    def target_s(self) -> float:
        return self.delay_s

    def rate(self, arrival_ns: int) -> float:
        return self.slew


class Slew:
    """The release schedule of a delayed stream: frame i leaves at ``arrival_i + d_i``, and the
    delay d moves toward the target by at most ``rate * (arrival_i - arrival_{i-1})``. The
    picture therefore never freezes and never jumps: while the delay grows the video plays
    slower (at ``1 - rate``), while it shrinks faster, and every frame is shown. Pure, so it is
    tested without media."""

    def __init__(self, max_delay_s: float = 3.0) -> None:
        self.max_delay_ns = int(max_delay_s * 1e9)
        self.delay_ns = 0
        self._arrival: int | None = None
        self._release: int | None = None

    def restart(self, delay_ns: int = 0) -> None:
        """Carry on from ``delay_ns`` at the next frame (after frames were dropped)."""
        self.delay_ns = min(max(delay_ns, 0), self.max_delay_ns)
        self._arrival = None

    def release_ns(self, arrival_ns: int, target_s: float, rate: float) -> int:
        target = min(max(int(target_s * 1e9), 0), self.max_delay_ns)
        if self._arrival is not None:
            step = int(min(max(rate, 0.0), 0.95) * max(arrival_ns - self._arrival, 0))
            self.delay_ns += max(-step, min(step, target - self.delay_ns))
        self._arrival = arrival_ns
        release = arrival_ns + self.delay_ns
        if self._release is not None:
            release = max(release, self._release)  # pts never go back
        self._release = release
        return release


class DelayedTrack(MediaStreamTrack):
    """Relay a video track late, so the picture stays with the translated speech, which runs
    seconds behind the speaker. The delay follows ``delay`` (a ``DelayTarget``, or a number of
    seconds) through a ``Slew``: adaptive, at most ``max_delay_s``, never a frozen picture.
    Items may be decoded frames or encoded packets (a passthrough relay); each leaves as its own
    object stamped with its release time on one 90 kHz clock, so a receiver paces the picture as
    it is sent and a track that replaces another on the same sender keeps its RTP timestamps
    rising. When the source ends, what is queued still plays out (``drained`` is set after)."""

    def __init__(self, source: MediaStreamTrack, delay: float | DelayTarget, *,
                 clock: Clock | None = None, max_delay_s: float = 3.0,
                 max_frames: int = 300) -> None:
        super().__init__()
        self.kind = source.kind
        self.source = source
        self.target: DelayTarget = FixedDelay(delay) if isinstance(delay, int | float) \
            else delay
        self.clock = clock or SystemClock()
        self.slew = Slew(max_delay_s)
        self.drained = asyncio.Event()
        self._queue: collections.deque[tuple[int, object]] = collections.deque(maxlen=max_frames)
        self._ready = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._ended = False
        self._resync = False
        self.resyncs = 0

    @property
    def delay_s(self) -> float:
        """The delay of the last frame released."""
        return self.slew.delay_ns / 1e9

    async def _read(self) -> None:
        try:
            while True:
                frame = await self.source.recv()
                self._queue.append((self.clock.now_ns(), frame))
                self._ready.set()
        except MediaStreamError:
            pass
        finally:
            self._ended = True
            self._ready.set()

    async def recv(self) -> av.VideoFrame | av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        if self._reader is None:
            self._reader = asyncio.ensure_future(self._read())
        while not self._queue:
            await self._more()
        if self._resync:
            return await self._next_keyframe()
        arrived, item = self._queue.popleft()
        release = self.slew.release_ns(arrived, self.target.target_s(), self.target.rate(arrived))
        await self.clock.sleep((release - self.clock.now_ns()) / 1e9)
        return _restamped(item, release)

    async def _more(self) -> None:
        """Wait for the next frame from the source; when it has ended and everything queued
        has played out, this track ends too."""
        if self._ended:
            self.drained.set()
            self.stop()
            raise MediaStreamError
        self._ready.clear()
        await self._ready.wait()

    def resync(self) -> None:
        """The receiver lost the picture (a PLI) and encoded frames are relayed: everything
        queued depends on what it lost, so the next keyframe goes at once, the frames before it
        are dropped, and the delay builds up again from there. A jump ahead instead of a picture
        frozen for the whole delay (the keyframe the speaker sends would wait its turn)."""
        self._resync = True

    async def _next_keyframe(self) -> av.Packet:
        while True:
            while self._queue:
                arrived, item = self._queue.popleft()
                if getattr(item, "is_keyframe", False):
                    self._resync = False
                    self.resyncs += 1
                    self.slew.restart(self.clock.now_ns() - arrived)  # it goes now
                    release = self.slew.release_ns(arrived, 0.0, 0.0)
                    return _restamped(item, release)  # type: ignore[return-value]
            await self._more()

    def stop(self) -> None:
        super().stop()
        if self._reader is not None:
            self._reader.cancel()
        self.source.stop()


VIDEO_TIME_BASE = fractions.Fraction(1, 90000)


def _restamped(item: object, release_ns: int) -> av.VideoFrame | av.Packet:
    """A copy of a relayed frame or packet with pts = its release time (90 kHz). A copy, since
    a relay hands the same object to every listener, each with its own delay."""
    if isinstance(item, av.Packet):
        out: av.VideoFrame | av.Packet = av.Packet(bytes(item))
        out.is_keyframe = item.is_keyframe
    elif isinstance(item, av.VideoFrame):
        out = av.VideoFrame.from_ndarray(item.to_ndarray(format="yuv420p"), format="yuv420p")
    else:
        raise TypeError(f"cannot relay {type(item).__name__}")
    out.pts = release_ns * 9 // 100_000
    out.time_base = VIDEO_TIME_BASE
    return out


class PcmTrack(MediaStreamTrack):
    """A paced audio source from PCM in memory (a decoded file): 20 ms frames at real-time pace.
    After the audio it sends silence, so the far end's voice detector sees the phrase end;
    ``finished`` is set when the last real sample has gone out."""

    kind = "audio"

    def __init__(self, pcm: np.ndarray, rate: int = WIRE_RATE, *, clock: Clock | None = None,
                 lead_in_s: float = 0.0) -> None:
        super().__init__()
        lead = np.zeros(int(lead_in_s * rate), dtype=np.float32)
        self.pcm = np.concatenate([lead, pcm.astype(np.float32)])
        self.rate = rate
        self.samples = int(rate * PTIME)
        self.finished = asyncio.Event()
        self.sent_s = 0.0
        self.started_ns: int | None = None
        self._pacer = Pacer(rate, self.samples, clock or SystemClock())
        self._time_base = fractions.Fraction(1, rate)

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        pts = await self._pacer.next()
        if self.started_ns is None:
            self.started_ns = self._pacer.clock.now_ns()
        chunk = self.pcm[pts:pts + self.samples]
        if len(chunk) < self.samples:
            chunk = np.concatenate([chunk, np.zeros(self.samples - len(chunk), np.float32)])
            self.finished.set()
        self.sent_s = (pts + self.samples) / self.rate
        frame = frame_from_array((np.clip(chunk, -1, 1) * 32767).astype(np.int16), self.rate)
        frame.pts = pts
        frame.time_base = self._time_base
        return frame
