"""Faults contained, with stand-in engines that fail through the engines' own seam (an engine
object passed where engines are passed): a stage that crashes, or an engine that fails or hangs
call after call, ends *that* session with a fatal error event, frees its scheduler slot and
queues, refuses more audio, and leaves the other sessions on the scheduler serving. And a
session whose pipeline is stuck cannot grow memory: its door is bounded, the rest dropped and
counted."""

import asyncio

import pytest
from fakes import (
    RATE,
    BeepTts,
    CountingAsr,
    EnergyVad,
    HangingAsr,
    RaisingAsr,
    RaisingTts,
    RaisingVad,
    UpperMt,
    tone_phrases,
)

from babelcall.engines.registry import Engines
from babelcall.realtime.clock import SystemClock
from babelcall.realtime.errors import SessionClosed
from babelcall.realtime.scheduler import Scheduler
from babelcall.realtime.session import Session, SessionConfig
from babelcall.realtime.stages import MAX_DOOR_S
from babelcall.realtime.types import StageError, Translation

pytestmark = pytest.mark.timeout(60)
CFG = SessionConfig("en", "es", clone_voice=False, speculate=False)


class Selective:
    """One ASR for the scheduler: ``bad`` for audio louder than 0.3 (the failing session's
    tone), ``good`` for the rest (the healthy session speaks at 0.2)."""

    sample_rate = RATE

    def __init__(self, bad) -> None:
        self.bad, self.good = bad, CountingAsr()

    def transcribe(self, audio, **kw):
        loud = len(audio) and float(abs(audio).max()) > 0.3
        return (self.bad if loud else self.good).transcribe(audio, **kw)


def engines(*, vad=None, asr=None, mt=None, tts=None) -> Engines:
    return Engines(vad=vad or EnergyVad(), asr=asr or CountingAsr(), tts=tts or BeepTts(),
                   translator=mt or UpperMt())


async def feed(session: Session, audio, *, realtime: bool = False) -> None:
    for i in range(0, len(audio), 320):
        try:
            session.push(audio[i:i + 320], RATE)
        except SessionClosed:
            return
        await asyncio.sleep(0.02 if realtime else 0)


async def events_of(session: Session) -> list:
    return [e async for e in session.events()]


def fatal(events: list) -> list[StageError]:
    return [e for e in events if isinstance(e, StageError) and e.fatal]


async def until(cond, timeout_s: float, what: str) -> None:
    async with asyncio.timeout(timeout_s):
        while not cond():
            await asyncio.sleep(0.01)


def test_a_crashing_vad_ends_its_session_with_an_error_and_refuses_audio():
    async def go():
        async with Scheduler(engines(vad=RaisingVad()), clock=SystemClock()) as sched:
            session = Session(sched, CFG)
            session.start()
            collected = asyncio.create_task(events_of(session))
            await feed(session, tone_phrases(1.0))
            events = await asyncio.wait_for(collected, 10)  # the stream ends by itself
            with pytest.raises(SessionClosed, match="failed"):
                session.push(tone_phrases(0.5), RATE)
            left = set(sched.sessions)
            await session.close()  # still safe
            return events, left, session

    events, left, session = asyncio.run(go())
    (err,) = fatal(events)
    assert err.stage == "listen" and "vad exploded" in err.message
    assert session.failed and "vad exploded" in session.failed
    assert left == set()  # the scheduler slot was freed by the fault itself
    assert all(s.inbox.qsize() == 0 for s in session._stages)


