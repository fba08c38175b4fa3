"""Stopping the background tasks an object owns."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


async def cancel_and_wait(tasks: Iterable[asyncio.Task]) -> None:
    """Cancel ``tasks`` and wait until they have ended — all but the task calling this, which
    may be one of them (a reader closing its own connection must not cancel or await itself)."""
    current = asyncio.current_task()
    others = [t for t in tasks if t is not current]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)
