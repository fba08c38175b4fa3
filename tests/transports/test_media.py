"""The media pieces without models: pacing, mixing, ducking, delaying, and offer checks."""

import asyncio
import fractions
import time

import av
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from transport_utils import make_offer

from babelcall.realtime.clock import SystemClock
from babelcall.transports.inbound import RateGuard
from babelcall.transports.media import Mixer, MixerInput
from babelcall.transports.signaling import SignalingError, parse_offer
from babelcall.transports.tracks import FRAME, WIRE_RATE, DelayedTrack, Pacer, PcmTrack
from babelcall.transports.websocket import ProtocolError, parse_config

pytestmark = pytest.mark.timeout(60)


def test_pacer_keeps_real_time_with_continuous_pts():
    async def main():
        pacer = Pacer(WIRE_RATE, FRAME, SystemClock())
        t0 = time.monotonic()
        pts = [await pacer.next() for _ in range(26)]
        return pts, time.monotonic() - t0

    pts, elapsed = asyncio.run(main())
    assert pts == [i * FRAME for i in range(26)]
    assert 0.45 <= elapsed < 0.9  # 25 frame periods of 20 ms after the first frame


def test_pacer_moves_its_start_after_a_stall_instead_of_bursting():
    async def main():
        pacer = Pacer(WIRE_RATE, FRAME, SystemClock(), max_lag_s=0.2)
        await pacer.next()
        time.sleep(0.5)  # the event loop was blocked
        a = await pacer.next()
        t0 = time.monotonic()
        b = await pacer.next()
        return a, b, time.monotonic() - t0, pacer.resyncs

    a, b, wait, resyncs = asyncio.run(main())
    assert (a, b) == (FRAME, 2 * FRAME) and resyncs == 1
    assert wait > 0.01  # back on a 20 ms cadence, not a burst of catch-up frames


def test_lane_plays_chunks_in_order_and_reports_when_each_starts():
    lane = MixerInput()
    started = []
    lane.push(np.ones(600, np.float32), on_start=lambda ns, pts: started.append(("a", ns, pts)))
    lane.push(np.full(600, 2.0, np.float32),
              on_start=lambda ns, pts: started.append(("b", ns, pts)))
    first = lane.take(960, 1, pts=9600)
    assert first[:600].tolist() == [1.0] * 600 and first[600:].tolist() == [2.0] * 360
    assert started == [("a", 1, 9600), ("b", 1, 10200)]  # the output sample it starts at
    second = lane.take(960, 2)
    assert second[:240].tolist() == [2.0] * 240 and not second[240:].any()
    assert lane.take(960, 3) is None and lane.queued == 0


def test_bed_lane_stays_short_and_waits_for_its_preroll():
    lane = MixerInput(speech=False, max_queue_s=0.1, preroll_s=0.04)
    lane.push(np.ones(960, np.float32))
    assert lane.take(960, 0) is None  # 20 ms < 40 ms preroll
    for _ in range(10):
        lane.push(np.ones(960, np.float32))
    assert lane.queued <= int(0.1 * WIRE_RATE) + 960  # oldest audio dropped, not delay piled up
    assert lane.take(960, 0) is not None


def test_mixer_sends_continuous_silence_then_speech_with_the_bed_ducked():
    async def main():
        mixer = Mixer()
        speech = mixer.add_lane(speech=True)
        bed = mixer.add_lane(speech=False, gain=1.0, duck_gain=0.2)
        frames = [await mixer.recv() for _ in range(3)]
        bed.push(np.full(FRAME * 30, 0.5, np.float32))
        loud = [await mixer.recv() for _ in range(3)]
        speech.push(np.full(FRAME * 10, 0.3, np.float32))
        mixed = [await mixer.recv() for _ in range(4)]
        assert mixer.speaking()
        mixer.stop()
        with pytest.raises(MediaStreamError):
            await mixer.recv()
        return frames, loud, mixed

    frames, loud, mixed = asyncio.run(main())
    for i, f in enumerate(frames + loud + mixed):
        assert f.sample_rate == WIRE_RATE and f.samples == FRAME and f.pts == i * FRAME
        assert f.format.name == "s16" and f.layout.name == "mono"
        assert f.time_base == fractions.Fraction(1, WIRE_RATE)
    assert all(not f.to_ndarray().any() for f in frames)
    level = [f.to_ndarray().reshape(-1)[-100:].mean() / 32767 for f in loud + mixed]
    assert abs(level[0] - 0.5) < 0.01                 # the original at full level
    assert abs(level[-1] - (0.3 + 0.5 * 0.2)) < 0.01  # translation over the ducked original


