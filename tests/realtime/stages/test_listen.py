"""Listen: the VAD is handed chunks of audio, not every 20 ms frame, and finds the same
phrases at the same source times."""

import asyncio

from fakes import RATE, EnergyVad, fake_scheduler, tone_phrases

from babelcall.realtime.phrases import PhraseDetector, PhraseEnd, PhraseStart
from babelcall.realtime.session import Session, SessionConfig
from babelcall.realtime.stages.listen import VAD_CHUNK_S
from babelcall.realtime.types import SpeechEnded, SpeechStarted

FRAME = 320  # 20 ms


def test_the_vad_gets_chunks_and_finds_the_same_phrases():
    audio = tone_phrases(1.5, 2.0)

    async def go():
        sched = fake_scheduler()
        await sched.start()
        session = Session(sched, SessionConfig("en", "es"))
        session.start()
        for i in range(0, len(audio), FRAME):  # each frame handled before the next comes
            session.push(audio[i:i + FRAME], RATE)
            await session.idle()
        await session.end()
        events = [e async for e in session.events()]
        await session.close()
        calls = sched.vad.stats.calls
        await sched.close()
        return events, calls

    events, calls = asyncio.run(go())
    frames = -(-len(audio) // FRAME)
    assert calls <= frames * FRAME / (VAD_CHUNK_S * RATE) + 2  # one call per chunk, not frame
    detector = PhraseDetector(EnergyVad())  # the same audio, frame by frame
    expected = []
    for i in range(0, len(audio), FRAME):
        expected += detector.feed(audio[i:i + FRAME])
    expected += detector.flush()
    bounds = [(type(h).__name__, round(h.time, 3)) for h in expected
              if isinstance(h, PhraseStart | PhraseEnd)]
    said = [("PhraseStart" if isinstance(e, SpeechStarted) else "PhraseEnd", e.src.start)
            for e in events if isinstance(e, SpeechStarted | SpeechEnded)]
    assert said == bounds and len(bounds) == 4
