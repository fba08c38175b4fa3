"""Kokoro-82M (int8 ONNX) speech synthesis on onnxruntime, streamed clause by clause.

Kokoro takes a whole phoneme string and returns its audio in one go (0.4-0.8 x real time on two
CPU cores), so the first audio of a long sentence would come seconds late. We cut the text at
espeak's clause boundaries: the first piece is the first clause(s), just long enough to be
rendered well (``MIN_PIECE``), and each later piece merges clauses up to twice the length of
the piece before it. Since a piece takes less than half its own duration to compute, the next
one is ready before the previous one has finished playing, while longer pieces keep more of
the sentence's intonation. No piece exceeds the 510 tokens the style table (and the model's
context) allows.

One InferenceSession serves every caller: onnxruntime's ``run`` is thread-safe."""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from babelcall.engines.models import resolve
from babelcall.engines.tts.phonemes import Clause, Phonemizer
from babelcall.realtime.cost import charge, native_threads
from babelcall.realtime.errors import EngineUnavailable, ModelNotFound

log = logging.getLogger(__name__)
SAMPLE_RATE = 24000
MAX_TOKENS = 510  # rows of each voice's style table; the model adds a pad token at both ends
DEFAULT_VOICE = "jm_kumo"  # Japanese-trained, yet the clearest here in Spanish/English trips
REQUIRED = ("model.onnx", "vocab.json", "voices.npz")
MIN_SPEED, MAX_SPEED = 0.5, 2.0

# Kokoro renders a lone one-word clause ("Cependant,") poorly: that French sentence's round-trip
# WER went 0.32 -> 0.14 when the clause was joined to the next. So the first piece holds at
# least this many symbols (~2 s of speech) unless the text is shorter; 60 measured no better.
MIN_PIECE = 30

# Round-trip WER of each voice per language: 5 FLEURS reference sentences (4 it) synthesised, then
# transcribed by an independent Whisper base (benchmarks/pairs.tts_round_trip), 2026-11-27.
# These voices are Japanese-trained: some cannot be understood in some languages (jf_alpha's
# French was heard as "Poudre jaune réconcide" for "Peu de gens les considèrent").
VOICE_WER: dict[str, dict[str, float]] = {
    "en": {"jm_kumo": 0.038, "jf_alpha": 0.077, "jf_gongitsune": 0.077, "jf_nezumi": 0.058,
           "jf_tebukuro": 0.087},
    "es": {"jm_kumo": 0.058, "jf_alpha": 0.099, "jf_gongitsune": 0.058, "jf_nezumi": 0.083,
           "jf_tebukuro": 0.058},
    "fr": {"jm_kumo": 0.261, "jf_alpha": 1.0, "jf_gongitsune": 0.339, "jf_nezumi": 0.383,
           "jf_tebukuro": 0.635},
    "it": {"jm_kumo": 0.149, "jf_alpha": 0.207, "jf_gongitsune": 0.172, "jf_nezumi": 0.195,
           "jf_tebukuro": 0.241},
    "pt": {"jm_kumo": 0.186, "jf_alpha": 0.275, "jf_gongitsune": 0.167, "jf_nezumi": 0.167,
           "jf_tebukuro": 0.216},
}
# A voice is usable in a language unless its WER is over twice the best voice's and 0.1 above
UNUSABLE_RATIO, UNUSABLE_MARGIN = 2.0, 0.1
_KEEP_S = 0.05  # silence kept at each end of a piece, so clauses join like natural pauses
_FRAME_S = 0.01
_SILENCE_RMS = 0.002  # Kokoro pads with near-digital silence; its final fricatives are ~0.01
_PUNCT_SPLIT = re.compile(r"(?<=[,.!?;:—…])\s+")


