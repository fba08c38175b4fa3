"""Deterministic stand-ins for unit tests of session and scheduling logic only. End-to-end
tests and benchmarks use the real engines."""

from __future__ import annotations

import threading

import numpy as np

from babelcall.engines.registry import Engines
from babelcall.realtime.types import Word

RATE = 16000


class EnergyVadStream:
    window = 512

    def probs(self, pcm: np.ndarray) -> np.ndarray:
        w = pcm.reshape(-1, self.window)
        return (np.sqrt((w ** 2).mean(axis=1)) > 0.05).astype(np.float32) * 0.9


class EnergyVad:
    sample_rate = RATE

    def stream(self) -> EnergyVadStream:
        return EnergyVadStream()


class CountingAsr:
    """One word per 0.5 s of loud audio: ``w0 w1 ...``; the last word ends a sentence."""

    sample_rate = RATE

    def __init__(self) -> None:
        self.calls = 0

    def transcribe(self, audio, *, language, prompt="", task="transcribe"):
        self.calls += 1
        n = int(len(audio) / RATE / 0.5)
        return [Word(f" w{i}", i * 0.5, i * 0.5 + 0.4) for i in range(n)]


class UpperMt:
    name = "upper"
    supports_prefix = False

    def __init__(self, fail_on: str | None = None) -> None:
        self.fail_on = fail_on

    def supports(self, source, target):
        return True

    def translate(self, sources, *, source, target, target_prefixes=None):
        if self.fail_on and any(self.fail_on in s for s in sources):
            raise RuntimeError("mt exploded")
        return [s.upper() for s in sources]


class BeepTts:
    sample_rate = RATE

    def supports(self, language):
        return True

    def synthesize(self, text, *, language, voice=None, speed=1.0):
        for _ in text.split():
            yield np.full(int(0.1 * RATE), 0.1, dtype=np.float32)


# -- engines that fail, passed where engines are passed (fault tests) --------------------------
class RaisingVad(EnergyVad):
    """A VAD whose stream raises on the first audio: the listen stage's call is unguarded by
    any per-phrase recovery (there is no phrase yet)."""

    def stream(self):
        class Broken:
            window = 512

            def probs(self, pcm):
                raise RuntimeError("vad exploded")
        return Broken()


class RaisingAsr(CountingAsr):
    def transcribe(self, audio, **kw):
        self.calls += 1
        raise RuntimeError("asr exploded")


class RaisingTts(BeepTts):
    def synthesize(self, text, **kw):
        raise RuntimeError("tts exploded")
        yield  # a generator, as the real ones


class HangingAsr(CountingAsr):
    """Blocks its lane's thread for ``seconds`` or until released (the test releases it at the
    end)."""

    def __init__(self, seconds: float = 30.0) -> None:
        super().__init__()
        self.seconds = seconds
        self.release = threading.Event()

    def transcribe(self, audio, **kw):
        self.calls += 1
        self.release.wait(self.seconds)
        return []


def fake_scheduler(engines: Engines | None = None, *, clock=None, **kw):
    """A scheduler over the stand-in engines, on a simulated clock unless one is given."""
    from babelcall.realtime.clock import FakeClock
    from babelcall.realtime.scheduler import Scheduler

    return Scheduler(engines or fake_engines(), clock=clock or FakeClock(), **kw)


def whisper_routed_mt(languages=("de", "en", "es", "fr", "pt")):
    """A router that sends X->en to Whisper's own translation (as Apertium pairs into English
    are routed) while its text engine could serve those pairs too."""
    from babelcall.engines.mt.router import RouterTranslator

    text = UpperMt()
    text.shares_compute = False
    return RouterTranslator([text], asr_languages=set(languages))


def fake_engines(**kw) -> Engines:
    return Engines(vad=EnergyVad(), asr=kw.get("asr", CountingAsr()), tts=BeepTts(),
                   translator=kw.get("mt", UpperMt()))


def tone_phrases(*durations: float, gap: float = 1.0) -> np.ndarray:
    """Loud 200 Hz tone for each duration, separated by silence."""
    parts = [np.zeros(int(gap * RATE), dtype=np.float32)]
    for d in durations:
        t = np.arange(int(d * RATE)) / RATE
        parts += [(0.5 * np.sin(2 * np.pi * 200 * t)).astype(np.float32),
                  np.zeros(int(gap * RATE), dtype=np.float32)]
    return np.concatenate(parts)
