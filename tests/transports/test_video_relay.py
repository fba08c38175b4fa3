"""Video through rooms without the browser: the adaptive delay's schedule (pure), the delayed
track, the lag read from a link's records, the renegotiated offer kept in step with the page's
numbering, and a room of aiortc peers on stand-in engines (no model time): everyone's camera
reaches everyone, relayed as encoded, a late joiner is added by renegotiation, and a line freed
by someone leaving is reused for the next newcomer without one."""

from __future__ import annotations

import asyncio
import fractions
import json
import re

import av
import numpy as np
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from fakes import UpperMt, fake_engines, tone_phrases
from transport_utils import SmallCamera, make_offer, running_server, until

from babelcall.realtime.clock import FakeClock
from babelcall.transports.lag import PAUSE_SLEW, TALKING_SLEW, LagTracker, Playout, ViewerDelay
from babelcall.transports.negotiation import align_offer
from babelcall.transports.tracks import DelayedTrack, PcmTrack, Slew
from babelcall.transports.video import is_keyframe

pytestmark = pytest.mark.timeout(120)
MS = 1_000_000


# -- the schedule -----------------------------------------------------------------------------
def _run(slew: Slew, target_s: float, rate: float, frames: int, start: int = 0,
         step_ms: int = 40) -> list[int]:
    return [slew.release_ns(start + i * step_ms * MS, target_s, rate) for i in range(frames)]


def test_slew_reaches_the_target_without_freezing_or_jumping():
    slew = Slew(max_delay_s=3.0)
    out = _run(slew, 2.0, 0.5, 200)  # 8 s of video at 25 fps
    gaps = np.diff(out) / MS
    assert out[0] == 0  # the first frame goes at once: no frozen start
    assert gaps.max() <= 40 / (1 - 0.5) * 1.0 + 1 and gaps.min() >= 40  # slower, never held
    assert slew.delay_ns == 2000 * MS  # 2 s of delay reached after 4 s of video
    assert np.all(np.diff(out) > 0)
    # a lower target: faster, never backwards, never skipping a frame
    later = _run(slew, 0.5, 0.5, 100, start=8000 * MS)
    gaps = np.diff([out[-1], *later]) / MS
    assert gaps.min() >= 20 - 1 and gaps.max() <= 40
    assert slew.delay_ns == 500 * MS


def test_slew_is_bounded_and_slow_while_the_speaker_talks():
    slew = Slew(max_delay_s=3.0)
    _run(slew, 10.0, 0.5, 500)
    assert slew.delay_ns == 3000 * MS  # never beyond the bound, whatever the lag
    slew = Slew()
    _run(slew, 2.0, TALKING_SLEW, 26)  # 1 s of talking
    assert slew.delay_ns == pytest.approx(TALKING_SLEW * 1000 * MS, rel=0.01)


class Frames(MediaStreamTrack):
    kind = "video"

    def __init__(self, n: int, interval: float) -> None:
        super().__init__()
        self.n, self.interval, self.i = n, interval, 0

    async def recv(self):
        if self.i >= self.n:
            raise MediaStreamError
        await asyncio.sleep(self.interval)
        self.i += 1
        frame = av.VideoFrame(16, 16, "yuv420p")
        frame.pts, frame.time_base = self.i, fractions.Fraction(1, 25)
        return frame


def test_delayed_track_eases_into_its_delay_and_plays_out_what_it_holds():
    async def main():
        source = Frames(40, 0.01)
        track = DelayedTrack(source, 0.15)  # a fixed target: reached at 0.5 s per second
        out, times = [], []
        loop = asyncio.get_running_loop()
        with pytest.raises(MediaStreamError):
            while True:
                out.append(await track.recv())
                times.append(loop.time())
        return out, times, track

    out, times, track = asyncio.run(main())
    assert len(out) == 40  # the source ended first: everything queued still went out
    assert track.drained.is_set()
    pts = [f.pts for f in out]
    assert pts == sorted(pts) and len(set(pts)) == 40  # restamped with release times
    assert all(f.time_base == fractions.Fraction(1, 90000) for f in out)
    assert times[1] - times[0] < 0.05  # the picture starts at once
    assert track.delay_s > 0.1  # and has fallen behind by the end


def test_delayed_packets_are_copies_keeping_their_keyframe_flag():
    class Packets(MediaStreamTrack):
        kind = "video"

        def __init__(self):
            super().__init__()
            self.sent = []

        async def recv(self):
            if len(self.sent) == 3:
                raise MediaStreamError
            await asyncio.sleep(0.01)
            packet = av.Packet(bytes([len(self.sent) and 1, 2, 3]))
            packet.is_keyframe = not self.sent
            self.sent.append(packet)
            return packet

    async def main():
        source = Packets()
        track = DelayedTrack(source, 0.0)
        got = [await track.recv() for _ in range(3)]
        return source.sent, got

    sent, got = asyncio.run(main())
    assert [bytes(p) for p in got] == [bytes(p) for p in sent]
    assert [p.is_keyframe for p in got] == [True, False, False]
    assert all(a is not b for a, b in zip(sent, got, strict=True))  # each listener its own


