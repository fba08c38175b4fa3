"""Embed babelcall in your own aiortc application: give an ``Interpreter`` any audio track, get
a track of the translated speech back, and read the events (captions, latencies) as they
happen — see ``babelcall.transports.interpreter`` for the whole example. The transports build
on the same class; this module is its public name for applications."""

from babelcall.realtime.scheduler import Overloaded, Scheduler
from babelcall.transports.interpreter import Interpreter

__all__ = ["Interpreter", "Overloaded", "Scheduler"]
