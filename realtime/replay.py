"""Play a file into a Session as a live call would, and collect what comes out.

``realtime``: 20 ms frames at wall-clock pace on the system clock (what a caller experiences).
``fast``: as fast as the machine allows on a simulated clock that moves with the audio; each
frame is fully processed before the next (computation-unaware, whisper_streaming's
``comp_unaware`` mode), so results are deterministic and latencies exclude compute time."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from babelcall.engines.registry import Engines
from babelcall.realtime.audio import SPEECH_RATE, iter_file
from babelcall.realtime.budget import LatencyBudget
from babelcall.realtime.clock import FakeClock, SystemClock
from babelcall.realtime.eventlog import event_record
from babelcall.realtime.playout import Playout
from babelcall.realtime.scheduler import Scheduler
from babelcall.realtime.session import Session, SessionConfig
from babelcall.realtime.types import Event, PhraseTiming, SynthAudio

FRAME_S = 0.02


@dataclass
class ReplayResult:
    events: list[Event] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    audio: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    rate: int = 24000
    input_s: float = 0.0
    wall_s: float = 0.0
    metrics: dict[str, Any] = field(default_factory=dict)  # the session's, at the end
    lag: list[tuple[float, float]] = field(default_factory=list)  # (input s, lag s) samples
    # (input s, s): how long after the speaker the listener hears the latest voiced clause
    speech_lag: list[tuple[float, float]] = field(default_factory=list)


def _frames(path: str | os.PathLike[str]) -> list[np.ndarray]:
    blocks = list(iter_file(path, SPEECH_RATE))
    pcm = np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)
    step = int(FRAME_S * SPEECH_RATE)
    return [pcm[i:i + step] for i in range(0, len(pcm), step)]


@contextlib.asynccontextmanager
async def _scheduler(engines: Engines, scheduler: Scheduler | None, fast: bool,
                     budget: LatencyBudget | None) -> AsyncIterator[Scheduler]:
    if scheduler is not None:
        if fast or budget is not None:
            raise ValueError("a shared scheduler brings its own clock and budget")
        yield scheduler
        return
    async with Scheduler(engines, clock=FakeClock() if fast else SystemClock(),
                         budget=budget) as own:
        yield own


async def replay(engines: Engines, config: SessionConfig, path: str | os.PathLike[str], *,
                 fast: bool = False, scheduler: Scheduler | None = None,
                 budget: LatencyBudget | None = None, keep: bool = True,
                 on_record: Callable[[dict[str, Any]], None] | None = None,
                 progress: Callable[[float, float], None] | None = None) -> ReplayResult:
    """``scheduler``: share one with other replays (real-time pacing only); without it the
    replay runs on a scheduler of its own, with ``budget`` if given. ``keep=False``: keep
    no events, records or audio (``on_record`` still sees every record), so a long soak
    measures the server's memory, not the harness's."""
    frames = _frames(path)  # decode first: a bad file fails before any model work
    async with _scheduler(engines, scheduler, fast, budget) as sched:
        return await _run(sched, config, frames, fast, keep, on_record, progress)


async def _run(sched: Scheduler, config: SessionConfig, frames: list[np.ndarray], fast: bool,
               keep: bool, on_record: Callable[[dict[str, Any]], None] | None,
               progress: Callable[[float, float], None] | None) -> ReplayResult:
    clock = sched.clock
    wall = SystemClock()  # how long the replay itself took (in fast mode too)
    session = Session(sched, config)
    rate = sched.engines.tts.sample_rate
    result = ReplayResult(rate=rate, input_s=len(frames) * FRAME_S)
    playout = Playout(rate, keep=keep)
    origin = clock.now_ns()
    started = wall.now_ns()

    clauses: dict[int, dict[str, int]] = {}  # the hops this listener adds, per clause

    async def collect() -> None:
        async for ev in session.events():
            placed = playout.add(ev) if isinstance(ev, SynthAudio) else None
            if placed is not None:  # the listener's queue drives the session's catch-up
                session.report_backlog(max(0.0, (placed.end_ns - clock.now_ns()) / 1e9))
                if ev.seq == 0:
                    clauses[ev.clause] = {"handed": ev.wall_ns, "playing": placed.start_ns}
                    while len(clauses) > 64:  # only a phrase's last clause is asked for
                        del clauses[next(iter(clauses))]
            marks = clauses.pop(ev.clause, None) if isinstance(ev, PhraseTiming) else None
            rec = event_record(ev, origin_ns=origin, arrival_ns=session.arrival_ns(ev.src.end),
                               play_start_ns=placed.start_ns if placed else None, marks=marks)
            if keep:
                result.events.append(ev)
                result.records.append(rec)
            if on_record:
                on_record(rec)

    async with session:
        collector = asyncio.create_task(collect())
        for i, frame in enumerate(frames):
            t_end = (i + 1) * FRAME_S
            if fast:
                clock.set(origin + int(t_end * 1e9))  # type: ignore[attr-defined]
            else:
                await clock.sleep((origin + t_end * 1e9 - clock.now_ns()) / 1e9)
            session.push(frame, SPEECH_RATE)
            if fast:
                await session.idle()
            if i % 25 == 24:
                m = session.metrics()
                result.lag.append((round(t_end, 2), m["lag_s"]))
                result.speech_lag.append((round(t_end, 2), m["speech_lag_s"]))
            if progress and i % 50 == 49:
                progress(t_end, result.input_s)
        await session.end()
        await collector
        result.metrics = session.metrics()
    if keep:
        result.audio = playout.render(origin, result.input_s)
    result.wall_s = (wall.now_ns() - started) / 1e9
    return result


def print_progress(done: float, total: float) -> None:
    """Progress on stderr: a live line on a terminal, a line every 10 s in a log."""
    if sys.stderr.isatty():
        print(f"\r{done:6.1f} / {total:.1f} s", end="", file=sys.stderr, flush=True)
    elif int(done) % 10 == 0 and abs(done - round(done)) < 1e-6:
        print(f"{done:.0f} / {total:.0f} s", file=sys.stderr, flush=True)
