"""Embed babelcall in your own aiortc application: give it any audio track, get a track of the
translated speech back, and read the events (captions, latencies) as they happen.

    async with Scheduler(engines) as sched:                  # or pass Engines directly
        interp = Interpreter(sched, "en", "es")
        await interp.start()
        pc.addTrack(interp.attach(remote_audio_track))       # translated 48 kHz audio
        async for ev in interp.events():                     # Transcript, Translation, ...
            ...
        await interp.stop()

The returned track is paced by its own clock and plays silence between phrases, so it can go
straight into an RTCPeerConnection, a MediaRecorder or another Interpreter. Several consumers
may call ``attach``'s ``output()`` for copies of the same audio."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiortc.mediastreams import MediaStreamTrack

from babelcall.engines.registry import Engines
from babelcall.realtime.scheduler import Scheduler
from babelcall.realtime.session import Session, SessionConfig
from babelcall.realtime.types import Event
from babelcall.transports.link import Link
from babelcall.transports.media import Output

__all__ = ["Interpreter"]


class Interpreter:
    """One speaker interpreted from ``source`` into ``target``.

    ``engines_or_scheduler``: a running Scheduler shares the models with every other session
    of the process (and may refuse with ``Overloaded``); plain Engines give this interpreter
    direct model calls. ``mix`` keeps the original voice under the translation at that level;
    ``echo_guard`` mutes the input while the translation plays (for an open speaker)."""

    def __init__(self, engines_or_scheduler: Engines | Scheduler, source: str, target: str, *,
                 voice: str | None = None, mix: float = 0.0, echo_guard: bool = False,
                 config: SessionConfig | None = None, max_ahead_s: float = 3.0) -> None:
        """``max_ahead_s``: input accepted ahead of real time (a flood guard); raise it when
        the track starts with audio buffered earlier (e.g. while detecting the language)."""
        self.config = config or SessionConfig(source, target, voice=voice)
        self.max_ahead_s = max_ahead_s
        self.mix = mix
        self.echo_guard = echo_guard
        if isinstance(engines_or_scheduler, Scheduler):
            self._engines, self._scheduler = engines_or_scheduler.engines, engines_or_scheduler
        else:
            self._engines, self._scheduler = engines_or_scheduler, None
        self.session: Session | None = None
        self.link: Link | None = None
        self.output: Output | None = None

    async def start(self) -> None:
        """Admit the session (``Overloaded`` if the scheduler is full) and start the clock of
        the output track."""
        if self.session is not None:
            return
        self.session = Session(self._engines, self.config, scheduler=self._scheduler)
        self.link = Link(self.session, max_ahead_s=self.max_ahead_s)
        self.output = Output(self.session.clock)
        self.link.add_output(self.output.mixer)
        self.output.start()
        self.link.start()

    async def __aenter__(self) -> Interpreter:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def attach(self, track: MediaStreamTrack) -> MediaStreamTrack:
        """Interpret ``track`` (any aiortc audio track, any rate/layout); returns the output
        track. Attach one speaker per Interpreter."""
        link, output = self._started()
        if track.kind != "audio":
            raise ValueError(f"attach() needs an audio track, got {track.kind}")
        mixer = output.mixer
        bed = mixer.add_lane(speech=False, gain=self.mix, duck_gain=self.mix,
                             max_queue_s=0.3, preroll_s=0.06) if self.mix > 0 else None
        gate = (lambda: mixer.speaking(0.4)) if self.echo_guard else None
        link.feed(track, bed=bed, gate=gate)
        return output.subscribe()

    def output_track(self) -> MediaStreamTrack:
        """Another copy of the translated audio (for a second consumer)."""
        return self._started()[1].subscribe()

    async def events(self) -> AsyncIterator[Event]:
        """Every event from now until the interpreter stops (or ``end()`` has drained)."""
        queue = self._started()[0].subscribe()
        while (ev := await queue.get()) is not None:
            yield ev

    def add_caption_sink(self, sink: Any) -> None:
        """``sink(record: dict)`` gets the JSON-ready caption/stats records of the server."""
        self._started()[0].add_sink(sink)

    def metrics(self) -> dict[str, Any]:
        link, _ = self._started()
        return {**link.session.metrics(), **link.summary()}

    async def end(self, timeout: float | None = None) -> bool:
        """The speaker is done: finish the open phrase and play out its translation."""
        return await self._started()[0].end(timeout)

    async def stop(self) -> None:
        """Stop at once and free the session (its scheduler slot)."""
        if self.link is not None:
            await self.link.close()
        if self.output is not None:
            await self.output.stop()

    def _started(self) -> tuple[Link, Output]:
        if self.link is None or self.output is None:
            raise RuntimeError("call `await interpreter.start()` first")
        return self.link, self.output
