"""The embedding API (clients/bot.py) on stand-in engines: attach a track, get a paced track of
translated audio and the events; a shared scheduler's slot is freed on stop()."""

import asyncio

import numpy as np
import pytest
from fakes import RATE, fake_engines, tone_phrases

from babelcall.clients.bot import Interpreter
from babelcall.realtime.scheduler import Overloaded, Scheduler
from babelcall.realtime.types import SynthAudio, Transcript, Translation
from babelcall.transports.tracks import PcmTrack

pytestmark = pytest.mark.timeout(60)


def test_interpreter_translates_an_attached_track():
    async def main():
        async with Scheduler(fake_engines(), max_sessions=1) as sched:
            interp = Interpreter(sched, "en", "es")
            with pytest.raises(RuntimeError):
                interp.attach(PcmTrack(np.zeros(10, np.float32), RATE))
            await interp.start()
            source = PcmTrack(tone_phrases(1.0, gap=0.6), RATE)
            out = interp.attach(source)
            events = []

            async def collect():
                async for ev in interp.events():
                    events.append(ev)

            async def listen():
                loud = 0
                while True:
                    frame = await out.recv()
                    assert frame.sample_rate == 48000 and frame.samples == 960
                    loud += np.abs(frame.to_ndarray()).max() > 1000
                    if loud >= 5:
                        return loud

            collector = asyncio.create_task(collect())
            listener = asyncio.create_task(listen())
            with pytest.raises(Overloaded):  # one session only: the interpreter holds it
                await Interpreter(sched, "en", "fr").start()
            await asyncio.wait_for(source.finished.wait(), 10)
            assert await interp.end(timeout=20)
            loud = await asyncio.wait_for(listener, 10)
            await collector
            metrics = interp.metrics()
            await interp.stop()
            return events, loud, metrics, len(sched.sessions)

    events, loud, metrics, sessions = asyncio.run(main())
    kinds = {type(e) for e in events}
    assert {Transcript, Translation, SynthAudio} <= kinds
    assert loud >= 5 and metrics["audio_out"] >= 1 and metrics["heard_s"] > 2
    assert sessions == 0


def test_interpreter_with_plain_engines_and_a_video_track_is_refused():
    async def main():
        own = None
        async with Interpreter(fake_engines(), "en", "es") as interp:
            from aiortc.mediastreams import VideoStreamTrack

            with pytest.raises(ValueError):
                interp.attach(VideoStreamTrack())
            own = interp.session.scheduler
            assert own.sessions == {interp.session}  # a scheduler of its own
        assert own.sessions == set()

    asyncio.run(main())
