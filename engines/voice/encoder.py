"""Speaker embeddings with Resemblyzer (GE2E d-vectors, 256 floats, unit length). Optional:
it needs torch, which the embedded path never imports; torch loads on first use here.

Install: ``pip install torch==2.13.0`` first (a CPU build; an unpinned torch pulls a
multi-GB CUDA build), then ``pip install resemblyzer``."""

from __future__ import annotations

import importlib.metadata
import sys
import threading
import types

import numpy as np

from babelcall.realtime.errors import EngineUnavailable

RATE = 16000


def _pkg_resources_shim() -> None:
    """resemblyzer's dependency webrtcvad does ``import pkg_resources`` for its version only;
    setuptools >= 81 (which torch pulls in) no longer ships it. Give it the one function."""
    if "pkg_resources" in sys.modules:
        return
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        shim = types.ModuleType("pkg_resources")

        class _Distribution:
            def __init__(self, name: str) -> None:
                self.project_name = name
                self.version = importlib.metadata.version(name)

        shim.get_distribution = _Distribution  # type: ignore[attr-defined]
        sys.modules["pkg_resources"] = shim


class ResemblyzerEncoder:
    """``embed(pcm, rate)`` -> unit-length d-vector; cosine of two = dot product."""

    def __init__(self, device: str = "cpu", *, threads: int = 1) -> None:
        """``threads``: torch CPU threads. One leaves the other core to the live pipeline and,
        on a busy 2-core machine, was measured faster than two (0.2 s vs 0.5-2.6 s for 8 s)."""
        _pkg_resources_shim()
        try:
            import torch
            from resemblyzer import VoiceEncoder, preprocess_wav
        except ImportError as exc:
            raise EngineUnavailable(
                "speaker embeddings need resemblyzer and torch: pip install torch==2.13.0 "
                "&& pip install resemblyzer") from exc
        if device == "cpu" and threads > 0:
            torch.set_num_threads(threads)
        self._encoder = VoiceEncoder(device, verbose=False)
        self._preprocess = preprocess_wav
        self._lock = threading.Lock()  # torch modules are not re-entrant across threads

    def embed(self, pcm: np.ndarray, rate: int = RATE) -> np.ndarray:
        x = np.asarray(pcm, dtype=np.float32).reshape(-1)
        if rate != RATE:
            from babelcall.engines.voice.sigproc import resample

            x = resample(x, round(len(x) * RATE / rate))
        wav = self._preprocess(x, source_sr=RATE)
        if len(wav) < RATE // 4:  # Resemblyzer trims pauses; too little speech is left
            wav = x
        with self._lock:
            return np.asarray(self._encoder.embed_utterance(wav), dtype=np.float32)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))
