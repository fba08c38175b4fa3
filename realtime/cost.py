"""The cost account: CPU-seconds each stage spends, per second of audio heard and as a share of
the machine.

Why CPU clocks and not wall time: on a shared machine a call's wall time grows with every other
process that wants the cores, its CPU time hardly does. So each model call is measured with the
CPU clock of the thread that computes it (the lane's thread, ``time.thread_time_ns``) plus the
clocks of the threads and processes the engine computes in besides: CTranslate2 runs Whisper on
worker threads of its own (the lane's thread only waits: ~0.01 of the ~0.45 CPU-s of a call),
onnxruntime with more than one intra-op thread uses a pool, Apertium runs in child processes.
An engine names those helpers and marks its own work with ``charge``; what a lane call spends
outside every ``charge`` is counted under the lane's own stage (the TTS lane's remainder is the
voice conversion, since Kokoro charges its synthesis to ``tts``). CPU the process spends outside
any lane call (the event loop, codecs, idle library threads spinning) is not a stage's: the
snapshot gives it as ``unattributed``, from the process's own CPU clock."""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RECENT_S = 10.0  # window of the live share of the machine (/stats)
_CPUCLOCK_THREAD_SCHED = 6  # Linux: MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED) = (~tid << 3) | 6

Ids = Iterable[int] | Callable[[], Iterable[int]]


def thread_cpu_ns(tid: int) -> int:
    """CPU time of thread ``tid`` of this process (Linux), 0 where it cannot be read (a thread
    that has exited, another OS)."""
    try:
        return time.clock_gettime_ns((~tid << 3) | _CPUCLOCK_THREAD_SCHED)
    except (OSError, OverflowError, ValueError):
        return _schedstat_ns(f"/proc/self/task/{tid}/schedstat")


def process_cpu_ns(pid: int) -> int:
    """CPU time of (the main thread of) process ``pid``; 0 once it has gone."""
    return _schedstat_ns(f"/proc/{pid}/schedstat")


def _schedstat_ns(path: str) -> int:
    try:
        with open(path, encoding="ascii") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def native_threads() -> set[int]:
    """Thread ids of this process that Python did not start (a library's workers); empty off
    Linux. An engine takes this before and after loading its model: the difference is its
    helpers."""
    try:
        tids = {int(t) for t in os.listdir("/proc/self/task")}
    except OSError:
        return set()
    return tids - {t.native_id for t in threading.enumerate() if t.native_id is not None}