class _Counter(MediaStreamTrack):
    kind = "video"

    def __init__(self, n):
        super().__init__()
        self.n, self.i = n, 0

    async def recv(self):
        if self.i >= self.n:
            raise MediaStreamError
        await asyncio.sleep(0.01)
        self.i += 1
        frame = av.VideoFrame(16, 16, "yuv420p")
        frame.pts = self.i
        return frame


def test_delayed_track_eases_into_its_delay_and_ends_with_its_source():
    async def main():
        track = DelayedTrack(_Counter(3), 0.25)
        t0 = time.monotonic()
        first = await track.recv()
        start = time.monotonic() - t0
        rest = [await track.recv() for _ in range(2)]
        with pytest.raises(MediaStreamError):
            await track.recv()
        return first, rest, start, track.delay_s

    first, rest, start, delay = asyncio.run(main())
    pts = [f.pts for f in [first, *rest]]
    assert pts == sorted(pts) and len(set(pts)) == 3  # restamped with their release times
    assert start < 0.2  # no frozen start: the delay grows from zero
    assert 0 < delay <= 0.25


def test_pcm_track_is_paced_and_says_when_the_audio_is_over():
    async def main():
        track = PcmTrack(np.ones(WIRE_RATE // 10, np.float32) * 0.5, WIRE_RATE)
        frames = [await track.recv() for _ in range(7)]
        return frames, track.finished.is_set()

    frames, finished = asyncio.run(main())
    assert finished
    assert [f.pts for f in frames] == [i * FRAME for i in range(7)]
    assert frames[0].to_ndarray().any() and not frames[6].to_ndarray().any()


def test_rate_guard_drops_input_beyond_real_time():
    guard = RateGuard(max_ahead_s=1.0)
    assert all(guard.admit(0.02, 0.0) for _ in range(50))   # one second at once: allowed
    assert not guard.admit(0.02, 0.0)                       # more than that: dropped
    assert guard.admit(0.02, 0.5)                           # real time moved on
    assert guard.dropped_s == pytest.approx(0.02)


# -- offers ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def offer_sdp():
    return make_offer()


def test_a_real_offer_is_accepted(offer_sdp):
    offer = parse_offer(offer_sdp, need_send=True, need_receive=True)
    assert offer.audio.sends and offer.audio.receives and offer.data and offer.video is None


@pytest.mark.parametrize("mangle, code", [
    (lambda s: "hello", "bad_sdp"),
    (lambda s: "v=0\r\n", "bad_sdp"),
    (lambda s: "\n".join(x for x in s.splitlines() if not x.startswith("a=fingerprint")),
     "bad_sdp"),
    (lambda s: "\n".join(x for x in s.splitlines() if not x.startswith("a=ice-pwd")),
     "bad_sdp"),
    (lambda s: s.replace("opus/48000/2", "ISAC/16000").replace("PCMU/8000", "iLBC/8000")
     .replace("PCMA/8000", "iLBC/8000").replace("G722/8000", "iLBC/8000"), "unsupported_codec"),
    (lambda s: s.replace("m=audio", "m=text"), "no_audio"),
    (lambda s: s.replace("a=sendrecv", "a=inactive"), "no_audio"),
])
def test_bad_offers_are_refused_with_a_reason(offer_sdp, mangle, code):
    with pytest.raises(SignalingError) as err:
        parse_offer(mangle(offer_sdp), need_send=True, need_receive=False)
    assert err.value.code == code and 400 <= err.value.status < 500


def test_offer_sending_babelcall_output_back_is_refused_as_a_loop(offer_sdp):
    looped = "\n".join(
        (x.split()[0] + " babelcall-0000") if x.startswith("a=msid:") else x
        for x in offer_sdp.splitlines())
    with pytest.raises(SignalingError) as err:
        parse_offer(looped, need_send=True, need_receive=False)
    assert err.value.code == "loop" and err.value.status == 409


def test_websocket_config_accepts_odd_rates_and_refuses_nonsense():
    assert parse_config({"source": "en", "target": "es", "rate": "44100"}) == ("en", "es", 44100)
    assert parse_config({"source": "EN", "target": "es", "rate": 8000})[2] == 8000
    for bad in ("0", 0, "-16000", "16k", True, 1_000_000, "1.5"):
        with pytest.raises(ProtocolError):
            parse_config({"source": "en", "target": "es", "rate": bad})
    with pytest.raises(ProtocolError):
        parse_config({"source": "english!", "target": "es"})
