"""The interpreting bot of a conference room, and workers that share a server's rooms.

``RoomBot`` serves one joined room: for every human publisher it subscribes to their audio,
runs one ``Interpreter`` per target language (sharing the process' Scheduler, so admission
control sees every session) and publishes each translation as a feed of its own, named
``babelcall: Ana → es``, with JSON captions on that feed's data channel. Feeds whose display
starts with ``babelcall`` (ours, another bot's, a worker's claim) are never subscribed to, and
neither is any feed id this connection published: no translation of a translation.

``JoinBot`` keeps one RoomBot in one room across server restarts (rejoin with backoff).

``Worker`` serves many rooms of one server together with other workers and no coordinator of
our own: the server's participant list is the shared state. A worker claims a room by joining
it as a non-publishing participant named ``babelcall-worker:<id>``; after joining it lists the
participants and, if a claimant with a smaller id is present, leaves (a deterministic tie
break); it re-checks every few seconds, so a room whose worker died (its server session ends
when its socket closes, or after ``session_timeout`` if it hangs) is taken over."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from babelcall.engines.registry import Engines
from babelcall.realtime.errors import BabelcallError
from babelcall.realtime.scheduler import Overloaded, Scheduler
from babelcall.realtime.tasks import cancel_and_wait
from babelcall.transports.conference.base import (
    ConferenceError,
    ConnectionLost,
    Disconnected,
    Feed,
    Publisher,
    PublisherJoined,
    PublisherLeft,
    RoomConnection,
    Subscription,
)
from babelcall.transports.conference.detect import ReplayTrack, probe_language
from babelcall.transports.interpreter import Interpreter
from babelcall.transports.relay import BoundedRelay
from babelcall.transports.runtime import MEDIA_SWITCH_INTERVAL_S, Runtime

log = logging.getLogger(__name__)
OWN_PREFIX = "babelcall"           # every display babelcall uses starts with it
FEED_PREFIX = "babelcall: "        # a translated feed: "babelcall: Ana → es"
WORKER_PREFIX = "babelcall-worker:"
SKIPPED_RECORDS = {"stats"}        # once a second per session: not captions

RoomFactory = Callable[..., RoomConnection]


def is_own(display: str) -> bool:
    return display.startswith(OWN_PREFIX)


def parse_languages(text: str | None) -> dict[str, str]:
    """``ana=en,luis=es`` -> {"ana": "en", "luis": "es"} (names compare case-insensitively)."""
    out: dict[str, str] = {}
    for item in filter(None, (t.strip() for t in (text or "").split(","))):
        name, sep, lang = item.partition("=")
        if not sep or not name.strip() or not lang.strip():
            raise BabelcallError(f"--languages: expected NAME=LANG[,NAME=LANG...], got '{item}'")
        out[name.strip().casefold()] = lang.strip().lower()
    return out


@dataclass
class BotConfig:
    """Who speaks what. A participant's language is ``languages[display]`` or ``source``; each
    is interpreted into every other language of the room (``source``, ``target`` and the
    ``languages`` values), so a two-language room publishes en speakers in es and es speakers
    in en, and the set of sessions does not churn as people come and go."""

    source: str = "en"
    target: str = "es"
    languages: dict[str, str] = field(default_factory=dict)
    voice: str | None = None
    mix: float = 0.0
    # Participants not in ``languages``: detect theirs (Whisper language ID on their first
    # seconds of speech, among the room's languages) instead of assuming ``source``.
    detect: bool = False

    def __post_init__(self) -> None:
        self.languages = {k.casefold(): v for k, v in self.languages.items()}

    def language_of(self, display: str) -> str:
        return self.languages.get(display.strip().casefold(), self.source)

    def detects(self, display: str) -> bool:
        return self.detect and display.strip().casefold() not in self.languages

    def room_languages(self) -> set[str]:
        return {self.source, self.target, *self.languages.values()}

    def targets_for(self, language: str) -> list[str]:
        return sorted(self.room_languages() - {language})

    def pairs(self) -> list[tuple[str, str]]:
        langs = sorted(self.room_languages())
        return [(s, t) for s in langs for t in langs if s != t]

    def check(self, engines: Engines) -> None:
        """Every pair this room may need is supported: fail before joining, not mid-call."""
        for s, t in self.pairs():
            engines.check_pair(s, t)


@dataclass
class Served:
    """One human publisher and what babelcall runs for them."""

    publisher: Publisher
    language: str
    task: asyncio.Task[None] | None = None
    subscription: Subscription | None = None
    interpreters: dict[str, Interpreter] = field(default_factory=dict)
    feeds: dict[str, Feed] = field(default_factory=dict)


class RoomBot:
    """Interpret every human publisher of one joined room until the connection ends."""

    def __init__(self, room: RoomConnection, scheduler: Scheduler, config: BotConfig) -> None:
        self.room = room
        self.scheduler = scheduler
        self.config = config
        self.served: dict[int | str, Served] = {}
        self.refused: list[str] = []  # publishers we could not serve, and why

    async def run(self) -> str:
        """Returns the reason the connection ended; cleans up everything it started."""
        try:
            async for ev in self.room.events():
                if isinstance(ev, PublisherJoined):
                    self._joined(ev.publisher)
                elif isinstance(ev, PublisherLeft):
                    await self._left(ev.feed)
                elif isinstance(ev, Disconnected):
                    return ev.reason
            return "closed"
        finally:
            await self.stop()

    async def stop(self) -> None:
        """Free every session now (the scheduler's slots) and close the media."""
        await asyncio.gather(*(self._left(feed) for feed in list(self.served)),
                             return_exceptions=True)

    def sessions(self) -> int:
        return sum(len(s.interpreters) for s in self.served.values())

    # -- publishers ---------------------------------------------------------------------
    def _joined(self, pub: Publisher) -> None:
        if is_own(pub.display) or pub.feed in self.room.own_feeds or pub.feed in self.served:
            return
        served = Served(pub, self.config.language_of(pub.display))
        served.task = asyncio.create_task(self._serve(served), name=f"serve-{pub.feed}")
        self.served[pub.feed] = served

    async def _left(self, feed: int | str) -> None:
        served = self.served.pop(feed, None)
        if served is None:
            return
        if served.task is not None:
            await cancel_and_wait([served.task])
        freed = len(served.interpreters)
        await self._release(served)
        log.info("room %s: %r left; %d session(s) freed", self.room.room,
                 served.publisher.display, freed)

    async def _serve(self, s: Served) -> None:
        pub = s.publisher
        try:
            s.subscription = await self.room.subscribe(pub)
            track, ahead = s.subscription.track, 3.0
            if self.config.detects(pub.display):
                language, frames = await probe_language(
                    track, self.scheduler, self.config.room_languages())
                s.language = language or s.language
                track = ReplayTrack(frames, track)
                ahead += track.buffered_s
                log.info("room %s: %r speaks %s (%s)", self.room.room, pub.display, s.language,
                         "detected" if language else "nobody spoke: --source assumed")
            targets = self.config.targets_for(s.language)
            relay = BoundedRelay() if len(targets) > 1 else None
            for target in targets:
                interp = Interpreter(self.scheduler, s.language, target,
                                     voice=self.config.voice, mix=self.config.mix,
                                     max_ahead_s=ahead)
                await interp.start()  # Overloaded when the scheduler is full
                s.interpreters[target] = interp
                source = relay.subscribe(track) if relay else track
                out = interp.attach(source)
                feed = await self.room.publish(out, f"{FEED_PREFIX}{pub.display} → {target}")
                s.feeds[target] = feed
                interp.add_caption_sink(self._caption_sink(feed, pub, s.language, target))
            log.info("room %s: interpreting %r (%s -> %s)", self.room.room, pub.display,
                     s.language, ", ".join(targets))
        except Overloaded as exc:
            self.refused.append(f"{pub.display}: {exc}")
            log.warning("room %s: cannot interpret %r: %s", self.room.room, pub.display, exc)
            await self._release(s)
        except ConnectionLost:
            await self._release(s)  # the run loop hears Disconnected and cleans up
        except (ConferenceError, BabelcallError) as exc:
            self.refused.append(f"{pub.display}: {exc}")
            log.warning("room %s: cannot serve %r: %s", self.room.room, pub.display, exc)
            await self._release(s)
        except Exception as exc:  # aiortc refusing an SDP...: this publisher only
            self.refused.append(f"{pub.display}: {exc}")
            log.exception("room %s: cannot serve %r", self.room.room, pub.display)
            await self._release(s)

    @staticmethod
    def _caption_sink(feed: Feed, pub: Publisher, source: str, target: str
                      ) -> Callable[[dict[str, Any]], None]:
        def sink(rec: dict[str, Any]) -> None:
            if rec.get("type") in SKIPPED_RECORDS:
                return
            language = source if rec.get("type") == "transcript" else target
            feed.send_caption({**rec, "speaker": pub.display, "language": language,
                               "source_language": source, "target_language": target})
        return sink

    @staticmethod
    async def _release(s: Served) -> None:
        """Interpreters first (their sessions leave the scheduler at once), then media."""
        interps, feeds, sub = list(s.interpreters.values()), list(s.feeds.values()), \
            s.subscription
        s.interpreters.clear()
        s.feeds.clear()
        s.subscription = None
        await asyncio.gather(*(i.stop() for i in interps), return_exceptions=True)
        await asyncio.gather(*(f.close() for f in feeds), return_exceptions=True)
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.close()


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
        self.abandoned: list[RoomConnection] = []  # left behind by kill()
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

    async def kill(self, hang: bool = False) -> None:
        """Vanish as a crashed process would: drop every connection without leaving, so the
        other workers must notice through the server alone (``hang``: freeze instead, so
        only the server's session timeout frees the rooms). For tests and drills."""
        await self._cancel_loop()
        claims, self.claims = list(self.claims.values()), {}
        self.abandoned = [c.room for c in claims]
        for c in claims:
            c.task.cancel()
            await c.room.abort(hang)
        await cancel_and_wait(c.task for c in claims)
        await asyncio.gather(*(c.bot.stop() for c in claims), return_exceptions=True)
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
