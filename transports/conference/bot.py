"""The interpreting bot of a conference room (``joinbot.py`` keeps one in a room across
restarts; ``worker.py`` shares a server's rooms between workers).

``RoomBot`` serves one joined room: for every human publisher it subscribes to their audio,
runs one ``Interpreter`` per target language (sharing the process' Scheduler, so admission
control sees every session) and publishes each translation as a feed of its own, named
``babelcall: Ana → es``, with JSON captions on that feed's data channel. Feeds whose display
starts with ``babelcall`` (ours, another bot's, a worker's claim) are never subscribed to, and
neither is any feed id this connection published: no translation of a translation."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from babelcall.engines.registry import Engines
from babelcall.realtime.errors import BabelcallError
from babelcall.realtime.scheduler import Overloaded, Scheduler
from babelcall.realtime.session import SessionConfig, SpeakerFront
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
    front: SpeakerFront | None = None  # hears and recognises them once, for every target


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
            # the feed plays from here; it is read only after a probe and the publishes
            playing_since = self.scheduler.clock.now_ns()
            track = s.subscription.track
            if self.config.detects(pub.display):
                language, frames = await probe_language(
                    track, self.scheduler, self.config.room_languages())
                s.language = language or s.language
                track = ReplayTrack(frames, track)
                log.info("room %s: %r speaks %s (%s)", self.room.room, pub.display, s.language,
                         "detected" if language else "nobody spoke: --source assumed")
            targets = self.config.targets_for(s.language)
            relay = BoundedRelay() if len(targets) > 1 else None
            # one front per publisher: heard in several languages, recognised once
            s.front = SpeakerFront(self.scheduler, SessionConfig(s.language, s.language,
                                                                 voice=self.config.voice))
            for target in targets:
                interp = Interpreter(self.scheduler, s.language, target,
                                     voice=self.config.voice, mix=self.config.mix,
                                     front=s.front)
                await interp.start()  # Overloaded when the scheduler is full
                s.interpreters[target] = interp
                feed = await self.room.publish(interp.output_track(),
                                               f"{FEED_PREFIX}{pub.display} → {target}")
                s.feeds[target] = feed
                interp.add_caption_sink(self._caption_sink(feed, pub, s.language, target))
            # Ears last: every interpreter has its feed and caption sink before it hears a
            # word. Listening before publishing lost the records made during the publish
            # round trip (a detected speaker's replayed first words are recognised then); the
            # frames that arrive meanwhile wait in the subscription's queue and are taken in
            # at once — on time since ``playing_since``, not a flood to drop.
            for interp in s.interpreters.values():
                interp.listen(relay.subscribe(track) if relay else track,
                              since_ns=playing_since)
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
        front, s.front = s.front, None
        s.interpreters.clear()
        s.feeds.clear()
        s.subscription = None
        await asyncio.gather(*(i.stop() for i in interps), return_exceptions=True)
        if front is not None:
            await front.close()
        await asyncio.gather(*(f.close() for f in feeds), return_exceptions=True)
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.close()
