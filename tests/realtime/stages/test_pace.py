"""Keeping pace (issue 20) on stand-in engines and a simulated clock: translated speech is
re-timed when the listener is behind and left alone when not; the sink's backlog drains with
the clock between its reports."""

import asyncio

from fakes import RATE, fake_engines, fake_scheduler, tone_phrases

from babelcall.realtime.budget import LatencyBudget
from babelcall.realtime.session import Session, SessionConfig
from babelcall.realtime.types import SynthAudio


def _voiced(backlog_s: float, *, compress: bool) -> float:
    """Seconds of translated speech made for one phrase, with the listener ``backlog_s``
    behind (the stand-in voice says 0.1 s of tone per word)."""
    async def go():
        sched = fake_scheduler(fake_engines())
        session = Session(sched, SessionConfig("en", "es", clone_voice=False,
                                               compress=compress))
        session.start()
        audio = tone_phrases(3.0)
        session.report_backlog(backlog_s)
        for i in range(0, len(audio), 320):
            sched.clock.advance(20_000_000)
            session.push(audio[i:i + 320], RATE)
            if backlog_s:  # the listener stays that far behind
                session.report_backlog(backlog_s)
        await session.end()
        events = [e async for e in session.events()]
        await session.close()
        await sched.close()
        return sum(e.duration for e in events if isinstance(e, SynthAudio))

    return asyncio.run(go())


def test_speech_is_re_timed_only_when_the_listener_is_behind():
    relaxed = _voiced(0.0, compress=True)
    behind = _voiced(5.0, compress=True)
    unchanged = _voiced(5.0, compress=False)
    assert relaxed > 0
    assert unchanged == relaxed  # without re-timing, the same speech however far behind
    # 5 s behind, past the lag target: the cap (max_pace overall), of which Kokoro's
    # catch-up speed would give max_speed (the stand-in voice ignores speed)
    b = LatencyBudget()
    assert b.target_lag_s < 5.0
    # (0.1 s pieces: WORLD's 5 ms frames round the re-timed length a little)
    assert 1.1 < relaxed / behind <= b.max_pace / b.max_speed + 0.05


def test_the_backlog_drains_with_the_clock_between_reports():
    async def go():
        sched = fake_scheduler(fake_engines())
        session = Session(sched, SessionConfig("en", "es"))
        session.report_backlog(2.0)
        ctx = session._ctx
        before = ctx.backlog_s
        sched.clock.advance(1_500_000_000)
        after = ctx.backlog_s
        sched.clock.advance(5_000_000_000)
        gone = ctx.backlog_s
        await sched.close()
        return before, after, gone

    before, after, gone = asyncio.run(go())
    assert before == 2.0
    assert abs(after - 0.5) < 1e-6
    assert gone == 0.0
