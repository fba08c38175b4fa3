"""Bounded queues with a stated policy, and the process-wide count of what they dropped.

Every queue between a producer that must not block (a media callback, an event pump) and a
consumer that may stop reading (a WebSocket client, an ``events()`` loop left early, a relay
reader) is a ``DropQueue``: at ``maxsize`` the *oldest* item is dropped and counted, so the
newest state (and an end-of-stream sentinel) always gets in and memory stays bounded. The
counts, per kind of queue, are in ``/stats`` (``dropped``) and in ``DROPS``."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Generic, TypeVar

T = TypeVar("T")
DROPS: Counter[str] = Counter()  # items dropped, per kind of queue, since the process started


class DropQueue(asyncio.Queue[T], Generic[T]):
    """An asyncio.Queue of at most ``maxsize`` items that never refuses a put: the oldest
    waiting item makes room and is counted in ``dropped`` and ``DROPS[kind]``."""

    def __init__(self, maxsize: int, kind: str) -> None:
        if maxsize <= 0:
            raise ValueError("a DropQueue needs a positive bound")
        super().__init__(maxsize)
        self.kind = kind
        self.dropped = 0

    def offer(self, item: T) -> bool:
        """Put ``item`` now; False if an older item was dropped for it."""
        dropped = self.full()
        if dropped:
            self.get_nowait()
            self.dropped += 1
            DROPS[self.kind] += 1
        self.put_nowait(item)
        return not dropped

    def put_nowait(self, item: T) -> None:
        if self.full():  # plain put_nowait callers get the same policy
            self.offer(item)
            return
        super().put_nowait(item)


def dropped() -> dict[str, int]:
    """What every kind of bounded queue has dropped so far (for ``/stats``)."""
    return dict(DROPS)
