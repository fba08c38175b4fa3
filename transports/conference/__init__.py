"""babelcall in other people's conference rooms: a bot joins a room on a conferencing server
(Janus VideoRoom today), interprets every human publisher and publishes each translation as a
feed of its own. ``base`` is the server-neutral interface, ``janus`` its Janus implementation,
``bot`` the interpreting logic and the multi-worker room claims."""

from __future__ import annotations

from babelcall.transports.conference.base import (
    ConferenceError,
    ConnectionLost,
    NotAuthorized,
    RoomConnection,
    RoomNotFound,
    ServerUnreachable,
)

__all__ = ["ConferenceError", "ConnectionLost", "NotAuthorized", "RoomConnection",
           "RoomNotFound", "ServerUnreachable", "open_room"]


def open_room(url: str, room: int | str | None = None, **options: object) -> RoomConnection:
    """A (not yet joined) connection for ``url``: ``janus+ws://HOST:PORT/ROOM``. ``room``
    overrides the URL's room. The one place that maps URL schemes to servers."""
    if url.startswith(("janus+ws://", "janus+wss://")):
        from babelcall.transports.conference.janus import JanusRoom, parse_url

        base, url_room = parse_url(url)
        name = room if room is not None else url_room
        if name is None:
            raise ConferenceError(f"{url}: no room; use janus+ws://HOST:PORT/ROOM")
        return JanusRoom(base, name, **options)  # type: ignore[arg-type]
    raise ConferenceError(f"{url}: unsupported conference URL (expected janus+ws://HOST:PORT/ROOM)")
