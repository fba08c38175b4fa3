"""One scheduler per process owns the shared engines' time.

Sessions await it from the event loop (``await scheduler.transcribe(..., deadline_ns=...)``).
Each engine has a lane: a queue ordered by deadline (earliest first) and one worker thread of
its own. The lane's task takes the most urgent job plus every waiting job that can share its
batch (same key: ASR language and task) and runs them as one model call on that thread; the
result comes back to the loop. One model call therefore crosses threads twice (loop -> lane
thread -> loop), whatever the number of sessions.

Lanes do not run side by side on a small CPU: a compute gate grants ``compute_slots`` model
calls at a time, earliest deadline first across all lanes (VAD, and a translator that says it
does not share the model cores, run outside it). A call that runs past ``timeout_s`` on the
scheduler's clock fails for its sessions and the lane goes on with a fresh thread (the stuck
one is abandoned, but keeps its compute slot until it really ends: it still holds the cores
and the engine's lock), so one wedged call cannot freeze every call. Lateness (how far past its
deadline each batch finishes, smoothed) sets a shed level: sessions space their ASR updates
further apart, and at the top level new sessions are refused."""

from __future__ import annotations

import asyncio
import concurrent.futures
import heapq
import itertools
import logging
import os
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from babelcall.engines.registry import Engines
from babelcall.realtime.budget import LatencyBudget
from babelcall.realtime.clock import Clock, SystemClock
from babelcall.realtime.cost import CostLedger
from babelcall.realtime.errors import BabelcallError
from babelcall.realtime.policy import asr_interval_factor, shed_level
from babelcall.realtime.tasks import cancel_and_wait
from babelcall.realtime.types import Word

log = logging.getLogger(__name__)
LATENESS_HALF_LIFE_S = 2.0
T = TypeVar("T")
RunBatch = Callable[[Hashable, list[Any]], list[Any]]


class Overloaded(BabelcallError):
    """The machine cannot take another session within the latency budget."""


@dataclass
class CallTrace:
    """When a call was queued, got the machine (its lane thread started it, past the compute
    gate) and finished, on the scheduler's clock: the waterfall's hops."""

    submitted_ns: int = 0
    started_ns: int = 0
    done_ns: int = 0


