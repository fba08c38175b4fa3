"""One RTCPeerConnection with babelcall's lifecycle rules (cf. aiortc's examples/server):
answer an offer in one step, close when the connection fails or is closed, when it does not
connect within ``connect_timeout_s``, or when the owner hangs up. Closing is idempotent and
always runs the owner's ``on_close`` exactly once, which is where sessions are freed.

DTLS completes with RSA as well as ECDSA peers (transports/dtls.py), and a peer that fails or
times out is logged once, with its cause (ICE, DTLS and its alert, or the timeout)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Callable
from typing import Any

from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamTrack

from babelcall.realtime.bounded import DROPS
from babelcall.transports import compat
from babelcall.transports.dtls import failure_cause, use_interop_certificate
from babelcall.transports.signaling import Offer, SignalingError

log = logging.getLogger(__name__)
# Captions waiting in one data channel's send buffer before new ones are dropped: ~2,000
# caption events, minutes of a call's captions; a reader that far behind has stopped.
MAX_CHANNEL_BUFFER = 256 * 1024
# Every peer connection of babelcall's (server, Janus rooms, Python client) is made with
# ``ice_configuration`` below: their ICE sockets are read in full at each wake-up, and they
# keep consent while answers come, however late.
compat.draining_ice_sockets()
compat.patient_consent()


def ice_configuration(urls: list[str] | None) -> RTCConfiguration:
    """No STUN unless asked: aiortc's default (a public Google server) would make every answer
    wait on the Internet, and a LAN or localhost deployment needs none."""
    return RTCConfiguration(iceServers=[RTCIceServer(**ice_server(u)) for u in urls or []])


def ice_server(url: str) -> dict[str, str]:
    """``turn:USER:PASSWORD@HOST:PORT?transport=tcp`` -> the W3C RTCIceServer fields (a TURN
    server wants credentials, and a command line has only one string per server)."""
    scheme, sep, rest = url.partition(":")
    user, at, where = rest.rpartition("@")
    if not sep or not at or scheme not in ("turn", "turns"):
        return {"urls": url}
    username, _, credential = user.partition(":")
    return {"urls": f"{scheme}:{where}", "username": username, "credential": credential}


class Peer:
    def __init__(self, offer: Offer, *, ice_servers: list[str] | None = None,
                 connect_timeout_s: float = 30.0,
                 on_close: Callable[[Peer], Any] | None = None) -> None:
        self.id = secrets.token_urlsafe(12)
        self.offer = offer
        self.pc = RTCPeerConnection(ice_configuration(ice_servers))
        self._certificate = use_interop_certificate(self.pc)
        self.connect_timeout_s = connect_timeout_s
        self.on_close = on_close
        self.on_message: Callable[[dict[str, Any]], Any] | None = None
        self.on_channel: Callable[[RTCDataChannel], Any] | None = None
        self.audio_in: MediaStreamTrack | None = None
        self.video_in: MediaStreamTrack | None = None
        self.channels: list[RTCDataChannel] = []
        self.connected = asyncio.Event()
        self.closed = asyncio.Event()
        self._closing = False
        self._watch: asyncio.Task[None] | None = None
        self.pc.on("connectionstatechange", self._state_changed)
        self.pc.on("datachannel", self._channel)

    async def answer(self, wire: Callable[[Peer], None]) -> str:
        """Apply the offer, let ``wire`` attach tracks (``audio_in``/``video_in`` are set, the
        answer is not made yet), and return the answer SDP with all ICE candidates in it."""
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(self.offer.sdp, "offer"))
        except Exception as exc:  # aiortc: ValueError/OperationError/InvalidStateError...
            await self.close()
            raise SignalingError(400, "bad_sdp", f"the offer was refused: {exc}") from exc
        for t in self.pc.getTransceivers():
            track = t.receiver.track if t.receiver else None
            if track is None:
                continue
            media = self.offer.audio if t.kind == "audio" else self.offer.video
            if media is not None and media.sends and t.mid == media.mid:
                if t.kind == "audio":
                    self.audio_in = track
                else:
                    self.video_in = track
        try:
            wire(self)
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        except SignalingError:
            await self.close()
            raise
        except Exception as exc:
            await self.close()
            raise SignalingError(400, "bad_sdp", f"could not answer the offer: {exc}") from exc
        if self._closing:  # hung up (its call ended) while the answer was being made
            raise SignalingError(404, "unknown_session", "the call ended while this offer was "
                                                         "being answered")
        self._watch = asyncio.create_task(self._watch_connect(), name=f"peer-{self.id}")
        return self.pc.localDescription.sdp

    def add_track(self, track: MediaStreamTrack) -> None:
        self.pc.addTrack(track)

    def wants(self, kind: str) -> bool:
        """The offer accepts ``kind`` media from us."""
        media = self.offer.audio if kind == "audio" else self.offer.video
        return media is not None and media.receives

    def send(self, rec: dict[str, Any]) -> None:
        """JSON to every open data channel (captions); silently skips closed ones. A channel
        whose peer has stopped reading (SCTP's window full, aiortc queueing every message
        unbounded) gets nothing more until it drains below ``MAX_CHANNEL_BUFFER``: the
        message is dropped and counted (``/stats`` ``dropped.datachannel``)."""
        text = json.dumps(rec, ensure_ascii=False, separators=(",", ":"))
        for ch in list(self.channels):
            if ch.readyState == "open":
                if ch.bufferedAmount > MAX_CHANNEL_BUFFER:
                    DROPS["datachannel"] += 1
                    continue
                try:
                    ch.send(text)
                except Exception:
                    self.channels.remove(ch)

    async def close(self) -> None:
        if self._closing:  # re-entered from on_close, or closed twice: nothing left to do
            return
        self._closing = True
        try:
            if self._watch is not None and self._watch is not asyncio.current_task():
                self._watch.cancel()
            if self.on_close is not None:
                result = self.on_close(self)
                if asyncio.iscoroutine(result):
                    await result
        finally:
            with contextlib.suppress(Exception):
                await self.pc.close()
            self._end_remote_tracks()
            self.closed.set()

    def _end_remote_tracks(self) -> None:
        """aiortc ends a remote track (its recv() raises) only when its receiver had started:
        for a peer closed before it connected, every reader of ``audio_in`` would wait for ever
        (a MediaRelay's reader task then leaks, and is garbage-collected pending). The None
        is aiortc's own end-of-track sentinel (RemoteStreamTrack.recv)."""
        for track in (self.audio_in, self.video_in):
            compat.end_remote_track(track)

    # -- events -----------------------------------------------------------------------------
    def _state_changed(self) -> None:
        state = self.pc.connectionState
        if state == "failed" and not self._closing:
            log.warning("peer %s failed: %s", self.id, failure_cause(self.pc, self._certificate))
        else:
            log.info("peer %s: %s", self.id, state)
        if state == "connected":
            self.connected.set()
        elif state in ("failed", "closed") and not self._closing:
            asyncio.ensure_future(self.close())

    def _channel(self, channel: RTCDataChannel) -> None:
        self.channels.append(channel)

        @channel.on("message")
        def on_message(message: str | bytes) -> None:
            if self.on_message is None:
                return
            try:
                msg = json.loads(message)
            except (ValueError, TypeError):
                channel.send(json.dumps({"type": "error", "error": "bad_message",
                                         "message": "data channel messages are JSON"}))
                return
            if isinstance(msg, dict):
                result = self.on_message(msg)
                if asyncio.iscoroutine(result):
                    asyncio.ensure_future(result)

        if self.on_channel is not None:
            self.on_channel(channel)

    async def _watch_connect(self) -> None:
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                await self.connected.wait()
        except TimeoutError:
            log.warning("peer %s did not connect within %.0f s (%s); closing", self.id,
                        self.connect_timeout_s, failure_cause(self.pc, self._certificate))
            await self.close()
