"""Session wiring with stand-in engines (ordering, errors, shutdown, bad input): no models."""

import asyncio

import numpy as np
import pytest
from fakes import RATE, UpperMt, fake_engines, fake_scheduler, tone_phrases

from babelcall.realtime.errors import BadAudio, SessionClosed, UnsupportedLanguage
from babelcall.realtime.session import Session, SessionConfig
from babelcall.realtime.types import (
    SpeechEnded,
    SpeechStarted,
    StageError,
    SynthAudio,
    Transcript,
    Translation,
)


async def run(engines, audio, *, frame=320, cfg=None):
    sched = fake_scheduler(engines)
    clock = sched.clock
    events = []
    async with sched:
        session = Session(sched, cfg or SessionConfig("en", "es"))

        async def collect():
            async for ev in session.events():
                events.append(ev)

        async with session:
            task = asyncio.create_task(collect())
            for i in range(0, len(audio), frame):
                clock.set(int((i + frame) / RATE * 1e9))
                session.push(audio[i:i + frame], RATE)
                await session.idle()
            await session.end()
            await asyncio.wait_for(task, 10)
    return session, events


def test_two_phrases_flow_through_every_stage_in_order():
    session, events = asyncio.run(run(fake_engines(), tone_phrases(2.0, 1.5)))
    kinds = [type(e) for e in events]
    assert kinds.count(SpeechStarted) == 2 and kinds.count(SpeechEnded) == 2
    for utt in (0, 1):
        mine = [e for e in events if e.utt == utt]
        assert isinstance(mine[0], SpeechStarted)
        first_audio = next(i for i, e in enumerate(mine) if isinstance(e, SynthAudio))
        assert any(isinstance(e, Translation) and e.committed for e in mine[:first_audio])
        committed = "".join(e.committed for e in mine if isinstance(e, Translation)).split()
        spoken = " ".join(e.text for e in mine
                          if isinstance(e, SynthAudio) and e.seq == 0).split()
        assert spoken == committed  # every committed target word is spoken, once
        assert committed and all(w.startswith("W") for w in committed)
    # committed source words are never re-sent
    keys = [(e.utt, w.text) for e in events if isinstance(e, Transcript) for w in e.committed]
    assert keys and len(keys) == len(set(keys))
    # time is data: events are stamped, spans inside the stream
    assert all(0 <= e.src.start <= e.src.end <= 6.5 for e in events)
    assert session.arrival_ns(1.0) == pytest.approx(1.0e9, abs=2e7)


def test_words_commit_before_the_phrase_ends():
    _, events = asyncio.run(run(fake_engines(), tone_phrases(4.0)))
    end = next(i for i, e in enumerate(events) if isinstance(e, SpeechEnded))
    early = [e for e in events[:end] if isinstance(e, Transcript) and e.committed]
    assert early, "LocalAgreement should commit words while the speaker is still talking"


def test_failing_mt_becomes_an_error_event_and_the_session_goes_on():
    engines = fake_engines(mt=UpperMt(fail_on="w3"))
    _, events = asyncio.run(run(engines, tone_phrases(2.5, 1.0)))
    errors = [e for e in events if isinstance(e, StageError)]
    assert errors and errors[0].stage == "mt" and "exploded" in errors[0].message
    assert any(isinstance(e, SynthAudio) and e.utt == 1 for e in events)


def test_silence_gives_no_events_and_ends_cleanly():
    engines = fake_engines()
    _, events = asyncio.run(run(engines, np.zeros(RATE * 30, dtype=np.float32), frame=RATE))
    assert events == [] and engines.asr.calls == 0


def test_any_rate_and_channels_are_resampled():
    mono = tone_phrases(2.0)
    t = np.arange(int(len(mono) / 2))  # 8 kHz stereo int16 version of the same signal
    src = np.interp(t * 2, np.arange(len(mono)), mono)
    stereo = (np.stack([src, src], axis=1) * 32767).astype(np.int16)

    async def go():
        async with fake_scheduler() as sched, Session(sched, SessionConfig("en", "es")) as s:
            for i in range(0, len(stereo), 160):
                s.push(stereo[i:i + 160], 8000, channels=2)
            await s.end()
            return [e async for e in s.events()], s.metrics()["heard_s"]

    events, heard = asyncio.run(go())
    assert heard == pytest.approx(len(mono) / RATE, abs=0.01)
    assert any(isinstance(e, SynthAudio) for e in events)


def test_bad_input_is_a_clear_error():
    async def go():
        async with fake_scheduler() as sched, Session(sched, SessionConfig("en", "es")) as s:
            with pytest.raises(BadAudio, match="channels"):
                s.push(np.zeros((320, 6), dtype=np.float32), RATE, channels=6)
            with pytest.raises(BadAudio, match="rate"):
                s.push(np.zeros(320, dtype=np.float32), 0)
            with pytest.raises(ValueError, match="rate"):
                s.push(np.zeros(320, dtype=np.float32))
            await s.end()
            with pytest.raises(SessionClosed):
                s.push(np.zeros(320, dtype=np.float32), RATE)

    asyncio.run(go())


def test_close_mid_phrase_frees_everything_and_ends_the_events():
    async def go():
        async with fake_scheduler() as sched:
            session = Session(sched, SessionConfig("en", "es"))
            session.start()
            audio = tone_phrases(3.0)
            for i in range(0, len(audio) // 2, 320):
                session.push(audio[i:i + 320], RATE)
            assert sched.sessions == {session}
            await asyncio.wait_for(session.close(), 5)
            events = await asyncio.wait_for(_all(session), 5)  # the stream ends
            with pytest.raises(SessionClosed):
                session.push(audio[:320], RATE)
            return events, sched.sessions, session

    events, sessions, session = asyncio.run(go())
    assert sessions == set()  # the scheduler slot is free
    assert all(t.done() for t in session._tasks)
    assert not any(isinstance(e, SpeechEnded) for e in events)  # closed, not ended


async def _all(session):
    return [e async for e in session.events()]


def test_unsupported_pair_fails_at_construction():
    class NoMt(UpperMt):
        def supports(self, source, target):
            return False

    sched = fake_scheduler(fake_engines(mt=NoMt()))
    with pytest.raises(UnsupportedLanguage):
        Session(sched, SessionConfig("en", "xx"))
    assert sched.sessions == set()


def test_final_pass_runs_at_the_pause_not_again_at_the_phrase_end():
    """The recogniser's last pass overlaps the VAD's wait for the phrase end: one ASR call per
    phrase when updates are rare, and every word is still committed by the end."""
    engines = fake_engines()
    _, events = asyncio.run(run(engines, tone_phrases(2.0, 2.0),
                                cfg=SessionConfig("en", "es", asr_interval_s=10.0)))
    assert engines.asr.calls == 2
    words = [w.text for e in events if isinstance(e, Transcript) for w in e.committed]
    assert words == [" w0", " w1", " w2", " w3"] * 2
