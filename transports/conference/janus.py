"""Janus VideoRoom media over the core API (``janus_api.py``): one JanusRoom is one Janus
session in one room. A control handle joined as a (non-publishing) publisher receives the
room's publisher events; every subscription and every feed we publish is a handle and a
PeerConnection of its own (aiortc; candidates travel inside the SDP, so both sides use
``trickle: false``). Captions travel on each feed's data channel."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from babelcall.transports.conference.base import (
    Attendee,
    ConferenceError,
    Disconnected,
    Feed,
    Publisher,
    PublisherJoined,
    PublisherLeft,
    RoomConnection,
    Subscription,
)
from babelcall.transports.conference.janus_api import (
    VIDEOROOM,
    JanusError,
    JanusHandle,
    JanusSession,
    parse_url,
)
from babelcall.transports.peer import ice_configuration
from babelcall.transports.tracks import OpusTrack

__all__ = ["JanusError", "JanusFeed", "JanusHandle", "JanusLobby", "JanusRoom", "JanusSession",
           "JanusSubscription", "list_participants", "list_rooms", "parse_url"]
log = logging.getLogger(__name__)
MAX_QUEUED_CAPTIONS = 64  # captions waiting for the data channel to open


class JanusSubscription(Subscription):
    def __init__(self, handle: JanusHandle, pc: RTCPeerConnection,
                 track: MediaStreamTrack) -> None:
        self.handle, self.pc, self.track = handle, pc, track
        self._closed = False

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            await self.pc.close()
        await self.handle.detach()


class JanusFeed(Feed):
    def __init__(self, feed_id: int, display: str, handle: JanusHandle,
                 pc: RTCPeerConnection, channel: Any) -> None:
        self.id, self.display = feed_id, display
        self.handle, self.pc, self.channel = handle, pc, channel
        self._queued: list[str] = []
        self._closed = False

        @channel.on("open")
        def flush() -> None:
            for text in self._queued:
                channel.send(text)
            self._queued.clear()

    def send_caption(self, record: dict[str, Any]) -> None:
        if self._closed:
            return
        text = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
        try:
            if self.channel.readyState == "open":
                if self.channel.bufferedAmount < 1 << 20:  # a stalled channel drops captions
                    self.channel.send(text)
            elif self.channel.readyState == "connecting":
                if len(self._queued) < MAX_QUEUED_CAPTIONS:
                    self._queued.append(text)
        except Exception:  # closing under us: captions are best effort, audio goes on
            log.debug("caption not sent", exc_info=True)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self.handle.session.closed:
            with contextlib.suppress(ConferenceError):
                await self.handle.message({"request": "unpublish"}, what="unpublish",
                                          timeout_s=3)
        with contextlib.suppress(Exception):
            await self.pc.close()
        await self.handle.detach()


class JanusRoom(RoomConnection):
    """A presence in one VideoRoom room. ``display`` names the control participant (a
    worker's claim is this name)."""

    def __init__(self, url: str, room: int | str, *, pin: str | None = None,
                 display: str = "babelcall", token: str | None = None,
                 apisecret: str | None = None, ice_servers: list[str] | None = None,
                 request_timeout_s: float = 10.0) -> None:
        super().__init__()
        self.url, self.room, self.pin, self.display = url, room, pin, display
        self.ice_servers = ice_servers or []
        self.session = JanusSession(url, token=token, apisecret=apisecret,
                                    request_timeout_s=request_timeout_s)
        self.participant_id: int | None = None
        self.private_id: int | None = None
        self.publishers: dict[int, Publisher] = {}
        self._control: JanusHandle | None = None
        self._subs: list[JanusSubscription] = []
        self._feeds: list[JanusFeed] = []
        self._left = False

    def _room_body(self, request: str, **extra: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"request": request, "room": self.room, **extra}
        if self.pin:
            body["pin"] = self.pin
        return body

    async def join(self) -> None:
        await self.session.connect()
        self.session.on_lost = lambda reason: self._events.put_nowait(Disconnected(reason))
        what = f"join room {self.room} on {self.url}"
        try:
            self._control = await self.session.attach(VIDEOROOM, self._on_control)
            data, _ = await self._control.message(
                self._room_body("join", ptype="publisher", display=self.display), what=what)
        except BaseException:
            await self.session.close()
            raise
        if data.get("videoroom") != "joined":
            await self.session.close()
            raise JanusError(f"{what}: unexpected answer {data}")
        self.participant_id = data.get("id")
        self.private_id = data.get("private_id")
        for p in data.get("publishers", []):
            self._publisher_seen(p)

    async def participants(self) -> list[Attendee]:
        return await list_participants(self._need_control(), self.room)

    async def subscribe(self, publisher: Publisher, *,
                        on_caption: Callable[[dict[str, Any]], None] | None = None
                        ) -> Subscription:
        handle = await self.session.attach(VIDEOROOM)
        pc = RTCPeerConnection(ice_configuration(self.ice_servers))
        try:
            stream: dict[str, Any] = {"feed": publisher.feed}
            if on_caption is not None:
                _read_captions(pc, on_caption)  # every stream of the feed: audio and data
            elif publisher.audio_mid is not None:
                stream["mid"] = publisher.audio_mid
            body = self._room_body("join", ptype="subscriber", streams=[stream])
            if self.private_id is not None:
                body["private_id"] = self.private_id
            _, jsep = await handle.message(body, what=f"subscribe to {publisher.display!r}")
            if not jsep or jsep.get("type") != "offer":
                raise JanusError(f"subscribe to {publisher.display!r}: Janus sent no offer")
            tracks: list[MediaStreamTrack] = []
            pc.on("track", lambda t: tracks.append(t) if t.kind == "audio" else None)
            await pc.setRemoteDescription(RTCSessionDescription(jsep["sdp"], "offer"))
            if on_caption is not None and "m=application" in jsep["sdp"]:
                # Janus relays a feed's data only to subscribers whose own channel is open
                # (its data_ready callback): open one from our side, as janus.js does.
                _on_messages(pc.createDataChannel("captions"), on_caption)
            await pc.setLocalDescription(await pc.createAnswer())
            await handle.message({"request": "start"}, {"type": "answer", "trickle": False,
                                                         "sdp": pc.localDescription.sdp},
                                 what=f"start receiving {publisher.display!r}")
            if not tracks:
                raise JanusError(f"{publisher.display!r} sends no audio")
        except BaseException:
            with contextlib.suppress(Exception):
                await pc.close()
            await handle.detach()
            raise
        sub = JanusSubscription(handle, pc, tracks[0])
        self._subs.append(sub)
        return sub

    async def publish(self, track: MediaStreamTrack, display: str) -> Feed:
        handle = await self.session.attach(VIDEOROOM)
        pc = RTCPeerConnection(ice_configuration(self.ice_servers))
        try:
            data, _ = await handle.message(self._room_body("join", ptype="publisher",
                                                           display=display),
                                           what=f"join to publish {display!r}")
            feed_id = int(data["id"])
            self.own_feeds.add(feed_id)  # before Janus announces it to anyone
            # Opus only: then the track is encoded here on the loop (OpusTrack) instead of
            # a worker-thread hop per frame, which under model load makes audio late.
            sender_track = OpusTrack(track)
            transceiver = pc.addTransceiver(sender_track, direction="sendonly")
            opus = [c for c in RTCRtpSender.getCapabilities("audio").codecs
                    if c.mimeType.lower() == "audio/opus"]
            transceiver.setCodecPreferences(opus)
            channel = pc.createDataChannel("captions")
            await pc.setLocalDescription(await pc.createOffer())
            _, jsep = await handle.message({"request": "publish", "display": display},
                                           {"type": "offer", "trickle": False,
                                            "sdp": pc.localDescription.sdp},
                                           what=f"publish {display!r}")
            if not jsep or jsep.get("type") != "answer":
                raise JanusError(f"publish {display!r}: Janus sent no answer")
            await pc.setRemoteDescription(RTCSessionDescription(jsep["sdp"], "answer"))
        except BaseException:
            with contextlib.suppress(Exception):
                await pc.close()
            await handle.detach()
            raise
        feed = JanusFeed(feed_id, display, handle, pc, channel)
        self._feeds.append(feed)
        return feed

    async def leave(self) -> None:
        if self._left:
            await self.session.close()  # left already, or a test froze it: close the socket
            return
        self._left = True
        await asyncio.gather(*(s.close() for s in self._subs), *(f.close() for f in self._feeds),
                             return_exceptions=True)
        if self._control is not None and not self.session.closed:
            with contextlib.suppress(ConferenceError):
                await self._control.message({"request": "leave"}, what="leave", timeout_s=3)
        await self.session.close()

    # -- events -------------------------------------------------------------------------
    def _need_control(self) -> JanusHandle:
        if self._control is None:
            raise RuntimeError("join() first")
        return self._control

    def _on_control(self, msg: dict[str, Any]) -> None:
        data = msg.get("plugindata", {}).get("data", {})
        if msg.get("janus") != "event":
            return
        if data.get("videoroom") == "destroyed" or (
                data.get("leaving") == "ok" and data.get("reason") == "kicked"):
            why = "the room was destroyed" if data.get("videoroom") == "destroyed" else \
                "kicked out of the room"
            self._events.put_nowait(Disconnected(why))  # the bot leaves; rejoin may follow
            return
        if data.get("videoroom") not in ("event", "joined"):
            return
        for p in data.get("publishers", []):
            self._publisher_seen(p)
        for key in ("unpublished", "leaving"):
            gone = data.get(key)
            if isinstance(gone, int) and not isinstance(gone, bool):
                self._publisher_gone(gone)
        if data.get("error_code"):
            log.warning("janus room %s: %s", self.room, data.get("error"))

    def _publisher_seen(self, p: dict[str, Any]) -> None:
        feed = p.get("id")
        if not isinstance(feed, int) or feed in self.own_feeds or feed in self.publishers:
            return
        audio = [s for s in p.get("streams", [])
                 if s.get("type") == "audio" and not s.get("disabled")]
        if "streams" in p and not audio:
            return  # video or data only: nothing to interpret
        pub = Publisher(feed, str(p.get("display") or f"feed-{feed}"),
                        audio[0].get("mid") if audio else None)
        self.publishers[feed] = pub
        log.info("room %s: speaker %r joined (feed %s)", self.room, pub.display, feed)
        self._events.put_nowait(PublisherJoined(pub))

    def _publisher_gone(self, feed: int) -> None:
        pub = self.publishers.pop(feed, None)
        if pub is not None:
            log.info("room %s: speaker %r left (feed %s)", self.room, pub.display, feed)
            self._events.put_nowait(PublisherLeft(feed))


def _on_messages(channel: Any, on_caption: Callable[[dict[str, Any]], None]) -> None:
    @channel.on("message")
    def on_message(message: str | bytes) -> None:
        try:
            record = json.loads(message)
        except (ValueError, TypeError):
            return
        if isinstance(record, dict):
            on_caption(record)


def _read_captions(pc: RTCPeerConnection, on_caption: Callable[[dict[str, Any]], None]) -> None:
    pc.on("datachannel", lambda channel: _on_messages(channel, on_caption))


class JanusLobby:
    """A session outside any room, for the worker's ``list`` and ``listparticipants``;
    reconnects on the next call after the server went away."""

    def __init__(self, url: str, *, token: str | None = None,
                 apisecret: str | None = None) -> None:
        self.url, self.token, self.apisecret = url, token, apisecret
        self._session: JanusSession | None = None
        self._handle: JanusHandle | None = None

    async def _ready(self) -> JanusHandle:
        if self._session is None or self._session.closed or self._handle is None:
            if self._session is not None:
                await self._session.close()
            self._session = JanusSession(self.url, token=self.token, apisecret=self.apisecret)
            await self._session.connect()
            self._handle = await self._session.attach(VIDEOROOM)
        return self._handle

    async def list_rooms(self) -> list[int | str]:
        return [r["room"] for r in await list_rooms(await self._ready()) if "room" in r]

    async def list_participants(self, room: int | str) -> list[Attendee]:
        return await list_participants(await self._ready(), room)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


async def list_participants(handle: JanusHandle, room: int | str) -> list[Attendee]:
    data, _ = await handle.message({"request": "listparticipants", "room": room},
                                   what=f"list the participants of room {room}")
    return [Attendee(p.get("id"), str(p.get("display") or ""), bool(p.get("publisher")),
                        p) for p in data.get("participants", [])]


async def list_rooms(handle: JanusHandle) -> list[dict[str, Any]]:
    data, _ = await handle.message({"request": "list"}, what="list rooms")
    return list(data.get("list", []))
