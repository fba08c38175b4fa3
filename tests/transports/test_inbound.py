"""The one inbound path (transports/inbound.py): the echo gate, pts gaps as silence, and the
flood guard — backpressure first, then a hard cap that drops and counts — for WebRTC frames,
for PCM, and through a real WebSocket sending ten times faster than real time."""

import asyncio
import fractions
import json
import resource

import aiohttp
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from fakes import RATE, fake_engines, tone_phrases
from transport_utils import running_server

from babelcall.realtime.audio import frame_from_array
from babelcall.realtime.clock import SystemClock
from babelcall.realtime.scheduler import Scheduler
from babelcall.realtime.session import Session, SessionConfig
from babelcall.realtime.types import SpeechStarted
from babelcall.transports.inbound import Inbound, RateGuard
from babelcall.transports.link import Link
from babelcall.transports.tracks import PcmTrack

pytestmark = pytest.mark.timeout(60)


def session() -> Session:
    """A session on stand-in engines and a scheduler of its own (real time)."""
    return Session(Scheduler(fake_engines()), SessionConfig("en", "es"))


def test_rate_guard_waits_then_drops():
    guard = RateGuard(max_ahead_s=1.0, hard_cap_s=2.0)
    assert guard.wait_s(0.0) == 0.0
    assert all(guard.admit(0.5, 0.0) for _ in range(4))  # 2 s at once: within the cap
    assert guard.wait_s(0.0) == pytest.approx(1.0)       # ...but stop reading for 1 s
    assert not guard.admit(0.5, 0.0)                      # beyond the cap: dropped
    assert guard.dropped_s == 0.5 and guard.accepted_s == 2.0
    assert guard.wait_s(1.5) == 0.0 and guard.admit(0.5, 1.5)  # real time moved on
    with pytest.raises(ValueError):
        RateGuard(2.0, 1.0)


def test_a_backlog_queued_before_the_first_read_is_on_time_not_a_flood():
    # a room's subscription read only after a 6 s language probe and the publishes: 6 s of
    # frames are taken in at once; counted from the first read they were a flood (3 s
    # dropped with a 3 s guard), counted from when the track began to play they are on time
    late = RateGuard(max_ahead_s=3.0)
    assert sum(late.admit(0.02, 10.0) for _ in range(300)) == 150 and late.dropped_s > 2.9
    begun = RateGuard(max_ahead_s=3.0)
    begun.begin(4.0)
    assert all(begun.admit(0.02, 10.0) for _ in range(300)) and begun.dropped_s == 0.0
    assert not begun.admit(3.1, 10.0)  # a real flood beyond that is still dropped


def test_backpressure_keeps_a_fast_sender_near_real_time():
    """A sender that waits when asked gets at most max_ahead_s ahead, however fast it is."""
    async def main():
        s = session()
        inbound = Inbound(s, max_ahead_s=0.3, hard_cap_s=0.5)
        clock = SystemClock()
        t0 = clock.now_ns()
        block = np.zeros(320, np.float32)
        sent = 0
        while clock.now_ns() - t0 < 1.0e9:
            await inbound.wait()
            inbound.pcm(block, RATE)
            sent += 1
        elapsed = (clock.now_ns() - t0) / 1e9
        heard = s.metrics()["heard_s"]
        await s.close()
        return elapsed, heard, inbound.dropped_s

    elapsed, heard, dropped = asyncio.run(main())
    assert dropped == 0.0  # it waited, so nothing had to be dropped
    assert elapsed + 0.3 - 0.05 <= heard <= elapsed + 0.3 + 0.05


def test_pcm_at_another_rate_is_resampled_once_and_a_bad_rate_refused():
    from babelcall.realtime.errors import BadAudio

    async def main():
        s = session()
        inbound = Inbound(s, max_ahead_s=10)
        assert inbound.pcm(np.zeros(8000, np.int16), 8000)
        with pytest.raises(BadAudio):
            inbound.pcm(np.zeros(10, np.int16), -5)
        heard = s.metrics()["heard_s"]
        await s.close()
        return heard

    assert asyncio.run(main()) == pytest.approx(1.0, abs=0.01)


