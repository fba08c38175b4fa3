"""Stopping the background tasks an object owns."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

log = logging.getLogger(__name__)

RECANCEL_S = 5.0


async def cancel_and_wait(tasks: Iterable[asyncio.Task], recancel_s: float = RECANCEL_S) -> None:
    """Cancel ``tasks`` and wait until they have ended — all but the task calling this, which
    may be one of them (a reader closing its own connection must not cancel or await itself).

    A task still running ``recancel_s`` after its cancel is cancelled again: on Python 3.11 a
    ``wait_for`` whose result arrives together with the cancel returns the result and drops the
    cancel (a library's, or ours before we moved to ``asyncio.timeout``), and the task then
    waits on its next event forever — a stop that never returns."""
    current = asyncio.current_task()
    pending = {t for t in tasks if t is not current}
    for task in pending:
        task.cancel()
    while pending:
        done, pending = await asyncio.wait(pending, timeout=recancel_s)
        for task in done:  # retrieved here, as gather(return_exceptions=True) would
            if not task.cancelled():
                task.exception()
        for task in pending:
            log.warning("task %s still running %.0f s after its cancel; cancelling it again",
                        task.get_name(), recancel_s)
            task.cancel()