def test_a_lost_picture_plays_again_from_the_next_keyframe_at_once():
    class Stream(MediaStreamTrack):
        kind = "video"

        def __init__(self):
            super().__init__()
            self.n = 0

        async def recv(self):
            await asyncio.sleep(0.01)
            self.n += 1
            packet = av.Packet(bytes([self.n % 256]))
            packet.is_keyframe = self.n % 20 == 0  # a keyframe every 20 frames
            return packet

    async def main():
        track = DelayedTrack(Stream(), 0.3)
        track.slew.restart(300 * MS)  # running 0.3 s late already
        first = [await track.recv() for _ in range(25)]
        track.resync()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        jumped = await track.recv()
        waited = loop.time() - t0
        after = await track.recv()
        track.stop()
        return first, jumped, waited, after, track

    first, jumped, waited, after, track = asyncio.run(main())
    assert jumped.is_keyframe and bytes(jumped)[0] > bytes(first[-1])[0]
    assert waited < 0.25  # not the 0.3 s delay: at most until the next keyframe arrives
    assert track.resyncs == 1 and track.delay_s < 0.25  # and builds up again from there
    assert after.pts > jumped.pts


def test_keyframes_are_recognised():
    assert is_keyframe("VP8", bytes([0x10, 0x02, 0x00]))  # frame tag bit 0 clear
    assert not is_keyframe("VP8", bytes([0x31, 0x02, 0x00]))
    assert is_keyframe("H264", b"\x00\x00\x00\x01\x67\x42" + b"\x00\x00\x01\x65\x88")
    assert not is_keyframe("H264", b"\x00\x00\x00\x01\x41\x9a")
    assert not is_keyframe("VP8", b"")


# -- the lag ----------------------------------------------------------------------------------
def test_lag_follows_the_audio_out_records_and_knows_when_the_speaker_talks():
    clock = FakeClock(5_000 * MS)
    lag = LagTracker(clock, origin_ns=1_000 * MS, prior_s=lambda: 1.25)
    assert lag.target_s() == 1.25  # before any clause: the room's prior
    # a phrase from 2.0 s to 4.5 s of the link's clock (its records come later)
    lag.observe({"type": "speech_started", "wall_ms": 2300, "latency_ms": 300})
    assert lag.talking
    lag.observe({"type": "speech_ended", "wall_ms": 5000, "latency_ms": 500})
    assert not lag.talking
    lag.observe({"type": "audio_out", "wall_ms": 6400, "latency_ms": 1900})
    assert lag.target_s() == 1.9 and lag.clauses == 1
    assert lag.speaking(3_500 * MS) and not lag.speaking(6_000 * MS)
    assert lag.rate(3_500 * MS) == TALKING_SLEW and lag.rate(6_000 * MS) == PAUSE_SLEW
    lag.observe({"type": "audio_out", "wall_ms": 9000, "latency_ms": 7200})
    assert lag.target_s() == 3.0  # the median of 1.9 and 7.2 s, bounded
    lag.observe({"type": "audio_out", "wall_ms": 9500, "latency_ms": 2100})
    assert lag.target_s() == 2.1  # one slow clause does not drag the picture along
    viewer = ViewerDelay(lag)
    assert viewer.target_s() == 2.1
    viewer.live = True
    assert viewer.target_s() == 0.0 and viewer.rate(0) > PAUSE_SLEW  # catches up quickly
    assert ViewerDelay(None).target_s() == 0.0  # same language: live
    # a page that holds audio 250 ms longer than video gets its pictures that much later
    playout = Playout()
    playout.update(330, 80)
    playout.update("x", None)  # ignored
    assert ViewerDelay(lag, playout=playout).target_s() == pytest.approx(2.35)
    playout.update(80, 80)
    assert ViewerDelay(lag, playout=playout).target_s() == pytest.approx(2.275)


# -- renegotiation ----------------------------------------------------------------------------
def _numbering(text: str) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Across all m-lines: extension id -> URIs, payload type -> codec names."""
    ids: dict[str, set[str]] = {}
    pts: dict[str, set[str]] = {}
    for m in re.finditer(r"a=extmap:(\d+) (\S+)", text):
        ids.setdefault(m[1], set()).add(m[2])
    for m in re.finditer(r"a=rtpmap:(\d+) (\S+)", text):
        pts.setdefault(m[1], set()).add(m[2].split("/")[0])
    return ids, pts


def _browser_like(offer: str) -> str:
    """An aiortc offer renumbered as a browser numbers it (different extension ids and
    payload types), which is what makes aiortc's own re-offers collide."""
    swap_ids = {"1": "4", "2": "1", "3": "2"}
    offer = re.sub(r"a=extmap:(\d+)", lambda m: f"a=extmap:{swap_ids.get(m[1], m[1])}", offer)
    swap_pts = {"97": "96", "98": "97", "96": "111"}
    pattern = r"(?<=[ :=])(96|97|98)(?=[ \r\n/])"
    return re.sub(pattern, lambda m: swap_pts[m[1]], offer)


