"""A person in one of babelcall's rooms (``rooms.py``): their connection, their output mixer
(what they hear), their input (relayed to every session and voice that needs it), their
sessions (one ``Link`` per target language), the captions and voices routed to them, their
camera for the others and the others' cameras on their video lines, and the messages their
page sends over the data channel."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiortc import RTCRtpTransceiver
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from babelcall.realtime.audio import Resampler
from babelcall.realtime.speaker import SpeakerFront
from babelcall.realtime.tasks import cancel_and_wait
from babelcall.transports.lag import LagTracker, Playout, ViewerDelay
from babelcall.transports.link import Link
from babelcall.transports.media import WIRE_RATE, MixerInput, Output
from babelcall.transports.negotiation import Negotiator
from babelcall.transports.peer import Peer
from babelcall.transports.relay import BoundedRelay
from babelcall.transports.signaling import Offer, SignalingError
from babelcall.transports.tracks import DelayedTrack
from babelcall.transports.video import PassthroughUnavailable, VideoFeed, VideoLine, same_codec

if TYPE_CHECKING:
    from babelcall.transports.rooms import Room

log = logging.getLogger(__name__)
Sink = Callable[[dict[str, Any]], None]
MAX_VIDEO_DELAY_S = 3.0


class Participant:
    def __init__(self, room: Room, offer: Offer, lang: str, name: str,
                 echo_guard: bool, mix: float = 0.0) -> None:
        cfg = room.hub.config
        self.room = room
        self.lang = lang
        self.name = name
        self.echo_guard = echo_guard
        self.mix = mix  # the others' own voices under their translation (0: not at all)
        self.mic = self.camera = True
        self.live_video = False
        self.playout = Playout()  # how long our page holds audio vs video before playing
        self.peer = Peer(offer, ice_servers=cfg.ice_servers,
                         connect_timeout_s=cfg.connect_timeout_s,
                         on_close=lambda p: room.leave(p.id))
        self.id = self.peer.id
        self.output = Output()
        self.relay = BoundedRelay()
        self.links: dict[str, Link] = {}  # target language -> this speaker's session
        self.front: SpeakerFront | None = None  # listens to and recognises us, once
        self.lags: dict[str, LagTracker] = {}  # target language -> how late it is heard
        self.voices: dict[str, tuple[MixerInput, asyncio.Task[None]]] = {}  # their own voices
        self.sinks: dict[tuple[str, str], Sink] = {}  # (speaker id, target) -> our captions
        self.feed: VideoFeed | None = None  # our camera, for the others
        self.lines: list[tuple[RTCRtpTransceiver, VideoLine]] = []  # the others' cameras
        self.negotiator = Negotiator(self.peer, extra=lambda: {"roster": room.roster(self)},
                                     on_done=lambda: room.send_roster(self))
        self.peer.on_message = self._message
        self.peer.on_channel = self._channel
        self._tasks: list[asyncio.Task[Any]] = []

    @property
    def wants_video(self) -> bool:
        """Video lines can be added to this connection: it has video and a data channel."""
        return self.peer.offer.video is not None and self.peer.offer.data

    def input(self) -> MediaStreamTrack:
        assert self.peer.audio_in is not None
        return self.relay.subscribe(self.peer.audio_in)

    def speaker_front(self) -> SpeakerFront:
        """What hears us for every target language our sessions translate into (a new one
        if the last one failed): we are recognised once, however many languages hear us."""
        if self.front is None or self.front.ended:
            self.front = self.room.hub.new_front(self.lang)
        return self.front

    def gate(self) -> Callable[[], bool] | None:
        return self.output.echo_gate() if self.echo_guard else None

    def wire(self, peer: Peer) -> None:
        """Attach our media to the connection before it is answered."""
        if peer.audio_in is None:
            raise SignalingError(400, "no_audio", "the offer's audio cannot be read")
        if peer.wants("audio"):
            peer.add_track(self.output.subscribe(opus=peer.offer.audio.opus))
        video = peer.offer.video
        if video is not None and video.sends:
            camera = next((t for t in peer.pc.getTransceivers()
                           if t.kind == "video" and t.mid == video.mid), None)
            if camera is not None:
                try:
                    self.feed = VideoFeed(camera, self.output.mixer.clock)
                except PassthroughUnavailable as exc:
                    log.warning("%s: their video is not relayed: %s", self.name, exc)

    def start(self) -> None:
        self.output.start()
        # Keep reading the input even while nobody needs it (alone in the room).
        track = self.relay.subscribe(self.peer.audio_in, buffered=False)
        self._tasks += [asyncio.create_task(_discard(track)),
                        asyncio.create_task(self._report_video())]

    def show(self, speaker: Participant, delay: ViewerDelay) -> None:
        """Relay ``speaker``'s camera to us, ``delay`` late: on a free line showing the same
        codec, else on a new one (which the next offer to our page adds)."""
        assert speaker.feed is not None
        codec = speaker.feed.codec
        track = DelayedTrack(speaker.feed.subscribe(), delay, max_delay_s=MAX_VIDEO_DELAY_S)
        line = next((ln for _, ln in self.lines if ln.speaker is None and ln.codec == codec),
                    None)
        if line is None:
            line = VideoLine(codec)
            transceiver = self.peer.pc.addTransceiver(line, direction="sendonly")
            same_codec(transceiver, codec)
            self.lines.append((transceiver, line))
            self.negotiator.request()
        else:
            transceiver = next(t for t, ln in self.lines if ln is line)
        speaker.feed.forward_keyframe_requests(transceiver.sender, line)
        line.show(speaker.id, track)

    def hide(self, speaker_id: str) -> None:
        for _, line in self.lines:
            if line.speaker == speaker_id:
                line.show(None, None)

    def hear_voice(self, speaker: Participant, gain: float, duck_gain: float) -> None:
        """``speaker``'s own voice into our mixer, at ``gain``, ducked under translations."""
        lane = self.output.original_voice(mix=duck_gain, mix_idle=gain)
        if lane is None:
            return
        task = asyncio.create_task(_voice(speaker.input(), lane))
        self.voices[speaker.id] = (lane, task)

    def forget_voice(self, speaker_id: str) -> None:
        if speaker_id in self.voices:
            lane, task = self.voices.pop(speaker_id)
            task.cancel()
            self.output.mixer.remove_lane(lane)

    def line_of(self, speaker_id: str) -> str | None:
        """The mid of the video line showing ``speaker_id``, once offered."""
        return next((t.mid for t, ln in self.lines if ln.speaker == speaker_id), None)

    def _channel(self, channel: Any) -> None:
        self.negotiator.channel_open.set()
        self.room.send_roster(self)

    def _message(self, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        if kind == "ping":
            self.peer.send({"type": "pong", "t": msg.get("t")})
        elif kind == "answer":
            self.negotiator.answer(msg)
        elif kind == "state":
            self.mic = bool(msg.get("mic", self.mic))
            self.camera = bool(msg.get("camera", self.camera))
            self.room.send_rosters()
        elif kind == "playout":
            self.playout.update(msg.get("audio_ms"), msg.get("video_ms"))
        elif kind == "live_video":
            self.live_video = bool(msg.get("on"))
            for _, line in self.lines:
                delayed = line.inner
                if isinstance(delayed, DelayedTrack) and isinstance(delayed.target, ViewerDelay):
                    delayed.target.live = self.live_video
        else:
            self.peer.send({"type": "error", "error": "bad_message",
                            "message": f"unknown message type {kind!r}"})

    async def _report_video(self) -> None:
        """Each picture's delay, once a second: the page shows it next to the speaker."""
        while True:
            await self.output.mixer.clock.sleep(1.0)
            delays = {}
            for _, line in self.lines:
                delayed = line.inner
                if line.speaker and isinstance(delayed, DelayedTrack):
                    delays[line.speaker] = {"delay_ms": round(delayed.delay_s * 1000),
                                            "target_ms": round(delayed.target.target_s() * 1000)}
            if delays:
                self.peer.send({"type": "video", "delays": delays, "live": self.live_video})

    async def stop(self) -> None:
        await cancel_and_wait([*self._tasks, *(task for _, task in self.voices.values())])
        if self.front is not None:
            await self.front.close()
        await self.negotiator.stop()
        for _, line in self.lines:
            line.stop()
        if self.feed is not None:
            await self.feed.stop()
        await self.output.stop()
        await self.peer.close()


async def _discard(track: MediaStreamTrack) -> None:
    with contextlib.suppress(MediaStreamError):
        while True:
            await track.recv()


async def _voice(track: MediaStreamTrack, lane: MixerInput) -> None:
    """A speaker's own voice into a listener's mixer (a frame PyAV cannot convert is
    skipped, as the session's input does)."""
    resampler = Resampler(WIRE_RATE)
    with contextlib.suppress(MediaStreamError):
        while True:
            frame = await track.recv()
            try:
                lane.push(resampler.push(frame))
            except Exception as exc:
                log.debug("undecodable frame: %s", exc)
