"""``JoinBot``: ``babelcall join`` — one RoomBot in one room, kept across server restarts
(rejoin with backoff)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

from babelcall.engines.registry import Engines
from babelcall.realtime.scheduler import Scheduler
from babelcall.realtime.tasks import cancel_and_wait
from babelcall.transports.conference.base import (
    ConferenceError,
    ConnectionLost,
    RoomConnection,
)
from babelcall.transports.conference.bot import BotConfig, RoomBot
from babelcall.transports.runtime import MEDIA_SWITCH_INTERVAL_S, Runtime

log = logging.getLogger(__name__)


class JoinBot:
    """``babelcall join``: one room, kept across server restarts.

    ``start()`` joins once and raises the server's refusal (unreachable, no such room, wrong
    pin) as a ConferenceError. If the connection is lost later, the bot frees every session
    and rejoins with exponential backoff (0.5 s doubling to ``max_backoff_s``) for up to
    ``rejoin_timeout_s``; with ``rejoin=False`` it ends with ConnectionLost instead."""

    def __init__(self, open_room: Callable[[], RoomConnection],
                 engines_or_scheduler: Engines | Scheduler, config: BotConfig, *,
                 rejoin: bool = True, rejoin_timeout_s: float = 60.0,
                 max_backoff_s: float = 4.0,
                 gil_switch_interval_s: float | None = MEDIA_SWITCH_INTERVAL_S) -> None:
        self.open_room = open_room
        self.runtime = Runtime(engines_or_scheduler, gil_switch_interval_s=gil_switch_interval_s)
        self.scheduler = self.runtime.scheduler
        self.config = config
        self.rejoin = rejoin
        self.rejoin_timeout_s = rejoin_timeout_s
        self.max_backoff_s = max_backoff_s
        self.room: RoomConnection | None = None
        self.bot: RoomBot | None = None
        self.joins = 0
        self.joined = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.config.check(self.scheduler.engines)
        await self.runtime.start()
        try:
            await self._join()
        except BaseException:
            await self.runtime.close()
            raise
        self._task = asyncio.create_task(self._run(), name="join-bot")

    async def wait(self) -> None:
        """Until stopped; raises ConnectionLost when the room is lost for good."""
        assert self._task is not None, "start() first"
        await self._task

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task])
        await self._teardown()
        await self.runtime.close()

    async def __aenter__(self) -> JoinBot:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _join(self) -> None:
        room = self.open_room()
        await room.join()
        self.room, self.bot = room, RoomBot(room, self.scheduler, self.config)
        self.joins += 1
        self.joined.set()

    async def _teardown(self) -> None:
        bot, room = self.bot, self.room
        self.bot = self.room = None
        self.joined.clear()
        if bot is not None:
            await bot.stop()
        if room is not None:
            await room.leave()

    async def _run(self) -> None:
        while True:
            assert self.bot is not None
            reason = await self.bot.run()
            await self._teardown()
            if not self.rejoin:
                raise ConnectionLost(f"lost the room: {reason} (not rejoining: --no-rejoin)")
            log.warning("lost the room (%s); rejoining", reason)
            await self._rejoin(reason)

    async def _rejoin(self, reason: str) -> None:
        clock = self.scheduler.clock
        deadline = clock.now_ns() / 1e9 + self.rejoin_timeout_s
        delay = 0.5
        while True:
            try:
                await self._join()
                log.warning("rejoined after %s", reason)
                return
            except ConferenceError as exc:
                if clock.now_ns() / 1e9 + delay > deadline:
                    raise ConnectionLost(f"lost the room ({reason}) and could not rejoin "
                                         f"within {self.rejoin_timeout_s:.0f} s: {exc}") from exc
                log.info("rejoin failed (%s); next try in %.1f s", exc, delay)
            await clock.sleep(delay * random.uniform(0.8, 1.2))  # jitter: bots of one
            delay = min(delay * 2, self.max_backoff_s)          # server do not stampede
