"""The runtime: a scheduler owned or shared, and the GIL switch interval while media flows."""

import asyncio
import sys

from fakes import fake_engines

from babelcall.realtime.scheduler import Scheduler
from babelcall.transports.runtime import GilSwitch, Runtime


def test_the_gil_switch_is_set_and_put_back():
    before = sys.getswitchinterval()
    gil = GilSwitch(0.002)
    gil.set()
    gil.set()  # twice: the original is still what comes back
    assert sys.getswitchinterval() == 0.002
    gil.restore()
    assert sys.getswitchinterval() == before
    GilSwitch(None).set()  # None leaves the process alone
    assert sys.getswitchinterval() == before


def test_an_owned_scheduler_is_closed_a_shared_one_is_not():
    async def main():
        own = Runtime(fake_engines(), gil_switch_interval_s=None)
        await own.start()
        await own.close()
        async with Scheduler(fake_engines()) as shared:
            runtime = Runtime(shared, gil_switch_interval_s=None)
            await runtime.start()
            await runtime.close()
            still = shared._started
        return own.scheduler._started, still

    assert asyncio.run(main()) == (False, True)
