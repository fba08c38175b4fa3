"""One track read once and handed to any number of readers, each with a bounded backlog.

aiortc's ``MediaRelay`` gives each buffered reader an unbounded queue: a reader that stops
(a session ended by a fault, a listener's delayed video stalled) grows memory for as long as
the source plays. Here each reader's queue is a ``DropQueue``: at ``limit`` frames the oldest
is dropped and counted (``relay`` in ``/stats``); ``buffered=False`` keeps only the latest
frame (as aiortc's unbuffered proxies do). The source is read from a reader's first ``recv``
until its end or until no reader is left."""

from __future__ import annotations

import asyncio
from typing import Any

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from babelcall.realtime.bounded import DropQueue
from babelcall.realtime.tasks import cancel_and_wait

MAX_FRAMES = 250  # 5 s of 20 ms audio, 8 s of 30 fps video


class RelayedTrack(MediaStreamTrack):
    """One reader's view of the relayed source."""

    def __init__(self, relay: BoundedRelay, source: MediaStreamTrack, limit: int,
                 kind: str) -> None:
        super().__init__()
        self.kind = source.kind
        self.source = source
        self.queue: DropQueue[Any] = DropQueue(limit, kind)
        self._relay: BoundedRelay | None = relay

    async def recv(self) -> Any:
        if self.readyState != "live" or self._relay is None:
            raise MediaStreamError
        self._relay._start(self.source)
        frame = await self.queue.get()
        if frame is None:
            self.stop()
            raise MediaStreamError
        return frame

    def stop(self) -> None:
        super().stop()
        if self._relay is not None:
            self._relay._stop(self)
            self._relay = None


class BoundedRelay:
    def __init__(self) -> None:
        self._readers: dict[MediaStreamTrack, set[RelayedTrack]] = {}
        self._tasks: dict[MediaStreamTrack, asyncio.Task[None]] = {}

    def subscribe(self, track: MediaStreamTrack, buffered: bool = True,
                  limit: int = MAX_FRAMES) -> RelayedTrack:
        proxy = RelayedTrack(self, track, limit if buffered else 1,
                             "relay" if buffered else "relay_latest")
        self._readers.setdefault(track, set()).add(proxy)
        return proxy

    def _start(self, source: MediaStreamTrack) -> None:
        if source not in self._tasks:
            self._tasks[source] = asyncio.ensure_future(self._run(source))

    def _stop(self, proxy: RelayedTrack) -> None:
        readers = self._readers.get(proxy.source)
        if readers is None:
            return
        readers.discard(proxy)
        if not readers:
            del self._readers[proxy.source]
            task = self._tasks.pop(proxy.source, None)
            if task is not None:
                task.cancel()

    async def _run(self, source: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await source.recv()
                for proxy in list(self._readers.get(source, ())):
                    proxy.queue.offer(frame)
        except MediaStreamError:
            pass
        finally:
            for proxy in list(self._readers.get(source, ())):
                proxy.queue.offer(None)  # the end always gets in (the oldest makes room)
            self._tasks.pop(source, None)

    async def close(self) -> None:
        """Stop reading every source (their readers see the end)."""
        tasks = list(self._tasks.values())
        await cancel_and_wait(tasks)
        self._tasks.clear()