def test_echo_guard_mutes_the_input_while_the_gate_is_closed():
    async def heard(gate):
        link = Link(session())
        events = link.subscribe()
        link.start()
        track = PcmTrack(tone_phrases(0.8, gap=0.5), RATE)
        link.feed(track, gate=gate)
        await asyncio.wait_for(track.finished.wait(), 10)
        await link.end(timeout=20)
        got = []
        while (ev := events.get_nowait()) is not None:
            got.append(ev)
        await link.close()
        return any(isinstance(e, SpeechStarted) for e in got)

    assert asyncio.run(heard(None))
    assert not asyncio.run(heard(lambda: True))


class _GappyTrack(MediaStreamTrack):
    """Two 20 ms frames, then a frame 1 s later by pts (lost packets), then the end."""

    kind = "audio"

    def __init__(self):
        super().__init__()
        self.pts = [0, 960, 960 * 52]

    async def recv(self):
        if not self.pts:
            raise MediaStreamError
        frame = frame_from_array(np.zeros(960, np.int16), 48000)
        frame.pts = self.pts.pop(0)
        frame.time_base = fractions.Fraction(1, 48000)
        return frame


def test_pts_gaps_become_silence_so_the_session_stays_on_the_wall_clock():
    async def main():
        link = Link(session())
        link.start()
        ended = asyncio.Event()
        await asyncio.wait_for(link.feed(_GappyTrack(), on_end=ended.set), 5)
        await link.session.end()
        await link.session.idle()
        heard = link.session.metrics()["heard_s"]
        await link.close()
        return heard, ended.is_set()

    heard, ended = asyncio.run(main())
    assert ended  # the track's end is reported (the server frees the call)
    assert heard == pytest.approx(0.06 + 1.0, abs=0.03)


def test_input_beyond_real_time_is_dropped():
    async def main():
        link = Link(session(), max_ahead_s=0.5)
        link.start()

        class Flood(MediaStreamTrack):
            kind = "audio"
            n = 0

            async def recv(self):
                self.n += 1
                if self.n > 100:  # 2 s of audio at once
                    raise MediaStreamError
                frame = frame_from_array(np.zeros(960, np.int16), 48000)
                frame.pts, frame.time_base = (self.n - 1) * 960, fractions.Fraction(1, 48000)
                return frame

        await link.feed(Flood())
        dropped = link.inbound.dropped_s
        await link.close()
        return dropped

    assert asyncio.run(main()) == pytest.approx(1.5, abs=0.1)


def test_a_websocket_sending_ten_times_real_time_stays_within_the_cap():
    """A client that uploads 10x faster than real time: the server stops reading (TCP
    backpressure), so the session never hears more than the cap ahead of the wall clock,
    and memory stays flat."""
    async def main():
        async with running_server(fake_engines(), ws_max_ahead_s=1.0, ws_hard_cap_s=2.0) \
                as srv, aiohttp.ClientSession() as http, \
                http.ws_connect(srv.url + "/ws?source=en&target=es&rate=16000") as ws:
            assert (await ws.receive_json(timeout=10))["type"] == "ready"
            clock = SystemClock()
            block = (tone_phrases(0.5, gap=0.5)[:320] * 32767).astype("<i2").tobytes()
            rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            t0, sent, stats = clock.now_ns(), 0, []

            async def read():
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        rec = json.loads(msg.data)
                        if rec["type"] == "stats":
                            stats.append(((clock.now_ns() - t0) / 1e9, rec))

            reader = asyncio.create_task(read())
            while sent < 400:  # 8 s of audio, 10x real time: 20 ms every 2 ms
                await ws.send_bytes(block)
                sent += 1
                await asyncio.sleep(0.002)
            elapsed = (clock.now_ns() - t0) / 1e9
            await ws.send_json({"type": "end"})  # read after the audio, at real time
            await asyncio.wait_for(reader, 30)
            rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            return sent * 0.02, elapsed, stats, (rss1 - rss0) / 1024

    sent_s, elapsed, stats, rss_mib = asyncio.run(main())
    assert stats, "no stats records"
    assert sent_s > 3 * elapsed  # the client really ran ahead of real time
    for at, rec in stats:  # what the session heard never ran more than the cap ahead
        assert rec["heard_s"] <= at + 2.0 + 0.1, (at, rec["heard_s"])
    assert stats[-1][1]["heard_s"] >= sent_s - 1.0  # ...and all of it was read, in time
    assert rss_mib < 50
