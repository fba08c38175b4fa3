"""A call whose speech is translated (WHIP ``POST /whip`` or the browser's ``POST /offer``):
its peer connection, its Session (through a Link), the translated output, its video relay
and the WHEP viewers that subscribe to it.

The ingest peer gets the translation back on the same connection when its offer receives
audio (sendrecv), and its captions on any data channel it opens. ``{"type": "end"}`` on that
channel finishes the open phrase and answers ``{"type": "done"}`` once the last translated
audio has been sent; the caller then hangs up (this is how ``babelcall call`` drains)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiortc.mediastreams import MediaStreamTrack

from babelcall.realtime.tasks import cancel_and_wait
from babelcall.transports.hub import Hub
from babelcall.transports.interpreter import Interpreter
from babelcall.transports.lag import LagTracker
from babelcall.transports.peer import Peer
from babelcall.transports.relay import BoundedRelay
from babelcall.transports.signaling import Offer, SignalingError
from babelcall.transports.tracks import DelayedTrack, FixedDelay, OpusTrack

log = logging.getLogger(__name__)
LINGER_S = 30.0  # after "done", the caller has this long to hang up


@dataclass(frozen=True)
class CallOptions:
    source: str
    target: str
    mix: float = 0.0             # original voice level under the translation
    mix_idle: float | None = None  # its level between translations (default: mix)
    video_delay_s: float | None = None  # None: follow the translation's lag; 0: live
    echo_guard: bool = False     # mute the input while the translation plays (no headphones)
    voice: str | None = None


class Ingest:
    def __init__(self, hub: Hub, offer: Offer, options: CallOptions) -> None:
        self.hub = hub
        self.options = options
        cfg = hub.config
        self.session = hub.new_session(options.source, options.target, options.voice)
        self.peer = Peer(offer, ice_servers=cfg.ice_servers,
                         connect_timeout_s=cfg.connect_timeout_s, on_close=self._peer_closed)
        self.id = self.peer.id
        self.interpreter = Interpreter.for_session(
            self.session, mix=options.mix, mix_idle=options.mix_idle,
            echo_guard=options.echo_guard, max_ahead_s=cfg.max_ahead_s)
        self.link, self.output = self.interpreter.wired()
        self.lag = LagTracker(self.session.clock, self.link.origin_ns)
        self.link.add_sink(self.lag.observe)
        self.video_relay = BoundedRelay()
        self.viewers: dict[str, tuple[Peer, list[MediaStreamTrack]]] = {}
        self.sinks: dict[str, Callable[[dict[str, Any]], None]] = {}
        self.closed = False
        self._tasks: set[asyncio.Task[Any]] = set()

    async def open(self) -> str:
        """Answer the offer and start interpreting; on any error everything is freed."""
        self.peer.on_message = self._message
        try:
            answer = await self.peer.answer(self._wire)
        except BaseException:
            await self.close()
            raise
        self.hub.add_call(self)
        await self.interpreter.start()
        return answer

    def _wire(self, peer: Peer) -> None:
        if peer.audio_in is None:
            raise SignalingError(400, "no_audio", "the offer's audio track could not be read")
        self.interpreter.listen(peer.audio_in, on_end=self.close)
        track = self.interpreter.output_track(opus=peer.offer.audio.opus) \
            if peer.wants("audio") else None
        if track is not None:
            peer.add_track(track)
        self.link.add_sink(_captions(peer, track))
        video = self.video_track() if peer.wants("video") else None
        if video is not None:
            peer.add_track(video)

    def video_track(self) -> MediaStreamTrack | None:
        """The caller's video for one more consumer, delayed to stay with the translation."""
        if self.peer.video_in is None:
            return None
        track = self.video_relay.subscribe(self.peer.video_in)
        delay = self.options.video_delay_s
        if delay == 0:
            return track
        target = self.lag if delay is None else FixedDelay(delay)
        return DelayedTrack(track, target, clock=self.session.clock)

    def _message(self, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        if kind == "end":
            self._spawn(self._drain())
        elif kind == "ping":
            self.peer.send({"type": "pong", "t": msg.get("t")})

    async def _drain(self) -> None:
        await self.link.end()
        await self.session.clock.sleep(LINGER_S)
        await self.close()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- WHEP viewers -----------------------------------------------------------------------
    async def add_viewer(self, offer: Offer) -> tuple[Peer, str]:
        if len(self.viewers) >= self.hub.config.max_viewers:
            raise SignalingError(503, "too_many_viewers",
                                 f"this call has its limit of {self.hub.config.max_viewers} "
                                 "viewers")
        cfg = self.hub.config
        peer = Peer(offer, ice_servers=cfg.ice_servers, connect_timeout_s=cfg.connect_timeout_s,
                    on_close=self._viewer_closed)
        tracks: list[MediaStreamTrack] = []

        def wire(p: Peer) -> None:
            tracks.append(self.output.subscribe(opus=p.offer.audio.opus))
            p.add_track(tracks[-1])
            video = self.video_track() if p.wants("video") else None
            if video is not None:
                tracks.append(video)
                p.add_track(video)
            self.sinks[p.id] = _captions(p, tracks[0])
            self.link.add_sink(self.sinks[p.id])

        self.viewers[peer.id] = (peer, tracks)
        try:
            answer = await peer.answer(wire)
        except BaseException:
            await peer.close()
            raise
        return peer, answer

    def _viewer_closed(self, peer: Peer) -> None:
        _, tracks = self.viewers.pop(peer.id, (None, []))
        sink = self.sinks.pop(peer.id, None)
        if sink is not None:
            self.link.remove_sink(sink)
        for track in tracks:
            self.output.unsubscribe(track) if track.kind == "audio" else track.stop()

    # -- teardown ---------------------------------------------------------------------------
    async def _peer_closed(self, peer: Peer) -> None:
        await self.close()

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.hub.drop_call(self.id)
        await cancel_and_wait(list(self._tasks))
        await self.interpreter.stop()
        await self.peer.close()  # the caller's video ends: viewers still see what is delayed
        delayed = [t for _, tracks in self.viewers.values() for t in tracks
                   if isinstance(t, DelayedTrack) and t.readyState == "live"]
        if delayed:
            await asyncio.wait([asyncio.ensure_future(t.drained.wait()) for t in delayed],
                               timeout=max(t.slew.max_delay_ns for t in delayed) / 1e9 + 0.5)
        await asyncio.gather(*(p.close() for p, _ in list(self.viewers.values())),
                             return_exceptions=True)
        log.info("call %s closed", self.id)


def _captions(peer: Peer, track: MediaStreamTrack | None) -> Callable[[dict[str, Any]], None]:
    """The peer's caption sink. Its "done" says up to which pts of this peer's own audio the
    translation reaches (``out_pts``), so a client knows when it has heard all of it even if
    its network or CPU runs behind."""
    def sink(rec: dict[str, Any]) -> None:
        if rec.get("type") == "done" and isinstance(track, OpusTrack):
            rec = {**rec, "out_pts": track.pending_pts}
        peer.send(rec)
    return sink
