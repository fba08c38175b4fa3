"""One small contract per stage. Engines are synchronous and know nothing of asyncio: the
session calls them in worker threads. One engine instance (one loaded model) serves every
session; per-session state lives in the objects the engines hand out (``VadStream``) or in
the session's policies (``OnlineAsr``, ``IncrementalTranslator``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

import numpy as np

from babelcall.realtime.types import Word


class VadStream(Protocol):
    """Per-session voice-activity state over a 16 kHz stream."""

    window: int  # samples per probability

    def probs(self, pcm: np.ndarray) -> np.ndarray:
        """Speech probability for each whole ``window`` of ``pcm`` (len must be a multiple)."""
        ...


@runtime_checkable
class Vad(Protocol):
    sample_rate: int

    def stream(self) -> VadStream: ...


@runtime_checkable
class Asr(Protocol):
    """Speech recognition over a buffer of 16 kHz mono float32 audio."""

    sample_rate: int

    def transcribe(
        self, audio: np.ndarray, *, language: str, prompt: str = "", task: str = "transcribe"
    ) -> list[Word]:
        """Words with times in seconds from the start of ``audio``."""
        ...


@runtime_checkable
class Translator(Protocol):
    """Text MT for a set of language pairs.

    ``supports_prefix`` engines continue a forced ``target_prefix`` (CTranslate2); others are
    re-run on the whole source and the session commits only the stable part of their output."""

    name: str
    supports_prefix: bool
    shares_compute: bool  # runs on the cores/GPU the other models use (the scheduler's gate)

    def supports(self, source: str, target: str) -> bool: ...

    def translate(
        self,
        sources: list[str],
        *,
        source: str,
        target: str,
        target_prefixes: list[str] | None = None,
    ) -> list[str]: ...


@runtime_checkable
class Synthesizer(Protocol):
    """Text to speech; yields mono float32 chunks at ``sample_rate`` as they are ready."""

    sample_rate: int

    def supports(self, language: str) -> bool: ...

    def synthesize(
        self, text: str, *, language: str, voice: str | None = None, speed: float = 1.0
    ) -> Iterator[np.ndarray]: ...
