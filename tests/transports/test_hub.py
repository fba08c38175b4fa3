"""The hub: one scheduler for every call, refusals as HTTP errors, registries it owns, and a
shutdown that closes everything it holds."""

import asyncio

import numpy as np
import pytest
from fakes import UpperMt, fake_engines

from babelcall.realtime.scheduler import Scheduler
from babelcall.transports.hub import Hub, ServerConfig
from babelcall.transports.signaling import SignalingError


class _Closable:
    def __init__(self, key):
        self.id = key
        self.participants = {}
        self.closed = False

    async def close(self):
        self.closed = True


def test_sessions_share_the_scheduler_and_refusals_are_http_errors():
    class NoFrench(UpperMt):
        def supports(self, source, target):
            return target != "fr"

    async def main():
        hub = Hub(fake_engines(mt=NoFrench()), ServerConfig(max_sessions=1))
        await hub.start()
        first = hub.new_session("en", "es")
        assert first.scheduler is hub.scheduler and hub.scheduler.sessions == {first}
        errors = {}
        for args in (("en", "es"), ("en", "en"), ("en", "fr")):
            with pytest.raises(SignalingError) as exc:
                hub.new_session(*args)
            errors[args] = (exc.value.status, exc.value.code)
        await first.close()
        await hub.close()
        with pytest.raises(SignalingError) as closing:
            hub.new_session("en", "es")
        return errors, closing.value.status

    errors, closing = asyncio.run(main())
    assert errors[("en", "es")] == (503, "overloaded")  # max_sessions=1 is taken
    assert errors[("en", "en")] == (400, "bad_language")
    assert errors[("en", "fr")] == (400, "unsupported_language")  # said before "full"
    assert closing == 503


def test_the_hub_owns_its_registries_and_closes_them():
    async def main():
        hub = Hub(fake_engines())
        await hub.start()
        call, room = _Closable("c1"), _Closable("r1")
        hub.add_call(call)
        assert hub.room("r1", lambda: room) is room
        assert hub.room("r1", lambda: _Closable("other")) is room  # one room per name
        stats = hub.metrics()
        other = _Closable("c2")
        hub.add_call(other)
        hub.drop_call("c2")
        closer = _Closable("ws")
        unregister = hub.on_close(closer.close)
        await hub.close()
        unregister()
        return stats, call, room, other, closer, hub

    stats, call, room, other, closer, hub = asyncio.run(main())
    assert stats["calls"] == 1 and stats["rooms"] == {"r1": 0}
    # /stats: the load in words and the cost account (nothing heard yet: no share)
    assert stats["shedding"] == "keeping pace" and stats["cost"]["heard_s"] == 0
    assert "cores" in stats["cost"]["machine"] and stats["cost"]["share_of_machine"] is None
    assert call.closed and room.closed and closer.closed and not other.closed
    with pytest.raises(SignalingError):
        hub.room("r2", lambda: _Closable("r2"))  # shutting down: no new rooms


def test_a_shared_scheduler_is_left_to_its_owner():
    async def main():
        async with Scheduler(fake_engines()) as sched:
            hub = Hub(sched.engines, scheduler=sched)
            await hub.start()
            await hub.close()
            shared = hub.runtime.scheduler is sched
            # still running: the hub did not close what it did not make
            await sched.transcribe(np.zeros(16000, np.float32), language="en", deadline_ns=0)
            return shared

    assert asyncio.run(main())
