"""The reference transcriber ("judge") that scores what a listener hears.

Speech quality (ASR-BLEU, ASR-chrF, round-trip WER) must not be scored by the engine under
test: babelcall's streaming ASR reads a short encoder window and cuts decoder loops, tuned for
latency. The judge is plain faster-whisper ``transcribe()`` as its users call it: the full
30 s window, beam 5, its own Silero VAD filter, on the multilingual Whisper base model (the
only one offline here; same weights as the engine, none of its decoding). One model per
process (``judge()``), loaded on first use; calls are serialised."""

from __future__ import annotations

import functools
import os
import threading

import numpy as np

from babelcall.engines.models import resolve
from babelcall.realtime.errors import ModelNotFound

RATE = 16000
MODEL = "whisper-base"
BEAM_SIZE = 5


class Judge:
    """``transcribe(audio16k, language)`` -> the text a listener's Whisper hears."""

    def __init__(self, model: str = MODEL, *, models_dir: str | None = None,
                 threads: int = 0) -> None:
        from faster_whisper import WhisperModel

        path = resolve(model, required=("model.bin", "config.json"), models=models_dir)
        try:
            self._model = WhisperModel(str(path), device="cpu", compute_type="int8",
                                       cpu_threads=threads or min(4, os.cpu_count() or 1))
        except (RuntimeError, ValueError, OSError) as exc:
            raise ModelNotFound(f"could not load the judge's Whisper from {path}: {exc}") \
                from exc
        self.model_name = model
        self._lock = threading.Lock()

    def transcribe(self, audio: np.ndarray, language: str) -> str:
        """Text of 16 kHz mono ``audio`` (any length: faster-whisper walks it in 30 s windows,
        VAD-filtered). Empty for silence."""
        x = np.asarray(audio, dtype=np.float32).reshape(-1)
        if not len(x) or not np.any(x):
            return ""
        with self._lock:
            segments, _ = self._model.transcribe(x, language=language, beam_size=BEAM_SIZE,
                                                 vad_filter=True)
            return " ".join(s.text.strip() for s in segments if s.text.strip())


    def words(self, audio: np.ndarray, language: str) -> list[tuple[str, float, float]]:
        """(word, start s, end s) of 16 kHz mono ``audio``, with faster-whisper's word
        timestamps (cross-attention alignment over the full window): when a speaker said each
        word, measured apart from the engine under test."""
        x = np.asarray(audio, dtype=np.float32).reshape(-1)
        if not len(x) or not np.any(x):
            return []
        with self._lock:
            segments, _ = self._model.transcribe(x, language=language, beam_size=BEAM_SIZE,
                                                 vad_filter=True, word_timestamps=True)
            return [(w.word.strip(), float(w.start), float(w.end))
                    for s in segments for w in (s.words or []) if w.word.strip()]


@functools.cache
def judge(models_dir: str | None = None) -> Judge:
    """The process's judge (loaded once)."""
    return Judge(models_dir=models_dir)


def hear(audio: np.ndarray, rate: int, language: str, *, models_dir: str | None = None) -> str:
    """What a listener hears in ``audio`` (mono float32 at ``rate``), by the judge."""
    from babelcall.realtime.audio import Resampler, frame_from_array

    x = np.asarray(audio, dtype=np.float32).reshape(-1)
    if rate != RATE and len(x):
        r = Resampler(RATE)
        x = np.concatenate([r.push(frame_from_array(x, rate)), r.flush()])
    return judge(models_dir).transcribe(x, language)
