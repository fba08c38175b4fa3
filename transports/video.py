"""A participant's camera relayed to the others without decoding or re-encoding it.

aiortc decodes every received video frame and encodes it again for every sender: per listener
one VP8 encoder at 30 frames a second, most of a core for a few people on the small CPUs
babelcall runs on next to its models. Here the encoded frames the receiver reassembles (its
jitter buffer's output, before its decoder thread) are taken as they are, fanned out with a
bounded relay (``relay.py``), delayed per listener (``tracks.DelayedTrack``) and packed again by
each sender (aiortc's ``Encoder.pack`` for pre-encoded data). The listeners' connections are offered
only the speaker's codec (``same_codec``), so passthrough always holds.

What passthrough needs besides: a listener can only start decoding at a keyframe, so a new
subscription waits for one and asks the speaker's browser for it (an RTCP PLI); a PLI from a
listener (its decoder lost a picture) is forwarded to the speaker the same way.

The receiver's queue to its decoder thread is aiortc's private attribute; it is replaced by a
``_Tap`` that keeps the thread's ``get()`` working and stops feeding it (nobody needs decoded
frames here)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fractions
import logging
import queue
from collections.abc import Callable
from typing import Any

import av
from aiortc import RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from babelcall.realtime.clock import Clock, SystemClock
from babelcall.realtime.tasks import cancel_and_wait
from babelcall.transports import compat
from babelcall.transports.relay import BoundedRelay

log = logging.getLogger(__name__)
RTP_TIME_BASE = fractions.Fraction(1, 90000)
PLI_INTERVAL_S = 0.5  # at most this often to the speaker's browser
KEYFRAME_RETRY_S = 1.0  # a subscriber still waiting asks again after this long


class PassthroughUnavailable(RuntimeError):
    """This aiortc has no decoder queue to tap (its internals changed)."""


def is_keyframe(codec: str, data: bytes) -> bool:
    """VP8: bit 0 of the frame tag is 0 for a key frame (RFC 6386, 9.1). H.264: the access
    unit holds an IDR slice or a sequence parameter set (Annex B start codes)."""
    if not data:
        return False
    if codec == "VP8":
        return not data[0] & 0x01
    if codec == "H264":
        i = data.find(b"\x00\x00\x01")
        while i >= 0 and i + 3 < len(data):
            if data[i + 3] & 0x1F in (5, 7):
                return True
            i = data.find(b"\x00\x00\x01", i + 3)
    return False


class _Tap:
    """Stands in for the receiver's decoder queue: encoded frames go to ``on_frame`` on the
    event loop (the receiver puts them from its RTP handler), the end sentinel still reaches
    the decoder thread, whose ``get()`` reads the original queue."""

    def __init__(self, inner: queue.Queue[Any], on_frame: Callable[[Any, Any], None]) -> None:
        self.inner = inner
        self.on_frame = on_frame

    def put(self, item: Any, *args: Any, **kwargs: Any) -> None:
        if item is None:
            self.inner.put(None)
        else:
            self.on_frame(*item)

    def get(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.get(*args, **kwargs)


class EncodedVideo(MediaStreamTrack):
    """The speaker's encoded frames as ``av.Packet`` s (``is_keyframe`` set), newest kept when
    nobody reads: a late reader starts at a fresh keyframe anyway."""

    kind = "video"

    def __init__(self, max_queue: int = 90) -> None:
        super().__init__()
        self.codec: str | None = None
        self.frames = 0
        self._queue: collections.deque[av.Packet] = collections.deque(maxlen=max_queue)
        self._ready = asyncio.Event()

    def push(self, codec: str, data: bytes, timestamp: int) -> None:
        self.codec = codec
        packet = av.Packet(data)
        packet.is_keyframe = is_keyframe(codec, data)
        packet.pts = timestamp
        packet.time_base = RTP_TIME_BASE
        self.frames += 1
        self._queue.append(packet)
        self._ready.set()

    async def recv(self) -> av.Packet:
        while not self._queue:
            if self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        return self._queue.popleft()

    def stop(self) -> None:
        super().stop()
        self._ready.set()


class VideoFeed:
    """One speaker's camera, tapped from ``transceiver``'s receiver, for any number of
    listeners: ``subscribe()`` gives a track of packets that starts at a keyframe."""

    def __init__(self, transceiver: RTCRtpTransceiver, clock: Clock | None = None) -> None:
        self.clock = clock or SystemClock()
        self.transceiver = transceiver
        self.receiver: RTCRtpReceiver = transceiver.receiver
        self.encoded = EncodedVideo()
        self.relay = BoundedRelay()
        self._last_pli = 0.0
        self._tasks: list[asyncio.Task[Any]] = []
        inner = compat.decoder_queue(self.receiver)
        if not isinstance(inner, queue.Queue):
            raise PassthroughUnavailable("aiortc's receiver has no decoder queue to tap")
        compat.set_decoder_queue(self.receiver, _Tap(inner, self._on_frame))

    def _on_frame(self, codec: Any, frame: Any) -> None:
        self.encoded.push(codec.name, frame.data, frame.timestamp)

    @property
    def codec(self) -> str | None:
        """The negotiated codec's MIME type (``video/VP8``), known once the offer is answered."""
        codecs, _ = compat.negotiated(self.transceiver)
        return codecs[0].mimeType if codecs else None

    def subscribe(self) -> MediaStreamTrack:
        return _FromKeyframe(self.relay.subscribe(self.encoded), self)

    def request_keyframe(self) -> None:
        now = self.clock.now_ns() / 1e9
        if now - self._last_pli < PLI_INTERVAL_S:
            return
        self._last_pli = now
        for source in self.receiver.getSynchronizationSources():
            task = compat.request_keyframe(self.receiver, source.source)
            self._tasks = [t for t in self._tasks if not t.done()] + [task]

    def forward_keyframe_requests(self, sender: RTCRtpSender, line: VideoLine) -> None:
        """A listener's PLI to ``sender`` (whose ``line`` this feed fills) goes to the speaker,
        and the line plays from the keyframe that answers it (``DelayedTrack.resync``)."""
        def lost_picture() -> None:
            self.request_keyframe()
            line.resync()

        compat.on_keyframe_request(sender, lost_picture)

    async def stop(self) -> None:
        self.encoded.stop()
        await cancel_and_wait(self._tasks)


