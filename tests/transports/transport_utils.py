"""Helpers for the transport tests: an in-process server on a free port, clips as paced tracks,
and checks on the audio that comes back."""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import time
from collections.abc import AsyncIterator, Callable

import av
import numpy as np
from aiortc.mediastreams import MediaStreamTrack
from conftest import load_clip

from babelcall.benchmarks.run import compact, frame_rms  # noqa: F401 - compact: tests' too
from babelcall.realtime.budget import LatencyBudget
from babelcall.realtime.scheduler import Scheduler
from babelcall.transports.hub import Hub, ServerConfig
from babelcall.transports.server import Running, running
from babelcall.transports.tracks import PcmTrack


@contextlib.asynccontextmanager
async def running_server(engines, *, budget: LatencyBudget | None = None,
                         **config) -> AsyncIterator[Running]:
    """``budget``: the server's scheduler runs on it (e.g. a test of what is said, not how
    fast, turns the overload policy off)."""
    if budget is None:
        async with running(engines, ServerConfig(**config), shutdown_timeout=2) as srv:
            yield srv
        return
    async with Scheduler(engines, budget=budget) as sched, \
            running(engines, ServerConfig(**config), shutdown_timeout=2,
                    scheduler=sched) as srv:
        yield srv


class SmallCamera(MediaStreamTrack):
    """64x48 frames at 15 fps: cheap to encode, enough to prove relaying video."""

    kind = "video"

    def __init__(self):
        super().__init__()
        self.n = 0

    async def recv(self):
        await asyncio.sleep(1 / 15)
        frame = av.VideoFrame(64, 48, "yuv420p")
        for p in frame.planes:
            p.update(bytes(p.buffer_size))
        frame.pts, frame.time_base = self.n * 6000, fractions.Fraction(1, 90000)
        self.n += 1
        return frame


def clip_track(name: str, *, lead_in_s: float = 0.3, seconds: float | None = None) -> PcmTrack:
    pcm = load_clip(name, 48000)
    if seconds is not None:
        pcm = pcm[: int(seconds * 48000)]
    return PcmTrack(pcm, 48000, lead_in_s=lead_in_s)


def to_16k(pcm: np.ndarray, rate: int) -> np.ndarray:
    from babelcall.realtime.audio import Resampler, frame_from_array

    r = Resampler(16000)
    return np.concatenate([r.push(frame_from_array(pcm, rate)), r.flush()])


def speech_seconds(pcm: np.ndarray, rate: int, threshold: float = 0.01) -> float:
    """Seconds of 20 ms windows louder than ``threshold`` (RMS)."""
    return float((frame_rms(pcm, rate)[1] > threshold).sum() * 0.02)


async def until(condition: Callable[[], bool], timeout: float, what: str,
                step: float = 0.05) -> None:
    """Wait for a condition (never a fixed sleep); fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(step)


@contextlib.contextmanager
def server_thread(engines, **config):
    """The server on its own event loop in a thread, for clients that run ``asyncio.run``
    themselves (the ``babelcall call`` command). Yields (url, hub)."""
    import threading

    loop = asyncio.new_event_loop()
    ready: dict = {}
    stop = asyncio.Event()

    async def run() -> None:
        async with running_server(engines, **config) as srv:
            ready["srv"] = srv
            await stop.wait()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(run())
        finally:  # as asyncio.run does: no task left pending when the loop closes
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while "srv" not in ready:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield ready["srv"].url, ready["srv"].hub
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        loop.close()


def make_offer(direction="sendrecv", video=False, data=True) -> str:
    """A real aiortc offer (its own event loop), to mangle in tests."""
    from aiortc import RTCPeerConnection
    from aiortc.mediastreams import AudioStreamTrack

    async def main():
        pc = RTCPeerConnection()
        pc.addTransceiver(AudioStreamTrack() if direction != "recvonly" else "audio",
                          direction=direction)
        if video:
            pc.addTransceiver("video", direction="recvonly")
        if data:
            pc.createDataChannel("captions")
        await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        await pc.close()
        return sdp

    return asyncio.run(main())


def describe(hub: Hub, callers=()) -> str:
    """Server and client state, for a failure message when something does not drain."""
    lines = []
    for ing in hub.ingests.values():
        link = ing.link
        lines.append(f"call {ing.id}: pc={ing.peer.pc.connectionState} ending={link.ending} "
                     f"finished={link.finished.is_set()} "
                     f"tasks={[(t.get_name(), t.done()) for t in link._tasks]} "
                     f"queued={[lane.queued for _, lane in link.outputs]} "
                     f"channels={[(c.readyState, c.bufferedAmount) for c in ing.peer.channels]} "
                     f"metrics={link.session.metrics()}")
    for c in callers:
        last = c.records[-1] if c.records else None
        lines.append(f"caller {c.url}: channel={c.channel.readyState} "
                     f"buffered={c.channel.bufferedAmount} records={len(c.records)} last={last}")
    return "\n".join(lines)
