"""One speaker interpreted into one language, on live media: a Session, its Link and the
Output track the translation plays on. Every transport that interprets a track (a WHIP or
browser call, a conference bot's feed, an embedding application) builds one of these.

    async with Scheduler(engines) as sched:                  # or pass Engines directly
        interp = Interpreter(sched, "en", "es")
        await interp.start()
        pc.addTrack(interp.attach(remote_audio_track))       # translated 48 kHz audio
        async for ev in interp.events():                     # Transcript, Translation, ...
            ...
        await interp.stop()

The output track is paced by its own clock and plays silence between phrases, so it can go
straight into an RTCPeerConnection, a MediaRecorder or another Interpreter."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from aiortc.mediastreams import MediaStreamTrack

from babelcall.engines.registry import Engines
from babelcall.realtime.scheduler import Scheduler
from babelcall.realtime.session import Session, SessionConfig, SpeakerFront
from babelcall.realtime.types import Event
from babelcall.transports.link import Link, Sink
from babelcall.transports.media import Output

__all__ = ["Interpreter"]


class Interpreter:
    """``engines_or_scheduler``: a running Scheduler shares the models with every other session
    of the process (and may refuse with ``Overloaded``); plain Engines get a scheduler of this
    interpreter's own. ``mix`` keeps the original voice under the translation at that level
    (``mix_idle`` between phrases); ``echo_guard`` mutes the input while the translation plays
    (for an open speaker); ``max_ahead_s``: input accepted ahead of real time (a flood guard;
    raise it when the track starts with audio buffered earlier)."""

    def __init__(self, engines_or_scheduler: Engines | Scheduler, source: str, target: str, *,
                 voice: str | None = None, mix: float = 0.0, mix_idle: float | None = None,
                 echo_guard: bool = False, config: SessionConfig | None = None,
                 max_ahead_s: float = 3.0, label: str | None = None,
                 front: SpeakerFront | None = None) -> None:
        """``front``: the speaker's shared front, when other interpreters hear the same
        speaker in other languages (the speaker is then recognised once)."""
        self.config = config or SessionConfig(source, target, voice=voice)
        self.front = front
        self.max_ahead_s = max_ahead_s
        self.mix, self.mix_idle, self.echo_guard = mix, mix_idle, echo_guard
        self.label = label
        if isinstance(engines_or_scheduler, Scheduler):
            self.scheduler, self._own_scheduler = engines_or_scheduler, False
        else:
            self.scheduler, self._own_scheduler = Scheduler(engines_or_scheduler), True
        self.session: Session | None = None
        self.link: Link | None = None
        self.output: Output | None = None

    @classmethod
    def for_session(cls, session: Session, **options: Any) -> Interpreter:
        """Wire a session made elsewhere (a server maps its refusals to HTTP errors)."""
        interp = cls(session.scheduler, session.config.source, session.config.target,
                     config=session.config, **options)
        interp._wire(session)
        return interp

    async def start(self) -> None:
        """Admit the session (``Overloaded`` if the scheduler is full) and start the clock of
        the output track."""
        if self.session is None:
            if self._own_scheduler:
                await self.scheduler.start()
            self._wire(Session(self.scheduler, self.config, front=self.front))
        link, output = self.wired()
        output.start()
        link.start()

    def _wire(self, session: Session) -> None:
        self.session = session
        self.link = Link(session, label=self.label, max_ahead_s=self.max_ahead_s)
        self.output = Output(session.clock)
        self.link.add_output(self.output.mixer)

    async def __aenter__(self) -> Interpreter:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def listen(self, track: MediaStreamTrack, *,
               on_end: Callable[[], Any] | None = None, since_ns: int | None = None) -> None:
        """Interpret ``track`` (any aiortc audio track, any rate/layout): one speaker per
        Interpreter. ``on_end`` runs when the track ends. ``since_ns`` (the scheduler's
        clock): when a track read late began to play; what it queued meanwhile is taken in
        at once instead of counted as a flood."""
        link, output = self.wired()
        if track.kind != "audio":
            raise ValueError(f"an Interpreter listens to an audio track, got {track.kind}")
        gate = output.echo_gate() if self.echo_guard else None
        link.feed(track, bed=output.original_voice(self.mix, self.mix_idle), gate=gate,
                  on_end=on_end, since_ns=since_ns)

    def attach(self, track: MediaStreamTrack) -> MediaStreamTrack:
        """``listen(track)`` and return the output track."""
        self.listen(track)
        return self.output_track()

    def output_track(self, *, opus: bool = False) -> MediaStreamTrack:
        """A copy of the translated audio (one per consumer); ``opus``: encoded on the loop,
        for an RTCPeerConnection sender that negotiated Opus."""
        return self.wired()[1].subscribe(opus=opus)

    async def events(self) -> AsyncIterator[Event]:
        """Every event from now until the interpreter stops (or ``end()`` has drained).
        Leaving the loop early (``break``, or ``aclose()`` on the iterator) unsubscribes; a
        loop that stops reading without leaving loses the oldest events beyond
        ``MAX_SUBSCRIBER_EVENTS`` (counted in ``/stats``), never memory."""
        link = self.wired()[0]
        queue = link.subscribe()
        try:
            while (ev := await queue.get()) is not None:
                yield ev
        finally:
            link.unsubscribe(queue)

    def add_caption_sink(self, sink: Sink) -> None:
        """``sink(record: dict)`` gets the JSON-ready caption/stats records of the server."""
        self.wired()[0].add_sink(sink)

    def metrics(self) -> dict[str, Any]:
        link, _ = self.wired()
        return {**link.session.metrics(), **link.summary()}

    async def end(self, timeout: float | None = None) -> bool:
        """The speaker is done: finish the open phrase and play out its translation."""
        return await self.wired()[0].end(timeout)

    async def stop(self) -> None:
        """Stop at once and free the session (its scheduler slot)."""
        if self.link is not None:
            await self.link.close()
        elif self.session is not None:
            await self.session.close()
        if self.output is not None:
            await self.output.stop()
        if self._own_scheduler:
            await self.scheduler.close()

    def wired(self) -> tuple[Link, Output]:
        """The session's link and output track (once started, or made ``for_session``)."""
        if self.link is None or self.output is None:
            raise RuntimeError("call `await interpreter.start()` first")
        return self.link, self.output
