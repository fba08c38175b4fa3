"""Link rules on deterministic stand-in engines (the real-model paths are in the other tests):
captions and audio_out records reach the sinks, the echo guard mutes the input, pts gaps
become silence, and end() drains before "done"."""

import asyncio
import fractions

import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from fakes import RATE, fake_engines, tone_phrases

from babelcall.realtime.audio import frame_from_array
from babelcall.realtime.scheduler import Scheduler
from babelcall.realtime.session import Session, SessionConfig
from babelcall.realtime.types import SpeechStarted, SynthAudio, Translation
from babelcall.transports.link import Link
from babelcall.transports.media import Mixer
from babelcall.transports.tracks import PcmTrack

pytestmark = pytest.mark.timeout(60)


def session() -> Session:
    """A session on stand-in engines and a scheduler of its own (real time: links pace)."""
    return Session(Scheduler(fake_engines()), SessionConfig("en", "es"))


async def _consume(mixer: Mixer, stop: asyncio.Event) -> list[float]:
    levels = []
    while not stop.is_set():
        frame = await mixer.recv()
        levels.append(float(np.abs(frame.to_ndarray()).max()) / 32767)
    return levels


def test_link_turns_speech_into_captions_and_paced_audio():
    async def main():
        link = Link(session())
        mixer = Mixer()
        link.add_output(mixer)
        records = []
        link.add_sink(records.append)
        events = link.subscribe()
        link.start()
        stop = asyncio.Event()
        player = asyncio.create_task(_consume(mixer, stop))
        track = PcmTrack(tone_phrases(1.0, gap=0.6), RATE)
        link.feed(track)
        await asyncio.wait_for(track.finished.wait(), 10)
        assert await link.end(timeout=20)
        stop.set()
        levels = await player
        got = []
        while (ev := events.get_nowait()) is not None:
            got.append(ev)
        await link.close()
        return records, got, levels, link

    records, events, levels, link = asyncio.run(main())
    kinds = [r["type"] for r in records]
    assert {"speech_started", "transcript", "translation", "synth_audio", "audio_out"} <= set(kinds)
    assert kinds[-1] == "done" and records[-1]["audio_out"] >= 1
    assert all("words" not in r for r in records)  # captions stay small
    out = [r for r in records if r["type"] == "audio_out"]
    assert all(r["latency_ms"] > 0 for r in out)
    assert any(isinstance(e, Translation) and e.committed for e in events)
    spoken = sum(e.duration for e in events if isinstance(e, SynthAudio))
    loud = sum(v > 0.05 for v in levels) * 0.02
    assert loud == pytest.approx(spoken, abs=0.1)  # every synthesised sample went out
    assert link.closed and not link.session.scheduler.sessions  # the slot is free


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