def machine_name() -> str:
    """"AMD EPYC, 2 cores": the CPU model (/proc/cpuinfo) and how many cores this process may
    use — every figure of the account is tied to it."""
    import platform

    return f"{cpu_model() or platform.processor() or 'unknown CPU'}, {usable_cores()} cores"


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ("" where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _ids(ids: Ids) -> list[int]:
    return list(ids() if callable(ids) else ids)


@dataclass
class _Open:
    """A measurement under way on this thread."""

    ledger: CostLedger
    stage: str
    threads: Ids
    processes: Ids
    thread_ns: int
    helpers: dict[tuple[str, int], int]
    children_ns: int = 0  # this thread's time in nested measurements (counted there)


_local = threading.local()


def _stack() -> list[_Open]:
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    return stack


def _helper_ns(threads: Ids, processes: Ids) -> dict[tuple[str, int], int]:
    out = {("t", t): thread_cpu_ns(t) for t in _ids(threads)}
    out.update({("p", p): process_cpu_ns(p) for p in _ids(processes)})
    return out


@contextmanager
def charge(stage: str, *, threads: Ids = (), processes: Ids = ()) -> Iterator[None]:
    """An engine marks its own work (with the helper threads and processes it computes in) as
    ``stage``: counted in the ledger of the lane call running on this thread, taken out of
    that call's own stage. Outside a lane call (a benchmark calling the engine directly) it
    costs nothing and counts nowhere."""
    stack = _stack()
    if not stack:
        yield
        return
    with stack[-1].ledger.measure(stage, threads=threads, processes=processes):
        yield


@dataclass
class StageCost:
    calls: int = 0
    cpu_ns: int = 0


@dataclass
class CostLedger:
    """CPU-seconds per stage for every session of a scheduler, the audio those sessions have
    heard, and the recent rate (the live share of the machine). Thread-safe: lane threads add,
    the loop reads."""

    cores: int = field(default_factory=usable_cores)
    machine: str = field(default_factory=machine_name)
    recent_s: float = RECENT_S
    stages: dict[str, StageCost] = field(default_factory=dict)
    heard_s: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _recent: deque[tuple[float, int]] = field(default_factory=deque, repr=False)
    _started: tuple[float, int] = field(
        default_factory=lambda: (time.monotonic(), time.process_time_ns()), repr=False)

    @contextmanager
    def measure(self, stage: str, *, threads: Ids = (), processes: Ids = ()) -> Iterator[None]:
        """Count the CPU this thread (and the named helpers) spends in the block under
        ``stage``; nested measurements are counted under their own stage, not twice. A nested
        measurement's helpers are its own: an enclosing one must not name them too."""
        stack = _stack()
        frame = _Open(self, stage, threads, processes, time.thread_time_ns(),
                      _helper_ns(threads, processes))
        stack.append(frame)
        try:
            yield
        finally:
            stack.pop()
            own = time.thread_time_ns() - frame.thread_ns
            helpers = sum(max(0, ns - frame.helpers.get(key, 0))  # a new helper: all of it
                          for key, ns in _helper_ns(threads, processes).items())
            self.add(stage, max(0, own - frame.children_ns) + helpers)
            if stack:  # the enclosing measurement counts this thread's time once
                stack[-1].children_ns += own

    def add(self, stage: str, cpu_ns: int) -> None:
        now = time.monotonic()
        with self._lock:
            cost = self.stages.setdefault(stage, StageCost())
            cost.calls += 1
            cost.cpu_ns += cpu_ns
            self._recent.append((now, cpu_ns))
            while self._recent and self._recent[0][0] < now - self.recent_s:
                self._recent.popleft()

    def heard(self, seconds: float) -> None:
        """Audio a session has taken in (the listen stage counts it once it is scored)."""
        with self._lock:
            self.heard_s += seconds

    def cpu_s(self) -> dict[str, float]:
        with self._lock:
            return {k: v.cpu_ns / 1e9 for k, v in self.stages.items()}

    def snapshot(self) -> dict[str, Any]:
        """The account so far: per stage CPU-s, calls and CPU-s per second of audio heard;
        ``total``; ``share_of_machine`` (total CPU-s per audio-s over the cores: one caller
        speaking continuously costs this fraction of the machine); ``recent_share`` (the
        stages' CPU over the last ``recent_s`` of wall time, over the cores: the load now);
        ``unattributed_cpu_s`` (the process's CPU since this ledger began, less its stages':
        the event loop, codecs, library threads, and any other scheduler's calls in the
        process; child processes such as Apertium's are in the stages but not in the
        process's clock, so this errs low)."""
        now = time.monotonic()
        with self._lock:
            stages = {k: (v.calls, v.cpu_ns / 1e9) for k, v in self.stages.items()}
            heard = self.heard_s
            recent_ns = sum(ns for t, ns in self._recent if t >= now - self.recent_s)
        total = sum(cpu for _, cpu in stages.values())
        wall0, proc0 = self._started
        window = min(self.recent_s, max(now - wall0, 1e-9))
        per_audio = {k: round(cpu / heard, 4) for k, (_, cpu) in stages.items()} if heard else {}
        return {
            "machine": self.machine, "cores": self.cores, "heard_s": round(heard, 2),
            "cpu_s": {k: round(cpu, 3) for k, (_, cpu) in stages.items()},
            "calls": {k: n for k, (n, _) in stages.items()},
            "cpu_per_audio_s": per_audio,
            "total_cpu_s": round(total, 3),
            "total_cpu_per_audio_s": round(total / heard, 4) if heard else None,
            "share_of_machine": round(total / heard / self.cores, 4) if heard else None,
            "recent_share": round(recent_ns / 1e9 / window / self.cores, 4),
            "unattributed_cpu_s": round(max(0.0, (time.process_time_ns() - proc0) / 1e9
                                            - total), 3),
        }


def per_audio(before: dict[str, float], after: dict[str, float], audio_s: float,
              cores: int) -> dict[str, Any]:
    """The account between two ``CostLedger.cpu_s()`` readings, over ``audio_s`` seconds of
    audio (a benchmark's clips): CPU-s per audio-s per stage, their total, and the share of
    a ``cores``-core machine that keeping pace with that audio takes."""
    spent = {k: v - before.get(k, 0.0) for k, v in after.items()}
    spent = {k: v for k, v in spent.items() if v > 0}
    total = sum(spent.values())
    if audio_s <= 0:
        return {"cpu_s": spent, "audio_s": 0.0}
    return {"audio_s": round(audio_s, 2), "cpu_s": {k: round(v, 3) for k, v in spent.items()},
            "cpu_per_audio_s": {k: round(v / audio_s, 4) for k, v in spent.items()},
            "total_cpu_per_audio_s": round(total / audio_s, 4),
            "share_of_machine": round(total / audio_s / cores, 4)}
