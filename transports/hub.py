"""What every endpoint of a server shares: the engines, ONE Scheduler (so sessions share the
models and admission control sees every session), the limits, and the registries of live
calls and rooms that ``close()`` tears down on shutdown. The hub owns its registries: calls
and rooms add and remove themselves only through its methods."""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from babelcall.engines.registry import Engines
from babelcall.realtime.bounded import dropped
from babelcall.realtime.errors import SessionClosed, UnsupportedLanguage
from babelcall.realtime.scheduler import Overloaded, Scheduler
from babelcall.realtime.session import Session, SessionConfig, SpeakerFront
from babelcall.transports.runtime import MEDIA_SWITCH_INTERVAL_S, Runtime
from babelcall.transports.signaling import SignalingError
from babelcall.transports.wire_guard import CLIENT_TIMEOUT_S

if TYPE_CHECKING:
    from babelcall.transports.ingest import Ingest
    from babelcall.transports.rooms import Room

log = logging.getLogger(__name__)
LEFT_REMEMBERED = 1024  # room departures remembered for a late leave (see Hub.left)


@dataclass
class ServerConfig:
    token: str | None = None            # bearer token for signalling and WebSockets
    source: str = "en"                  # languages for callers that name none
    target: str = "es"
    voice: str | None = None
    max_sessions: int | None = None     # besides the scheduler's own overload refusal
    max_sdp_bytes: int = 32 * 1024      # a real offer is 2-6 KiB
    max_viewers: int = 16               # WHEP subscribers per call
    max_room_size: int = 8
    max_ws_message_bytes: int = 256 * 1024  # 8 s of 16 kHz PCM16 per message
    max_ws_messages_per_s: float = 200.0
    max_ahead_s: float = 3.0            # input accepted ahead of real time (flood guard)
    ws_max_ahead_s: float = 30.0        # WebSocket clients may upload faster; then they wait
    ws_hard_cap_s: float = 40.0         # ... and what still comes beyond this is dropped
    connect_timeout_s: float = 30.0
    # how long a client may take to send its request headers, its body, or a WebSocket's
    # first message (see transports/wire_guard.py)
    client_timeout_s: float = CLIENT_TIMEOUT_S
    ice_servers: list[str] = field(default_factory=list)
    cors_origin: str | None = None
    # see transports/runtime.py; None leaves the process setting alone
    gil_switch_interval_s: float | None = MEDIA_SWITCH_INTERVAL_S


