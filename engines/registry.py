"""The set of loaded engines that sessions share. Models load once, here; a session only
holds per-speaker state. Passed in explicitly, never a global."""

from __future__ import annotations

from dataclasses import dataclass, field

from babelcall.engines.base import Asr, Synthesizer, Translator, Vad
from babelcall.engines.voice import PassThrough, VoiceCloner, load_cloner
from babelcall.realtime.errors import UnsupportedLanguage

MT_CHOICES = ("auto", "apertium", "ctranslate2", "whisper")


@dataclass
class Engines:
    vad: Vad
    asr: Asr
    tts: Synthesizer
    translator: Translator | None = None  # None: Whisper translates to English itself
    cloner: VoiceCloner = field(default_factory=PassThrough)  # PassThrough: cloning off

    @classmethod
    def load(cls, source: str, target: str, *, asr_model: str = "whisper-base",
             mt: str = "auto", mt_model: str | None = None, tts_model: str = "kokoro-82m",
             voice: str | None = None, models_dir: str | None = None, device: str = "cpu",
             threads: int = 0, clone: str = "dsp", clone_model: str | None = None,
             warm: bool = True) -> Engines:
        """Load what the pair needs; every missing piece fails here with a clear error,
        before any audio flows."""
        from babelcall.engines.asr.whisper import FasterWhisperAsr
        from babelcall.engines.tts.kokoro import KokoroSynth
        from babelcall.engines.vad.silero import SileroVad

        if mt not in MT_CHOICES:
            raise ValueError(f"mt must be one of {', '.join(MT_CHOICES)}")
        if source == target:
            raise UnsupportedLanguage(f"source and target are both '{source}'")
        translator = _load_translator(source, target, mt, mt_model, models_dir, device)
        tts = KokoroSynth(tts_model, models_dir=models_dir, threads=threads,
                          **({"voice": voice} if voice else {}))
        if not tts.supports(target):
            raise UnsupportedLanguage(f"the speech synthesiser cannot speak '{target}'")
        compute = "int8" if device == "cpu" else "int8_float16"
        asr = FasterWhisperAsr(asr_model, device=device, compute_type=compute,
                               cpu_threads=threads, models_dir=models_dir)
        cloner = load_cloner(clone, model=clone_model, device=device, models_dir=models_dir)
        engines = cls(vad=SileroVad(), asr=asr, tts=tts, translator=translator, cloner=cloner)
        if warm:
            engines.warm_up(source, target)
        return engines

    def warm_up(self, source: str, target: str) -> None:
        """One call of each model, so one-off costs (Apertium starting its pipeline, ~0.3 s;
        allocators growing) are paid at start-up instead of on a caller's first phrase."""
        import numpy as np

        hush = np.random.default_rng(0).normal(0, 0.003, 16000).astype(np.float32)
        self.asr.transcribe(hush, language=source, task=self.asr_task(source, target))
        if self.translator is not None and self.translator.supports(source, target):
            self.translator.translate(["Hello."], source=source, target=target)
        if self.tts.supports(target):
            for _ in self.tts.synthesize("OK.", language=target):
                pass

    def translator_for(self, source: str, target: str) -> Translator | None:
        """The text translator a session from ``source`` to ``target`` uses; None when
        Whisper translates into English itself (see ``asr_task``)."""
        if self.translator is not None and self.translator.supports(source, target):
            return self.translator
        return None

    def asr_task(self, source: str, target: str) -> str:
        return "translate" if self.translator_for(source, target) is None and target == "en" \
            else "transcribe"

    def check_pair(self, source: str, target: str) -> None:
        if self.translator is None:
            if target != "en":
                raise UnsupportedLanguage(
                    f"{source}->{target}: Whisper only translates into English; give a text "
                    "MT engine (--mt apertium, or --mt-model DIR for a CTranslate2 model)")
        elif not self.translator.supports(source, target):
            raise UnsupportedLanguage(f"{self.translator.name} cannot translate "
                                      f"{source}->{target}")
        if not self.tts.supports(target):
            raise UnsupportedLanguage(f"the speech synthesiser cannot speak '{target}'")


def _load_translator(source: str, target: str, mt: str, mt_model: str | None,
                     models_dir: str | None, device: str) -> Translator | None:
    if mt_model and mt in ("auto", "ctranslate2"):
        from babelcall.engines.models import resolve
        from babelcall.engines.mt.ct2 import Ct2Translator

        path = resolve(mt_model, required=("model.bin",), models=models_dir)
        return Ct2Translator(str(path), device=device)
    if mt == "ctranslate2":
        raise UnsupportedLanguage("--mt ctranslate2 needs --mt-model DIR (a converted "
                                  "CTranslate2 translation model)")
    if mt == "whisper":
        if target != "en":
            raise UnsupportedLanguage("Whisper translates only into English")
        return None
    from babelcall.engines.mt.apertium import ApertiumTranslator
    from babelcall.realtime.errors import EngineUnavailable

    try:
        apertium = ApertiumTranslator()
        if apertium.supports(source, target):
            return apertium
    except EngineUnavailable:
        if mt == "apertium":
            raise
    if mt == "apertium":
        raise UnsupportedLanguage(f"Apertium has no installed {source}->{target} pair "
                                  "(apt-cache search apertium)")
    if target == "en":
        return None
    raise UnsupportedLanguage(
        f"no offline translation engine for {source}->{target}: install an Apertium pair "
        "(apt-get install apertium-xxx-yyy) or pass --mt-model DIR (a CTranslate2 model)")
