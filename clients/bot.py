"""Embed babelcall in your own aiortc application: give it any audio track, get a track of the
translated speech back, and read the events (captions, latencies) as they happen.

    async with Scheduler(engines) as sched:                  # or pass Engines directly
        interp = Interpreter(sched, "en", "es")
        await interp.start()
        pc.addTrack(interp.attach(remote_audio_track))       # translated 48 kHz audio
        async for ev in interp.events():                     # Transcript, Translation, ...
            ...
        await interp.stop()

The Interpreter lives in ``babelcall.transports.interpreter`` (the transports build on it);
this is its public name for applications."""

from babelcall.realtime.scheduler import Overloaded, Scheduler
from babelcall.transports.interpreter import Interpreter

__all__ = ["Interpreter", "Overloaded", "Scheduler"]
