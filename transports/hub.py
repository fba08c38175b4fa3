"""What every endpoint of a server shares: the engines, ONE Scheduler (so sessions share the
models and admission control sees every session), the limits, and the registries of live
calls, rooms and sockets that ``close()`` tears down on shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from babelcall.engines.registry import Engines
from babelcall.realtime.errors import UnsupportedLanguage
from babelcall.realtime.scheduler import Overloaded, Scheduler
from babelcall.realtime.session import Session, SessionConfig
from babelcall.transports.gil import MEDIA_SWITCH_INTERVAL_S, GilSwitch
from babelcall.transports.signaling import SignalingError

log = logging.getLogger(__name__)


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
    connect_timeout_s: float = 30.0
    ice_servers: list[str] = field(default_factory=list)
    cors_origin: str | None = None
    # see transports/gil.py; None leaves the process setting alone
    gil_switch_interval_s: float | None = MEDIA_SWITCH_INTERVAL_S


class Hub:
    def __init__(self, engines: Engines, config: ServerConfig | None = None, *,
                 scheduler: Scheduler | None = None) -> None:
        self.engines = engines
        self.config = config or ServerConfig()
        self._own_scheduler = scheduler is None
        self.scheduler = scheduler or Scheduler(engines, max_sessions=self.config.max_sessions)
        self.ingests: dict[str, Any] = {}   # id -> Ingest
        self.rooms: dict[str, Any] = {}     # name -> Room
        self._closers: set[Callable[[], Awaitable[None]]] = set()
        self.closing = False
        self._gil = GilSwitch(self.config.gil_switch_interval_s)

    async def start(self) -> None:
        self._gil.set()
        await self.scheduler.start()

    def new_session(self, source: str, target: str, voice: str | None = None) -> Session:
        """A session on the shared scheduler, or the HTTP error that explains why not."""
        if self.closing:
            raise SignalingError(503, "shutting_down", "the server is shutting down")
        if source == target:
            raise SignalingError(400, "bad_language", f"source and target are both '{source}'")
        config = SessionConfig(source, target, voice=voice or self.config.voice)
        try:
            session = Session(self.engines, config, scheduler=self.scheduler)
        except Overloaded as exc:
            raise SignalingError(503, "overloaded", str(exc)) from exc
        except UnsupportedLanguage as exc:
            raise SignalingError(400, "unsupported_language", str(exc)) from exc
        return session

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
        if self._own_scheduler:
            await self.scheduler.close()
        self._gil.restore()

    def metrics(self) -> dict[str, Any]:
        return {**self.scheduler.metrics(), "calls": len(self.ingests),
                "rooms": {name: len(r.participants) for name, r in self.rooms.items()}}
