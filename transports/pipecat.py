"""babelcall as a pipecat processor: any pipecat transport (Daily, LiveKit, Twilio/Telnyx
media streams, WebSocket servers, ``SmallWebRTCTransport``) gets the interpreter without a
line of transport code of ours.

    from babelcall.transports.pipecat import InterpreterProcessor

    async with Scheduler(engines) as sched:               # the process's one scheduler
        pipeline = Pipeline([transport.input(),
                             InterpreterProcessor(sched, "en", "es"),
                             transport.output()])
        await WorkerRunner().run(PipelineWorker(pipeline))

In: pipecat's input audio frames (``InputAudioRawFrame``, any rate, mono or stereo). A
``UserAudioRawFrame`` says who speaks: each ``user_id`` is its own speaker, interpreted into
every target language other than its own (one babelcall ``Session`` per speaker and target,
all on one ``Scheduler``). Audio enters each session through ``Inbound``, the one way audio
enters a session whatever the transport (one resample to 16 kHz, the flood guard).

Out, downstream, as pipecat's own frames so its aggregators, observers and recorders work on
them: ``TTSAudioRawFrame`` with the translated speech (24 kHz; the output transport resamples;
``transport_destination`` from ``destinations`` when listeners of several languages have
their own tracks), ``InterimTranscriptionFrame`` / ``TranscriptionFrame`` with the source
(partial, then committed words, in the speaker's language), ``TranslationFrame`` with each
committed piece of the translation (target language, the speaker's ``user_id``; marked
``skip_tts`` so a TTS service further down does not speak it twice), and, when the pipeline
enables metrics, ``MetricsFrame``: TTFB = a clause handed out after the source words it voices
arrived, processing = the final-clause latency (the phrase's last word -> its clause handed
out). Every frame carries ``metadata["babelcall"]`` (user, source, target, utterance, clause).

Lifecycle: ``StartFrame`` starts a scheduler of our own (when given Engines); ``EndFrame``
finishes every open phrase and pushes its translation before passing on (bounded by
``end_timeout_s``); ``CancelFrame`` stops every session at once. ``STTMuteFrame(mute=True)``
feeds the sessions silence (the timeline stays on the wall clock) until unmuted. Translated
speech is not interruptible by default (a listener must hear it even while someone talks);
with ``interruptible=True`` an ``InterruptionFrame`` lets the output drop what it queued, and
the sessions are told their listeners' backlog is gone. All model work goes through the
scheduler's threads: nothing here blocks pipecat's loop. Other frames pass through."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

try:
    import pipecat  # noqa: F401 - the `pipecat` extra
except ImportError as exc:
    raise ImportError("babelcall's pipecat processor needs the pipecat extra: pip install -e "
                      "'.[pipecat]' (./install.sh installs it)") from exc
from pipecat.frames.frames import (
    CancelFrame,
    EndFrame,
    Frame,
    InputAudioRawFrame,
    InterimTranscriptionFrame,
    InterruptionFrame,
    MetricsFrame,
    StartFrame,
    STTMuteFrame,
    TranscriptionFrame,
    TranslationFrame,
    TTSAudioRawFrame,
)
from pipecat.metrics.metrics import ProcessingMetricsData, TTFBMetricsData
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.transcriptions.language import Language
from pipecat.utils.time import time_now_iso8601

from babelcall.engines.registry import Engines
from babelcall.realtime.errors import BabelcallError, SessionClosed
from babelcall.realtime.eventlog import event_record
from babelcall.realtime.playout import PlayoutClock
from babelcall.realtime.scheduler import Scheduler
from babelcall.realtime.session import Session, SessionConfig
from babelcall.realtime.tasks import cancel_and_wait
from babelcall.realtime.types import (
    Event,
    PhraseTiming,
    SpeechSkipped,
    StageError,
    SynthAudio,
    Transcript,
    Translation,
)
from babelcall.transports.inbound import Inbound

__all__ = ["InterpreterProcessor", "PIPECAT_RANGE"]
log = logging.getLogger(__name__)

# The pipecat-ai releases this module is tested with (pyproject's `pipecat` extra says the
# same; tests/transports/test_pipecat.py fails on a release outside it).
PIPECAT_RANGE = (">=1.14", "<1.15")
RETRY_S = 5.0  # a speaker refused (the scheduler was full) is tried again after this
TICK_S = 0.1  # how often the sessions hear their listeners' backlog
Record = dict[str, Any]


@dataclasses.dataclass(eq=False)
class _Speaker:
    """One speaker interpreted into one language: its session, the way audio enters it, and
    what the frames it emits need to know."""

    user_id: str
    session: Session
    inbound: Inbound
    destination: str | None
    origin_ns: int
    task: asyncio.Task[None] | None = None
    heard: dict[int, str] = dataclasses.field(default_factory=dict)  # committed source/utt
    # a clause's own hops (handed, playing), until its phrase's timing asks for them
    clauses: OrderedDict[int, dict[str, int]] = dataclasses.field(default_factory=OrderedDict)

    @property
    def source(self) -> str:
        return self.session.config.source

    @property
    def target(self) -> str:
        return self.session.config.target


class InterpreterProcessor(FrameProcessor):
    """Interpret the pipeline's input speech; see the module docstring.

    ``engines_or_scheduler``: a running Scheduler shares the models with every other session of
    the process (pass the same one to every pipeline); plain Engines get a scheduler of this
    processor's own, started by ``StartFrame``. ``source``: the language speakers speak unless
    ``languages`` (user_id -> language) says otherwise; ``target``: one language or several
    (each speaker is interpreted into every one but its own). ``destinations``: target
    language -> the output transport's ``transport_destination`` for that language's audio
    (None or missing: the default track). ``config``: knobs for every session (its
    source/target are set per speaker). ``on_record``: every event as the JSON record babelcall
    writes elsewhere, with ``user_id``/``source``/``target`` added (logs, benchmarks).
    ``max_ahead_s``: input accepted ahead of real time (a pipecat transport delivers in real
    time; a flood beyond it is dropped and counted). ``pass_input_audio``: input audio frames
    go on downstream too (recorders want them)."""

    def __init__(self, engines_or_scheduler: Engines | Scheduler, source: str,
                 target: str | Sequence[str], *, languages: Mapping[str, str] | None = None,
                 voice: str | None = None, config: SessionConfig | None = None,
                 destinations: Mapping[str, str | None] | None = None,
                 interruptible: bool = False, pass_input_audio: bool = True,
                 max_ahead_s: float = 3.0, end_timeout_s: float = 60.0,
                 on_record: Callable[[Record], None] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(engines_or_scheduler, Scheduler):
            self.scheduler, self._own_scheduler = engines_or_scheduler, False
        elif isinstance(engines_or_scheduler, Engines):
            self.scheduler, self._own_scheduler = Scheduler(engines_or_scheduler), True
        else:
            raise TypeError("InterpreterProcessor needs babelcall Engines or a Scheduler, got "
                            f"{type(engines_or_scheduler).__name__}")
        targets = (target,) if isinstance(target, str) else tuple(dict.fromkeys(target))
        if not targets:
            raise ValueError("InterpreterProcessor needs at least one target language")
        if max_ahead_s <= 0 or end_timeout_s <= 0:
            raise ValueError("max_ahead_s and end_timeout_s must be positive")
        self.source = source
        self.targets = targets
        self.languages = dict(languages or {})
        spoken = {source, *self.languages.values()}
        if not any(t != s for s in spoken for t in targets):
            raise ValueError(f"nothing to interpret: every speaker speaks {sorted(spoken)}, "
                             f"the targets are {list(targets)}")
        for language in spoken:
            self._check(language)
        self.destinations = dict(destinations or {})
        self.template = config or SessionConfig(source, targets[0], voice=voice)
        self.interruptible = interruptible
        self.pass_input_audio = pass_input_audio
        self.max_ahead_s = max_ahead_s
        self.end_timeout_s = end_timeout_s
        self.on_record = on_record
        self.speakers: dict[str, list[_Speaker]] = {}
        self._refused: dict[str, float] = {}  # user_id -> when its sessions were refused
        self._bad_input: set[str] = set()  # speakers told their audio cannot be used
        self._playout: dict[str | None, PlayoutClock] = {}  # per output destination
        self._muted = False
        self._stopping = False
        self._tick: asyncio.Task[None] | None = None
        self._scheduler_running = False  # ours, started by the StartFrame

    # -- the application's calls ----------------------------------------------------------
    def set_language(self, user_id: str, language: str) -> None:
        """``user_id`` speaks ``language`` from their next session on (refused here, with
        ``UnsupportedLanguage``, if a target cannot be reached from it)."""
        self._check(language)
        self.languages[user_id] = language

    def metrics(self) -> dict[str, Any]:
        """Each speaker's live session figures (lag, backlog, stage times), by user and
        target."""
        return {f"{sp.user_id}>{sp.target}": sp.session.metrics()
                for group in self.speakers.values() for sp in group}

    def can_generate_metrics(self) -> bool:
        return True

    # -- pipecat ----------------------------------------------------------------------------
    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, StartFrame):
            await self._start()
        elif isinstance(frame, InputAudioRawFrame) and direction == FrameDirection.DOWNSTREAM:
            await self._hear(frame)
            if not self.pass_input_audio:
                return
        elif isinstance(frame, STTMuteFrame):
            self._muted = frame.mute
        elif isinstance(frame, InterruptionFrame) and self.interruptible:
            self._playout.clear()  # the output dropped what it had queued
        elif isinstance(frame, EndFrame):
            await self._finish()
        elif isinstance(frame, CancelFrame):
            await self._close()
        await self.push_frame(frame, direction)

    async def cleanup(self) -> None:
        await self._close()
        await super().cleanup()

    # -- lifecycle --------------------------------------------------------------------------
    async def _start(self) -> None:
        self._stopping = False
        if self._own_scheduler and not self._scheduler_running:
            await self.scheduler.start()
            self._scheduler_running = True
        if self._tick is None:
            self._tick = asyncio.create_task(self._report_backlog(), name="pipecat-backlog")

    async def _finish(self) -> None:
        """EndFrame: no more input; every open phrase is finished and its translation pushed
        before the EndFrame goes on."""
        self._stopping = True
        speakers = [sp for group in self.speakers.values() for sp in group]
        for sp in speakers:
            await sp.session.end()
        pumps = [sp.task for sp in speakers if sp.task is not None]
        if pumps:
            _, pending = await asyncio.wait(pumps, timeout=self.end_timeout_s)
            if pending:
                log.warning("%d interpretation(s) still running %.0f s after the end; "
                            "stopping them", len(pending), self.end_timeout_s)
        await self._close()

    async def _close(self) -> None:
        """Stop every session now (CancelFrame, cleanup, or after the EndFrame's drain) and
        the scheduler if it is ours; safe to call twice."""
        self._stopping = True
        speakers = [sp for group in self.speakers.values() for sp in group]
        self.speakers.clear()
        tasks = [t for t in [self._tick, *(sp.task for sp in speakers)] if t is not None]
        self._tick = None
        await cancel_and_wait(tasks)
        for sp in speakers:
            await sp.session.close()
        if self._scheduler_running:
            self._scheduler_running = False
            await self.scheduler.close()

    # -- audio in ---------------------------------------------------------------------------
    async def _hear(self, frame: InputAudioRawFrame) -> None:
        if self._stopping or not frame.audio:
            return
        user_id = getattr(frame, "user_id", "") or ""
        speakers = self.speakers.get(user_id)
        if speakers is None:
            speakers = await self._join(user_id)
        if not speakers:
            return
        pcm = _mono(frame)
        for sp in speakers:
            try:
                sp.inbound.pcm(pcm, frame.sample_rate)
            except SessionClosed:
                pass
            except BabelcallError as exc:  # a rate no session can take: said once a speaker
                if user_id not in self._bad_input:
                    self._bad_input.add(user_id)
                    await self.push_error(f"babelcall: {exc}", exception=exc)
                return

    async def _join(self, user_id: str) -> list[_Speaker]:
        """A new voice: one session per target language it needs (none, with an ErrorFrame,
        if the scheduler refuses; tried again after ``RETRY_S``)."""
        refused = self._refused.get(user_id)
        if refused is not None and time.monotonic() - refused < RETRY_S:
            return []
        spoken = self.languages.get(user_id, self.source)
        speakers: list[_Speaker] = []
        try:
            for target in self.targets:
                if target == spoken:
                    continue
                config = dataclasses.replace(self.template, source=spoken, target=target)
                session = Session(self.scheduler, config)
                speakers.append(self._wire(user_id, session))
        except BabelcallError as exc:  # Overloaded, or a pair this install cannot serve
            for sp in speakers:
                await sp.session.close()
            self._refused[user_id] = time.monotonic()
            await self.push_error(f"babelcall: speaker {user_id or '(default)'}: {exc}",
                                  exception=exc)
            return []
        self._refused.pop(user_id, None)
        self.speakers[user_id] = speakers
        for sp in speakers:
            sp.session.start()
            sp.task = asyncio.create_task(self._pump(sp), name=f"pipecat-{sp.session.id}")
        return speakers

    def _wire(self, user_id: str, session: Session) -> _Speaker:
        inbound = Inbound(session, max_ahead_s=self.max_ahead_s, gate=lambda: self._muted)
        return _Speaker(user_id, session, inbound,
                        self.destinations.get(session.config.target),
                        origin_ns=session.clock.now_ns())

    # -- frames out -------------------------------------------------------------------------
    async def _pump(self, sp: _Speaker) -> None:
        async for ev in sp.session.events():
            try:
                await self._emit(sp, ev)
            except asyncio.CancelledError:
                raise
            except Exception:  # one bad event must not end the interpretation
                log.exception("pipecat: could not emit %s", type(ev).__name__)

    async def _emit(self, sp: _Speaker, ev: Event) -> None:
        meta = {"user_id": sp.user_id, "source": sp.source, "target": sp.target,
                "utt": ev.utt}
        out: list[Frame] = []
        marks: dict[str, int] | None = None
        if isinstance(ev, Transcript):
            out += self._source_frames(sp, ev)
        elif isinstance(ev, Translation) and ev.committed.strip():
            text = TranslationFrame(text=ev.committed.strip(), user_id=sp.user_id,
                                    timestamp=time_now_iso8601(),
                                    language=_language(sp.target))
            text.skip_tts = True
            out.append(text)
        elif isinstance(ev, SynthAudio):
            out.append(self._speech(sp, ev, meta))
        elif isinstance(ev, PhraseTiming):
            marks = sp.clauses.pop(ev.clause, None)
        elif isinstance(ev, StageError | SpeechSkipped):
            log.warning("pipecat: %s>%s %s", sp.source, sp.target, ev)
        rec = event_record(ev, origin_ns=sp.origin_ns,
                           arrival_ns=sp.session.arrival_ns(ev.src.end), marks=marks)
        rec.update(user_id=sp.user_id, source=sp.source, target=sp.target)
        for frame in out:
            frame.metadata["babelcall"] = meta
            await self.push_frame(frame)
        if isinstance(ev, SynthAudio) and ev.seq == 0:
            await self._push_metrics(TTFBMetricsData, sp, rec["latency_ms"])
        if isinstance(ev, PhraseTiming) and marks is not None:
            handed = rec["hops_ms"].get("handed")
            if handed is not None:
                await self._push_metrics(ProcessingMetricsData, sp, handed)
        if self.on_record is not None:
            self.on_record(rec)

    def _source_frames(self, sp: _Speaker, ev: Transcript) -> list[Frame]:
        out: list[Frame] = []
        language = _language(sp.source)
        if ev.committed:
            text = ev.committed_text
            sp.heard[ev.utt] = f"{sp.heard.get(ev.utt, '')} {text}".strip()
            while len(sp.heard) > 8:  # only the phrase being spoken needs it
                del sp.heard[next(iter(sp.heard))]
            out.append(TranscriptionFrame(text=text, user_id=sp.user_id,
                                          timestamp=time_now_iso8601(), language=language,
                                          finalized=not ev.partial))
        if ev.partial:
            so_far = f"{sp.heard.get(ev.utt, '')} {ev.partial_text}".strip()
            out.append(InterimTranscriptionFrame(text=so_far, user_id=sp.user_id,
                                                 timestamp=time_now_iso8601(),
                                                 language=language))
        return out

    def _speech(self, sp: _Speaker, ev: SynthAudio, meta: dict[str, Any]) -> Frame:
        """The chunk as PCM16 for the output transport; the listener's queue (a PlayoutClock
        per destination: speakers sharing a track are heard one after another) drives the
        sessions' catch-up, as a WebRTC mixer's would."""
        pcm = (np.clip(ev.pcm, -1.0, 1.0) * 32767).astype("<i2").tobytes()
        frame = TTSAudioRawFrame(audio=pcm, sample_rate=ev.rate, num_channels=1,
                                 context_id=f"{sp.user_id}>{sp.target}#{ev.utt}")
        frame.transport_destination = sp.destination
        frame.interruptible = self.interruptible
        meta.update(clause=ev.clause, seq=ev.seq)
        now = sp.session.clock.now_ns()
        playing = self._playout.setdefault(sp.destination, PlayoutClock()).place(
            now, ev.duration)
        if ev.seq == 0:
            sp.clauses[ev.clause] = {"handed": now, "playing": playing}
            while len(sp.clauses) > 64:  # only a phrase's last clause is asked for
                sp.clauses.popitem(last=False)
        self._tell_backlog(sp.destination)
        return frame

    async def _push_metrics(self, kind: type[TTFBMetricsData] | type[ProcessingMetricsData],
                            sp: _Speaker, ms: float) -> None:
        if self.metrics_enabled:
            data = kind(processor=self.name, model=f"babelcall {sp.source}>{sp.target}",
                        value=max(0.0, ms) / 1000)
            await self.push_frame(MetricsFrame(data=[data]))

    def _tell_backlog(self, destination: str | None) -> None:
        clock = self._playout.get(destination)
        for group in self.speakers.values():
            for sp in group:
                if sp.destination == destination:
                    queued = clock.backlog_s(sp.session.clock.now_ns()) if clock else 0.0
                    sp.session.report_backlog(queued)

    async def _report_backlog(self) -> None:
        """The listeners' backlog to every session, ten times a second."""
        while True:
            await self.scheduler.clock.sleep(TICK_S)
            for destination in {sp.destination for g in self.speakers.values() for sp in g}:
                with contextlib.suppress(Exception):
                    self._tell_backlog(destination)

    def _check(self, spoken: str) -> None:
        for target in self.targets:
            if target != spoken:
                self.scheduler.engines.check_pair(spoken, target)


def _mono(frame: InputAudioRawFrame) -> np.ndarray:
    """The frame's PCM16 as mono float32 (channels averaged)."""
    pcm = np.frombuffer(frame.audio, dtype="<i2")
    channels = max(1, frame.num_channels)
    if channels > 1:
        pcm = pcm[: len(pcm) // channels * channels].reshape(-1, channels).mean(axis=1)
    return (pcm / 32768.0).astype(np.float32)


def _language(code: str) -> Language | None:
    try:
        return Language(code)
    except ValueError:
        return None
