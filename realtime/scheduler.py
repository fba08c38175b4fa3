"""One scheduler per process owns the shared engines' time.

Each engine has a lane: a queue ordered by deadline (earliest first) and one worker that takes
the most urgent job plus every waiting job that can share its batch (same key: ASR language and
task, MT language pair), and runs them as one model call on the lane's own thread. Sessions
reach the lanes through per-session engine proxies (``bind``), so the streaming policies stay
unaware of scheduling: a policy calls ``asr.transcribe`` as before and the call waits its turn.

A call that runs past ``timeout_s`` fails with TimeoutError for its sessions and the lane moves
on with a fresh thread (the stuck one is abandoned), so one wedged model call cannot freeze every
call. Lateness (how far past its deadline each batch finishes, smoothed) sets a shed level: the
sessions space their ASR updates further apart, and at the top level new sessions are refused."""

from __future__ import annotations

import asyncio
import concurrent.futures
import heapq
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from babelcall.engines.registry import Engines
from babelcall.realtime.budget import LatencyBudget, shed_level
from babelcall.realtime.clock import Clock, SystemClock
from babelcall.realtime.errors import BabelcallError
from babelcall.realtime.types import Word

log = logging.getLogger(__name__)
LATENESS_HALF_LIFE_S = 2.0


class Overloaded(BabelcallError):
    """The machine cannot take another session within the latency budget."""


@dataclass(order=True)
class _Job:
    deadline_ns: int
    seq: int
    key: Hashable = field(compare=False)
    payload: Any = field(compare=False)
    future: concurrent.futures.Future = field(compare=False)
    enqueued_ns: int = field(compare=False, default=0)


@dataclass
class LaneStats:
    calls: int = 0
    items: int = 0
    busy_s: float = 0.0
    timeouts: int = 0
    lateness_s: float = 0.0  # smoothed: how late batches finish relative to their deadline
    max_batch_seen: int = 0
    last_done_ns: int = 0

    @property
    def mean_batch(self) -> float:
        return self.items / self.calls if self.calls else 0.0


