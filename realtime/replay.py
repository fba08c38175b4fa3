"""Play a file into a Session as a live call would, and collect what comes out.

``realtime``: 20 ms frames at wall-clock pace on the system clock (what a caller experiences).
``fast``: as fast as the machine allows on a simulated clock that moves with the audio; each
frame is fully processed before the next (computation-unaware, whisper_streaming's
``comp_unaware`` mode), so results are deterministic and latencies exclude compute time."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from babelcall.engines.registry import Engines
from babelcall.realtime.audio import iter_file
from babelcall.realtime.clock import FakeClock, SystemClock
from babelcall.realtime.eventlog import event_record
from babelcall.realtime.playout import Playout
from babelcall.realtime.scheduler import Scheduler
from babelcall.realtime.session import Session, SessionConfig
from babelcall.realtime.types import Event, SynthAudio

FRAME_S = 0.02
RATE = 16000


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
    blocks = list(iter_file(path, RATE))
    pcm = np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)
    step = int(FRAME_S * RATE)
    return [pcm[i:i + step] for i in range(0, len(pcm), step)]


async def replay(engines: Engines, config: SessionConfig, path: str | os.PathLike[str], *,
                 fast: bool = False, scheduler: Scheduler | None = None,
                 on_record: Callable[[dict[str, Any]], None] | None = None,
                 progress: Callable[[float, float], None] | None = None) -> ReplayResult:
    frames = _frames(path)  # decode first: a bad file fails before any model work
    clock = FakeClock() if fast else (scheduler.clock if scheduler else SystemClock())
    session = Session(engines, config, clock=clock, scheduler=scheduler)
    result = ReplayResult(rate=engines.tts.sample_rate, input_s=len(frames) * FRAME_S)
    playout = Playout(engines.tts.sample_rate)
    origin = clock.now_ns()
    started = time.monotonic()

    async def collect() -> None:
        async for ev in session.events():
            placed = playout.add(ev) if isinstance(ev, SynthAudio) else None
            if placed is not None:  # the listener's queue drives the session's catch-up
                session.report_backlog(max(0.0, (placed.end_ns - clock.now_ns()) / 1e9))
            rec = event_record(ev, origin_ns=origin, arrival_ns=session.arrival_ns(ev.src.end),
                               play_start_ns=placed.start_ns if placed else None)
            result.events.append(ev)
            result.records.append(rec)
            if on_record:
                on_record(rec)

    async with session:
        collector = asyncio.create_task(collect())
        for i, frame in enumerate(frames):
            t_end = (i + 1) * FRAME_S
            if fast:
                clock.set(origin + int(t_end * 1e9))
            else:
                delay = started + t_end - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            session.push(frame, RATE)
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
    result.audio = playout.render(origin, result.input_s)
    result.wall_s = time.monotonic() - started
    return result


def print_progress(done: float, total: float) -> None:
    """Progress on stderr: a live line on a terminal, a line every 10 s in a log."""
    if sys.stderr.isatty():
        print(f"\r{done:6.1f} / {total:.1f} s", end="", file=sys.stderr, flush=True)
    elif int(done) % 10 == 0 and abs(done - round(done)) < 1e-6:
        print(f"{done:.0f} / {total:.0f} s", file=sys.stderr, flush=True)
