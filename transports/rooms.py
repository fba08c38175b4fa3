"""Rooms: a call between people who speak different languages (``POST /rooms/<room>/join
?lang=en&name=Ana``, WHIP shape). Each participant hears everyone else in their own language
and sees everyone else's camera, all on the one RTCPeerConnection they joined with.

A speaker gets one Session per other language present (A:en with B:es and C:fr -> en->es and
en->fr); each session's speech plays into the mixer of every listener of that language, and
people who share a language hear each other's original voice. Everything is rewired as
people join and leave, and a session nobody needs any more is closed at once. A language the
engines cannot pair with those already in the room is refused before the offer is answered.

Video (``transports/video.py``): each camera is relayed to the others as encoded (no
re-encode), on video lines the server adds to each listener's connection and agrees with the
page over its data channel (``transports/negotiation.py``); a line freed by someone leaving is
reused for the next newcomer without renegotiating. Each listener sees a speaker's picture as
late as that speaker's translated voice reaches them (``transports/lag.py``,
``tracks.DelayedTrack``), or live on request (``{"type": "live_video", "on": true}``) and
always when they share the speaker's language.

The data channel carries, besides captions (labelled with the speaker's id, name and
language): ``roster`` (who is here, their name, language, mic and camera state, and which
video line shows them), ``video`` (each picture's current delay, once a second), ``pong``
(round trip), and the server's ``offer`` s. The page sends ``ping``, ``answer``, ``state``
(its mic/camera), ``live_video`` and ``playout`` (how long it buffers audio and video).

Loop guard, twice: an offer that sends babelcall's own output back is refused at signalling
(the track id, see ``signaling.parse_offer``), and the echo guard (on by default here) feeds a
participant's sessions silence while that participant's own speaker plays a translation, so a
laptop mic picking up the translated voice is never translated back."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from aiortc import RTCRtpTransceiver
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from babelcall.realtime.audio import Resampler
from babelcall.realtime.errors import UnsupportedLanguage
from babelcall.realtime.tasks import cancel_and_wait
from babelcall.transports.hub import Hub
from babelcall.transports.lag import DEFAULT_PRIOR_S, LagTracker, Playout, ViewerDelay
from babelcall.transports.link import Link
from babelcall.transports.media import WIRE_RATE, MixerInput, Output
from babelcall.transports.negotiation import Negotiator
from babelcall.transports.peer import Peer
from babelcall.transports.relay import BoundedRelay
from babelcall.transports.signaling import Offer, SignalingError
from babelcall.transports.tracks import DelayedTrack
from babelcall.transports.video import PassthroughUnavailable, VideoFeed, VideoLine, same_codec

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


class Room:
    def __init__(self, hub: Hub, name: str) -> None:
        self.hub = hub
        self.name = name
        self.participants: dict[str, Participant] = {}
        self._lock = asyncio.Lock()

    async def join(self, offer: Offer, lang: str, *, name: str | None = None,
                   echo_guard: bool = True, mix: float = 0.0) -> tuple[str, str]:
        """Answer the offer, then wire the newcomer in; returns (participant id, answer SDP)."""
        async with self._lock:
            if len(self.participants) >= self.hub.config.max_room_size:
                raise SignalingError(503, "room_full", f"room '{self.name}' has its limit of "
                                     f"{self.hub.config.max_room_size} participants")
            self._check_language(lang)
            p = Participant(self, offer, lang, name or self._guest_name(), echo_guard, mix)
            answer = await p.peer.answer(p.wire)
            # No await from here to the end of wiring: the room cannot change under us.
            others = list(self.participants.values())
            plan = [(p, m) for m in sorted({q.lang for q in others} - {lang})]
            plan += [(q, lang) for q in others if q.lang != lang and lang not in q.links]
            links: list[tuple[Participant, str, Link]] = []
            try:
                for speaker, target in plan:
                    session = self.hub.new_session(speaker.lang, target)
                    links.append((speaker, target, Link(session, label=speaker.id)))
            except SignalingError:
                for _, _, link in links:
                    await link.session.close()
                await p.stop()
                raise
            self.participants[p.id] = p
            p.start()
            for speaker, target, link in links:
                speaker.links[target] = link
                tracker = LagTracker(link.clock, link.origin_ns, prior_s=self.recent_lag_s)
                speaker.lags[target] = tracker
                link.add_sink(tracker.observe)
                self._caption(link, speaker, target, speaker)
                for q in others:
                    if q.lang == target and q is not speaker:
                        link.add_output(q.output.mixer)
                        self._caption(link, speaker, target, q)
                sid = speaker.id
                link.feed(speaker.input(), gate=speaker.gate(),
                          on_end=lambda sid=sid: self.leave(sid))
                link.start()
            for q in others:
                if lang in q.links:  # includes the links just made for the newcomer
                    q.links[lang].add_output(p.output.mixer)
                    self._caption(q.links[lang], q, lang, p)
                if q.lang == lang:
                    self._connect_voice(q, p)
                    self._connect_voice(p, q)
                else:  # their own voice under their translation, if the listener asked
                    for speaker, listener in ((q, p), (p, q)):
                        if listener.mix > 0:
                            self._connect_voice(speaker, listener, gain=min(1.0, 2 * listener.mix),
                                                duck_gain=listener.mix)
            for q in self.participants.values():  # same language: their words as captions
                for r in self.participants.values():
                    if q is not r and q.lang == r.lang:
                        self._own_words(q, r)
            for q in others:
                if p.feed is not None and q.wants_video:
                    q.show(p, ViewerDelay(p.lags.get(q.lang), live=q.live_video,
                                          playout=q.playout))
                if q.feed is not None and p.wants_video:
                    p.show(q, ViewerDelay(q.lags.get(lang), live=p.live_video,
                                          playout=p.playout))
            self.send_rosters()
            log.info("room %s: %s (%s, %s) joined, %d present", self.name, p.name, p.id, lang,
                     len(self.participants))
            return p.id, answer

    def _check_language(self, lang: str) -> None:
        """Refuse, before answering, a language the engines cannot pair with those present:
        accepted, its sessions would fail at every later join of the room."""
        engines = self.hub.engines
        present = sorted({q.lang for q in self.participants.values()} - {lang})
        try:  # (the server refused a language no pair serves at all before this)
            for other in present:
                engines.check_pair(lang, other)
                engines.check_pair(other, lang)
        except UnsupportedLanguage as exc:
            among = f" with {', '.join(present)} in the room" if present else ""
            raise SignalingError(400, "unsupported_language",
                                 f"cannot join room '{self.name}' speaking '{lang}'{among}: "
                                 f"{exc}") from exc

    def _guest_name(self) -> str:
        taken = {q.name for q in self.participants.values()}
        return next(f"Guest {i}" for i in range(1, len(taken) + 2) if f"Guest {i}" not in taken)

    def recent_lag_s(self) -> float:
        """The latest translation lag measured in this room: the video delay assumed for a
        speaker whose own translation has not played yet."""
        measured = [t for q in self.participants.values() for t in q.lags.values()
                    if t.lag_s is not None]
        latest = max(measured, key=lambda t: t.updated_ns, default=None)
        return DEFAULT_PRIOR_S if latest is None or latest.lag_s is None else latest.lag_s

    def _caption(self, link: Link, speaker: Participant, target: str,
                 listener: Participant) -> None:
        """``listener`` gets the captions of ``speaker``'s session into ``target``, labelled
        with who speaks which language."""
        send = listener.peer.send
        label = {"name": speaker.name, "lang": speaker.lang, "target": target}

        def sink(rec: dict[str, Any]) -> None:
            send({**rec, **label})

        listener.sinks[(speaker.id, target)] = sink
        link.add_sink(sink)

    def _own_words(self, speaker: Participant, listener: Participant) -> None:
        """``listener`` shares ``speaker``'s language, so no session translates for them; their
        transcript still comes from one of the speaker's sessions (none while everyone in the
        room shares one language)."""
        sink = listener.sinks.get((speaker.id, speaker.lang))
        if sink is not None and any(sink in link.sinks for link in speaker.links.values()):
            return
        link = next(iter(speaker.links.values()), None)
        if link is None:
            return
        send = listener.peer.send
        label = {"name": speaker.name, "lang": speaker.lang, "target": speaker.lang}

        def words(rec: dict[str, Any]) -> None:
            if rec.get("type") == "transcript":
                send({**rec, **label})

        listener.sinks[(speaker.id, speaker.lang)] = words
        link.add_sink(words)

    def _connect_voice(self, speaker: Participant, listener: Participant, *,
                       gain: float = 1.0, duck_gain: float = 0.5) -> None:
        """``speaker``'s own voice into ``listener``'s mixer, ducked under translations."""
        lane = listener.output.original_voice(mix=duck_gain, mix_idle=gain)
        if lane is None:
            return
        task = asyncio.create_task(_voice(speaker.input(), lane))
        listener.voices[speaker.id] = (lane, task)

    # -- roster -----------------------------------------------------------------------------
    def roster(self, listener: Participant) -> dict[str, Any]:
        return {"type": "roster", "room": self.name, "you": listener.id, "participants": [
            {"id": q.id, "name": q.name, "lang": q.lang, "mic": q.mic, "camera": q.camera,
             "video": q.feed is not None, "mid": listener.line_of(q.id)}
            for q in self.participants.values()]}

    def send_roster(self, listener: Participant) -> None:
        if listener.id in self.participants:
            listener.peer.send(self.roster(listener))

    def send_rosters(self) -> None:
        for q in self.participants.values():
            self.send_roster(q)

    # -- leaving ----------------------------------------------------------------------------
    async def leave(self, pid: str) -> None:
        p = self.participants.pop(pid, None)
        if p is None:
            return
        closing = list(p.links.values())
        for q in self.participants.values():  # all state changes first, then the awaits
            for key in [*((q.id, t) for t in q.links), (q.id, q.lang)]:
                sink = p.sinks.pop(key, None)
                for link in q.links.values():
                    link.remove_sink(sink)  # type: ignore[arg-type]
            for target, link in list(q.links.items()):
                link.remove_output(p.output.mixer)
                if not any(r.lang == target for r in self.participants.values() if r is not q):
                    del q.links[target]
                    q.lags.pop(target, None)
                    closing.append(link)
            if pid in q.voices:
                lane, task = q.voices.pop(pid)
                task.cancel()
                q.output.mixer.remove_lane(lane)
            q.hide(pid)
        if not self.participants:
            self.hub.drop_room(self.name)
        self.send_rosters()
        await asyncio.gather(*(link.close() for link in closing), return_exceptions=True)
        await p.stop()
        log.info("room %s: %s left, %d present", self.name, p.name, len(self.participants))

    async def close(self) -> None:
        await asyncio.gather(*(self.leave(pid) for pid in list(self.participants)),
                             return_exceptions=True)
