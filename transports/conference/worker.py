"""``Worker`` serves many rooms of one server together with other workers and no coordinator
of our own: the server's participant list is the shared state. A worker claims a room by
joining it as a non-publishing participant named ``babelcall-worker:<id>``; after joining it
lists the participants and, if a claimant with a smaller id is present, leaves (a
deterministic tie break); it re-checks every few seconds, so a room whose worker died (its
server session ends when its socket closes, or after ``session_timeout`` if it hangs) is taken
over."""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from babelcall.engines.registry import Engines
from babelcall.realtime.errors import BabelcallError
from babelcall.realtime.scheduler import Scheduler
from babelcall.realtime.tasks import cancel_and_wait
from babelcall.transports.conference.base import ConferenceError, RoomConnection
from babelcall.transports.conference.bot import WORKER_PREFIX, BotConfig, RoomBot
from babelcall.transports.runtime import MEDIA_SWITCH_INTERVAL_S, Runtime

log = logging.getLogger(__name__)


@dataclass
class Claim:
    """A room this worker holds: its connection (the claim) and its RoomBot."""

    room: RoomConnection
    bot: RoomBot
    task: asyncio.Task[str]


class Worker:
    """Serve the rooms of one server together with any number of other workers.

    ``open_room(room, display)`` makes a (not yet joined) connection; ``lobby`` is a joined-
    free connection used to list rooms and participants (any RoomConnection; it need not be in
    a room). ``rooms``: the rooms to serve (None: all that ``list_rooms()`` returns).
    A room is claimed only while the scheduler has capacity: at most ``max_rooms`` rooms,
    ``max_sessions`` not reached and the scheduler not shedding load."""

    def __init__(self, open_room: Callable[[int | str, str], RoomConnection],
                 list_rooms: Callable[[], Any], list_participants: Callable[[int | str], Any],
                 engines_or_scheduler: Engines | Scheduler, config: BotConfig, *,
                 worker_id: str | None = None, rooms: list[int | str] | None = None,
                 recheck_s: float = 3.0, max_rooms: int | None = None,
                 gil_switch_interval_s: float | None = MEDIA_SWITCH_INTERVAL_S) -> None:
        self.open_room = open_room
        self.runtime = Runtime(engines_or_scheduler, gil_switch_interval_s=gil_switch_interval_s)
        self.list_rooms = list_rooms
        self.list_participants = list_participants
        self.scheduler = self.runtime.scheduler
        self.config = config
        self.worker_id = worker_id or secrets.token_hex(6)
        if not self.worker_id.replace("-", "").replace("_", "").isalnum():
            raise BabelcallError(f"worker id '{self.worker_id}': letters, digits, - and _ only")
        self.display = f"{WORKER_PREFIX}{self.worker_id}"
        self.rooms = rooms
        self.recheck_s = recheck_s
        self.max_rooms = max_rooms
        self.claims: dict[int | str, Claim] = {}
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        self.config.check(self.scheduler.engines)
        await self.runtime.start()
        self._task = asyncio.create_task(self._loop(), name=f"worker-{self.worker_id}")

    async def wait(self) -> None:
        assert self._task is not None, "start() first"
        await self._task

    async def stop(self) -> None:
        """Leave every room politely (the claims vanish at once for the other workers)."""
        await self._cancel_loop()
        await asyncio.gather(*(self._release(r) for r in list(self.claims)),
                             return_exceptions=True)
        await self.runtime.close()

    async def _cancel_loop(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task])

    # -- claims -------------------------------------------------------------------------
    def has_capacity(self) -> bool:
        """Room for one more room: admission uses the scheduler's own limits, so a worker
        that is busy (or shedding load) leaves new rooms to the others."""
        s = self.scheduler
        if self.max_rooms is not None and len(self.claims) >= self.max_rooms:
            return False
        if s.max_sessions is not None and len(s.sessions) >= s.max_sessions:
            return False
        return s.level < 3

    def _outranked(self, participants: list[Any]) -> bool:
        """Another claimant with a smaller worker id is in the room."""
        return any(p.display.startswith(WORKER_PREFIX) and p.display != self.display
                   and p.display[len(WORKER_PREFIX):] < self.worker_id for p in participants)

    async def _loop(self) -> None:
        while True:
            try:
                await self.check()
            except ConferenceError as exc:
                log.warning("worker %s: %s", self.worker_id, exc)
            await self.scheduler.clock.sleep(self.recheck_s * random.uniform(0.8, 1.2))

    async def check(self) -> None:
        """One round: drop rooms whose bot ended or that a smaller id claimed, then claim
        free rooms while there is capacity."""
        for room, claim in list(self.claims.items()):
            if claim.task.done():
                await self._release(room)
                continue
            try:
                if self._outranked(await self.list_participants(room)):
                    log.info("worker %s: room %s belongs to a smaller id", self.worker_id, room)
                    await self._release(room)
            except ConferenceError as exc:
                log.warning("worker %s: room %s: %s", self.worker_id, room, exc)
        rooms = self.rooms if self.rooms is not None else await self.list_rooms()
        for room in rooms:
            if room in self.claims:
                continue
            if not self.has_capacity():
                break
            try:
                if self._outranked(await self.list_participants(room)):
                    continue
                await self._claim(room)
            except ConferenceError as exc:
                log.warning("worker %s: cannot claim room %s: %s", self.worker_id, room, exc)

    async def _claim(self, room: int | str) -> None:
        conn = self.open_room(room, self.display)
        await conn.join()
        # Joined first, then looked: two workers claiming at once both see each other here,
        # and the larger id leaves; the smaller stays. No lock, no coordinator.
        if self._outranked(await conn.participants()):
            await conn.leave()
            return
        bot = RoomBot(conn, self.scheduler, self.config)
        self.claims[room] = Claim(conn, bot, asyncio.create_task(bot.run(),
                                                                 name=f"room-{room}"))
        log.info("worker %s: serving room %s", self.worker_id, room)

    async def _release(self, room: int | str) -> None:
        claim = self.claims.pop(room, None)
        if claim is None:
            return
        await cancel_and_wait([claim.task])
        await claim.bot.stop()
        await claim.room.leave()
