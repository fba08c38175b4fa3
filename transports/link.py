"""A Session wired to live media: its input (``Inbound``), translated speech out into mixer
inputs, events out as JSON captions to any number of sinks (data channels, WebSockets, SSE)
and as raw events to in-process subscribers (the bot API).

The link is the one place that knows both sides of the session, so it is where the sink's
backlog goes back to the session (``report_backlog``) and where the latency a listener
actually gets is measured (the moment a clause's first sample leaves the mixer)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from babelcall.realtime.bounded import DropQueue
from babelcall.realtime.errors import BabelcallError, SessionClosed
from babelcall.realtime.eventlog import event_record
from babelcall.realtime.session import Session
from babelcall.realtime.tasks import cancel_and_wait
from babelcall.realtime.types import Event, PhraseTiming, SynthAudio
from babelcall.transports.inbound import Inbound
from babelcall.transports.media import Mixer, MixerInput, Upsampler

log = logging.getLogger(__name__)
Sink = Callable[[dict[str, Any]], None]
MAX_SUBSCRIBER_EVENTS = 1000  # a subscriber that stops reading loses its oldest events
# clauses whose waterfall marks (and phrase timings waiting for them) are kept: only a
# phrase's last clause is asked for, and one that never plays here must not stay for ever
KEPT_CLAUSES = 64


class Link:
    def __init__(self, session: Session, *, label: str | None = None,
                 max_ahead_s: float = 3.0, hard_cap_s: float | None = None) -> None:
        """``max_ahead_s``/``hard_cap_s``: the input's flood guard (see ``Inbound``)."""
        self.session = session
        self.clock = session.clock
        self.label = label
        self.inbound = Inbound(session, max_ahead_s=max_ahead_s, hard_cap_s=hard_cap_s)
        self.origin_ns = self.clock.now_ns()
        self.outputs: list[tuple[Mixer, MixerInput]] = []
        self.sinks: list[Sink] = []
        self.audio_sinks: list[Callable[[SynthAudio], None]] = []  # raw speech (WebSocket)
        self.backlog: Callable[[], float] | None = None  # a sink without inputs says its own
        self.finished = asyncio.Event()  # the session ended and its audio has played out
        self.ending = False
        self.closed = False
        self._out = _Latencies()  # when each clause started playing (bounded figures)
        self._upsampler = Upsampler()
        # the hops this link adds to each clause's waterfall, and phrases waiting for them
        self._clauses: OrderedDict[int, dict[str, int]] = OrderedDict()
        self._timings: dict[int, PhraseTiming] = {}
        self._queues: list[DropQueue[Event | None]] = []
        self._tasks: list[asyncio.Task[Any]] = []

    # -- wiring -----------------------------------------------------------------------------
    def start(self) -> None:
        self.session.start()
        self._tasks += [asyncio.create_task(self._pump(), name="link-events"),
                        asyncio.create_task(self._tick(), name="link-tick")]

    def add_output(self, mixer: Mixer) -> MixerInput:
        lane = mixer.add_lane(speech=True)
        self.outputs.append((mixer, lane))
        return lane

    def remove_output(self, mixer: Mixer) -> None:
        for m, lane in [o for o in self.outputs if o[0] is mixer]:
            m.remove_lane(lane)
            self.outputs.remove((m, lane))

    def add_sink(self, sink: Sink) -> None:
        self.sinks.append(sink)

    def remove_sink(self, sink: Sink) -> None:
        if sink in self.sinks:
            self.sinks.remove(sink)

    def subscribe(self) -> DropQueue[Event | None]:
        """Raw events (None after the last one), for in-process consumers. Bounded: a
        consumer that stops reading loses the oldest (counted as ``link_events`` in
        ``/stats``); it must ``unsubscribe`` when it is done."""
        q: DropQueue[Event | None] = DropQueue(MAX_SUBSCRIBER_EVENTS, "link_events")
        self._queues.append(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[Event | None]) -> None:
        if q in self._queues:
            self._queues.remove(q)

    def feed(self, track: MediaStreamTrack, *, bed: MixerInput | None = None,
             gate: Callable[[], bool] | None = None,
             on_end: Callable[[], Any] | None = None,
             since_ns: int | None = None) -> asyncio.Task[None]:
        """Read ``track`` into the session (and into ``bed``, the original-voice input of a
        mixer). While ``gate()`` is true the session hears silence (echo guard). ``on_end``
        runs when the track ends (the peer is gone). ``since_ns`` (session clock): when the
        track began to play, if before now — its backlog is then not counted as ahead."""
        self.inbound.bed, self.inbound.gate = bed, gate
        if since_ns is not None:
            self.inbound.guard.begin(since_ns / 1e9)
        task = asyncio.create_task(self._feed(track, on_end), name="link-feed")
        self._tasks.append(task)
        return task

    # -- lifecycle --------------------------------------------------------------------------
    async def end(self, timeout: float | None = None) -> bool:
        """No more input: finish the open phrase and wait until its speech has played out.
        Returns False if that took longer than ``timeout``."""
        if not self.ending and not self.closed:
            self.ending = True
            await self.session.end()
        try:
            async with asyncio.timeout(timeout):
                await self.finished.wait()
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        """Free everything now (the peer vanished, or the server stops)."""
        if self.closed:
            return
        self.closed = True
        await cancel_and_wait(self._tasks)
        await self.session.close()
        for mixer, lane in self.outputs:
            mixer.remove_lane(lane)
        self.outputs.clear()
        self.sinks.clear()
        for q in self._queues:
            q.put_nowait(None)
        self.finished.set()

    # -- tasks ------------------------------------------------------------------------------
    def emit(self, rec: dict[str, Any]) -> None:
        if self.label is not None:
            rec["speaker"] = self.label
        for sink in list(self.sinks):
            try:
                sink(rec)
            except Exception:  # a broken sink (closed channel) must not stop the others
                log.debug("caption sink failed", exc_info=True)
                self.remove_sink(sink)

    async def _feed(self, track: MediaStreamTrack, on_end: Callable[[], Any] | None) -> None:
        """A session ended by a fault stops taking audio, but the track is still read (and
        dropped): unread, aiortc's receiver would queue it without bound. The peer is still
        in the call, so ``on_end`` waits for the track's own end."""
        try:
            while True:
                frame = await track.recv()
                if self.ending or self.closed or self.session.failed:
                    continue  # drain: nothing piles up
                try:
                    self.inbound.frame(frame)
                except SessionClosed:
                    if not self.session.failed:
                        break
        except MediaStreamError:
            pass
        except BabelcallError as exc:
            log.warning("input stopped: %s", exc)
        if on_end is not None and not self.ending and not self.closed:
            result = on_end()
            if asyncio.iscoroutine(result):
                await result

    async def _pump(self) -> None:
        session = self.session
        async for ev in session.events():
            if isinstance(ev, PhraseTiming):
                self._timings[ev.clause] = ev  # told once its audio has gone out
                self._timing_done(ev.clause)
                # a link without outputs (a WebSocket's) plays no clause, so it tells no
                # timing: only the latest are kept, as the marks are
                while len(self._timings) > KEPT_CLAUSES:
                    del self._timings[next(iter(self._timings))]
                continue
            arrival = session.arrival_ns(ev.src.end)
            rec = event_record(ev, origin_ns=self.origin_ns, arrival_ns=arrival)
            rec.pop("words", None)
            if isinstance(ev, SynthAudio):
                for audio_sink in self.audio_sinks:
                    audio_sink(ev)
                if self.outputs:
                    self._play(ev, arrival)
            self.emit(rec)
            for q in self._queues:
                q.put_nowait(ev)
        if self.closed:
            return
        while any(lane.queued for _, lane in self.outputs):
            await self.clock.sleep(0.05)
        await self.clock.sleep(0.1 if self.outputs else 0)  # the last frame leaves the mixer
        self.emit({"type": "done", **self.summary()})
        for q in self._queues:
            q.put_nowait(None)
        self.finished.set()

    def _play(self, ev: SynthAudio, arrival_ns: int) -> None:
        """Queue a chunk on every output; the first one to play it stamps ``audio_out`` (and,
        for a clause's first chunk, the waterfall's handed / playing / sent hops)."""
        pcm = self._upsampler.convert(ev.pcm, ev.rate)
        marks = self._clause_marks(ev) if ev.seq == 0 else None
        played: list[bool] = []

        def started(now_ns: int, pts: int, mixer: Mixer) -> None:
            if played:
                return
            played.append(True)
            self._audio_out(ev, arrival_ns, now_ns)
            if marks is None:
                return
            marks["playing"] = now_ns
            sent = mixer.when_sent(pts)
            if sent is None:
                self._timing_done(ev.clause)
            else:
                sent.add_done_callback(lambda f: self._sent(ev.clause, f))

        for mixer, lane in self.outputs:
            lane.push(pcm, on_start=lambda now, pts, m=mixer: started(now, pts, m))
        self._report_backlog()

    def _clause_marks(self, ev: SynthAudio) -> dict[str, int]:
        marks = self._clauses[ev.clause] = {"handed": self.clock.now_ns()}
        while len(self._clauses) > KEPT_CLAUSES:
            old, _ = self._clauses.popitem(last=False)
            self._timings.pop(old, None)
        return marks

    def _sent(self, clause: int, fut: asyncio.Future[tuple[int, int]]) -> None:
        if fut.cancelled() or clause not in self._clauses:
            return
        self._clauses[clause]["sent"], self._clauses[clause]["packet_pts"] = fut.result()
        self._timing_done(clause)

    def _timing_done(self, clause: int) -> None:
        """Emit a phrase's ``timing`` record once its last clause went out (played, and sent
        when an encoder reports)."""
        timing, marks = self._timings.get(clause), self._clauses.get(clause)
        if timing is None or marks is None or "playing" not in marks:
            return
        if "sent" not in marks and any(m.senders for m, _ in self.outputs):
            return  # its first packet is still on the way
        del self._timings[clause]
        hops = {k: v for k, v in marks.items() if k != "packet_pts"}
        rec = event_record(timing, origin_ns=self.origin_ns, arrival_ns=0, marks=hops)
        if "packet_pts" in marks:
            rec["packet_pts"] = marks["packet_pts"]  # the far end finds "heard" by it
        self.emit(rec)

    def _audio_out(self, ev: SynthAudio, arrival_ns: int, now_ns: int) -> None:
        latency = round((now_ns - arrival_ns) / 1e6, 1)
        self._out.add(latency)
        self.emit({"type": "audio_out", "utt": ev.utt, "seq": ev.seq, "text": ev.text,
                   "src_end": ev.src.end, "wall_ms": round((now_ns - self.origin_ns) / 1e6, 1),
                   "latency_ms": latency})

    def _report_backlog(self) -> None:
        queued = max((lane.queued_s for _, lane in self.outputs), default=0.0)
        if self.backlog is not None:
            queued = max(queued, self.backlog())
        self.session.report_backlog(queued)

    async def _tick(self) -> None:
        """Backlog to the session ten times a second; stats to the sinks once a second."""
        n = 0
        while True:
            await self.clock.sleep(0.1)
            self._report_backlog()
            n += 1
            if n % 10 == 0:
                with contextlib.suppress(Exception):
                    self.emit({"type": "stats", **self.session.metrics(), **self.summary()})

    def summary(self) -> dict[str, Any]:
        out = self._out
        return {"audio_out": out.count, "first_audio_out_ms": out.first,
                "mean_audio_out_ms": round(out.total / out.count, 1) if out.count else None,
                "dropped_input_s": round(self.inbound.dropped_s, 2)}


class _Latencies:
    """Count, first and sum of a call's audio_out latencies: constant memory however long
    the call (every value also went out in its own caption record)."""

    def __init__(self) -> None:
        self.count = 0
        self.first: float | None = None
        self.total = 0.0

    def add(self, ms: float) -> None:
        self.count += 1
        self.total += ms
        if self.first is None:
            self.first = ms