class Hub:
    def __init__(self, engines: Engines, config: ServerConfig | None = None, *,
                 scheduler: Scheduler | None = None) -> None:
        self.engines = engines
        self.config = config or ServerConfig()
        self.runtime = Runtime(scheduler or engines, max_sessions=self.config.max_sessions,
                               gil_switch_interval_s=self.config.gil_switch_interval_s)
        self.scheduler = self.runtime.scheduler
        self.ingests: dict[str, Ingest] = {}
        self.rooms: dict[str, Room] = {}
        self._closers: set[Callable[[], Awaitable[None]]] = set()
        self.closing = False
        self._warm: dict[tuple[str, str], asyncio.Future[None]] = {}  # pairs started
        # The latest room departures, so that a leave arriving after the server already let
        # the participant go (their connection closed first) is answered as done, not 404:
        # a DELETE is idempotent, and a page that hangs up must not see an error for it.
        self.left: collections.OrderedDict[tuple[str, str], None] = collections.OrderedDict()

    def record_left(self, room: str, pid: str) -> None:
        self.left[(room, pid)] = None
        while len(self.left) > LEFT_REMEMBERED:
            self.left.popitem(last=False)

    async def start(self) -> None:
        await self.runtime.start()

    def new_front(self, source: str, voice: str | None = None) -> SpeakerFront:
        """A speaker's front (listen + recognise once) for the sessions of their targets."""
        return SpeakerFront(self.scheduler,
                            SessionConfig(source, source, voice=voice or self.config.voice))

    def new_session(self, source: str, target: str, voice: str | None = None, *,
                    front: SpeakerFront | None = None) -> Session:
        """A session on the shared scheduler (on the speaker's ``front`` if given), or the
        HTTP error that explains why not."""
        if self.closing:
            raise SignalingError(503, "shutting_down", "the server is shutting down")
        if source == target:
            raise SignalingError(400, "bad_language", f"source and target are both '{source}'")
        config = SessionConfig(source, target, voice=voice or self.config.voice)
        try:
            session = Session(self.scheduler, config, front=front)
        except Overloaded as exc:
            raise SignalingError(503, "overloaded", str(exc)) from exc
        except UnsupportedLanguage as exc:
            raise SignalingError(400, "unsupported_language", str(exc)) from exc
        except SessionClosed as exc:  # the speaker's front failed or ended meanwhile
            raise SignalingError(503, "speaker_gone", str(exc)) from exc
        self._warm_pair(source, target)
        return session

    def _warm_pair(self, source: str, target: str) -> None:
        """Start a pair's MT (Apertium processes, a Bergamot model: 0.3-0.9 s) on the MT lane
        the first time a session needs it, while its speaker says their first words, not on
        their first phrase. Only the server's default pair is started at load."""
        if (source, target) in self._warm:
            return
        engines = self.engines
        due = self.scheduler.clock.now_ns() + self.scheduler.budget.deadline("mt", 0,
                                                                              final=False)
        warm = asyncio.ensure_future(self.scheduler.translate(
            lambda: engines.warm_mt(source, target), deadline_ns=due))
        warm.add_done_callback(lambda f: f.cancelled() or f.exception())  # best effort
        self._warm[(source, target)] = warm

    # -- registries ---------------------------------------------------------------------------
    def add_call(self, ingest: Ingest) -> None:
        self.ingests[ingest.id] = ingest

    def drop_call(self, call_id: str) -> None:
        self.ingests.pop(call_id, None)

    def room(self, name: str, make: Callable[[], Room]) -> Room:
        """The room called ``name``, made with ``make`` if nobody is in it yet."""
        if self.closing:
            raise SignalingError(503, "shutting_down", "the server is shutting down")
        room = self.rooms.get(name)
        if room is None:
            room = self.rooms[name] = make()
        return room

    def drop_room(self, name: str) -> None:
        self.rooms.pop(name, None)

    def on_close(self, closer: Callable[[], Awaitable[None]]) -> Callable[[], None]:
        """Register something to close on shutdown; returns its unregister function."""
        self._closers.add(closer)
        return lambda: self._closers.discard(closer)

    async def close(self) -> None:
        self.closing = True
        closers = [i.close for i in list(self.ingests.values())]
        closers += [r.close for r in list(self.rooms.values())]
        closers += list(self._closers)
        results = await asyncio.gather(*(c() for c in closers), return_exceptions=True)
        for r in results:
            if isinstance(r, Exception):
                log.warning("error while closing: %s", r)
        await self.runtime.close()

    def metrics(self) -> dict[str, Any]:
        fronts = {id(f): f for s in self.scheduler.sessions
                  if isinstance(f := getattr(s, "front", None), SpeakerFront)}.values()
        return {**self.scheduler.metrics(), "calls": len(self.ingests),
                "rooms": {name: len(r.participants) for name, r in self.rooms.items()},
                "dropped": dropped(),  # what each kind of bounded queue dropped (bounded.py)
                # each speaker's recogniser streams and ASR passes (one front per speaker,
                # whatever the number of languages they are heard in)
                "recognition": [f.recognition() for f in fronts],
                # input audio the live sessions dropped at a full door (a stuck pipeline)
                "dropped_input_s": round(sum(f.stats.dropped_s for f in fronts), 2)}


HUB: web.AppKey[Hub] = web.AppKey("babelcall_hub", Hub)
