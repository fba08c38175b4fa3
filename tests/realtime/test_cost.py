"""The cost account: CPU time per stage, counted once, helpers included; no timed assertions
(CPU clocks are compared with CPU clocks)."""

import asyncio
import threading
import time

from fakes import RATE, fake_scheduler, tone_phrases

from babelcall.realtime.cost import CostLedger, charge, machine_name, per_audio
from babelcall.realtime.session import Session, SessionConfig


def burn(ns: int) -> None:
    """Spend at least ``ns`` of this thread's CPU time."""
    end = time.thread_time_ns() + ns
    while time.thread_time_ns() < end:
        pass


def test_a_nested_charge_is_counted_under_its_stage_and_not_twice():
    ledger = CostLedger()
    t0 = time.thread_time_ns()
    with ledger.measure("lane"):
        burn(2_000_000)
        with charge("engine"):
            burn(3_000_000)
    spent = time.thread_time_ns() - t0
    cpu = {k: v.cpu_ns for k, v in ledger.stages.items()}
    assert cpu["engine"] >= 3_000_000 and cpu["lane"] >= 2_000_000
    assert cpu["lane"] + cpu["engine"] <= spent


def test_a_charge_outside_any_measurement_counts_nowhere():
    ledger = CostLedger()
    with charge("engine"):
        burn(1_000_000)
    assert ledger.stages == {}


def test_helper_threads_cpu_is_counted_with_the_call():
    """The work happens on another thread (as CTranslate2's workers do) while the lane's
    thread waits: the helper's CPU clock is read, not just the caller's."""
    go, done, leave = threading.Event(), threading.Event(), threading.Event()
    own: list[int] = []

    def worker() -> None:  # a pool thread: it lives on after the call
        go.wait()
        t0 = time.thread_time_ns()
        burn(5_000_000)
        own.append(time.thread_time_ns() - t0)
        done.set()
        leave.wait(10)

    helper = threading.Thread(target=worker)
    helper.start()
    ledger = CostLedger()
    with ledger.measure("lane"), charge("asr", threads=[helper.native_id]):
        go.set()
        assert done.wait(10)
    leave.set()
    helper.join()
    assert ledger.stages["asr"].cpu_ns >= own[0]


def test_per_audio_and_snapshot_state_the_machine_and_the_share():
    ledger = CostLedger(cores=2, machine="Test CPU, 2 cores")
    ledger.add("tts", 3_000_000_000)
    ledger.add("asr", 1_000_000_000)
    ledger.heard(10.0)
    snap = ledger.snapshot()
    assert snap["machine"] == "Test CPU, 2 cores"
    assert snap["cpu_per_audio_s"] == {"tts": 0.3, "asr": 0.1}
    assert snap["total_cpu_per_audio_s"] == 0.4 and snap["share_of_machine"] == 0.2
    account = per_audio({"tts": 1.0}, {"tts": 4.0, "asr": 1.0}, 10.0, cores=2)
    assert account["cpu_per_audio_s"] == {"tts": 0.3, "asr": 0.1}
    assert account["share_of_machine"] == 0.2
    assert "cores" in machine_name()


def test_the_scheduler_accounts_every_lane_and_the_audio_heard():
    async def go():
        sched = fake_scheduler()
        await sched.start()
        session = Session(sched, SessionConfig("en", "es"))
        session.start()
        audio = tone_phrases(1.5)
        for i in range(0, len(audio), 320):
            session.push(audio[i:i + 320], RATE)
        await session.end()
        _ = [e async for e in session.events()]
        await session.close()
        metrics = sched.metrics()
        await sched.close()
        return metrics["cost"], len(audio) / RATE

    cost, seconds = asyncio.run(go())
    assert cost["heard_s"] == round(seconds, 2)
    assert {"vad", "asr", "voice_conversion"} <= set(cost["calls"])
    assert cost["share_of_machine"] is not None and "cores" in cost["machine"]
