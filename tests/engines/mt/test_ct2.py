"""CTranslate2 engine MECHANICS on a tiny random-weight Transformer built in the test session
(see tiny_ct2.py): loading, batching, forced target prefixes, determinism and load errors.
The model's output is gibberish by construction, so nothing here measures translation quality;
quality figures come from the real engines (Apertium, Whisper translate)."""

from __future__ import annotations

import shutil

import pytest

from babelcall.engines.base import Translator
from babelcall.engines.mt.ct2 import Ct2Translator
from babelcall.realtime.errors import (
    BabelcallError,
    EngineUnavailable,
    ModelNotFound,
    UnsupportedLanguage,
)

SOURCES = ["However, due to the slow communication channels.", "All nouns begin with a capital.",
           "The cabbage juice changes color."]


@pytest.fixture(scope="module")
def engine(tiny_model):
    return Ct2Translator(tiny_model, device="cpu", beam_size=1, max_decoding_length=12,
                         pairs=[("en", "es")])


def test_loads_and_is_a_translator(engine):
    assert isinstance(engine, Translator)
    assert engine.name == "ctranslate2" and engine.supports_prefix is True
    assert engine.device == "cpu"


def test_supports_only_the_given_pair(engine, tiny_model):
    assert engine.supports("en", "es") and not engine.supports("es", "en")
    with pytest.raises(UnsupportedLanguage):
        engine.translate(["Hola."], source="es", target="en")
    anypair = Ct2Translator(tiny_model, device="cpu", max_decoding_length=4)
    assert anypair.supports("de", "fr")


def test_batch_of_three_returns_three(engine):
    out = engine.translate(SOURCES, source="en", target="es")
    assert len(out) == 3 and all(isinstance(text, str) for text in out)


@pytest.mark.parametrize("prefix", ["No", "No obstante,", "debido a la lentitud de",
                                    "Los estilos ", "¿Qué? ⁇ 25"])
def test_output_starts_with_the_forced_prefix(engine, prefix):
    [out] = engine.translate(SOURCES[:1], source="en", target="es", target_prefixes=[prefix])
    assert out.startswith(prefix)


def test_mixed_prefixes_in_one_batch(engine):
    prefixes = ["", "Todos los", "El jugo de repollo cambia"]
    out = engine.translate(SOURCES, source="en", target="es", target_prefixes=prefixes)
    assert [o.startswith(p) for o, p in zip(out, prefixes, strict=True)] == [True] * 3
    with pytest.raises(ValueError):
        engine.translate(SOURCES, source="en", target="es", target_prefixes=["x"])


def test_long_prefix_is_not_truncated(engine):
    """CTranslate2 counts the prefix in max_decoding_length; the engine must add it back."""
    prefix = " ".join(["palabra"] * 30)
    [out] = engine.translate(SOURCES[:1], source="en", target="es", target_prefixes=[prefix])
    assert out.startswith(prefix)


def test_empty_source_returns_the_prefix(engine):
    assert engine.translate(["", "  "], source="en", target="es",
                            target_prefixes=["", "Hola"]) == ["", "Hola"]


def test_deterministic_with_greedy_search(engine):
    first = engine.translate(SOURCES, source="en", target="es", target_prefixes=["", "A", ""])
    for _ in range(3):
        assert engine.translate(SOURCES, source="en", target="es",
                                target_prefixes=["", "A", ""]) == first


def test_language_tokens(tiny_model):
    """NLLB/M2M style: tokens not in the vocabulary make the pair unsupported."""
    m2m = Ct2Translator(tiny_model, device="cpu", max_decoding_length=4,
                        lang_token_format="__{lang}__")
    assert m2m.lang_token("es") == "__es__"
    assert not m2m.supports("en", "es")
    nllb = Ct2Translator(tiny_model, device="cpu", beam_size=1, max_decoding_length=4,
                         lang_token_format={"en": "<s>", "es": "</s>"})
    assert nllb.supports("en", "es") and not nllb.supports("en", "fr")
    [out] = nllb.translate(SOURCES[:1], source="en", target="es", target_prefixes=["Hola"])
    assert out.startswith("Hola") and "</s>" not in out


def test_missing_directory():
    with pytest.raises(ModelNotFound, match="does not exist"):
        Ct2Translator("/nonexistent/opus-mt-en-es", device="cpu")


def test_directory_without_sentencepiece(tiny_model, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("model.bin", "config.json", "shared_vocabulary.json"):
        shutil.copy(tiny_model / name, bare / name)
    with pytest.raises(ModelNotFound, match="SentencePiece"):
        Ct2Translator(bare, device="cpu")


def test_shared_sentencepiece_name(tiny_model, tmp_path):
    shared = tmp_path / "shared"
    shutil.copytree(tiny_model, shared)
    (shared / "source.spm").rename(shared / "sentencepiece.model")
    (shared / "target.spm").unlink()
    engine = Ct2Translator(shared, device="cpu", beam_size=1, max_decoding_length=4)
    assert engine.translate(["Hello."], source="en", target="es", target_prefixes=["Ho"])[0] \
        .startswith("Ho")


def test_corrupt_model_bin_is_a_clear_error(tiny_model, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model, broken)
    (broken / "model.bin").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(BabelcallError, match=str(broken)):
        Ct2Translator(broken, device="cpu")


def test_explicit_cuda_without_a_gpu(tiny_model):
    with pytest.raises(EngineUnavailable, match="CUDA"):
        Ct2Translator(tiny_model, device="cuda")


def test_auto_device_falls_back_to_cpu(tiny_model, monkeypatch):
    """A GPU that is visible but unusable (here: none at all) must not break 'auto'."""
    import ctranslate2

    monkeypatch.setattr(ctranslate2, "get_cuda_device_count", lambda: 1)
    engine = Ct2Translator(tiny_model, device="auto", beam_size=1, max_decoding_length=4)
    assert engine.device == "cpu"
    assert engine.translate(["Hello."], source="en", target="es", target_prefixes=["Ho"])[0] \
        .startswith("Ho")