@dataclass(order=True)
class _Job:
    deadline_ns: int
    seq: int
    key: Hashable = field(compare=False)
    payload: Any = field(compare=False)
    future: asyncio.Future[Any] = field(compare=False)
    trace: CallTrace | None = field(compare=False, default=None)


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

    Each lane orders its own jobs earliest-deadline-first, but more model calls than cores
    would time-slice a small CPU: the first audio of a phrase that just ended would wait
    behind a mid-phrase ASR update of another speaker. With ``slots`` model calls at most
    running at once, one per core by default, the most urgent calls get the cores; where
    calls must share, the earliest deadline goes first. Whisper computes on one thread (a
    second cost ~8 % more CPU for the same words), so the recogniser runs beside the
    synthesiser instead of taking turns with it; Kokoro keeps two (the one TTS lane thread
    makes every session's speech: its intra-op threads are its only way onto a free core)."""

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


def default_compute_slots(threads_per_call: int = 1) -> int:
    """One model call per ``threads_per_call`` cores this process may use."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 2
    return max(1, cores // max(1, threads_per_call))


def run_calls(key: Hashable, calls: list[Callable[[], Any]]) -> list[Any]:
    """A lane of plain calls (one job each, never batched)."""
    return [call() for call in calls]


class Lane:
    """EDF queue + batching worker for one engine function, on a thread of its own."""

    def __init__(self, name: str, run_batch: RunBatch = run_calls, *, clock: Clock,
                 max_batch: int = 8, timeout_s: float = 30.0,
                 gate: ComputeGate | None = None, ledger: CostLedger | None = None,
                 cost_stage: str | None = None) -> None:
        """``ledger``: where each call's CPU time goes, under ``cost_stage`` (default the
        lane's name) less what the engine charges to stages of its own (realtime/cost.py)."""
        self.name = name
        self.gate = gate
        self.run_batch = run_batch
        self.ledger = ledger
        self.cost_stage = cost_stage or name
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
        self._computing: asyncio.Future[Any] | None = None  # its thread's work
        self._stopped = False

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
        self._stopped = False
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._work(), name=f"lane-{self.name}")

    async def stop(self) -> None:
        """Fail every job still queued or in flight (and any submitted later): a session
        awaiting one must wake up with an error, not wait forever on a lane that is gone."""
        self._stopped = True
        in_flight = self._running  # the worker's own cleanup forgets it once cancelled
        if self._task:
            await cancel_and_wait([self._task])
        for job in self._jobs + in_flight:
            _fail(job.future, BabelcallError("scheduler stopped"))
        self._jobs.clear()
        self._running = []
        self._task = None
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._executor = self._new_executor()  # a restarted lane gets a fresh thread

    def submit(self, key: Hashable, payload: Any, deadline_ns: int,
               trace: CallTrace | None = None) -> asyncio.Future[Any]:
        """Queue a job (on the loop); the future resolves with its result."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if trace is not None:
            trace.submitted_ns = self.clock.now_ns()
        if self._stopped:
            _fail(fut, BabelcallError("scheduler stopped"))
            return fut
        if self._task is None:  # first use: the lane starts on the caller's loop
            self.start()
        self._jobs.append(_Job(deadline_ns, next(self._seq), key, payload, fut, trace))
        self._wake.set()
        return fut

    async def call(self, fn: Callable[[], T], deadline_ns: int,
                   trace: CallTrace | None = None) -> T:
        """Run ``fn`` on this lane's thread, in deadline order (a lane of plain calls)."""
        return await self.submit(object(), fn, deadline_ns, trace)

    def _take_batch(self) -> list[_Job]:
        """The earliest-deadline job and the most urgent others with the same key; jobs
        whose caller stopped waiting (a closed session) are dropped unrun."""
        self._jobs = sorted(j for j in self._jobs if not j.future.done())
        if not self._jobs:
            return []
        head = self._jobs[0]
        batch = [j for j in self._jobs if j.key == head.key][: self.max_batch]
        chosen = set(id(j) for j in batch)
        self._jobs = [j for j in self._jobs if id(j) not in chosen]
        return batch

    def _metered(self, key: Hashable, payloads: list[Any]) -> list[Any]:
        """The batch on the lane's thread, its CPU time counted where a ledger is given."""
        if self.ledger is None:
            return self.run_batch(key, payloads)
        with self.ledger.measure(self.cost_stage):
            return self.run_batch(key, payloads)

    async def _work(self) -> None:
        while True:
            while not self._jobs:
                self._wake.clear()
                await self._wake.wait()
            batch = self._take_batch()
            if not batch:
                continue
            self._running = batch
            try:
                await self._run(batch)
            finally:
                self._running = []

    async def _run(self, batch: list[_Job]) -> None:
        if self.gate is None:
            return await self._call(batch)
        gate = self.gate
        await gate.acquire(min(j.deadline_ns for j in batch))
        try:
            return await self._call(batch)
        finally:
            computing, self._computing = self._computing, None
            if computing is None or computing.done():
                gate.release()
            else:  # abandoned past its timeout, its thread still computes (the engine's
                # lock held, the cores busy): the slot stays taken until that thread ends
                computing.add_done_callback(lambda _: gate.release())

    async def _call(self, batch: list[_Job]) -> None:
        loop = asyncio.get_running_loop()
        started = self.clock.now_ns()
        for job in batch:
            if job.trace is not None:
                job.trace.started_ns = started
        call = loop.run_in_executor(self._executor, self._metered, batch[0].key,
                                    [j.payload for j in batch])
        self._computing = call
        timer = asyncio.ensure_future(self.clock.sleep(self.timeout_s))
        try:
            await asyncio.wait({call, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            self.stats.busy_s += (self.clock.now_ns() - started) / 1e9
        if not call.done():
            self.stats.timeouts += 1
            log.error("%s lane: a call ran past %.1f s; abandoning its thread", self.name,
                      self.timeout_s)
            call.add_done_callback(_consume)  # its late result or error goes nowhere
            self._executor.shutdown(wait=False)
            self._executor = self._new_executor()
            for job in batch:
                _fail(job.future, TimeoutError(
                    f"{self.name} call ran past {self.timeout_s:.1f} s"))
            return
        if call.exception() is not None:  # the engine raised: every job of the batch gets it
            for job in batch:
                _fail(job.future, call.exception())  # type: ignore[arg-type]
            return
        results = call.result()
        now = self.clock.now_ns()
        for job in batch:
            if job.trace is not None:
                job.trace.done_ns = now
        self.stats.last_done_ns = now
        late = max(0.0, (now - min(j.deadline_ns for j in batch)) / 1e9)
        self.stats.lateness_s = 0.7 * self.stats.lateness_s + 0.3 * late
        self.stats.calls += 1
        self.stats.items += len(batch)
        self.stats.max_batch_seen = max(self.stats.max_batch_seen, len(batch))
        for job, result in zip(batch, results, strict=True):
            if not job.future.done():
                job.future.set_result(result)


class Scheduler:
    """The engines, shared by every session of a process through lanes (see the module
    docstring). Every method is awaited from the event loop and takes the call's deadline."""

    def __init__(self, engines: Engines, *, clock: Clock | None = None,
                 budget: LatencyBudget | None = None, max_batch: int = 8,
                 timeout_s: float = 30.0, max_sessions: int | None = None,
                 compute_slots: int | None = None) -> None:
        """``compute_slots``: model calls (of any lane) allowed to run at once; default one
        per core, or one per N cores where both the recogniser and the synthesiser compute on
        N threads (``--threads N``; see ComputeGate). A translator with ``shares_compute =
        False`` (Apertium: a few ms, its own processes) runs outside the gate, as does the
        VAD."""
        self.engines = engines
        self.clock = clock or SystemClock()
        self.budget = budget or LatencyBudget()
        self.max_sessions = max_sessions
        self.sessions: set[object] = set()
        self._level = 0
        per_call = min(int(getattr(e, "threads", 1) or 1) for e in (engines.asr, engines.tts))
        self.gate = ComputeGate(compute_slots or default_compute_slots(per_call))
        self.cost = CostLedger()
        common = {"clock": self.clock, "timeout_s": timeout_s, "ledger": self.cost}
        gated = {**common, "gate": self.gate}
        self.asr = Lane("asr", self._asr_batch, max_batch=max_batch, **gated)
        heavy_mt = getattr(engines.translator, "shares_compute", True)
        self.mt = Lane("mt", **common, gate=self.gate if heavy_mt else None)
        # a TTS step is Kokoro (charged to "tts" by the engine) then the voice conversion
        self.tts = Lane("tts", **gated, cost_stage="voice_conversion")
        self.voice = Lane("voice", **gated, cost_stage="voice_analysis")  # speaker profiling
        self.vad = Lane("vad", **common)  # tiny; never waits
        self.lanes = (self.asr, self.mt, self.tts, self.voice, self.vad)
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

    # -- the calls sessions make ----------------------------------------------------------
    async def transcribe(self, audio: np.ndarray, *, language: str, prompt: str = "",
                         task: str = "transcribe", deadline_ns: int,
                         trace: CallTrace | None = None) -> list[Word]:
        """Whisper on a phrase buffer; batched with other sessions' calls of the same
        language and task."""
        return await self.asr.submit(("transcribe", language, task), (audio, prompt),
                                     deadline_ns, trace)

    async def detect_language(self, audio: np.ndarray, candidates: set[str] | None, *,
                              deadline_ns: int) -> tuple[str, float]:
        """Whisper's language ID (the most probable of ``candidates``) and its probability."""
        fn = getattr(self.engines.asr, "detect_language", None)
        if fn is None:
            raise BabelcallError("this ASR engine cannot identify languages")
        return await self.asr.call(lambda: fn(audio, candidates), deadline_ns)

    async def translate(self, step: Callable[[], T], *, deadline_ns: int,
                        trace: CallTrace | None = None) -> T:
        """One step of a session's incremental translator (its engine calls included)."""
        return await self.mt.call(step, deadline_ns, trace)

    async def synthesize(self, step: Callable[[], T], *, deadline_ns: int,
                         trace: CallTrace | None = None) -> T:
        """The next piece of a clause's speech (synthesis and voice conversion)."""
        return await self.tts.call(step, deadline_ns, trace)

    async def analyse(self, fn: Callable[[], T], *, deadline_ns: int) -> T:
        """Speaker analysis (the voice profile), behind the compute gate like the models."""
        return await self.voice.call(fn, deadline_ns)

    async def detect_speech(self, fn: Callable[[], T]) -> T:
        """A session's voice-activity step: due now, outside the gate (a few ms)."""
        return await self.vad.call(fn, self.clock.now_ns())

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

    def metrics(self) -> dict[str, Any]:
        """Lanes, load and the cost account (realtime/cost.py), as /stats shows them; where
        the machine is behind, ``shedding`` says what it gives up, in words."""
        level = self.level
        return {"sessions": len(self.sessions), "shed_level": level,
                "shedding": shedding(level),
                **{f"{lane.name}_{k}": v for lane in self.lanes for k, v in (
                    ("queue", lane.depth), ("calls", lane.stats.calls),
                    ("mean_batch", round(lane.stats.mean_batch, 2)),
                    ("busy_s", round(lane.stats.busy_s, 2)),
                    ("lateness_s", round(lane.lateness(), 3)),
                    ("timeouts", lane.stats.timeouts))},
                "cost": self.cost.snapshot()}

    # -- batch runner (on the ASR lane's thread) --------------------------------------------
    def _asr_batch(self, key: Hashable, payloads: list[Any]) -> list[Any]:
        if not isinstance(key, tuple):  # a plain call (language ID)
            return run_calls(key, payloads)
        _, language, task = key
        asr = self.engines.asr
        audios = [p[0] for p in payloads]
        prompts = [p[1] for p in payloads]
        batch_fn = getattr(asr, "transcribe_batch", None)
        if batch_fn is not None:
            return batch_fn(audios, language=language, prompts=prompts, task=task)
        return [asr.transcribe(a, language=language, prompt=p, task=task)
                for a, p in zip(audios, prompts, strict=True)]


def shedding(level: int) -> str:
    """What a shed level (realtime/policy.py) gives up, in the order it is given up."""
    if level <= 0:
        return "keeping pace"
    if level >= 3:
        return (f"behind: recogniser updates {asr_interval_factor(level):g}x further apart, "
                f"new sessions refused{_PER_SESSION}")
    return f"behind: recogniser updates {asr_interval_factor(level):g}x further apart{_PER_SESSION}"


_PER_SESSION = ("; each session's voice also speeds up, then merges and captions clauses, "
                "by its own backlog")


def _fail(fut: asyncio.Future[Any], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)
        fut.add_done_callback(_consume)  # nobody may wait any more (a closed session)


def _consume(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()  # retrieved, so asyncio does not log it as never retrieved
