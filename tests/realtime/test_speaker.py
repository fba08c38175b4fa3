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
    whisper_routed_mt,
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


def _finals(events):
    return {e.utt for e in events if isinstance(e, Translation) and e.final}


def run_ending(targets, audio, *, end_at: dict[str, int], drive: bool = True):
    """Each target's transport pushes its own copy of the speaker (as a room's links do)
    and ends its session at ``end_at[target]`` (a sample; the end of ``audio`` if absent).
    ``drive=False``: the whole audio arrives in one burst, then every target ends at once,
    before anything is recognised (a late-read track, then the speaker's end)."""
    async def go():
        sched = fake_scheduler(fake_engines())
        async with sched:
            front = SpeakerFront(sched, SessionConfig("en", "en"))
            sessions = {t: Session(sched, SessionConfig("en", t), front=front)
                        for t in targets}
            got = {t: asyncio.create_task(_collect(s)) for t, s in sessions.items()}
            for s in sessions.values():
                s.start()
            step = FRAME if drive else len(audio)
            for i in range(0, len(audio), step):
                sched.clock.set(int((i + step) / RATE * 1e9))
                for t, s in sessions.items():
                    if i >= end_at.get(t, len(audio)):
                        await s.end()
                        continue
                    s.push(audio[i:i + step], RATE)
                if drive:
                    for s in sessions.values():
                        await s.idle()
            for s in sessions.values():
                await s.end()
            events = dict(zip(got, await asyncio.wait_for(asyncio.gather(*got.values()), 10),
                              strict=True))
            for s in sessions.values():
                await s.close()
            await front.close()
            return events, set(sched.sessions)

    return asyncio.run(go())


def test_targets_that_end_before_their_speech_is_recognised_still_translate_it():
    # a room's interpreters fed a late-read track in one burst, then ended with the speaker:
    # ending a target used to detach it at once, with nothing translated
    events, left = run_ending(["es", "fr"], AUDIO, end_at={}, drive=False)
    for t in ("es", "fr"):
        assert _finals(events[t]) == {0, 1, 2}, t
    assert said(events["es"]) == said(events["fr"]) and said(events["es"])
    assert left == set()


def test_a_target_ended_mid_phrase_gets_that_phrase_whole_and_no_later_one():
    # phrase 1 is the tone from 4.0 to 5.5 s: fr's transport ends at 4.5 s; es goes on
    events, left = run_ending(["fr", "es"], AUDIO, end_at={"fr": int(4.5 * RATE)})
    assert _finals(events["fr"]) == {0, 1}
    assert said(events["fr"]) == said(events["es"], 0) + said(events["es"], 1)
    assert _finals(events["es"]) == {0, 1, 2}  # heard on from es's own copy
    assert {e.utt for e in events["fr"] if isinstance(e, SpeechStarted)} == {0, 1}
    assert left == set()


# -- one recogniser stream per speaker -------------------------------------------------------
class TaskAsr(CountingAsr):
    """Words ``w0 w1 ...`` when transcribing, ``e0 e1 ...`` when Whisper translates (its own
    English); counts the calls of each task."""

    def __init__(self) -> None:
        super().__init__()
        self.by_task: dict[str, int] = {}

    def transcribe(self, audio, *, language, prompt="", task="transcribe"):
        self.by_task[task] = self.by_task.get(task, 0) + 1
        words = super().transcribe(audio, language=language, prompt=prompt, task=task)
        if task == "translate":
            return [type(w)(w.text.replace("w", "e"), w.start, w.end) for w in words]
        return words


def whisper_routed(asr):
    return fake_engines(asr=asr, mt=whisper_routed_mt())


def utt_words(events, utt):
    return said(events, utt)


@pytest.mark.parametrize("targets", [["en", "es"], ["es", "en"], ["en", "es", "fr"]])
def test_an_english_listener_beside_others_is_served_from_the_one_transcript(targets):
    asr = TaskAsr()
    events, metrics, recognition, left = run_front(whisper_routed(asr), targets, source="de")
    assert recognition["streams"] == 1
    assert asr.by_task.get("translate", 0) == 0  # no second Whisper stream, not even briefly
    for t in targets:
        assert said(events[t]) and all(w.startswith("W") for w in said(events[t]))
    assert said(events["en"]) == said(events["es"])  # the same transcript, text MT each
    assert recognition["routes"]["en"] == "upper"  # the text engine, as /stats says
    assert metrics["en"]["recognition"]["streams"] == 1
    assert left == set()


