"""Silero VAD v6 (the ONNX model shipped inside faster-whisper), run as a stream.

faster-whisper's ``SileroVADModel`` resets the LSTM state on every call, which suits whole
files; a call needs the state carried from one 20 ms frame to the next, so each session gets a
``SileroStream`` holding ``h``/``c`` and the 64-sample context, over one shared ONNX session."""

from __future__ import annotations

import os
import threading

import numpy as np

from babelcall.realtime.errors import EngineUnavailable, ModelNotFound

WINDOW = 512  # samples at 16 kHz = 32 ms, what the model was trained on
CONTEXT = 64


def _default_model_path() -> str:
    from faster_whisper.utils import get_assets_path

    return os.path.join(get_assets_path(), "silero_vad_v6.onnx")


class SileroVad:
    sample_rate = 16000

    def __init__(self, model_path: str | None = None) -> None:
        try:
            import onnxruntime
        except ImportError as exc:
            raise EngineUnavailable("Silero VAD needs onnxruntime: pip install onnxruntime") \
                from exc
        path = model_path or _default_model_path()
        if not os.path.isfile(path):
            raise ModelNotFound(f"Silero VAD model not found at {path} (it ships inside the "
                                "faster-whisper wheel: pip install faster-whisper)")
        opts = onnxruntime.SessionOptions()
        opts.inter_op_num_threads = 1
        opts.intra_op_num_threads = 1
        opts.log_severity_level = 4
        try:
            self._session = onnxruntime.InferenceSession(
                path, providers=["CPUExecutionProvider"], sess_options=opts)
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelNotFound(f"could not load Silero VAD from {path}: {exc}") from exc
        self._lock = threading.Lock()

    def stream(self) -> SileroStream:
        return SileroStream(self)

    def _run(self, batch: np.ndarray, h: np.ndarray, c: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with self._lock:
            out, h, c = self._session.run(None, {"input": batch, "h": h, "c": c})
        return np.asarray(out).reshape(-1), h, c


class SileroStream:
    """Per-session state; ``probs`` must be fed consecutive audio."""

    window = WINDOW

    def __init__(self, vad: SileroVad) -> None:
        self._vad = vad
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)

    def probs(self, pcm: np.ndarray) -> np.ndarray:
        pcm = np.asarray(pcm, dtype=np.float32).reshape(-1)
        if len(pcm) % WINDOW:
            raise ValueError(f"VAD input must be a multiple of {WINDOW} samples, got {len(pcm)}")
        if not len(pcm):
            return np.zeros(0, dtype=np.float32)
        windows = pcm.reshape(-1, WINDOW)
        contexts = np.concatenate([self._context[None], windows[:-1, -CONTEXT:]], axis=0)
        batch = np.ascontiguousarray(np.concatenate([contexts, windows], axis=1))
        out, self._h, self._c = self._vad._run(batch, self._h, self._c)
        self._context = windows[-1, -CONTEXT:].copy()
        return out