@pytest.mark.parametrize("kind", ["raises", "hangs"])
def test_a_broken_asr_ends_that_session_and_the_other_goes_on(kind):
    """Two sessions share one scheduler (one ASR lane); one speaker's recognition fails
    (raises, or hangs past the lane's timeout) call after call: that session ends with a fatal
    error after ``MAX_FAILURES``; the other is translated to the end. A hung call runs 10x
    past the lane's timeout, then returns: the scheduler keeps a timed-out call's compute slot
    until its thread ends (both cores' slots held by hung threads would stall every session
    until then — the scheduler's policy, not the session's)."""
    bad = RaisingAsr() if kind == "raises" else HangingAsr(seconds=3.0)

    async def go():
        sched = Scheduler(engines(asr=Selective(bad)), clock=SystemClock(), timeout_s=0.3)
        try:
            async with sched:
                broken, healthy = Session(sched, CFG), Session(sched, CFG)
                broken.start()
                healthy.start()
                got = [asyncio.create_task(events_of(s)) for s in (broken, healthy)]
                quiet = tone_phrases(1.5, 1.5) * 0.4  # peak 0.2: the healthy one
                await asyncio.gather(feed(broken, tone_phrases(3.0, 3.0, 3.0), realtime=True),
                                     feed(healthy, quiet, realtime=True))
                await until(lambda: broken.failed is not None, 20, "the broken session to end")
                await healthy.end()
                bad_events, good_events = await asyncio.wait_for(asyncio.gather(*got), 20)
                await broken.close()
                await healthy.close()
                return bad_events, good_events, broken, set(sched.sessions)
        finally:
            if isinstance(bad, HangingAsr):
                bad.release.set()

    bad_events, good_events, broken, left = asyncio.run(go())
    (err,) = fatal(bad_events)
    assert err.stage == "asr" and "session ended" in err.message, err
    assert broken.metrics()["errors"] >= 3
    assert not fatal(good_events)
    said = " ".join(e.committed for e in good_events if isinstance(e, Translation))
    assert "W0" in said, good_events  # the healthy speaker was translated
    assert left == set()


def test_a_stuck_pipeline_cannot_grow_its_door():
    """The recogniser hangs for good: audio keeps coming (a live call) but what waits for the
    listen stage stays within ``MAX_DOOR_S``; the rest is dropped and counted."""
    asr = HangingAsr()

    async def go():
        sched = Scheduler(engines(asr=asr), clock=SystemClock(), timeout_s=600)
        try:
            async with sched:
                session = Session(sched, CFG)
                session.start()
                audio = tone_phrases(2.0)
                await feed(session, audio)
                await until(lambda: asr.calls >= 1, 10, "the recogniser to be stuck")
                seconds = 0.0
                while not session._recognize.inbox.full():  # backpressure: listen waits
                    await feed(session, audio, realtime=True)
                    seconds += len(audio) / RATE
                    assert seconds < 10 * MAX_DOOR_S, "the recogniser's inbox never filled"
                before = session.metrics()["dropped_s"]
                for _ in range(20):  # 83 s more, as fast as we can
                    await feed(session, audio)
                m = session.metrics()
                sizes = {s.name: s.inbox.size for s in session._stages}
                await session.close()
                return m, before, sizes, 20 * len(audio) / RATE
        finally:
            asr.release.set()

    m, before, sizes, more_s = asyncio.run(go())
    assert sizes["listen"] <= MAX_DOOR_S * RATE + 320
    # what did not fit is dropped and counted in the session's metrics
    assert m["dropped_s"] - before >= more_s - MAX_DOOR_S - 0.05, (m["dropped_s"], before)
    assert all(n <= 64 + 8 for name, n in sizes.items() if name != "listen"), sizes


@pytest.mark.parametrize("stage", ["mt", "tts"])
def test_a_broken_translator_or_voice_ends_the_session_with_an_error(stage):
    """The later stages too: an MT or TTS engine that fails call after call (three phrases
    here, each failing) ends the session with a fatal error event; the slot is freed."""
    broken = engines(mt=UpperMt(fail_on="w") if stage == "mt" else None,  # every text: w<n>
                     tts=RaisingTts() if stage == "tts" else None)

    async def go():
        async with Scheduler(broken, clock=SystemClock()) as sched:
            session = Session(sched, CFG)
            session.start()
            collected = asyncio.create_task(events_of(session))
            await feed(session, tone_phrases(1.5, 1.5, 1.5, 1.5, 1.5), realtime=True)
            await until(lambda: session.failed is not None, 20, "the session to end")
            events = await asyncio.wait_for(collected, 10)
            left = set(sched.sessions)
            await session.close()
            return events, left

    events, left = asyncio.run(go())
    (err,) = fatal(events)
    assert err.stage == stage and "exploded" in err.message, err
    assert left == set()
