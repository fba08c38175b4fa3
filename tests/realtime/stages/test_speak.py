"""The speak stage's catch-up rules on stand-in engines and a simulated clock: faster speech
when the listener is behind, waiting clauses merged when far behind, clauses only captioned
when hopelessly behind, and back to normal once caught up. Nothing committed is lost."""

import asyncio
import time

import numpy as np
from fakes import RATE, BeepTts, UpperMt, fake_engines, fake_scheduler, tone_phrases

from babelcall.realtime.session import Session, SessionConfig
from babelcall.realtime.types import SynthAudio, Translation


def feed(session, audio, start=0, end=None, frame=320):
    """Push ``audio[start:end]`` into the session in 20 ms frames."""
    stop = len(audio) if end is None else end
    for i in range(start, stop, frame):
        session.push(audio[i:min(i + frame, stop)], RATE)


async def finish(session):
    """End the input, collect every event, close (the session and its scheduler); returns
    the events."""
    await session.end()
    events = [e async for e in session.events()]
    await session.close()
    await session.scheduler.close()
    return events


class RecordingTts(BeepTts):
    """The stand-in voice, keeping what it was asked to say and how fast (per instance)."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.speeds: list[float] = []

    def synthesize(self, text, *, language, voice=None, speed=1.0):
        self.texts.append(text)
        self.speeds.append(speed)
        return super().synthesize(text, language=language, voice=voice, speed=speed)


def test_catchup_speeds_up_when_behind_and_releases():
    async def go():
        engines = fake_engines()
        engines.tts = RecordingTts()
        sched = fake_scheduler(engines)
        session = Session(sched, SessionConfig("en", "es"))
        session.start()
        audio = tone_phrases(2.0, 2.0, 2.0)  # phrases end at 3, 6 and 9 s
        third = int(4.5 * RATE)
        session.report_backlog(0.0)
        feed(session, audio, 0, third)
        await session.idle()
        session.report_backlog(3.0)  # the listener is 3 s behind
        feed(session, audio, third, int(7.5 * RATE))
        await session.idle()
        behind = session.metrics()["speed"]
        session.report_backlog(0.0)  # caught up
        feed(session, audio, int(7.5 * RATE))
        await finish(session)
        return engines.tts.speeds, behind

    speeds, behind = asyncio.run(go())
    assert speeds[0] == 1.0 and behind > 1.1 and max(speeds) <= 1.2 and speeds[-1] == 1.0


def test_far_behind_clauses_are_merged_not_dropped():
    class SlowTts(BeepTts):
        def synthesize(self, text, *, language, voice=None, speed=1.0):
            time.sleep(0.2)  # clauses queue up behind a slow synthesis
            return super().synthesize(text, language=language, voice=voice, speed=speed)

    async def go():
        engines = fake_engines()
        engines.tts = SlowTts()
        session = Session(fake_scheduler(engines),
                          SessionConfig("en", "es", max_clause_words=2,
                                        first_clause_words=2))
        session.report_backlog(7.0)  # past merging (6 s), short of skipping (10 s)
        session.start()
        feed(session, tone_phrases(3.0, 3.0, gap=0.6))
        return session, await finish(session)

    session, events = asyncio.run(go())
    spoken = " ".join(e.text for e in events if isinstance(e, SynthAudio) and e.seq == 0)
    committed = "".join(e.committed + " " for e in events if e.kind == "translation")
    assert spoken.split() == committed.split()  # every committed word still spoken
    assert session.metrics()["merges"] > 0
    assert np.isfinite(session.metrics()["lag_s"])


def test_speech_hopelessly_behind_is_captioned_not_voiced_and_recovers():
    """Overload's last resort: a clause the listener would hear > max_speech_lag_s late is
    skipped with a SpeechSkipped event carrying its text (nothing committed vanishes); once the
    backlog clears, clauses are voiced again."""
    async def go():
        engines = fake_engines()
        session = Session(fake_scheduler(engines), SessionConfig("en", "es"))
        session.start()
        audio = tone_phrases(2.0, 2.0, gap=0.8)
        half = int(3.6 * RATE)  # the first phrase and the silence after it
        session.report_backlog(12.0)
        feed(session, audio, 0, half)
        await session.idle()
        session.report_backlog(0.0)
        feed(session, audio, half)
        return session, await finish(session)

    session, events = asyncio.run(go())
    skipped = [e for e in events if e.kind == "speech_skipped"]
    voiced = [e for e in events if isinstance(e, SynthAudio)]
    committed = {e.utt: "" for e in events if e.kind == "translation"}
    for e in events:
        if e.kind == "translation":
            committed[e.utt] += " " + e.committed
    assert skipped and {e.utt for e in skipped} == {0} and skipped[0].behind_s > 10
    assert " ".join(e.text for e in skipped).split() == committed[0].split()
    assert voiced and {e.utt for e in voiced} == {1}  # voiced again once caught up
    assert session.metrics()["skipped"] == len(skipped)


def test_the_voice_and_why_it_is_not_converted_are_said_once():
    """The cloner's decision reaches the events (here cloning is off in the engines, so the
    fixed voice speaks); it is said again only when it changes."""
    async def go():
        session = Session(fake_scheduler(fake_engines()), SessionConfig("en", "es"))
        session.start()
        feed(session, tone_phrases(1.5, 1.5))
        return await finish(session)

    events = asyncio.run(go())
    chosen = [e for e in events if e.kind == "voice"]
    assert len(chosen) == 1 and not chosen[0].converted
    assert chosen[0].reason == "voice cloning off"
    assert any(isinstance(e, SynthAudio) for e in events)


def test_a_phrase_begun_before_the_profile_takes_it_at_its_next_clause(monkeypatch):
    """A caller's first phrase starts playing before there is enough of their speech to
    profile; once the profile exists, the rest of that phrase is spoken in their voice (not
    all of it in the default one), and the change is said."""
    from babelcall.engines.voice.base import VoiceDecision
    from babelcall.engines.voice.profile import VoiceProfile
    from babelcall.realtime import speaker as session_module  # builds the profile

    her = VoiceProfile(f0_median=220.0, f0_p10=180.0, f0_p90=260.0, loudness_db=-20.0,
                       speech_s=3.0, voiced_s=2.0)

    class LateBuilder:  # the profile appears when the test says so
        ready = False

        def __init__(self, **_):
            self.heard_enough = True

        def add(self, pcm):
            pass

        def add_words(self, words):
            pass

        due = property(lambda self: False)
        latest = property(lambda self: her if LateBuilder.ready else None)
        profile = latest

    class Cloner:
        name = "test"
        converted = 0

        def decide(self, profile, voices):
            if profile is None:  # the profile is analysed while the first clause is spoken
                LateBuilder.ready = True
                return VoiceDecision(None, False, "no voice profile yet")
            return VoiceDecision("her", True, "converted")

        def apply(self, pcm, rate, profile, *, voice=None):
            Cloner.converted += profile is not None
            return pcm

    monkeypatch.setattr(session_module, "ProfileBuilder", LateBuilder)

    async def go():
        engines = fake_engines()
        engines.cloner = Cloner()
        session = Session(fake_scheduler(engines), SessionConfig("en", "es"))
        session.start()
        feed(session, tone_phrases(8.0))  # one phrase: 16 words, three clauses
        return await finish(session)

    events = asyncio.run(go())
    chosen = [e for e in events if e.kind == "voice"]
    assert [(e.utt, e.converted, e.voice) for e in chosen] == [(0, False, None), (0, True, "her")]
    said = [e.text for e in events if isinstance(e, SynthAudio)]
    first = said[0]
    assert said[-1] != first  # the phrase went on after its first clause ...
    assert Cloner.converted == len([t for t in said if t != first])  # ... in the caller's voice


def test_the_voice_says_less_than_the_captions_where_meaning_allows():
    """Spanish: a plural subject pronoun its verb carries is not said, but is captioned; one
    after 'y' in the piece before is kept (the pieces are cut by word count here)."""
    said = "Ana y ellos viven bien. Porque ellos tienen plumas."

    class FixedMt(UpperMt):
        def translate(self, sources, *, source, target, target_prefixes=None):
            return [said for _ in sources]

    async def go():
        engines = fake_engines(mt=FixedMt())
        engines.tts = RecordingTts()
        session = Session(fake_scheduler(engines),
                          SessionConfig("en", "es", max_clause_words=3, first_clause_words=2))
        session.start()
        feed(session, tone_phrases(4.0))
        return engines.tts.texts, await finish(session)

    texts, events = asyncio.run(go())
    assert texts[:2] == ["Ana y", "ellos viven bien."]
    assert " ".join(texts) == "Ana y ellos viven bien. Porque tienen plumas."
    captioned = " ".join(e.committed for e in events if isinstance(e, Translation))
    assert "Porque ellos tienen plumas." in captioned


def test_a_short_piece_that_opens_its_phrase_is_held_to_the_safe_pace():
    """Far behind, a piece is re-timed to the pace cap; a short one that opens its phrase (the
    listener hears it with nothing before it) only to policy.SAFE_MAX_PACE."""
    from babelcall.realtime.policy import SAFE_MAX_PACE
    from babelcall.realtime.stages.speak import Speech

    session = Session(fake_scheduler(fake_engines()), SessionConfig("en", "es"))
    ctx = session._ctx

    def tempo(text, before=""):
        speech = Speech(ctx, text, None, 1.0, None, behind=lambda: 5.0, before=before)
        assert speech.step() is not None
        return speech.tempo

    assert tempo("Ana vive bien.") == SAFE_MAX_PACE
    assert tempo("vive bien con sus hijos.", before="Ana") == ctx.budget.max_pace
    assert tempo("Ana vive bien con sus hijos en la casa.") == ctx.budget.max_pace
    assert ctx.budget.max_pace > SAFE_MAX_PACE