class ComputeGate:
    """The machine's compute, shared by every lane in deadline order.

    Each lane orders its own jobs earliest-deadline-first, but Whisper and Kokoro calls from
    different lanes would otherwise run at the same time and time-slice a small CPU: the first
    audio of a phrase that just ended then waits behind a mid-phrase ASR update of another
    speaker. With ``slots`` model calls at most running at once (one per two cores by default,
    as each call uses two threads), the most urgent call gets the machine; throughput is the
    same, latency goes to whoever is due first."""

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError("compute slots must be at least 1")
        self.slots = slots
        self._free = slots
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    async def acquire(self, deadline_ns: int) -> None:
        if self._free > 0 and not self._waiting:
            self._free -= 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (deadline_ns, next(self._seq), fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # granted just as we were cancelled: pass it on
            raise

    def release(self) -> None:
        while self._waiting:
            _, _, fut = heapq.heappop(self._waiting)
            if not fut.done():
                fut.set_result(None)
                return
        self._free += 1


def default_compute_slots() -> int:
    return max(1, (os.cpu_count() or 2) // 2)


class Lane:
    """EDF queue + batching worker for one engine function."""

    def __init__(self, name: str, run_batch: Callable[[Hashable, list[Any]], list[Any]], *,
                 clock: Clock, max_batch: int = 8, timeout_s: float = 30.0,
                 gate: ComputeGate | None = None) -> None:
        self.name = name
        self.gate = gate
        self.run_batch = run_batch
        self.clock = clock
        self.max_batch = max_batch
        self.timeout_s = timeout_s
        self.stats = LaneStats()
        self._jobs: list[_Job] = []
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._executor = self._new_executor()
        self._task: asyncio.Task[None] | None = None
        self._running: list[_Job] = []  # the batch in the model now (empty: idle)
        self._stopped = False
        self.loop: asyncio.AbstractEventLoop | None = None

    def _new_executor(self) -> concurrent.futures.ThreadPoolExecutor:
        return concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"lane-{self.name}")

    @property
    def depth(self) -> int:
        return len(self._jobs)

    def lateness(self) -> float:
        """Smoothed lateness, decaying (half-life ``LATENESS_HALF_LIFE_S``) while the lane is
        idle: a lane with nothing to do is not late, however its last call went."""
        if self._running or self._jobs:
            return self.stats.lateness_s
        idle_s = max(0.0, (self.clock.now_ns() - self.stats.last_done_ns) / 1e9)
        return self.stats.lateness_s * 0.5 ** (idle_s / LATENESS_HALF_LIFE_S)

    def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stopped = False
        self._task = asyncio.create_task(self._work(), name=f"lane-{self.name}")

    async def stop(self) -> None:
        """Fail every job still queued or in flight (and any submitted later): a session thread
        waiting on one must wake up with an error, not wait forever on a lane that is gone."""
        self._stopped = True
        in_flight = self._running  # the worker's own cleanup forgets it once cancelled
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for job in self._jobs + in_flight:
            _fail(job.future, BabelcallError("scheduler stopped"))
        self._jobs.clear()
        self._running = []
        self._executor.shutdown(wait=False, cancel_futures=True)

    def submit_threadsafe(self, key: Hashable, payload: Any, deadline_ns: int,
                          ) -> concurrent.futures.Future:
        """From any thread: queue a job; the returned future resolves with its result."""
        if self.loop is None:
            raise BabelcallError("scheduler is not started")
        fut: concurrent.futures.Future = concurrent.futures.Future()
        if self._stopped:
            _fail(fut, BabelcallError("scheduler stopped"))
            return fut
        try:
            self.loop.call_soon_threadsafe(self._enqueue, key, payload, deadline_ns, fut)
        except RuntimeError:  # the loop is closed
            _fail(fut, BabelcallError("scheduler stopped"))
        return fut

    def _enqueue(self, key: Hashable, payload: Any, deadline_ns: int,
                 fut: concurrent.futures.Future) -> None:
        if self._stopped:
            _fail(fut, BabelcallError("scheduler stopped"))
            return
        job = _Job(deadline_ns, next(self._seq), key, payload, fut, self.clock.now_ns())
        self._jobs.append(job)
        self._wake.set()

    def _take_batch(self) -> list[_Job]:
        """The earliest-deadline job and the most urgent others with the same key."""
        self._jobs.sort()
        head = self._jobs[0]
        batch = [j for j in self._jobs if j.key == head.key][: self.max_batch]
        chosen = set(id(j) for j in batch)
        self._jobs = [j for j in self._jobs if id(j) not in chosen]
        return batch

    async def _work(self) -> None:
        while True:
            while not self._jobs:
                self._wake.clear()
                await self._wake.wait()
            batch = self._take_batch()
            self._running = batch
            try:
                await self._run(batch)
            finally:
                self._running = []

    async def _run(self, batch: list[_Job]) -> None:
        if self.gate is None:
            return await self._call(batch)
        await self.gate.acquire(min(j.deadline_ns for j in batch))
        try:
            return await self._call(batch)
        finally:
            self.gate.release()

    async def _call(self, batch: list[_Job]) -> None:
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        call = loop.run_in_executor(self._executor, self.run_batch, batch[0].key,
                                    [j.payload for j in batch])
        try:
            results = await asyncio.wait_for(asyncio.shield(call), self.timeout_s)
        except TimeoutError:
            self.stats.timeouts += 1
            log.error("%s lane: a call ran past %.1f s; abandoning its thread", self.name,
                      self.timeout_s)
            self._executor.shutdown(wait=False)
            self._executor = self._new_executor()
            for job in batch:
                _fail(job.future, TimeoutError(
                    f"{self.name} call ran past {self.timeout_s:.1f} s"))
            return
        except Exception as exc:  # the engine raised: every job of the batch gets the error
            for job in batch:
                _fail(job.future, exc)
            return
        finally:
            self.stats.busy_s += time.monotonic() - started
        now = self.clock.now_ns()
        self.stats.last_done_ns = now
        late = max(0.0, (now - min(j.deadline_ns for j in batch)) / 1e9)
        self.stats.lateness_s = 0.7 * self.stats.lateness_s + 0.3 * late
        self.stats.calls += 1
        self.stats.items += len(batch)
        self.stats.max_batch_seen = max(self.stats.max_batch_seen, len(batch))
        for job, result in zip(batch, results, strict=True):
            if not job.future.done():
                job.future.set_result(result)


class Deadlines:
    """Per-session: the deadline that the session's next call of each stage carries."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._by_stage: dict[str, int] = {}
        self._lock = threading.Lock()

    def set(self, stage: str, deadline_ns: int) -> None:
        with self._lock:
            self._by_stage[stage] = deadline_ns

    def get(self, stage: str) -> int:
        with self._lock:
            return self._by_stage.get(stage, self.clock.now_ns() + 5_000_000_000)


class Scheduler:
    def __init__(self, engines: Engines, *, clock: Clock | None = None,
                 budget: LatencyBudget | None = None, max_batch: int = 8,
                 timeout_s: float = 30.0, max_sessions: int | None = None,
                 compute_slots: int | None = None) -> None:
        """``compute_slots``: model calls (of any lane) allowed to run at once; default one
        per two CPU cores (see ComputeGate). A translator with ``shares_compute = False``
        (Apertium: a few ms, its own processes) runs outside the gate."""
        self.engines = engines
        self.clock = clock or SystemClock()
        self.budget = budget or LatencyBudget()
        self.max_sessions = max_sessions
        self.sessions: set[object] = set()
        self._level = 0
        self.gate = ComputeGate(compute_slots or default_compute_slots())
        self.asr = Lane("asr", self._asr_batch, clock=self.clock, max_batch=max_batch,
                        timeout_s=timeout_s, gate=self.gate)
        heavy_mt = getattr(engines.translator, "shares_compute", True)
        self.mt = Lane("mt", self._mt_batch, clock=self.clock, max_batch=max_batch,
                       timeout_s=timeout_s, gate=self.gate if heavy_mt else None)
        self.tts = Lane("tts", self._tts_batch, clock=self.clock, max_batch=1,
                        timeout_s=timeout_s, gate=self.gate)
        self.lanes = (self.asr, self.mt, self.tts)
        self._started = False

    async def start(self) -> None:
        if not self._started:
            for lane in self.lanes:
                lane.start()
            self._started = True

    async def close(self) -> None:
        for lane in self.lanes:
            await lane.stop()
        self._started = False

    async def __aenter__(self) -> Scheduler:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- admission and load ------------------------------------------------------------
    @property
    def level(self) -> int:
        lateness = max(lane.lateness() for lane in self.lanes)
        self._level = shed_level(lateness, self._level)
        return self._level

    def admit(self, session: object) -> None:
        if self.max_sessions is not None and len(self.sessions) >= self.max_sessions:
            raise Overloaded(f"this server is at its limit of {self.max_sessions} sessions")
        if self.level >= 3:
            raise Overloaded("the server is overloaded (translations are running late); "
                             "try again shortly")
        self.sessions.add(session)

    def release(self, session: object) -> None:
        self.sessions.discard(session)

    def bind(self, deadlines: Deadlines) -> Engines:
        """Engines for one session: calls go through the lanes with that session's deadlines."""
        e = self.engines
        return Engines(vad=e.vad, asr=_ScheduledAsr(self, deadlines),
                       tts=_ScheduledTts(self, deadlines),
                       translator=None if e.translator is None
                       else _ScheduledMt(self, deadlines), cloner=e.cloner)

    def metrics(self) -> dict[str, Any]:
        return {"sessions": len(self.sessions), "shed_level": self.level,
                **{f"{lane.name}_{k}": v for lane in self.lanes for k, v in (
                    ("queue", lane.depth), ("calls", lane.stats.calls),
                    ("mean_batch", round(lane.stats.mean_batch, 2)),
                    ("busy_s", round(lane.stats.busy_s, 2)),
                    ("lateness_s", round(lane.lateness(), 3)),
                    ("timeouts", lane.stats.timeouts))}}

    # -- batch runners (run on a lane's thread) --------------------------------------------
    def _asr_batch(self, key: Hashable, payloads: list[Any]) -> list[list[Word]]:
        language, task = key  # type: ignore[misc]
        asr = self.engines.asr
        audios = [p[0] for p in payloads]
        prompts = [p[1] for p in payloads]
        batch_fn = getattr(asr, "transcribe_batch", None)
        if batch_fn is not None:
            return batch_fn(audios, language=language, prompts=prompts, task=task)
        return [asr.transcribe(a, language=language, prompt=p, task=task)
                for a, p in zip(audios, prompts, strict=True)]

    def _mt_batch(self, key: Hashable, payloads: list[Any]) -> list[str]:
        source, target, with_prefix = key  # type: ignore[misc]
        assert self.engines.translator is not None
        prefixes = [p[1] for p in payloads] if with_prefix else None
        return self.engines.translator.translate([p[0] for p in payloads], source=source,
                                                 target=target, target_prefixes=prefixes)

    def _tts_batch(self, key: Hashable, payloads: list[Any]) -> list[np.ndarray | None]:
        return [next(iterator, None) for iterator in payloads]


def _fail(fut: concurrent.futures.Future, exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)


def _wait(fut: concurrent.futures.Future) -> Any:
    return fut.result()


class _ScheduledAsr:
    def __init__(self, scheduler: Scheduler, deadlines: Deadlines) -> None:
        self._s, self._d = scheduler, deadlines
        self.sample_rate = scheduler.engines.asr.sample_rate

    def transcribe(self, audio: np.ndarray, *, language: str, prompt: str = "",
                   task: str = "transcribe") -> list[Word]:
        return _wait(self._s.asr.submit_threadsafe((language, task), (audio, prompt),
                                                   self._d.get("asr")))


class _ScheduledMt:
    def __init__(self, scheduler: Scheduler, deadlines: Deadlines) -> None:
        self._s, self._d = scheduler, deadlines
        inner = scheduler.engines.translator
        assert inner is not None
        self._inner = inner
        self.name = inner.name
        self.supports_prefix = inner.supports_prefix

    def supports(self, source: str, target: str) -> bool:
        return self._inner.supports(source, target)

    def translate(self, sources: list[str], *, source: str, target: str,
                  target_prefixes: list[str] | None = None) -> list[str]:
        prefixes = target_prefixes or [None] * len(sources)
        key = (source, target, target_prefixes is not None)
        futs = [self._s.mt.submit_threadsafe(key, (text, prefix), self._d.get("mt"))
                for text, prefix in zip(sources, prefixes, strict=True)]
        return [_wait(f) for f in futs]


class _ScheduledTts:
    def __init__(self, scheduler: Scheduler, deadlines: Deadlines) -> None:
        self._s, self._d = scheduler, deadlines
        self._inner = scheduler.engines.tts
        self.sample_rate = self._inner.sample_rate
        self.voices: tuple[str, ...] = getattr(self._inner, "voices", ())

    def supports(self, language: str) -> bool:
        return self._inner.supports(language)

    def synthesize(self, text: str, *, language: str, voice: str | None = None,
                   speed: float = 1.0) -> Iterator[np.ndarray]:
        inner = self._inner.synthesize(text, language=language, voice=voice, speed=speed)
        while (chunk := _wait(self._s.tts.submit_threadsafe("tts", inner,
                                                             self._d.get("tts")))) is not None:
            yield chunk
