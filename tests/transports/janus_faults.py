"""Faults for the conference tests, kept out of the product: a speaker's connection dropped
without a goodbye (a crashed client), or a worker that crashes or freezes. They reach into
the connection's internals on purpose, as a crash would; production interfaces have no hooks
for them."""

from __future__ import annotations

import asyncio

from babelcall.realtime.tasks import cancel_and_wait
from babelcall.transports.conference.base import RoomConnection
from babelcall.transports.conference.janus import JanusRoom
from babelcall.transports.conference.janus_api import JanusSession
from babelcall.transports.conference.worker import Worker


async def abort_session(session: JanusSession, hang: bool = False) -> None:
    """Drop the TCP connection without a word (Janus ends the session at once); ``hang``:
    go silent but leave the socket open, as a frozen process or a cut network would (Janus
    ends the session after its ``session_timeout``; ``close()`` closes the socket later)."""
    if hang:
        session._lost("hung on purpose", notify=False)
        await cancel_and_wait(session._tasks)
        return
    ws = session._ws
    if ws is not None:
        conn = getattr(ws, "_conn", None) or getattr(ws, "_response", None)
        transport = getattr(getattr(conn, "connection", conn), "transport", None)
        if transport is not None:
            transport.abort()
    await session._shutdown("aborted")


async def abort(room: RoomConnection, hang: bool = False) -> None:
    """A participant gone as a crash would: no leave, no unpublish."""
    assert isinstance(room, JanusRoom)
    room._left = True  # a later leave() only closes the socket
    await abort_session(room.session, hang)
    await asyncio.gather(*(s.pc.close() for s in room._subs),
                         *(f.pc.close() for f in room._feeds), return_exceptions=True)


async def kill(worker: Worker, hang: bool = False) -> list[RoomConnection]:
    """The worker vanishes as a crashed process would (``hang``: freezes), so the other
    workers must notice through the server alone. Returns the rooms it left behind (their
    sockets, frozen open with ``hang``, for the test to close)."""
    await worker._cancel_loop()
    claims, worker.claims = list(worker.claims.values()), {}
    for c in claims:
        c.task.cancel()
        await abort(c.room, hang)
    await cancel_and_wait(c.task for c in claims)
    await asyncio.gather(*(c.bot.stop() for c in claims), return_exceptions=True)
    await worker.runtime.close()
    return [c.room for c in claims]
