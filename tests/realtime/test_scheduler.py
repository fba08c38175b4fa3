"""Scheduler logic with fake stage durations (threads gated by events, a simulated clock):
EDF order, batching, timeouts, shedding, catch-up; no models, no ordering by sleeps."""

import asyncio
import threading
import time

import pytest
from fakes import RATE, CountingAsr, fake_engines, tone_phrases

from babelcall.realtime.clock import FakeClock
from babelcall.realtime.scheduler import ComputeGate, Lane, Overloaded, Scheduler
from babelcall.realtime.session import Session, SessionConfig
from babelcall.realtime.types import StageError, SynthAudio


class Recorder:
    """run_batch that records batches; the first call signals ``started`` and waits for
    ``gate`` (so the test knows what runs and what queues, without sleeping)."""

    def __init__(self, duration_clock=None, durations=None):
        self.batches = []
        self.started = threading.Event()
        self.gate = threading.Event()
        self.clock = duration_clock
        self.durations = durations or {}

    def __call__(self, key, payloads):
        if not self.batches:
            self.started.set()
            self.gate.wait(5)
        self.batches.append((key, list(payloads)))
        if self.clock is not None:  # fake stage duration on the simulated clock
            self.clock.advance(int(self.durations.get(key, 0) * 1e9))
        return [f"{key}:{p}" for p in payloads]


async def running(event: threading.Event) -> None:
    """Until a lane thread has set ``event`` (it is inside its model call)."""
    assert await asyncio.to_thread(event.wait, 5)


def test_lane_serves_earliest_deadline_first():
    async def go():
        rec = Recorder()
        lane = Lane("x", rec, clock=FakeClock(), max_batch=1)
        blocker = lane.submit("k0", "blocker", 0)
        await running(rec.started)  # the blocker runs; the rest queue up behind it
        jobs = [lane.submit(k, p, d) for k, p, d in
                [("a", 1, 500), ("b", 2, 100), ("c", 3, 300), ("d", 4, 200)]]
        rec.gate.set()
        await blocker
        out = [await j for j in jobs]
        await lane.stop()
        return rec, out

    rec, out = asyncio.run(go())
    assert [b[0] for b in rec.batches[1:]] == ["b", "d", "c", "a"]
    assert out == ["a:1", "b:2", "c:3", "d:4"]  # each caller gets its own result


def test_stopping_a_lane_fails_every_waiting_job():
    """A session awaiting a job (running, queued, or submitted after the stop) gets an error
    instead of waiting forever on a lane that is gone."""
    from babelcall.realtime.errors import BabelcallError

    async def go():
        rec = Recorder()  # the first call blocks on its gate until the end of the test
        lane = Lane("x", rec, clock=FakeClock(), max_batch=1)
        in_model = lane.submit("k", "running", 0)
        await running(rec.started)
        queued = lane.submit("k", "queued", 1)
        await lane.stop()
        late = lane.submit("k", "late", 2)
        rec.gate.set()
        return [await asyncio.gather(f, return_exceptions=True) for f in (in_model, queued,
                                                                           late)]

    for (result,) in asyncio.run(go()):
        assert isinstance(result, BabelcallError) and "stopped" in str(result)


def test_lanes_share_the_compute_gate_in_deadline_order():
    """With one compute slot, calls of different lanes run one at a time, the most urgent
    first: a phrase's first audio does not time-slice with another speaker's ASR update."""
    from babelcall.realtime.scheduler import ComputeGate

    async def go():
        order, running_now, overlap = [], [], []
        started, gate_open = threading.Event(), threading.Event()

        def runner(name):
            def run(key, payloads):
                running_now.append(name)
                overlap.append(len(running_now))
                if not order:
                    started.set()
                    gate_open.wait(5)
                order.append((name, payloads[0]))
                running_now.remove(name)
                return payloads
            return run

        gate = ComputeGate(1)
        asr = Lane("asr", runner("asr"), clock=FakeClock(), gate=gate)
        tts = Lane("tts", runner("tts"), clock=FakeClock(), gate=gate)
        first = asr.submit("k", "blocker", 0)
        await running(started)
        late_asr = asr.submit("es", "update", 900)  # another key: no batching
        urgent_tts = tts.submit("k", "first audio", 300)
        mid_asr = asr.submit("k", "final pass", 500)
        while not gate._waiting:  # the tts lane took its head and waits at the gate
            await asyncio.sleep(0)
        gate_open.set()
        for f in (first, late_asr, urgent_tts, mid_asr):
            await f
        await asr.stop()
        await tts.stop()
        return order, overlap

    order, overlap = asyncio.run(go())
    assert [p for _, p in order] == ["blocker", "first audio", "final pass", "update"]
    assert max(overlap) == 1  # never two model calls at once


