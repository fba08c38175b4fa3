"""Which language a participant speaks, from their first seconds of speech (Whisper's language
ID), for rooms where not everyone is named in ``--languages``.

The frames read while listening are kept and played into the participant's interpreter first
(``ReplayTrack``), so the words said before the language was known are translated too."""

from __future__ import annotations

import asyncio
import logging
from collections import deque

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from babelcall.realtime.audio import SPEECH_RATE, Resampler
from babelcall.realtime.scheduler import Scheduler

log = logging.getLogger(__name__)
SPEECH_RMS = 0.01      # a 20 ms frame louder than this counts as speech
PREROLL_S = 0.5        # silence kept before the first speech (the rest is not replayed)


async def probe_language(track: MediaStreamTrack, scheduler: Scheduler, candidates: set[str],
                         *, speech_s: float = 2.5, timeout_s: float = 20.0,
                         ) -> tuple[str | None, list[av.AudioFrame]]:
    """Read ``track`` until ``speech_s`` of speech (or ``timeout_s``), then ask Whisper (on the
    scheduler's ASR lane, behind the compute gate like every model call) which of
    ``candidates`` it is. Returns (language or None if nobody spoke, the frames read)."""
    kept: deque[tuple[av.AudioFrame, np.ndarray]] = deque()  # each frame and its 16 kHz PCM
    resampler = Resampler(SPEECH_RATE)
    clock = scheduler.clock
    voiced = kept_s = 0.0
    deadline_ns = clock.now_ns() + int(timeout_s * 1e9)

    def left_s() -> float:
        return (deadline_ns - clock.now_ns()) / 1e9

    try:
        while voiced < speech_s and left_s() > 0:
            async with asyncio.timeout(max(0.1, left_s())):
                frame = await track.recv()
            seconds = frame.samples / frame.sample_rate
            block = resampler.push(frame)
            kept.append((frame, block))
            kept_s += seconds
            if len(block) and float(np.sqrt(np.mean(block ** 2))) > SPEECH_RMS:
                voiced += seconds
            elif voiced == 0.0:  # still waiting for speech: keep only a short pre-roll
                while kept_s > PREROLL_S and len(kept) > 1:
                    old, _ = kept.popleft()
                    kept_s -= old.samples / old.sample_rate
    except (TimeoutError, MediaStreamError):
        pass
    frames = [f for f, _ in kept]
    if voiced == 0.0:
        return None, frames
    audio = np.concatenate([b for _, b in kept]) if kept else np.zeros(0, np.float32)
    # the participant's translation waits for this: due like a phrase's final ASR pass
    due = scheduler.budget.deadline("asr", clock.now_ns(), final=True)
    language, prob = await scheduler.detect_language(audio, candidates, deadline_ns=due)
    log.info("detected %s (p=%.2f) from %.1f s of speech", language, prob, voiced)
    return language, frames


class ReplayTrack(MediaStreamTrack):
    """The frames read while detecting, then the live track."""

    kind = "audio"

    def __init__(self, frames: list[av.AudioFrame], source: MediaStreamTrack) -> None:
        super().__init__()
        self._frames = deque(frames)
        self._source = source

    async def recv(self) -> av.AudioFrame:
        if self._frames:
            return self._frames.popleft()
        return await self._source.recv()

    def stop(self) -> None:
        super().stop()
        self._source.stop()
