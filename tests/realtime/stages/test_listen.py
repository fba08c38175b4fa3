"""Listen: the VAD is handed chunks of audio, not every 20 ms frame, and finds the same
phrases at the same source times."""

import asyncio

from fakes import RATE, EnergyVad, fake_scheduler, tone_phrases

from babelcall.realtime.phrases import SILENT_HOLD_S, PhraseDetector, PhraseEnd, PhraseStart
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


def test_a_silent_microphone_costs_no_vad_call():
    # 3 s of digital silence (a muted participant), then a phrase, then 3 s more: past the
    # first second of silence no chunk goes to the VAD lane, and the phrase is found as before
    import numpy as np

    quiet = np.zeros(3 * RATE, dtype=np.float32)
    tone = tone_phrases(1.5, gap=0.0)

    async def go():
        sched = fake_scheduler()
        await sched.start()
        session = Session(sched, SessionConfig("en", "es"))
        session.start()
        calls = []
        for part in (quiet, tone, quiet):
            for i in range(0, len(part), FRAME):
                session.push(part[i:i + FRAME], RATE)
                await session.idle()
            calls.append(sched.vad.stats.calls)
        await session.end()
        events = [e async for e in session.events()]
        await session.close()
        await sched.close()
        return calls, events

    calls, events = asyncio.run(go())
    hold = int(SILENT_HOLD_S / VAD_CHUNK_S) + 2  # the first second of it is still scored
    assert calls[0] <= hold  # the muted start
    chunk_s = -(-VAD_CHUNK_S * RATE // FRAME) * FRAME / RATE  # whole 20 ms frames: 80 ms
    assert calls[1] >= int(1.5 / chunk_s) - 1  # the phrase itself is scored
    assert calls[2] <= calls[1] + hold  # nor the silence after it, beyond its first second
    assert sum(isinstance(e, SpeechStarted) for e in events) == 1
    assert sum(isinstance(e, SpeechEnded) for e in events) == 1