def test_an_english_listener_alone_hears_whispers_own_translation():
    asr = TaskAsr()
    events, _, recognition, _ = run_front(whisper_routed(asr), ["en"], source="de")
    assert recognition["streams"] == 1 and set(asr.by_task) == {"translate"}
    assert recognition["routes"] == {"en": "whisper-translate"}
    assert all(w.startswith("e") for w in said(events["en"]))


def test_a_second_language_mid_call_moves_english_onto_the_transcript_at_the_next_phrase():
    # Whisper translates for the English listener alone; a Spanish listener joins during the
    # first phrase (tone 1.0-3.0 s): from the second phrase on, English comes from the
    # transcript, and the translate stream stops after finishing the first phrase
    asr = TaskAsr()
    events, metrics, recognition, left = run_front(
        whisper_routed(asr), ["en"], late_target="es", late_at=int(2.0 * RATE), source="de")
    en = events["en"]
    first, rest = utt_words(en, 0), utt_words(en, 1) + utt_words(en, 2)
    assert first and all(w.startswith("e") for w in first)  # Whisper's English, to its end
    assert rest == said(events["es"])  # then the transcript, as the Spanish listener gets it
    assert rest and all(w.startswith("W") for w in rest)
    finals = [e.utt for e in en if isinstance(e, Translation) and e.final]
    assert finals == [0, 1, 2]  # every phrase once, in order
    order = [e.utt for e in en if isinstance(e, Translation)]
    assert order == sorted(order)
    assert recognition["streams"] == 1
    assert recognition["routes"] == {"en": "upper", "es": "upper"}
    assert set(recognition["asr_passes"]) == {"translate", "transcribe"}
    assert recognition["asr_passes"]["translate"] == asr.by_task["translate"]
    one_phrase = asr_calls_alone(UpperMt(), "de", "es")  # all three phrases
    assert asr.by_task["translate"] < one_phrase  # it stopped after the first phrase
    assert metrics["en"]["recognition"]["streams"] == 1
    assert left == set()


def test_a_fan_out_tap_stops_after_its_last_phrase():
    from babelcall.realtime.speaker import FanOut
    from babelcall.realtime.stages import END, Flow, Inbox

    fan, flow = FanOut(), Flow()
    branch, retiring, plain = Inbox(flow), Inbox(flow), Inbox(flow)
    for inbox in (branch, retiring, plain):
        fan.attach(inbox, 0)
    fan.stop_after(branch, 1, close=False)  # fed on by another stream: never END from here
    fan.stop_after(retiring, 1, close=True)  # a retiring recogniser: END after phrase 1
    for utt in (0, 1, 2, 3):
        fan.put((utt, "x"))
    fan.put(END)
    got = {name: inbox.drain() for name, inbox in
           (("branch", branch), ("retiring", retiring), ("plain", plain))}
    assert got["branch"] == [(0, "x"), (1, "x")]
    assert got["retiring"] == [(0, "x"), (1, "x"), END]
    assert got["plain"] == [(0, "x"), (1, "x"), (2, "x"), (3, "x"), END]
    assert len(fan) == 1


def test_a_moved_branch_voices_whispers_last_phrase_before_the_transcripts_next():
    # the transcript's phrase 1 reaches the branch before Whisper's English of phrase 0 is
    # through (Whisper's stream lagging): phrase 1 waits, so phrases stay in order
    from babelcall.realtime.stages import END
    from babelcall.realtime.stages.recognize import SourceText
    from babelcall.realtime.types import Span

    async def go():
        sched = fake_scheduler(whisper_routed(TaskAsr()))
        async with sched:
            session = Session(sched, SessionConfig("de", "en"))
            assert session._recognize.task == "translate"
            got = asyncio.create_task(_collect(session))
            session.use_transcript(0)
            inbox = session._translate.inbox
            for item in (SourceText(0, "e0", Span(0, 1), False, task="translate"),
                         SourceText(1, "w5 w6", Span(3, 4), True),
                         SourceText(0, "e0 e1", Span(0, 2), True, task="translate"),
                         SourceText(2, "w9", Span(5, 6), True), END):
                inbox.put(item)
            session.start()
            events = await asyncio.wait_for(got, 10)
            await session.close()
            return events

    events = asyncio.run(go())
    said_in_order = [(e.utt, e.committed) for e in events
                     if isinstance(e, Translation) and e.committed]
    assert said_in_order == [(0, "e0"), (0, "e1"), (1, "W5 W6"), (2, "W9")]
