"""Rooms: a call between people who speak different languages (``POST /rooms/<room>/join
?lang=en&name=Ana``, WHIP shape). Each participant hears everyone else in their own language
and sees everyone else's camera, all on the one RTCPeerConnection they joined with.

Who hears whom, in which language and through which session, is a pure plan
(``room_plan.py``: one Session per speaker and other language present, all of a speaker's on
their one ``SpeakerFront``, so each speaker is recognised once; each session's speech
into the mixer of every listener of that language, original voices between people who share a
language); this module only wires what changes between the plan before and after a join or a
leave, and a session nobody needs any more is closed at once. A participant's own media and
messages are ``participant.py``. A language the engines cannot pair with those already in the
room is refused before the offer is answered; the room's lock is not held while the offer is
answered (ICE gathering): other joins and leaves go on meanwhile, and the plan is taken after.

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
import logging
from typing import Any

from babelcall.realtime.errors import UnsupportedLanguage
from babelcall.transports.hub import Hub
from babelcall.transports.lag import DEFAULT_PRIOR_S, LagTracker, ViewerDelay
from babelcall.transports.link import Link
from babelcall.transports.participant import MAX_VIDEO_DELAY_S, Participant
from babelcall.transports.room_plan import Member, Plan, plan
from babelcall.transports.signaling import Offer, SignalingError

__all__ = ["MAX_VIDEO_DELAY_S", "Participant", "Room"]
log = logging.getLogger(__name__)


def _plan(people: list[Participant]) -> Plan:
    return plan([Member(q.id, q.lang, q.mix) for q in people])


class Room:
    def __init__(self, hub: Hub, name: str) -> None:
        self.hub = hub
        self.name = name
        self.participants: dict[str, Participant] = {}
        self._leaving: dict[str, asyncio.Task[None]] = {}
        self.joining = 0  # offers being answered (counted against the room's size)
        self._lock = asyncio.Lock()

    @property
    def empty(self) -> bool:
        """Nobody in it and nobody joining: the hub may forget it."""
        return not self.participants and not self.joining

    async def join(self, offer: Offer, lang: str, *, name: str | None = None,
                   echo_guard: bool = True, mix: float = 0.0) -> tuple[str, str]:
        """Answer the offer, then wire the newcomer in; returns (participant id, answer SDP)."""
        async with self._lock:
            size = self.hub.config.max_room_size
            if len(self.participants) + self.joining >= size:
                raise SignalingError(503, "room_full", f"room '{self.name}' has its limit of "
                                     f"{size} participants")
            self._check_language(lang)
            p = Participant(self, offer, lang, name or self._guest_name(), echo_guard, mix)
            self.joining += 1
        try:
            answer = await p.peer.answer(p.wire)  # ICE gathering: the room is not held
            async with self._lock:
                try:  # someone may have joined meanwhile with a language we cannot pair
                    self._check_language(lang)
                    links = await self._sessions_for(p)
                except SignalingError:
                    await p.stop()
                    raise
                self._wire_in(p, links)  # no await from the plan to the end of wiring
        finally:
            self.joining -= 1
        self.send_rosters()
        log.info("room %s: %s (%s, %s) joined, %d present", self.name, p.name, p.id, lang,
                 len(self.participants))
        return p.id, answer

    async def _sessions_for(self, p: Participant) -> list[tuple[Participant, str, Link]]:
        """The sessions the newcomer adds to the plan (a refusal closes those made)."""
        others = list(self.participants.values())
        people = {q.id: q for q in [*others, p]}
        links: list[tuple[Participant, str, Link]] = []
        try:
            for sid, target in sorted(_plan([*others, p]).sessions - _plan(others).sessions):
                speaker = people[sid]
                session = self.hub.new_session(speaker.lang, target,
                                               front=speaker.speaker_front())
                links.append((people[sid], target, Link(session, label=sid)))
        except SignalingError:
            for _, _, link in links:
                await link.session.close()
            raise
        return links

    def _wire_in(self, p: Participant, links: list[tuple[Participant, str, Link]]) -> None:
        """Start the new sessions and route what the newcomer adds to the plan; no await:
        the room cannot change under it."""
        others = list(self.participants.values())
        before, after = _plan(others), _plan([*others, p])
        people = {q.id: q for q in [*others, p]}
        self.participants[p.id] = p
        p.start()
        for speaker, target, link in links:
            speaker.links[target] = link
            tracker = LagTracker(link.clock, link.origin_ns, prior_s=self.recent_lag_s)
            speaker.lags[target] = tracker
            link.add_sink(tracker.observe)
            self._caption(link, speaker, target, speaker)
            sid = speaker.id
            link.feed(speaker.input(), gate=speaker.gate(),
                      on_end=lambda sid=sid: self.leave(sid))
            link.start()
        for lid, sid, target in sorted(after.translations - before.translations):
            link = people[sid].links[target]
            link.add_output(people[lid].output.mixer)
            self._caption(link, people[sid], target, people[lid])
        for v in sorted(after.voices - before.voices):
            people[v.listener].hear_voice(people[v.speaker], v.gain, v.duck_gain)
        for lid, sid in sorted(after.own_words):
            self._own_words(people[sid], people[lid])
        for q in others:
            if p.feed is not None and q.wants_video:
                q.show(p, ViewerDelay(p.lags.get(q.lang), live=q.live_video,
                                      playout=q.playout))
            if q.feed is not None and p.wants_video:
                p.show(q, ViewerDelay(q.lags.get(p.lang), live=p.live_video,
                                      playout=p.playout))

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
    def knows(self, pid: str) -> bool:
        """In the room, or leaving it now."""
        return pid in self.participants or pid in self._leaving

    async def leave(self, pid: str) -> None:
        """Take ``pid`` out of the room; returns once its sessions and connection are freed.

        A leave runs once, in a task of its own that its callers only wait on: they may be
        cancelled, the leave is not. It is called from a DELETE, from the peer's close and
        from the end of the participant's own track, read by a link's task — a link that this
        or another leave may be closing. Run inside that task, a leave was cancelled half done
        when two people hung up at once: the participant gone from the room, their sessions
        never closed."""
        task = self._leaving.get(pid)
        if task is asyncio.current_task():  # re-entered: the peer's close, from our own stop
            return
        if task is None:
            if pid not in self.participants:
                return
            task = asyncio.create_task(self._leave(pid), name=f"leave-{pid}")
            self._leaving[pid] = task
            task.add_done_callback(lambda _, pid=pid: self._leaving.pop(pid, None))
        await asyncio.shield(task)

    async def _leave(self, pid: str) -> None:
        p = self.participants.pop(pid, None)
        if p is None:
            return
        self.hub.record_left(self.name, pid)
        after = _plan(list(self.participants.values()))
        closing = list(p.links.values())
        for q in self.participants.values():  # all state changes first, then the awaits
            for key in [*((q.id, t) for t in q.links), (q.id, q.lang)]:
                sink = p.sinks.pop(key, None)
                for link in q.links.values():
                    link.remove_sink(sink)  # type: ignore[arg-type]
            for target, link in list(q.links.items()):
                link.remove_output(p.output.mixer)
                if (q.id, target) not in after.sessions:  # nobody left to hear it
                    del q.links[target]
                    q.lags.pop(target, None)
                    closing.append(link)
            q.forget_voice(pid)
            q.hide(pid)
        if self.empty:
            self.hub.drop_room(self.name)
        self.send_rosters()
        await asyncio.gather(*(link.close() for link in closing), return_exceptions=True)
        await p.stop()
        log.info("room %s: %s left, %d present", self.name, p.name, len(self.participants))

    async def close(self) -> None:
        await asyncio.gather(*(self.leave(pid) for pid in list(self.participants)),
                             return_exceptions=True)