def test_lane_batches_jobs_with_the_same_key():
    async def go():
        rec = Recorder()
        lane = Lane("asr", rec, clock=FakeClock(), max_batch=3)
        blocker = lane.submit("en", "first", 0)
        await running(rec.started)
        jobs = [lane.submit(k, p, d) for k, p, d in
                [("en", i, 100 + i) for i in range(4)] + [("es", 9, 50)]]
        rec.gate.set()
        await blocker
        await asyncio.gather(*jobs)
        await lane.stop()
        return rec, lane

    rec, lane = asyncio.run(go())
    # es (deadline 50) first, then en in batches of at most 3, in deadline order
    assert rec.batches[1] == ("es", [9])
    assert rec.batches[2] == ("en", [0, 1, 2])
    assert rec.batches[3] == ("en", [3])
    assert lane.stats.max_batch_seen == 3 and lane.stats.mean_batch == pytest.approx(6 / 4)


def test_a_stuck_call_times_out_on_the_lane_clock_and_the_lane_recovers():
    started, release = threading.Event(), threading.Event()

    def run(key, calls):
        if calls == ["stuck"]:
            started.set()
            release.wait(5)
        return [c.upper() for c in calls]

    async def go():
        clock = FakeClock()
        lane = Lane("tts", run, clock=clock, max_batch=1, timeout_s=0.2)
        stuck = lane.submit("k", "stuck", 0)
        await running(started)
        clock.advance(199_000_000)
        await asyncio.sleep(0)
        assert not stuck.done()  # not yet past the timeout on the lane's clock
        clock.advance(2_000_000)
        with pytest.raises(TimeoutError, match="ran past"):
            await stuck
        ok = await lane.submit("k", "ok", 1)  # served at once by a fresh thread
        release.set()
        await lane.stop()
        return ok, lane.stats.timeouts

    assert asyncio.run(go()) == ("OK", 1)


def test_a_timed_out_call_keeps_its_compute_slot_until_its_thread_ends():
    """The abandoned thread still computes behind the engine's lock: handing its slot to the
    next call would run two model calls on one slot's cores."""
    started, release, other_ran = threading.Event(), threading.Event(), threading.Event()
    finished = []

    def stuck(key, calls):
        started.set()
        release.wait(10)
        finished.append("stuck")
        return calls

    def other(key, calls):
        other_ran.set()
        finished.append("other")
        return calls

    async def go():
        clock = FakeClock()
        gate = ComputeGate(1)
        asr = Lane("asr", stuck, clock=clock, max_batch=1, timeout_s=0.2, gate=gate)
        tts = Lane("tts", other, clock=clock, max_batch=1, timeout_s=0.2, gate=gate)
        first = asr.submit("k", "a", 0)
        await running(started)
        clock.advance(300_000_000)
        with pytest.raises(TimeoutError, match="ran past"):
            await first
        second = tts.submit("k", "b", 1)
        while not gate._waiting and not other_ran.is_set():  # queued at the gate, or run
            await asyncio.to_thread(other_ran.wait, 0.01)
        queued = bool(gate._waiting) and not other_ran.is_set()
        release.set()
        assert await second == "b"  # the slot came back when the stuck thread ended
        await asr.stop()
        await tts.stop()
        return queued

    assert asyncio.run(go())
    assert finished == ["stuck", "other"]


def test_an_engine_error_reaches_every_job_of_the_batch():
    def run(key, payloads):
        raise RuntimeError("model fell over")

    async def go():
        lane = Lane("mt", run, clock=FakeClock())
        with pytest.raises(RuntimeError, match="fell over"):
            await lane.submit("k", "x", 0)
        await lane.stop()

    asyncio.run(go())


def test_a_job_whose_caller_left_is_not_run():
    async def go():
        rec = Recorder()
        lane = Lane("x", rec, clock=FakeClock(), max_batch=1)
        blocker = lane.submit("k", "blocker", 0)
        await running(rec.started)
        gone = lane.submit("k", "gone", 1)
        gone.cancel()  # the session that asked was closed
        kept = lane.submit("k", "kept", 2)
        rec.gate.set()
        await blocker
        await kept
        await lane.stop()
        return [b[1] for b in rec.batches]

    assert asyncio.run(go()) == [["blocker"], ["kept"]]


def test_overload_raises_lateness_sheds_then_releases():
    """Fake stage durations on a simulated clock: each batch takes 4 s against deadlines that
    are already due, so smoothed lateness climbs; the scheduler refuses new sessions, then
    lets them in again once calls are on time."""

    async def go():
        clock = FakeClock()
        sched = Scheduler(fake_engines(), clock=clock)
        rec = Recorder(duration_clock=clock, durations={"slow": 4.0, "fast": 0.0})
        rec.gate.set()
        sched.asr.run_batch = rec
        await sched.start()
        for _ in range(6):
            await sched.asr.submit("slow", 1, clock.now_ns())
        assert sched.level == 3
        with pytest.raises(Overloaded, match="overloaded"):
            sched.admit(object())
        for _ in range(12):
            await sched.asr.submit("fast", 1, clock.now_ns() + 10**9)
        assert sched.level == 0
        sched.admit(object())
        await sched.close()

    asyncio.run(go())


