"""Clocks: a FakeClock's sleepers wake when it is moved past their time, from any thread."""

import asyncio
import threading

import pytest

from babelcall.realtime.clock import FakeClock, SystemClock


def test_fake_sleepers_wake_in_time_order_when_the_clock_moves():
    async def go():
        clock = FakeClock()
        woke = []

        async def nap(name, s):
            await clock.sleep(s)
            woke.append((name, clock.now_ns()))

        tasks = [asyncio.create_task(nap(n, s)) for n, s in (("b", 2.0), ("a", 1.0))]
        await asyncio.sleep(0)
        clock.advance(500_000_000)
        await asyncio.sleep(0)
        assert woke == []
        clock.set(1_000_000_000)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert [w[0] for w in woke] == ["a"]
        threading.Thread(target=clock.advance, args=(5_000_000_000,)).start()  # a lane thread
        await asyncio.wait_for(asyncio.gather(*tasks), 2)
        await clock.sleep(0)  # no wait at all
        return woke

    assert [w[0] for w in asyncio.run(go())] == ["a", "b"]


def test_a_clock_never_goes_back():
    clock = FakeClock(10)
    clock.set(5)
    assert clock.now_ns() == 10
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_the_system_clock_sleeps():
    async def go():
        clock = SystemClock()
        t0 = clock.now_ns()
        await clock.sleep(0.01)
        return clock.now_ns() - t0

    assert asyncio.run(go()) >= 9_000_000
