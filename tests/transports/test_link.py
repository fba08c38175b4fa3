"""Link rules on deterministic stand-in engines (the real-model paths are in the other tests):
captions and audio_out records reach the sinks, every synthesised sample goes out, and end()
drains before "done". What the input does is in test_inbound.py."""

import asyncio

import numpy as np
import pytest
from fakes import RATE, fake_engines, tone_phrases

from babelcall.realtime.scheduler import Scheduler
from babelcall.realtime.session import Session, SessionConfig
from babelcall.realtime.types import SynthAudio, Translation
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
