"""Every transport queue is bounded with its stated policy (``realtime/bounded.py``): a
consumer that never reads cannot grow memory — a relay reader, a Link subscriber, an
``Interpreter.events()`` loop left early, a WebSocket client that stops reading. Counts and
queue sizes are asserted, never wall-clock. Stand-in engines: this is queue logic."""

import asyncio
import fractions

import av
import numpy as np
import pytest
from fakes import fake_engines

from babelcall.realtime.bounded import DROPS, DropQueue
from babelcall.realtime.scheduler import Scheduler
from babelcall.realtime.session import Session, SessionConfig
from babelcall.realtime.types import PhraseTiming, Span, StageError
from babelcall.transports import websocket
from babelcall.transports.interpreter import Interpreter
from babelcall.transports.link import KEPT_CLAUSES, MAX_SUBSCRIBER_EVENTS, Link
from babelcall.transports.relay import BoundedRelay

pytestmark = pytest.mark.timeout(60)




class FastSource:
    """An audio track that gives ``n`` frames as fast as they are asked for, then ends."""

    kind = "audio"

    def __init__(self, n: int) -> None:
        self.n, self.sent = n, 0
        self.id = "fast"
        self.readyState = "live"

    async def recv(self) -> av.AudioFrame:
        from aiortc.mediastreams import MediaStreamError

        if self.sent >= self.n:
            raise MediaStreamError
        self.sent += 1
        await asyncio.sleep(0)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 960), np.int16), format="s16",
                                           layout="mono")
        frame.sample_rate, frame.pts = 48000, self.sent * 960
        frame.time_base = fractions.Fraction(1, 48000)
        return frame

    def stop(self) -> None:
        self.readyState = "ended"


def test_a_relay_reader_that_never_reads_stays_bounded():
    async def main():
        relay = BoundedRelay()
        source = FastSource(2000)
        reader, stuck = relay.subscribe(source, limit=50), relay.subscribe(source, limit=50)
        before = DROPS["relay"]
        got = 0
        from aiortc.mediastreams import MediaStreamError
        try:
            while True:
                await reader.recv()
                got += 1
                assert stuck.queue.qsize() <= 50
        except MediaStreamError:
            pass
        return got, stuck.queue.qsize(), DROPS["relay"] - before

    got, waiting, dropped = asyncio.run(main())
    assert got == 2000  # the reader that reads loses nothing
    assert waiting == 50  # the one that never read: its last 49 frames and the end
    assert dropped == 2000 + 1 - 50


def test_a_link_subscriber_that_never_reads_is_bounded_and_events_unsubscribes():
    async def main():
        session = Session(Scheduler(fake_engines()), SessionConfig("en", "es"))
        interp = Interpreter.for_session(session)
        await interp.start()
        link = interp.link
        stuck = link.subscribe()
        before = DROPS["link_events"]
        n = 3 * MAX_SUBSCRIBER_EVENTS
        for i in range(n):
            session._ctx.emit(StageError(i, Span(0, 0), 0, "test", "x"))
        await session.idle()
        seen = []

        async def loop_left_early():
            async for ev in interp.events():
                seen.append(ev)
                if len(seen) == 3:
                    break

        task = asyncio.create_task(loop_left_early())
        while len(link._queues) < 2:  # the loop has subscribed
            await asyncio.sleep(0)
        for i in range(3):
            session._ctx.emit(StageError(i, Span(0, 0), 0, "test", "y"))
        await asyncio.wait_for(task, 10)
        subscribers = len(link._queues)
        size = stuck.qsize()
        await interp.stop()
        return size, DROPS["link_events"] - before, subscribers, n

    size, dropped, subscribers, n = asyncio.run(main())
    assert size == MAX_SUBSCRIBER_EVENTS
    assert dropped >= n - MAX_SUBSCRIBER_EVENTS
    assert subscribers == 1  # only the stuck one: the loop left early unsubscribed