class KokoroSynth:
    """Multilingual TTS with Kokoro-82M and espeak-ng phonemes; see module docstring."""

    sample_rate = SAMPLE_RATE

    def __init__(self, model: str = "kokoro-82m", *, voice: str = DEFAULT_VOICE,
                 models_dir: str | os.PathLike[str] | None = None, threads: int = 0) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise EngineUnavailable("Kokoro TTS needs onnxruntime: pip install onnxruntime") \
                from exc
        path = resolve(model, required=REQUIRED, models=models_dir)
        self._vocab = _load_vocab(path / "vocab.json")
        self._styles = _load_voices(path / "voices.npz")
        self.voices: tuple[str, ...] = tuple(sorted(self._styles))
        self.voice = self._check_voice(voice)
        opts = ort.SessionOptions()
        # two threads by default, though one costs 5-8 % less CPU per second of speech: every
        # session's speech is made on the one TTS lane thread (realtime/scheduler.py), so its
        # intra-op threads are the only way synthesis uses a second core (1.34x), while the
        # recogniser, on one thread, runs beside it in the other compute slot
        self.threads = threads or min(2, os.cpu_count() or 1)
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        # Whisper and MT share these cores: idle ORT workers that spin burned ~25% more CPU
        # per second of speech here (1.2 vs 0.95 CPU-s with 2 threads on a busy 2-core box).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        onnx = path / "model.onnx"
        before = native_threads()
        try:
            self._session = ort.InferenceSession(str(onnx), sess_options=opts,
                                                 providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's errors (InvalidProtobuf, Fail...) are bare
            raise ModelNotFound(f"could not load the Kokoro model {onnx}: {exc}") from exc
        # with more than one intra-op thread, onnxruntime computes on a pool besides the
        # caller's thread: the cost account (realtime/cost.py) reads their CPU clocks
        self.cpu_threads = frozenset(native_threads() - before)
        self.model_name = str(model)
        self._phonemizer = Phonemizer(self._vocab)
        self._substituted: set[tuple[str, str]] = set()

    @property
    def languages(self) -> tuple[str, ...]:
        return self._phonemizer.languages

    def voices_for(self, language: str) -> tuple[str, ...]:
        """The voices that can be understood in ``language`` (all where none was measured);
        a voice cloner should choose among these, not among ``voices``."""
        measured = VOICE_WER.get(language, {})
        if not measured:
            return self.voices
        best = min(measured.values())
        limit = max(UNUSABLE_RATIO * best, best + UNUSABLE_MARGIN)
        return tuple(v for v in self.voices if measured.get(v, 0.0) <= limit)

    def supports(self, language: str) -> bool:
        return self._phonemizer.supports(language)

    def synthesize(self, text: str, *, language: str, voice: str | None = None,
                   speed: float = 1.0) -> Iterator[np.ndarray]:
        """Validate now (so errors reach the caller at the call), then stream the pieces."""
        style = self.style(self._usable_voice(self._check_voice(voice or self.voice),
                                              language))
        if not MIN_SPEED <= speed <= MAX_SPEED:
            raise ValueError(f"speed must be within [{MIN_SPEED}, {MAX_SPEED}], got {speed}")
        with charge("tts"):
            clauses = self._phonemizer.clauses(text, language)  # UnsupportedLanguage here
        return self._stream(plan(clauses), style, float(speed))

    def _stream(self, pieces: list[str], style: np.ndarray, speed: float) -> Iterator[np.ndarray]:
        for piece in pieces:
            with charge("tts", threads=self.cpu_threads):
                audio = trim_silence(self._infer(piece, style, speed), SAMPLE_RATE)
            if len(audio):
                yield audio

    def _infer(self, phonemes: str, style: np.ndarray, speed: float) -> np.ndarray:
        tokens = [self._vocab[ch] for ch in phonemes if ch in self._vocab]
        if not tokens:
            return np.zeros(0, dtype=np.float32)
        ref = style[min(len(tokens), len(style)) - 1].reshape(1, -1).astype(np.float32)
        (audio,) = self._session.run(None, {
            "tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
            "style": ref,
            "speed": np.array([speed], dtype=np.float32),
        })
        return np.clip(np.asarray(audio, dtype=np.float32).reshape(-1), -1.0, 1.0)

    def style(self, voice: str) -> np.ndarray:
        """The style table of a shipped voice, or of a weighted mix of them (a voice between
        them; the voice cloner uses such mixes): ``"jm_kumo+jf_tebukuro"`` is the mean of the
        two styles, ``"jm_kumo*3+jf_tebukuro"`` three parts of the first to one of the second."""
        parts = mix_parts(self._check_voice(voice))
        if len(parts) == 1:
            return self._styles[voice]
        total = sum(w for _, w in parts)
        return (sum(self._styles[v] * w for v, w in parts) / total).astype(np.float32)

    def _usable_voice(self, voice: str, language: str) -> str:
        """``voice``, or where it cannot be understood in ``language`` the usable voice nearest
        in pitch (the cloner converts towards the caller either way), said once in the log."""
        usable = self.voices_for(language)
        if not usable or all(v in usable for v, _ in mix_parts(voice)):
            return voice
        from babelcall.engines.voice.dsp import VOICE_STATS

        def distance(v: str) -> float:
            a, b = VOICE_STATS.get(voice), VOICE_STATS.get(v)
            return abs(math.log2(a.f0_median / b.f0_median)) if a and b else math.inf

        chosen = min(usable, key=distance)
        if (voice, language) not in self._substituted:
            self._substituted.add((voice, language))
            worst = max(VOICE_WER[language].get(v, 0.0) for v, _ in mix_parts(voice))
            log.warning("Kokoro voice %s cannot be understood in '%s' (round-trip WER %.2f); "
                        "speaking it with %s", voice, language, worst, chosen)
        return chosen

    def _check_voice(self, voice: str) -> str:
        try:
            unknown = [v for v, _ in mix_parts(voice) if v not in self._styles]
        except ValueError:
            unknown = [voice]
        if unknown or not voice:
            raise ValueError(f"unknown Kokoro voice '{voice}'; available: "
                             f"{', '.join(self.voices)} (or a mix, e.g. "
                             f"'{'+'.join(self.voices[:2])}')")
        return voice


def mix_parts(voice: str) -> list[tuple[str, float]]:
    """``"a*3+b"`` -> ``[("a", 3.0), ("b", 1.0)]`` (a plain voice name is one part)."""
    parts = []
    for part in voice.split("+"):
        name, _, weight = part.partition("*")
        w = float(weight) if weight else 1.0
        if not w > 0:
            raise ValueError(f"voice mix weights must be positive: '{voice}'")
        parts.append((name, w))
    return parts


def plan(clauses: list[Clause], limit: int = MAX_TOKENS, min_piece: int = MIN_PIECE) -> list[str]:
    """Group clauses into pieces of whole clauses: the first piece as soon as it reaches
    ``min_piece`` symbols (audio starts early), then each piece at most twice as long as the
    one before (or ``2 * min_piece``), never over ``limit`` symbols."""
    parts = [p for c in clauses for p in split_phonemes(c.phonemes, limit)]
    pieces: list[str] = []
    for part in parts:
        if pieces:
            last = pieces[-1]
            size = len(last) + 1 + len(part)
            budget = 2 * max(len(pieces[-2]), min_piece) if len(pieces) > 1 else 0
            if size <= limit and (len(last) < min_piece or size <= budget):
                pieces[-1] = f"{last} {part}"
                continue
        pieces.append(part)
    return pieces


def split_phonemes(phonemes: str, limit: int = MAX_TOKENS) -> list[str]:
    """Cut a phoneme string into pieces of at most ``limit`` symbols: at punctuation first,
    then between words, and only as a last resort inside a word."""
    if len(phonemes) <= limit:
        return [phonemes]
    out: list[str] = []
    for part in _PUNCT_SPLIT.split(phonemes):
        words = part.split(" ") if len(part) > limit else [part]
        for word in words:
            for i in range(0, len(word), limit):
                chunk = word[i:i + limit]
                if out and len(out[-1]) + 1 + len(chunk) <= limit:
                    out[-1] = f"{out[-1]} {chunk}"
                else:
                    out.append(chunk)
    return [p for p in out if p.strip()]


def trim_silence(audio: np.ndarray, rate: int, keep_s: float = _KEEP_S) -> np.ndarray:
    """Drop leading/trailing silence beyond ``keep_s`` (10 ms frame RMS under a threshold)."""
    frame = max(1, int(rate * _FRAME_S))
    n = len(audio) // frame
    if n == 0:
        return audio
    rms = np.sqrt(np.mean(audio[: n * frame].reshape(n, frame) ** 2, axis=1))
    voiced = np.flatnonzero(rms > _SILENCE_RMS)
    if len(voiced) == 0:
        return audio[:0]
    keep = int(rate * keep_s)
    start = max(0, voiced[0] * frame - keep)
    end = min(len(audio), (voiced[-1] + 1) * frame + keep)
    return audio[start:end]


def _load_vocab(path: Path) -> dict[str, int]:
    try:
        vocab = json.loads(path.read_text(encoding="utf-8"))["vocab"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelNotFound(f"{path}: not a Kokoro vocabulary ({exc})") from exc
    return {str(k): int(v) for k, v in vocab.items()}


def _load_voices(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path) as npz:
            styles = {k: np.asarray(npz[k], dtype=np.float32).reshape(-1, 256)
                      for k in npz.files}
    except (OSError, ValueError, KeyError) as exc:
        raise ModelNotFound(f"{path}: not a Kokoro voices file ({exc})") from exc
    if not styles:
        raise ModelNotFound(f"{path}: holds no voices")
    return styles
