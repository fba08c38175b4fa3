"""A speaker's front feeds several target languages: the speaker is listened to and recognised
once however many targets hear them; each target is its own branch (translate + speak) whose
failure ends only that target, while a broken front ends them all. Stand-in engines."""

import asyncio

import pytest
from fakes import (
    RATE,
    BeepTts,
    CountingAsr,
    RaisingVad,
    UpperMt,
    fake_engines,
    fake_scheduler,
    tone_phrases,
)

from babelcall.engines.registry import Engines
from babelcall.realtime.errors import SessionClosed
from babelcall.realtime.session import Session, SessionConfig
from babelcall.realtime.speaker import SpeakerFront
from babelcall.realtime.types import SpeechStarted, StageError, Transcript, Translation

FRAME = 320
AUDIO = tone_phrases(2.0, 1.5, 2.5)


class NoEnglishMt(UpperMt):
    """A text engine for every pair but into English: there Whisper translates itself."""

    def supports(self, source, target):
        return target != "en"


class FailsInto(UpperMt):
    """Fails every call into one target language."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.broken = target

    def translate(self, sources, *, source, target, target_prefixes=None):
        if target == self.broken:
            raise RuntimeError("mt exploded")
        return super().translate(sources, source=source, target=target)


async def _drive(sched, push, sessions, audio, *, late=None):
    """Feed ``audio`` frame by frame on the simulated clock, each frame handled before the
    next; ``late``: (sample, target) to attach one more branch at that sample."""
    for i in range(0, len(audio), FRAME):
        if late is not None and i == late[0]:
            late[1]()
        sched.clock.set(int((i + FRAME) / RATE * 1e9))
        try:
            push(audio[i:i + FRAME], RATE)
        except SessionClosed:  # the front failed: nobody listens any more
            return
        for s in list(sessions.values()):
            await s.idle()


async def _collect(session):
    return [e async for e in session.events()]


def run_front(engines, targets, *, audio=AUDIO, late_target=None, late_at=None,
              source="en"):
    """One front, a branch per target; returns each target's events and metrics, the front's
    recognition figures and the ASR engine's call count."""
    async def go():
        sched = fake_scheduler(engines)
        async with sched:
            front = SpeakerFront(sched, SessionConfig(source, source))
            sessions = {t: Session(sched, SessionConfig(source, t), front=front)
                        for t in targets}
            got = {t: asyncio.create_task(_collect(s)) for t, s in sessions.items()}
            for s in sessions.values():
                s.start()

            def attach():
                s = sessions[late_target] = Session(sched, SessionConfig(source, late_target),
                                                    front=front)
                got[late_target] = asyncio.create_task(_collect(s))
                s.start()

            late = (late_at - late_at % FRAME, attach) if late_target else None
            await _drive(sched, front.push, sessions, audio, late=late)
            front.end()
            events = dict(zip(got, await asyncio.wait_for(asyncio.gather(*got.values()), 10),
                              strict=True))
            metrics = {t: s.metrics() for t, s in sessions.items()}
            recognition = front.recognition()
            for s in sessions.values():
                await s.close()
            await front.close()
            return events, metrics, recognition, set(sched.sessions)

    return asyncio.run(go())


def asr_calls_alone(mt, source, target):
    """ASR calls of a plain ``Session(scheduler, config)`` (its private front), same audio."""
    asr = CountingAsr()

    async def go():
        sched = fake_scheduler(fake_engines(asr=asr, mt=mt))
        async with sched:
            session = Session(sched, SessionConfig(source, target))
            got = asyncio.create_task(_collect(session))
            async with session:
                await _drive(sched, session.push, {target: session}, AUDIO)
                await session.end()
                await asyncio.wait_for(got, 10)

    asyncio.run(go())
    return asr.calls


def said(events, utt=None):
    return " ".join(e.committed for e in events if isinstance(e, Translation)
                    and (utt is None or e.utt == utt)).split()


@pytest.mark.parametrize(("targets", "mt", "streams"), [
    (["es"], UpperMt(), 1),
    (["es", "fr", "pt"], UpperMt(), 1),
    (["es", "en"], NoEnglishMt(), 2),  # Whisper's own X->en is a second stream
    (["en"], NoEnglishMt(), 1),
])
def test_each_speaker_is_recognised_once_per_whisper_task(targets, mt, streams):
    asr = CountingAsr()
    events, metrics, recognition, left = run_front(fake_engines(asr=asr, mt=mt), targets,
                                                   source="de")
    one = asr_calls_alone(mt, "de", targets[0])
    assert recognition["streams"] == streams
    assert asr.calls == streams * one  # not once per target
    assert sum(recognition["asr_passes"].values()) == asr.calls
    for t in targets:
        assert metrics[t]["recognition"]["streams"] == streams
        whisper = t == "en" and isinstance(mt, NoEnglishMt)  # its own English: no MT
        assert said(events[t]) and all(w.startswith("w" if whisper else "W")
                                       for w in said(events[t]))
        assert sum(isinstance(e, SpeechStarted) for e in events[t]) == 3
    assert left == set()


def test_every_target_hears_the_same_phrases_and_words():
    events, _, _, _ = run_front(fake_engines(), ["es", "fr", "pt"])
    firsts = {t: [e.utt for e in ev if isinstance(e, SpeechStarted)] for t, ev in events.items()}
    words = {t: said(ev) for t, ev in events.items()}
    assert len({tuple(v) for v in firsts.values()}) == 1
    assert len({tuple(v) for v in words.values()}) == 1


def test_a_failing_target_ends_alone_and_the_others_keep_being_served():
    events, _, recognition, left = run_front(fake_engines(mt=FailsInto("fr")),
                                             ["es", "fr", "pt"])
    fatal = {t: [e for e in ev if isinstance(e, StageError) and e.fatal]
             for t, ev in events.items()}
    (err,) = fatal["fr"]
    assert err.stage == "mt" and "session ended" in err.message
    assert not fatal["es"] and not fatal["pt"]
    for t in ("es", "pt"):  # every phrase, to the end
        assert {e.utt for e in events[t] if isinstance(e, Translation) and e.final} \
            == {0, 1, 2}
    assert recognition["branches"] == 2  # the failed target was detached
    assert left == set()


def test_a_broken_front_ends_every_target_with_the_error():
    broken = Engines(vad=RaisingVad(), asr=CountingAsr(), tts=BeepTts(), translator=UpperMt())
    events, _, _, left = run_front(broken, ["es", "fr"])
    for ev in events.values():
        (err,) = [e for e in ev if isinstance(e, StageError) and e.fatal]
        assert err.stage == "listen" and "vad exploded" in err.message
    assert left == set()


def test_a_target_attached_mid_call_starts_at_the_next_phrase():
    # the second phrase starts at 4.0 s (1 s gap, 2 s tone, 1 s gap): attach during the first
    events, _, _, _ = run_front(fake_engines(), ["es"], late_target="fr",
                                late_at=int(2.0 * RATE))
    late = events["fr"]
    assert {e.utt for e in late} == {1, 2}  # nothing of the phrase under way
    assert said(late) == said(events["es"], 1) + said(events["es"], 2)
    assert any(isinstance(e, Transcript) for e in late)


def test_an_ended_front_takes_no_more_targets():
    async def go():
        sched = fake_scheduler()
        async with sched:
            front = SpeakerFront(sched, SessionConfig("en", "en"))
            front.end()
            with pytest.raises(SessionClosed):
                Session(sched, SessionConfig("en", "es"), front=front)
            await front.close()
            return set(sched.sessions)

    assert asyncio.run(go()) == set()
