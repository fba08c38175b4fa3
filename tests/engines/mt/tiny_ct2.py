"""Build a tiny CTranslate2 Transformer from seeded random numpy arrays, so the CTranslate2 engine
can be tested without any real MT weights (none can be obtained here) and without torch.

Its output is gibberish by construction: tests that use it check mechanics (loading, batching,
forced target prefixes, errors), never translation quality."""

from __future__ import annotations

import io
import re
from collections.abc import Iterable
from pathlib import Path

import ctranslate2
import numpy as np
import sentencepiece as spm

D_MODEL = 32
FFN = 64


def train_spm(lines: Iterable[str], vocab_size: int = 300) -> bytes:
    """A small unigram SentencePiece model; hard_vocab_limit=False because a few hundred lines may
    not hold ``vocab_size`` distinct pieces."""
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(list(lines)), model_writer=buf, vocab_size=vocab_size,
        hard_vocab_limit=False, character_coverage=1.0, model_type="unigram",
        minloglevel=2, num_threads=1)
    return buf.getvalue()


def _shape(name: str, src_vocab: int, tgt_vocab: int) -> tuple[int, ...]:
    """Weight shapes of CTranslate2's Transformer layers, keyed by the variable's path."""
    if name.endswith(("gamma", "beta")):
        return (D_MODEL,)
    if name.startswith("encoder/embeddings"):
        return (src_vocab, D_MODEL)
    if name.startswith("decoder/embeddings") or name.startswith("decoder/projection"):
        return (tgt_vocab, D_MODEL)
    if "/ffn/linear_0" in name:
        return (FFN, D_MODEL)
    if "/ffn/linear_1" in name:
        return (D_MODEL, FFN)
    if "self_attention/linear_0" in name:  # fused query, key, value
        return (3 * D_MODEL, D_MODEL)
    if "/attention/linear_1" in name:  # cross-attention: fused key, value of the encoder output
        return (2 * D_MODEL, D_MODEL)
    return (D_MODEL, D_MODEL)


def _set(spec: object, path: str, value: np.ndarray) -> None:
    """Assign ``value`` at a variable path such as ``decoder/layer_0/attention/linear_1/weight``
    (``name_<i>`` parts index the spec's lists)."""
    obj = spec
    parts = path.split("/")
    for part in parts[:-1]:
        m = re.fullmatch(r"(.+)_(\d+)", part)
        if m and isinstance(getattr(obj, m.group(1), None), list):
            obj = getattr(obj, m.group(1))[int(m.group(2))]
        else:
            obj = getattr(obj, part)
    setattr(obj, parts[-1], value)


def build_tiny_model(out_dir: Path, corpus: Iterable[str], *, seed: int = 0,
                     vocab_size: int = 300) -> Path:
    """Write a loadable CTranslate2 model directory with ``source.spm``/``target.spm``."""
    out_dir = Path(out_dir)
    model = train_spm(corpus, vocab_size)
    sp = spm.SentencePieceProcessor(model_proto=model)
    vocab = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]  # <unk>, <s>, </s>, ...

    spec = ctranslate2.specs.TransformerSpec.from_config((2, 2), 2)
    rng = np.random.default_rng(seed)
    for name, value in spec.variables().items():
        if value is not None:  # flags and scalars already set by from_config
            continue
        shape = _shape(name, len(vocab), len(vocab))
        if name.endswith("gamma"):
            array = np.ones(shape, dtype=np.float32)
        elif name.endswith("beta"):
            array = np.zeros(shape, dtype=np.float32)
        else:
            array = (rng.standard_normal(shape) * 0.2).astype(np.float32)
        _set(spec, name, array)
    spec.register_source_vocabulary(vocab)
    spec.register_target_vocabulary(vocab)
    spec.validate()
    out_dir.mkdir(parents=True, exist_ok=True)
    spec.save(str(out_dir))
    (out_dir / "source.spm").write_bytes(model)
    (out_dir / "target.spm").write_bytes(model)
    return out_dir
