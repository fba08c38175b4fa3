"""Audio/video tracks babelcall sends besides the mixer: the pacing rule they share, a paced
PCM source (a file, for ``babelcall call`` and tests), an on-loop Opus encoder and a delayed
video relay. Every audio frame is 20 ms at 48 kHz (Opus' native rate) with pts from a sample
counter; a track sleeps until ``start + pts`` (aiortc's ``AudioStreamTrack`` rule)."""

from __future__ import annotations

import asyncio
import collections
import fractions
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
        queue = getattr(self.source, "_queue", None)  # a MediaRelay proxy's backlog
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


class DelayedTrack(MediaStreamTrack):
    """Relay a (video) track ``delay_s`` late, so pictures stay with the translated speech,
    which runs a second or two behind the speaker. Frames keep their pts."""

    def __init__(self, source: MediaStreamTrack, delay_s: float, *,
                 clock: Clock | None = None, max_frames: int = 300) -> None:
        super().__init__()
        self.kind = source.kind
        self.source = source
        self.delay_ns = int(delay_s * 1e9)
        self.clock = clock or SystemClock()
        self._queue: collections.deque[tuple[int, object]] = collections.deque(maxlen=max_frames)
        self._ready = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._ended = False

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

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._reader is None:
            self._reader = asyncio.ensure_future(self._read())
        while not self._queue:
            if self._ended:
                self.stop()
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        arrived, frame = self._queue.popleft()
        wait = arrived + self.delay_ns - self.clock.now_ns()
        if wait > 0:
            await asyncio.sleep(wait / 1e9)
        return frame  # type: ignore[return-value]

    def stop(self) -> None:
        super().stop()
        if self._reader is not None:
            self._reader.cancel()
        self.source.stop()


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
