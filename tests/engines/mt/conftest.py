"""MT fixtures: one tiny CTranslate2 model serves the whole test run (the Apertium translator
comes from the root conftest); evaluation references come from ../shared/eval (or $BABELCALL_EVAL)
through the root conftest, never copied into the repo.

This folder is a package (``mt``) only so that this file is not imported as a second top-level
``conftest`` module, which would shadow the root one that other tests import from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import eval_dir


def load_refs(source: str, target: str) -> list[dict]:
    with open(eval_dir() / f"refs-{source}-{target}.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="session")
def refs():
    return load_refs


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A random-weight CTranslate2 Transformer: good for mechanics, useless for quality."""
    from .tiny_ct2 import build_tiny_model

    lines = []
    for path in sorted(eval_dir().glob("refs-*.jsonl")):
        for row in load_refs(*path.stem.split("-")[1:3]):
            lines += [row["src_ref"], row["tgt_ref"]]
    for path in sorted(eval_dir().glob("*.txt")):
        lines += [s.strip() for s in path.read_text(encoding="utf-8").splitlines() if s.strip()]
    return build_tiny_model(tmp_path_factory.mktemp("ct2") / "tiny", lines)