def test_a_link_without_outputs_keeps_no_phrase_timings_without_bound():
    """A WebSocket's link has no mixer output, so no clause ever plays there and no phrase
    timing is ever told: one per phrase was kept for the rest of the call (found by the
    two-minute slow-reader test, test_slow_reader.py). Only the latest are kept."""
    async def main():
        session = Session(Scheduler(fake_engines()), SessionConfig("en", "es"))
        link = Link(session)
        link.start()
        seen = link.subscribe()
        n = 5 * KEPT_CLAUSES
        for i in range(n):
            session._ctx.emit(PhraseTiming(i, Span(i, i + 1), 0, i, {"end": 0}))
        session._ctx.emit(StageError(0, Span(0, 0), 0, "test", "after the timings"))
        assert isinstance(await asyncio.wait_for(seen.get(), 10), StageError)
        kept = sorted(link._timings)
        await link.close()
        return kept, n

    kept, n = asyncio.run(main())
    assert kept == list(range(n - KEPT_CLAUSES, n))


def test_websocket_out_queue_of_a_client_that_stops_reading_is_bounded():
    """The writer is stuck on a client that reads nothing (its send never returns): what the
    session goes on producing is dropped oldest-first and counted; the end still gets in."""
    class StuckSocket:
        closed = False

        async def send_bytes(self, data):
            await asyncio.Event().wait()

        send_str = send_bytes

    async def main():
        out: DropQueue = DropQueue(websocket.MAX_OUT_ITEMS, "ws_out")
        writer = asyncio.create_task(websocket._write(StuckSocket(), out))
        before = DROPS["ws_out"]
        for i in range(5000):
            out.put_nowait(bytes(960))
            if i % 100 == 0:
                await asyncio.sleep(0)
        out.put_nowait(None)
        size, last = out.qsize(), out._queue[-1]  # type: ignore[attr-defined]
        writer.cancel()
        return size, last, DROPS["ws_out"] - before

    size, last, dropped = asyncio.run(main())
    assert size == websocket.MAX_OUT_ITEMS and last is None
    assert dropped >= 5000 - websocket.MAX_OUT_ITEMS


def test_stats_show_what_bounded_queues_dropped(engines):
    import aiohttp
    from transport_utils import running_server

    async def main():
        DROPS["ws_out"] += 0
        async with running_server(engines) as srv, aiohttp.ClientSession() as http:
            async with http.get(srv.url + "/stats") as r:
                return await r.json()

    stats = asyncio.run(main())
    assert isinstance(stats["dropped"], dict)


def test_a_data_channel_that_stops_draining_gets_no_more_captions_and_they_are_counted():
    # aiortc queues every message a channel is given, unbounded, while SCTP's window is full
    # (a frozen tab, a stalled network): past MAX_CHANNEL_BUFFER captions are dropped and
    # counted, and a channel that drains gets them again; other channels are unaffected
    from types import SimpleNamespace

    from babelcall.transports.peer import MAX_CHANNEL_BUFFER, Peer

    class Channel:
        readyState = "open"

        def __init__(self) -> None:
            self.bufferedAmount, self.sent = 0, []

        def send(self, text: str) -> None:
            self.sent.append(text)
            self.bufferedAmount += len(text)

    stuck, fine = Channel(), Channel()
    peer = SimpleNamespace(channels=[stuck, fine])
    before = DROPS["datachannel"]
    caption = {"type": "translation", "text": "x" * 1000}
    n = 2 * MAX_CHANNEL_BUFFER // 1000
    for _ in range(n):
        Peer.send(peer, caption)  # type: ignore[arg-type]
        fine.bufferedAmount = 0  # this one's reader keeps up
    assert len(fine.sent) == n
    assert stuck.bufferedAmount <= MAX_CHANNEL_BUFFER + 1100
    assert DROPS["datachannel"] - before == n - len(stuck.sent) > 0
    stuck.bufferedAmount = 0  # it drained
    Peer.send(peer, caption)  # type: ignore[arg-type]
    assert len(stuck.sent) == n - (DROPS["datachannel"] - before) + 1