class _FromKeyframe(MediaStreamTrack):
    """A subscription that drops everything before the first keyframe (a decoder cannot start
    elsewhere) and asks the speaker for one until it comes."""

    kind = "video"

    def __init__(self, source: MediaStreamTrack, feed: VideoFeed) -> None:
        super().__init__()
        self.source = source
        self.feed = feed
        self._started = False
        self._asked = 0.0

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        while True:
            now = self.feed.clock.now_ns() / 1e9
            if not self._started and now - self._asked > KEYFRAME_RETRY_S:
                self._asked = now
                self.feed.request_keyframe()
            packet = await self.source.recv()
            if self._started or packet.is_keyframe:
                self._started = True
                return packet

    def stop(self) -> None:
        super().stop()
        self.source.stop()


class VideoLine(MediaStreamTrack):
    """The track of one video line at a listener, showing one speaker at a time. aiortc's
    sender stops for good when its track ends, so the line's track never ends while the
    connection lives: ``show()`` swaps what it relays (the next speaker, when one leaves and
    another joins, reuses the line without renegotiating) and ``show(None)`` idles it."""

    kind = "video"

    def __init__(self, codec: str | None) -> None:
        super().__init__()
        self.codec = codec
        self.speaker: str | None = None
        self.inner: MediaStreamTrack | None = None
        self._changed = asyncio.Event()

    def show(self, speaker: str | None, track: MediaStreamTrack | None) -> None:
        old, self.inner, self.speaker = self.inner, track, speaker
        if old is not None:
            old.stop()
        self._changed.set()

    async def recv(self) -> av.Packet | av.VideoFrame:
        while self.readyState == "live":
            inner = self.inner
            if inner is None:
                self._changed.clear()
                await self._changed.wait()
                continue
            try:
                return await inner.recv()
            except MediaStreamError:
                if self.inner is inner:
                    self.inner = self.speaker = None
        raise MediaStreamError

    def resync(self) -> None:
        resync = getattr(self.inner, "resync", None)
        if resync is not None:
            resync()

    def stop(self) -> None:
        super().stop()
        self.show(None, None)


def same_codec(transceiver: RTCRtpTransceiver, mime_type: str | None) -> None:
    """Offer a listener's video line only the speaker's codec (and its retransmission
    format), so the speaker's packets can be sent on as they are."""
    if mime_type is None:
        return
    caps = RTCRtpSender.getCapabilities("video").codecs
    wanted = [c for c in caps if c.mimeType.lower() == mime_type.lower()]
    rtx = [c for c in caps if c.mimeType.lower() == "video/rtx"]
    if wanted:
        with contextlib.suppress(ValueError):
            transceiver.setCodecPreferences(wanted + rtx)