def test_a_reoffer_keeps_the_numbers_the_page_chose():
    async def main():
        page, server = RTCPeerConnection(), RTCPeerConnection()
        page.addTransceiver(PcmTrack(np.zeros(48000, np.float32)), direction="sendrecv")
        page.addTransceiver(Frames(5, 0.1), direction="sendonly")
        page.createDataChannel("captions")
        await page.setLocalDescription(await page.createOffer())
        offer = _browser_like(page.localDescription.sdp)
        await server.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        await server.setLocalDescription(await server.createAnswer())
        agreed = {t.mid: (t._codecs, t._headerExtensions) for t in server.getTransceivers()}
        server.addTransceiver(Frames(5, 0.1), direction="sendonly")  # a newcomer's camera
        reoffer = await server.createOffer()
        aligned, lines = align_offer(reoffer.sdp, server.remoteDescription.sdp, agreed)
        await page.close()
        await server.close()
        return offer, reoffer.sdp, aligned, lines

    offer, raw, aligned, lines = asyncio.run(main())
    ids, pts = _numbering(offer + aligned)
    assert all(len(uris) == 1 for uris in ids.values()), ids  # one meaning per id
    assert all(len(names) == 1 for names in pts.values()), pts
    raw_ids, _ = _numbering(offer + raw)
    assert any(len(uris) > 1 for uris in raw_ids.values())  # what aiortc alone would offer
    assert len(lines) == 3  # the microphone, the camera and the newcomer's video


# -- a room of aiortc peers -------------------------------------------------------------------
class Member:
    """A participant that does what the page does: joins with audio, camera and a data channel,
    answers the server's offers, and counts the frames each video line brings."""

    def __init__(self, url: str, name: str, lang: str) -> None:
        self.url, self.name, self.lang = url, name, lang
        self.pc = RTCPeerConnection()
        self.pc.addTransceiver(PcmTrack(tone_phrases(1.0, gap=0.5), 16000), direction="sendrecv")
        self.pc.addTransceiver(SmallCamera(), direction="sendonly")
        self.channel = self.pc.createDataChannel("captions")
        self.channel.on("message", lambda m: asyncio.ensure_future(self._message(m)))
        self.pc.on("track", self._track)
        self.frames: dict[str, int] = {}  # mid -> frames received
        self.roster: list[dict] = []
        self.offers = 0
        self.location = ""
        self.tasks: list[asyncio.Task] = []

    async def join(self, http) -> None:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        async with http.post(f"{self.url}/rooms/kitchen/join?lang={self.lang}&name={self.name}",
                             data=self.pc.localDescription.sdp,
                             headers={"Content-Type": "application/sdp"}) as resp:
            assert resp.status == 201, await resp.text()
            answer = await resp.text()
            self.location = resp.headers["Location"]
        await self.pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))

    async def _message(self, message: str) -> None:
        msg = json.loads(message)
        if msg["type"] == "roster":
            self.roster = msg["participants"]
        elif msg["type"] == "offer":
            self.offers += 1
            self.roster = msg["roster"]["participants"]
            await self.pc.setRemoteDescription(RTCSessionDescription(msg["sdp"], "offer"))
            await self.pc.setLocalDescription(await self.pc.createAnswer())
            self.channel.send(json.dumps({"type": "answer", "sdp": self.pc.localDescription.sdp}))

    def _track(self, track) -> None:
        if track.kind != "video":
            return
        mid = next(t.mid for t in self.pc.getTransceivers() if t.receiver.track is track)

        async def count():
            try:
                while True:
                    await track.recv()
                    self.frames[mid] = self.frames.get(mid, 0) + 1
            except MediaStreamError:
                pass
        self.tasks.append(asyncio.ensure_future(count()))

    def frames_of(self, other: Member) -> int:
        mid = next((p["mid"] for p in self.roster if p["name"] == other.name), None)
        return self.frames.get(mid, 0) if mid else 0

    async def leave(self, http) -> None:
        async with http.delete(f"{self.url}{self.location}"):
            pass
        await self.pc.close()
        for t in self.tasks:
            t.cancel()


