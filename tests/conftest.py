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


def reference(clip: str, source: str, target: str) -> dict:
    with open(eval_dir() / f"refs-{source}-{target}.jsonl", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
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
