"""The one interface the conference bot needs from a room server (Janus today, LiveKit or a
mediasoup room tomorrow): join a room, learn who publishes audio, subscribe to a publisher's
audio as an aiortc track, publish a track (with a caption channel) as a feed of our own, and
leave. Everything server specific (sessions, handles, SDP quirks) stays behind it, so the bot
in ``bot.py`` is written once."""

from __future__ import annotations

import abc
import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from aiortc.mediastreams import MediaStreamTrack

from babelcall.realtime.errors import BabelcallError

__all__ = ["Attendee", "ConferenceError", "ConnectionLost", "Disconnected", "Feed",
           "NotAuthorized", "Publisher", "PublisherJoined", "PublisherLeft", "RoomConnection",
           "RoomEvent", "RoomNotFound", "ServerUnreachable", "Subscription"]


class ConferenceError(BabelcallError):
    """The room server refused or failed a request; the text says what to fix."""


class ServerUnreachable(ConferenceError):
    """No room server answers at the address (wrong host/port, not running, firewall)."""


class RoomNotFound(ConferenceError):
    """The server has no such room."""


class NotAuthorized(ConferenceError):
    """Wrong or missing room pin, API secret or token."""


class ConnectionLost(ConferenceError):
    """The server went away during the call (restarted, network cut, session timed out)."""


@dataclass(frozen=True)
class Publisher:
    """Someone sending audio into the room. ``feed`` is the server's id for their stream."""

    feed: int | str
    display: str
    audio_mid: str | None = None


@dataclass(frozen=True)
class PublisherJoined:
    publisher: Publisher


@dataclass(frozen=True)
class PublisherLeft:
    feed: int | str


@dataclass(frozen=True)
class Disconnected:
    """The connection to the server is gone; no more events follow."""

    reason: str


RoomEvent = PublisherJoined | PublisherLeft | Disconnected


@dataclass
class Attendee:
    """Anyone in a conference room, publishing or not (the worker claims read these). Not a
    ``rooms.Participant``, who is a person in one of babelcall's own rooms."""

    id: int | str
    display: str
    publisher: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class Subscription(abc.ABC):
    """A publisher's audio, received."""

    track: MediaStreamTrack

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop receiving; idempotent."""


class Feed(abc.ABC):
    """A stream we publish into the room, with a caption channel next to the audio."""

    id: int | str
    display: str

    @abc.abstractmethod
    def send_caption(self, record: dict[str, Any]) -> None:
        """Send one JSON caption record to everyone subscribed to this feed; never blocks
        and never raises (a caption that cannot go out is dropped, the audio goes on)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Unpublish; idempotent."""


class RoomConnection(abc.ABC):
    """One presence in one room. ``join`` raises a ConferenceError subclass with a clear text
    (unreachable, no such room, wrong pin); afterwards ``events()`` yields the publishers
    present at join time, then every arrival and departure, and ends with Disconnected."""

    room: int | str
    own_feeds: set[int | str]

    def __init__(self) -> None:
        self.own_feeds = set()
        self._events: asyncio.Queue[RoomEvent] = asyncio.Queue()

    @abc.abstractmethod
    async def join(self) -> None: ...

    async def events(self) -> AsyncIterator[RoomEvent]:
        while True:
            ev = await self._events.get()
            yield ev
            if isinstance(ev, Disconnected):
                return

    @abc.abstractmethod
    async def subscribe(self, publisher: Publisher, *,
                        on_caption: Callable[[dict[str, Any]], None] | None = None
                        ) -> Subscription:
        """Receive ``publisher``'s audio; ``on_caption`` also gets the JSON records of its
        caption channel (a client reading babelcall's captions)."""

    @abc.abstractmethod
    async def publish(self, track: MediaStreamTrack, display: str) -> Feed:
        """Publish ``track`` as a new feed named ``display``; its id goes into ``own_feeds``
        before any other participant can hear of it, so we never subscribe to ourselves."""

    @abc.abstractmethod
    async def participants(self) -> list[Attendee]: ...

    @abc.abstractmethod
    async def leave(self) -> None:
        """Leave politely (unpublish, hang up, end the server session); idempotent."""

