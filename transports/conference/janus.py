"""Janus (janus.conf.meetecho.com) VideoRoom over the Janus WebSocket API.

The API is a small request/response protocol on one WebSocket (subprotocol ``janus-protocol``):
``create`` a session, ``attach`` one handle per PeerConnection to ``janus.plugin.videoroom``,
send plugin ``message``s (each with a ``transaction`` that its reply carries back: first an
``ack``, then the ``event`` for asynchronous requests, or one ``success`` for synchronous ones)
and ``keepalive`` the session more often than its ``session_timeout``. Events without a
pending transaction are routed to their handle by ``sender``.

One JanusRoom is one Janus session in one room: a control handle joined as a (non-publishing)
publisher receives the room's publisher events; every subscription and every feed we publish
is a handle and a PeerConnection of its own (aiortc; candidates travel inside the SDP, so both
sides use ``trickle: false``). Closing the WebSocket makes Janus drop the session at once; a
client that hangs without closing is dropped after the server's ``session_timeout``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from babelcall.realtime.tasks import cancel_and_wait
from babelcall.transports.conference.base import (
    Attendee,
    ConferenceError,
    ConnectionLost,
    Disconnected,
    Feed,
    NotAuthorized,
    Publisher,
    PublisherJoined,
    PublisherLeft,
    RoomConnection,
    RoomNotFound,
    ServerUnreachable,
    Subscription,
)
from babelcall.transports.peer import ice_configuration
from babelcall.transports.tracks import OpusTrack

log = logging.getLogger(__name__)
PROTOCOL = "janus-protocol"
VIDEOROOM = "janus.plugin.videoroom"
MAX_KEEPALIVE_S = 25.0
MAX_QUEUED_CAPTIONS = 64  # captions waiting for the data channel to open

# Janus core and VideoRoom error codes that have a clearer name for the user.
_NO_SUCH_ROOM = 426
_UNAUTHORIZED = (403, 405, 433)  # core: bad secret/token; VideoRoom: wrong pin


class JanusError(ConferenceError):
    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


def parse_url(url: str) -> tuple[str, int | str | None]:
    """``janus+ws://host:8188/1234`` -> (``ws://host:8188``, 1234). The room is optional (the
    worker serves many); numeric rooms are ints, as Janus compares them by type."""
    parts = urlsplit(url)
    scheme = parts.scheme.removeprefix("janus+")
    if scheme not in ("ws", "wss") or not parts.hostname:
        raise ConferenceError(f"{url}: expected janus+ws://HOST:PORT/ROOM (or janus+wss://)")
    try:
        port = parts.port
    except ValueError as exc:
        raise ConferenceError(f"{url}: bad port") from exc
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    base = f"{scheme}://{host}:{port or 8188}"
    name = parts.path.strip("/")
    if "/" in name:
        raise ConferenceError(f"{url}: the path is the room id only, got '{name}'")
    room: int | str | None = (int(name) if name.isdigit() else name) if name else None
    return base, room


def _error(code: int | None, reason: str, what: str) -> ConferenceError:
    if code == _NO_SUCH_ROOM:
        return RoomNotFound(f"{what}: {reason}")
    if code in _UNAUTHORIZED:
        return NotAuthorized(f"{what}: {reason} (check --pin, --secret or --token)")
    return JanusError(f"{what}: Janus error {code}: {reason}", code)


class JanusSession:
    """One Janus session on one WebSocket: transactions, event routing and keepalives."""

    def __init__(self, url: str, *, token: str | None = None, apisecret: str | None = None,
                 request_timeout_s: float = 10.0) -> None:
        self.url = url
        self.token = token
        self.apisecret = apisecret
        self.request_timeout_s = request_timeout_s
        self.id: int | None = None
        self.keepalive_s = MAX_KEEPALIVE_S
        self.closed = False
        self.lost_reason: str | None = None
        self.on_lost: Callable[[str], None] | None = None
        self.handles: dict[int, JanusHandle] = {}
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._pending: dict[str, tuple[asyncio.Future[dict[str, Any]], bool]] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def connect(self) -> None:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        try:
            self._ws = await self._http.ws_connect(self.url, protocols=(PROTOCOL,),
                                                   max_msg_size=8 * 1024 * 1024)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            await self._http.close()
            self.closed = True
            raise ServerUnreachable(f"cannot reach Janus at {self.url}: "
                                    f"{exc or type(exc).__name__}") from exc
        if self._ws.protocol != PROTOCOL:
            await self.close()
            raise ServerUnreachable(f"{self.url} is not a Janus WebSocket API "
                                    f"(no '{PROTOCOL}' subprotocol)")
        self._tasks.append(asyncio.create_task(self._read(), name="janus-read"))
        try:
            info = await self.request({"janus": "info"}, what="Janus info")
            if VIDEOROOM not in info.get("plugins", {}):
                raise ConferenceError(f"Janus at {self.url} has no VideoRoom plugin")
            timeout = float(info.get("session-timeout") or 0)
            if timeout > 0:  # three keepalives per timeout: one may be late, two more follow
                self.keepalive_s = min(MAX_KEEPALIVE_S, max(0.5, timeout / 3))
            created = await self.request({"janus": "create"}, what="create a Janus session")
            self.id = int(created["data"]["id"])
        except BaseException:
            await self.close()
            raise
        self._tasks.append(asyncio.create_task(self._keepalive(), name="janus-keepalive"))

    async def attach(self, plugin: str = VIDEOROOM,
                     on_event: Callable[[dict[str, Any]], None] | None = None) -> JanusHandle:
        reply = await self.request({"janus": "attach", "plugin": plugin},
                                   what=f"attach to {plugin}")
        handle = JanusHandle(self, int(reply["data"]["id"]), on_event)
        self.handles[handle.id] = handle
        return handle

    async def request(self, msg: dict[str, Any], *, handle: int | None = None,
                      ack_only: bool = False, what: str = "request",
                      timeout_s: float | None = None) -> dict[str, Any]:
        """Send ``msg`` and return its final reply (``success`` or ``event``; ``ack`` for
        keepalives and trickles); Janus and plugin errors raise ConferenceError."""
        if self.closed or self._ws is None:
            raise ConnectionLost(f"the connection to Janus at {self.url} is closed"
                                 + (f" ({self.lost_reason})" if self.lost_reason else ""))
        tx = secrets.token_hex(8)
        msg = {**msg, "transaction": tx}
        if self.id is not None and msg["janus"] not in ("info", "create"):
            msg["session_id"] = self.id
        if handle is not None:
            msg["handle_id"] = handle
        if self.token:
            msg["token"] = self.token
        if self.apisecret:
            msg["apisecret"] = self.apisecret
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[tx] = (fut, ack_only)
        try:
            try:
                await self._ws.send_str(json.dumps(msg))
            except (ConnectionError, RuntimeError, aiohttp.ClientError) as exc:
                self._lost(f"send failed: {exc}")
                raise ConnectionLost(f"the connection to Janus at {self.url} is lost") from exc
            try:
                async with asyncio.timeout(timeout_s or self.request_timeout_s):
                    reply = await fut
            except TimeoutError:
                raise JanusError(f"{what}: Janus at {self.url} did not answer within "
                                 f"{timeout_s or self.request_timeout_s:.0f} s") from None
        finally:
            self._pending.pop(tx, None)
        if reply.get("janus") == "error":
            err = reply.get("error", {})
            raise _error(err.get("code"), err.get("reason", "unknown error"), what)
        data = reply.get("plugindata", {}).get("data", {})
        if "error_code" in data or "error" in data:
            raise _error(data.get("error_code"), data.get("error", "unknown error"), what)
        return reply

    async def close(self) -> None:
        """End the session politely (``destroy``) and close the socket; idempotent."""
        if not self.closed and self.id is not None:
            with contextlib.suppress(ConferenceError):
                await self.request({"janus": "destroy"}, what="destroy", timeout_s=2)
        await self._shutdown("closed by us")

    async def abort(self, hang: bool = False) -> None:
        """Drop the TCP connection without a word, as a crashed process would (Janus ends
        the session at once). ``hang``: go silent instead but leave the socket open, as a
        frozen process or a cut network would; Janus ends the session after its
        ``session_timeout``. The socket is closed by ``close()`` later."""
        if hang:
            self._lost("hung on purpose", notify=False)
            await cancel_and_wait(self._tasks)
            return
        if self._ws is not None:
            conn = getattr(self._ws, "_conn", None) or getattr(self._ws, "_response", None)
            transport = getattr(getattr(conn, "connection", conn), "transport", None)
            if transport is not None:
                transport.abort()
        await self._shutdown("aborted")

    async def _shutdown(self, reason: str) -> None:
        self._lost(reason, notify=False)
        await cancel_and_wait(self._tasks)
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        if self._http is not None:
            with contextlib.suppress(Exception):
                await self._http.close()

    # -- internals ----------------------------------------------------------------------
    def _lost(self, reason: str, notify: bool = True) -> None:
        if self.closed:
            return
        self.closed = True
        self.lost_reason = reason
        for fut, _ in self._pending.values():
            if not fut.done():
                fut.set_exception(ConnectionLost(f"the connection to Janus at {self.url} "
                                                 f"was lost ({reason})"))
        if notify and self.on_lost is not None:
            self.on_lost(reason)

    async def _read(self) -> None:
        assert self._ws is not None
        reason = "Janus closed the connection"
        try:
            async for m in self._ws:
                if m.type == aiohttp.WSMsgType.TEXT:
                    try:
                        msg = json.loads(m.data)
                    except ValueError:
                        log.warning("janus: not JSON: %.200s", m.data)
                        continue
                    self._dispatch(msg)
                elif m.type == aiohttp.WSMsgType.ERROR:
                    reason = f"WebSocket error: {self._ws.exception()}"
                    break
        except Exception as exc:  # a reset connection
            reason = f"{type(exc).__name__}: {exc}"
        self._lost(reason)

    def _dispatch(self, msg: dict[str, Any]) -> None:
        kind = msg.get("janus")
        pending = self._pending.get(msg.get("transaction", ""))
        if pending is not None and (kind != "ack" or pending[1]):
            if not pending[0].done():
                pending[0].set_result(msg)
            return
        if kind == "ack":
            return
        if kind == "timeout":
            self._lost("the Janus session timed out")
            return
        handle = self.handles.get(msg.get("sender", -1))
        if handle is not None:
            handle.dispatch(msg)
        else:
            log.debug("janus: unrouted %s", kind)

    async def _keepalive(self) -> None:
        while not self.closed:
            await asyncio.sleep(self.keepalive_s)
            try:
                await self.request({"janus": "keepalive"}, ack_only=True, what="keepalive")
            except ConnectionLost:
                return
            except ConferenceError as exc:
                log.warning("janus keepalive: %s", exc)


class JanusHandle:
    """One plugin handle: ``message`` a plugin request (with an optional JSEP)."""

    def __init__(self, session: JanusSession, handle_id: int,
                 on_event: Callable[[dict[str, Any]], None] | None) -> None:
        self.session = session
        self.id = handle_id
        self.on_event = on_event
        self.detached = False

    async def message(self, body: dict[str, Any], jsep: dict[str, Any] | None = None, *,
                      what: str = "request", timeout_s: float | None = None,
                      ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        msg: dict[str, Any] = {"janus": "message", "body": body}
        if jsep is not None:
            msg["jsep"] = jsep
        reply = await self.session.request(msg, handle=self.id, what=what, timeout_s=timeout_s)
        return reply.get("plugindata", {}).get("data", {}), reply.get("jsep")

    def dispatch(self, msg: dict[str, Any]) -> None:
        if msg.get("janus") == "detached":
            self.detached = True
        if self.on_event is not None:
            try:
                self.on_event(msg)
            except Exception:
                log.exception("janus event handler failed")

    async def detach(self) -> None:
        self.session.handles.pop(self.id, None)
        if self.detached or self.session.closed:
            return
        self.detached = True
        with contextlib.suppress(ConferenceError):
            await self.session.request({"janus": "detach"}, handle=self.id, what="detach",
                                       timeout_s=3)


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
            await self.session.close()  # after abort(hang=True): the socket left open
            return
        self._left = True
        await asyncio.gather(*(s.close() for s in self._subs), *(f.close() for f in self._feeds),
                             return_exceptions=True)
        if self._control is not None and not self.session.closed:
            with contextlib.suppress(ConferenceError):
                await self._control.message({"request": "leave"}, what="leave", timeout_s=3)
        await self.session.close()

    async def abort(self, hang: bool = False) -> None:
        self._left = True
        await self.session.abort(hang)
        await asyncio.gather(*(s.pc.close() for s in self._subs),
                             *(f.pc.close() for f in self._feeds), return_exceptions=True)

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