def test_cameras_reach_everyone_and_a_freed_line_is_reused():
    import aiohttp

    async def main():
        async with running_server(fake_engines()) as srv, aiohttp.ClientSession() as http:
            ana, luis = Member(srv.url, "Ana", "en"), Member(srv.url, "Luis", "es")
            await ana.join(http)
            await luis.join(http)
            await until(lambda: ana.frames_of(luis) > 10 and luis.frames_of(ana) > 10, 30,
                        "each to see the other")
            zoe = Member(srv.url, "Zoe", "es")
            await zoe.join(http)  # late: Ana's and Luis's connections get a line for her
            await until(lambda: all(a.frames_of(b) > 10 for a in (ana, luis, zoe)
                                    for b in (ana, luis, zoe) if a is not b), 30,
                        "everyone to see everyone")
            room = srv.hub.rooms["kitchen"]
            feeds = {p.name: p.feed for p in room.participants.values()}
            assert all(f is not None and f.encoded.frames > 10 for f in feeds.values())
            offers = (ana.offers, luis.offers)
            await zoe.leave(http)
            await until(lambda: len(room.participants) == 2, 10, "Zoe to leave")
            eva = Member(srv.url, "Eva", "es")
            await eva.join(http)
            await until(lambda: ana.frames_of(eva) > 10 and luis.frames_of(eva) > 10, 30,
                        "the others to see the newcomer")
            reused = (ana.offers, luis.offers) == offers  # no new offer: Zoe's line took Eva
            lines = [len(p.lines) for p in room.participants.values()]
            for m in (ana, luis, eva):
                await m.leave(http)
            await until(lambda: not srv.hub.rooms, 10, "the room to close")
            return offers, reused, lines, [(m.name, m.roster) for m in (ana, luis)]

    offers, reused, lines, rosters = asyncio.run(main())
    assert offers == (2, 2), offers  # Ana: one offer for Luis, one for Zoe
    assert reused, rosters
    assert sorted(lines) == [2, 2, 2], lines


class EnEsOnly(UpperMt):
    def supports(self, source, target):
        return {source, target} == {"en", "es"}


def test_a_language_the_room_cannot_serve_is_refused_before_answering():
    import aiohttp

    async def main():
        async with running_server(fake_engines(mt=EnEsOnly())) as srv, \
                aiohttp.ClientSession() as http:
            ana = Member(srv.url, "Ana", "en")
            await ana.join(http)
            sdp = {"Content-Type": "application/sdp"}
            offer = await asyncio.to_thread(make_offer)
            async with http.post(f"{srv.url}/rooms/kitchen/join?lang=zz", data=offer,
                                 headers=sdp) as resp:
                refused = resp.status, await resp.json()
            present = len(srv.hub.rooms["kitchen"].participants)
            async with http.post(f"{srv.url}/rooms/kitchen/join?lang=en&name=%01", data=offer,
                                 headers=sdp) as resp:
                bad_name = resp.status, await resp.json()
            luis = Member(srv.url, "Luis", "es")
            await luis.join(http)  # the room still works for a language it can serve
            joined = len(srv.hub.rooms["kitchen"].participants)
            for m in (ana, luis):
                await m.leave(http)
            return refused, present, bad_name, joined

    (status, body), present, (name_status, name_body), joined = asyncio.run(main())
    assert status == 400 and body["error"] == "unsupported_language", body
    assert "zz" in body["message"] and "en" in body["message"]
    assert present == 1  # the refused caller never joined
    assert name_status == 400 and name_body["error"] == "bad_parameter", name_body
    assert joined == 2


def test_whep_viewer_sees_the_delayed_video_play_out_after_the_caller_hangs_up():
    import aiohttp

    from babelcall.clients.call import Caller

    async def main():
        async with running_server(fake_engines()) as srv, aiohttp.ClientSession():
            caller = Caller(PcmTrack(tone_phrases(1.0, gap=0.5), 16000), srv.url,
                            video=SmallCamera(),
                            params={"source": "en", "target": "es", "video_delay_ms": 1500})
            await caller.connect()
            call_id = caller.location.rsplit("/", 1)[1]
            viewer = Caller(None, srv.url, endpoint=f"/whep/{call_id}", video=True)
            await viewer.connect()
            ingest = srv.hub.ingests[call_id]
            delayed = [t for _, tracks in ingest.viewers.values() for t in tracks
                       if isinstance(t, DelayedTrack)]
            await until(lambda: delayed[0].delay_s >= 1.4, 10, "the delay to build up")
            at_hang_up = viewer.video_frames
            await caller.hang_up()  # answered once the viewers have seen what was delayed
            await until(lambda: not srv.hub.ingests, 10, "the call to close")
            after = viewer.video_frames
            await viewer.hang_up()
            return at_hang_up, after, delayed[0].drained.is_set()

    at_hang_up, after, drained = asyncio.run(main())
    assert at_hang_up > 5
    assert after - at_hang_up >= 8, (at_hang_up, after)
    assert drained
