"""Rooms: a call between people who speak different languages (``POST /rooms/<room>/join
?lang=en``, WHIP shape). Each participant hears everyone else in their own language.

A speaker gets one Session per other language present (A:en with B:es and C:fr -> en->es and
en->fr); each session's speech plays into the mixer of every listener of that language, and
people who share a language hear each other's original voice. Everything is rewired as
people join and leave, and a session nobody needs any more is closed at once.

Loop guard, twice: an offer that sends babelcall's own output back is refused at signalling
(the track id, see ``signaling.parse_offer``), and the echo guard (on by default here) feeds a
participant's sessions silence while that participant's own speaker plays a translation, so a
laptop mic picking up the translated voice is never translated back."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from babelcall.realtime.audio import Resampler
from babelcall.transports.hub import Hub
from babelcall.transports.link import Link
from babelcall.transports.media import WIRE_RATE, MixerInput, Output
from babelcall.transports.peer import Peer
from babelcall.transports.signaling import Offer, SignalingError

log = logging.getLogger(__name__)


class Participant:
    def __init__(self, room: Room, offer: Offer, lang: str, echo_guard: bool) -> None:
        cfg = room.hub.config
        self.lang = lang
        self.echo_guard = echo_guard
        self.peer = Peer(offer, ice_servers=cfg.ice_servers,
                         connect_timeout_s=cfg.connect_timeout_s,
                         on_close=lambda p: room.leave(p.id))
        self.id = self.peer.id
        self.output = Output()
        self.relay = MediaRelay()
        self.links: dict[str, Link] = {}  # target language -> this speaker's session
        self.voices: dict[str, tuple[MixerInput, asyncio.Task[None]]] = {}  # same-language speakers
        self._drain: asyncio.Task[None] | None = None

    def input(self) -> MediaStreamTrack:
        assert self.peer.audio_in is not None
        return self.relay.subscribe(self.peer.audio_in)

    def gate(self) -> Callable[[], bool] | None:
        return self.output.echo_gate() if self.echo_guard else None

    def start(self) -> None:
        self.output.start()
        # Keep reading the input even while nobody needs it (alone in the room).
        track = self.relay.subscribe(self.peer.audio_in, buffered=False)  # type: ignore[arg-type]
        self._drain = asyncio.create_task(_discard(track))

    async def stop(self) -> None:
        for _lane, task in self.voices.values():
            task.cancel()
        if self._drain is not None:
            self._drain.cancel()
        await self.output.stop()
        await self.peer.close()


async def _discard(track: MediaStreamTrack) -> None:
    with contextlib.suppress(MediaStreamError):
        while True:
            await track.recv()


async def _voice(track: MediaStreamTrack, lane: MixerInput) -> None:
    """A same-language speaker's own voice into a listener's mixer."""
    resampler = Resampler(WIRE_RATE)
    with contextlib.suppress(MediaStreamError):
        while True:
            lane.push(resampler.push(await track.recv()))


class Room:
    def __init__(self, hub: Hub, name: str) -> None:
        self.hub = hub
        self.name = name
        self.participants: dict[str, Participant] = {}
        self._lock = asyncio.Lock()

    async def join(self, offer: Offer, lang: str, *, echo_guard: bool = True) -> tuple[str, str]:
        """Answer the offer, then wire the newcomer in; returns (participant id, answer SDP)."""
        async with self._lock:
            if len(self.participants) >= self.hub.config.max_room_size:
                raise SignalingError(503, "room_full", f"room '{self.name}' has its limit of "
                                     f"{self.hub.config.max_room_size} participants")
            p = Participant(self, offer, lang, echo_guard)

            def wire(peer: Peer) -> None:
                if peer.audio_in is None:
                    raise SignalingError(400, "no_audio", "the offer's audio cannot be read")
                if peer.wants("audio"):
                    peer.add_track(p.output.subscribe(opus=peer.offer.audio.opus))

            answer = await p.peer.answer(wire)
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
                link.add_sink(speaker.peer.send)
                for q in others:
                    if q.lang == target and q is not speaker:
                        link.add_output(q.output.mixer)
                        link.add_sink(q.peer.send)
                sid = speaker.id
                link.feed(speaker.input(), gate=speaker.gate(),
                          on_end=lambda sid=sid: self.leave(sid))
                link.start()
            for q in others:
                if lang in q.links:  # includes the links just made for the newcomer
                    q.links[lang].add_output(p.output.mixer)
                    q.links[lang].add_sink(p.peer.send)
                elif q.lang == lang:
                    self._connect_voice(q, p)
                    self._connect_voice(p, q)
            log.info("room %s: %s joined (%s), %d present", self.name, p.id, lang,
                     len(self.participants))
            return p.id, answer

    def _connect_voice(self, speaker: Participant, listener: Participant) -> None:
        lane = listener.output.original_voice(mix=0.5, mix_idle=1.0)
        assert lane is not None
        task = asyncio.create_task(_voice(speaker.input(), lane))
        listener.voices[speaker.id] = (lane, task)

    async def leave(self, pid: str) -> None:
        p = self.participants.pop(pid, None)
        if p is None:
            return
        closing = list(p.links.values())
        for q in self.participants.values():  # all state changes first, then the awaits
            for target, link in list(q.links.items()):
                link.remove_output(p.output.mixer)
                link.remove_sink(p.peer.send)
                if not any(r.lang == target for r in self.participants.values() if r is not q):
                    del q.links[target]
                    closing.append(link)
            if pid in q.voices:
                lane, task = q.voices.pop(pid)
                task.cancel()
                q.output.mixer.remove_lane(lane)
        if not self.participants:
            self.hub.drop_room(self.name)
        await asyncio.gather(*(link.close() for link in closing), return_exceptions=True)
        await p.stop()
        log.info("room %s: %s left, %d present", self.name, pid, len(self.participants))

    async def close(self) -> None:
        await asyncio.gather(*(self.leave(pid) for pid in list(self.participants)),
                             return_exceptions=True)