def test_session_limit_is_a_clear_refusal():
    async def go():
        sched = Scheduler(fake_engines(), max_sessions=1)
        await sched.start()
        first = Session(sched, SessionConfig("en", "es"))
        with pytest.raises(Overloaded, match="limit of 1"):
            Session(sched, SessionConfig("en", "es"))
        await first.close()  # frees the slot
        Session(sched, SessionConfig("en", "es"))
        await sched.close()

    asyncio.run(go())


async def drive(sessions, audio, clock, frame=320):
    async def collect(s, out):
        async for ev in s.events():
            out.append(ev)

    outs = [[] for _ in sessions]
    tasks = [asyncio.create_task(collect(s, o)) for s, o in zip(sessions, outs, strict=True)]
    for s in sessions:
        s.start()
    for i in range(0, len(audio), frame):
        clock.set(int((i + frame) / RATE * 1e9))
        for s in sessions:
            s.push(audio[i:i + frame], RATE)
        for s in sessions:
            await s.idle()
    for s in sessions:
        await s.end()
    await asyncio.wait_for(asyncio.gather(*tasks), 20)
    for s in sessions:
        await s.close()
    return outs


def test_sessions_share_engines_and_their_asr_calls_are_batched():
    class SlowAsr(CountingAsr):
        def transcribe_batch(self, audios, *, language, prompts=None, task="transcribe"):
            if not self.batch_sizes:  # the first call lasts until other sessions' calls wait
                deadline = time.monotonic() + 5
                while self.sched.asr.depth < 2 and time.monotonic() < deadline:
                    time.sleep(0.001)
            self.batch_sizes.append(len(audios))
            return [self.transcribe(a, language=language) for a in audios]

    async def go():
        asr = SlowAsr()
        asr.batch_sizes = []
        clock = FakeClock()
        sched = asr.sched = Scheduler(fake_engines(asr=asr), clock=clock)
        await sched.start()
        sessions = [Session(sched, SessionConfig("en", "es")) for _ in range(4)]
        outs = await drive(sessions, tone_phrases(3.0), clock)
        await sched.close()
        return asr, outs

    asr, outs = asyncio.run(go())
    assert all(any(isinstance(e, SynthAudio) for e in out) for out in outs)
    assert max(asr.batch_sizes) > 1  # concurrent sessions' updates went in one model call
    assert sum(asr.batch_sizes) > len(asr.batch_sizes)


def test_stuck_asr_times_out_and_the_session_recovers():
    started, release = threading.Event(), threading.Event()

    class HangsOnce(CountingAsr):
        def transcribe(self, audio, *, language, prompt="", task="transcribe"):
            self.calls += 1
            if self.calls == 1:
                started.set()
                release.wait(5)
            return super().transcribe(audio, language=language)

    async def go():
        clock = FakeClock()
        sched = Scheduler(fake_engines(asr=HangsOnce()), clock=clock, timeout_s=0.3)
        await sched.start()
        session = Session(sched, SessionConfig("en", "es", asr_interval_s=5.0))

        async def time_out():  # the hung call's lane clock moves past its timeout
            await running(started)
            clock.advance(300_000_000)

        watchdog = asyncio.create_task(time_out())
        (out,) = await drive([session], tone_phrases(1.5, 1.5), clock)
        release.set()
        await watchdog
        await sched.close()
        return out

    out = asyncio.run(go())
    errors = [e for e in out if isinstance(e, StageError)]
    assert errors and errors[0].stage == "asr" and "ran past" in errors[0].message
    assert any(isinstance(e, SynthAudio) and e.utt == 1 for e in out)


def test_an_idle_lane_is_not_late_however_its_last_call_went():
    async def go():
        clock = FakeClock()
        sched = Scheduler(fake_engines(), clock=clock)
        rec = Recorder(duration_clock=clock, durations={"slow": 6.0})
        rec.gate.set()
        sched.asr.run_batch = rec
        await sched.start()
        for _ in range(6):
            await sched.asr.submit("slow", 1, clock.now_ns())
        busy_level = sched.level
        clock.advance(20 * 10**9)  # 20 s with nothing to do
        idle_level = sched.level
        sched.admit(object())
        await sched.close()
        return busy_level, idle_level

    assert asyncio.run(go()) == (3, 0)


def test_stats_say_in_words_what_each_shed_level_gives_up():
    from babelcall.realtime.scheduler import shedding

    said = [shedding(level) for level in range(4)]
    assert said[0] == "keeping pace"
    assert "2x further apart" in said[1] and "3x" in said[2]
    assert "new sessions refused" in said[3] and "refused" not in said[2]

    async def go():
        async with Scheduler(fake_engines(), clock=FakeClock()) as sched:
            return sched.metrics()

    metrics = asyncio.run(go())
    assert metrics["shedding"] == "keeping pace" and "cores" in metrics["cost"]["machine"]
