"""Shared fixtures: real models load once per test run (session scope) and evaluation clips
come from ../shared/eval (or $BABELCALL_EVAL), never copied into the repo."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def eval_dir() -> Path:
    env = os.environ.get("BABELCALL_EVAL")
    path = Path(env) if env else REPO.parent / "shared" / "eval" / "fleurs"
    if not path.is_dir():
        raise RuntimeError(f"evaluation clips not found at {path}; set BABELCALL_EVAL")
    return path


def clip_path(name: str) -> Path:
    return eval_dir() / f"{name}.ogg"


def load_clip(name: str, rate: int = 16000) -> np.ndarray:
    from babelcall.realtime.audio import load_file

    return load_file(clip_path(name), rate)


def references(source: str, target: str) -> list[dict]:
    """Every dev clip's row of the source->target reference file (clip, src_ref, tgt_ref)."""
    with open(eval_dir() / f"refs-{source}-{target}.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def reference(clip: str, source: str, target: str) -> dict:
    for row in references(source, target):
        if row["clip"] == clip:
            return row
    raise KeyError(clip)


def normalize(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


@pytest.fixture(scope="session")
def asr():
    """Whisper base (multilingual, int8) from the offline catalogue."""
    from babelcall.engines.asr.whisper import FasterWhisperAsr

    return FasterWhisperAsr("whisper-base")


@pytest.fixture(scope="session")
def kokoro():
    """Kokoro-82M int8 (ONNX) from the offline catalogue."""
    from babelcall.engines.tts.kokoro import KokoroSynth

    return KokoroSynth("kokoro-82m")


@pytest.fixture(scope="session")
def apertium():
    """One Apertium process per pair for the whole run."""
    from babelcall.engines.mt.apertium import ApertiumTranslator

    with ApertiumTranslator() as mt:
        yield mt


@pytest.fixture(scope="session")
def engines(asr, kokoro, apertium):
    """The real engines, shared by every end-to-end test (as sessions share them in a server)."""
    from babelcall.engines.registry import Engines
    from babelcall.engines.vad.silero import SileroVad

    return Engines(vad=SileroVad(), asr=asr, tts=kokoro, translator=apertium)


@pytest.fixture(scope="session")
def judge():
    """The reference transcriber that scores speech (plain faster-whisper, full window, beam 5,
    VAD): never babelcall's own streaming engine, which is what is under test."""
    from babelcall.benchmarks.judge import judge

    return judge()


def hear_back(audio: np.ndarray, language: str) -> str:
    """What a listener hears in 16 kHz ``audio`` of any length, by the judge (one model per
    test session)."""
    from babelcall.benchmarks.judge import judge

    return judge().transcribe(audio, language)


@pytest.fixture(scope="session")
def all_pairs(asr, kokoro, apertium):
    """The real engines as ``babelcall serve`` loads them: one router over Bergamot and the
    installed Apertium pairs, Whisper translating into English where it measured better."""
    from babelcall.engines.mt.bergamot import BergamotTranslator
    from babelcall.engines.mt.router import RouterTranslator
    from babelcall.engines.registry import Engines, asr_languages
    from babelcall.engines.vad.silero import SileroVad

    router = RouterTranslator([BergamotTranslator(), apertium], asr_languages=asr_languages(asr))
    return Engines(vad=SileroVad(), asr=asr, tts=kokoro, translator=router)
