"""The process's GIL switch interval while media flows.

The event loop paces media and moves every RTP packet; with model threads holding the GIL it
waits up to 5 ms (Python's default switch interval) after each syscall, and under load the
outgoing audio falls seconds behind. Servers and bots shorten it while they run."""

from __future__ import annotations

import sys

MEDIA_SWITCH_INTERVAL_S = 0.001


class GilSwitch:
    """Set a switch interval and put the old one back; None leaves the process alone."""

    def __init__(self, interval_s: float | None = MEDIA_SWITCH_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._old: float | None = None

    def set(self) -> None:
        if self.interval_s and self._old is None:
            self._old = sys.getswitchinterval()
            sys.setswitchinterval(self.interval_s)

    def restore(self) -> None:
        if self._old is not None:
            sys.setswitchinterval(self._old)
            self._old = None
