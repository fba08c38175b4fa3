"""Apertium pairs chained through Spanish (real engines, FLEURS references): en->es->fr and
en->es->it, and incremental commits through the pivot that are never rewritten."""

from __future__ import annotations

import pytest
import sacrebleu
from conftest import normalize

from babelcall.engines.base import Translator
from babelcall.engines.mt.incremental import IncrementalTranslator
from babelcall.engines.mt.pivot import PivotTranslator
from babelcall.realtime.errors import UnsupportedLanguage

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pivot(apertium) -> PivotTranslator:
    return PivotTranslator(apertium, apertium, "es")


def test_is_a_translator_through_spanish(pivot):
    assert isinstance(pivot, Translator)
    assert pivot.name == "apertium" and pivot.supports_prefix is False
    assert pivot.shares_compute is False  # Apertium both ways: outside the compute gate
    assert pivot.supports("en", "fr") and pivot.supports("en", "it")
    assert pivot.supports("fr", "en") and pivot.supports("pt", "fr")
    assert not pivot.supports("en", "es")  # the pivot is the target: that is a direct pair
    assert not pivot.supports("en", "de")  # no Apertium es->de
    assert pivot.describe("en", "fr") == "apertium en->es->fr"
    with pytest.raises(UnsupportedLanguage, match="en->de"):
        pivot.translate(["Hello."], source="en", target="de")


def test_is_the_two_hops_in_a_row(pivot, apertium):
    text = ["Many people don't think about them as dinosaurs because they have feathers."]
    spanish = apertium.translate(text, source="en", target="es")
    assert pivot.translate(text, source="en", target="fr") == \
        apertium.translate(spanish, source="es", target="fr")


@pytest.mark.parametrize(("target", "floor"), [("fr", 38), ("it", 32)])
def test_fleurs_chrf(pivot, refs, target, floor):
    """Measured 44.8 (fr) and 37.6 (it, lowercase references) on these sentences."""
    rows = refs("en", target)
    hyps = pivot.translate([r["src_ref"] for r in rows], source="en", target=target)
    if target == "it":  # FLEURS en-it references are lowercase without punctuation
        hyps = [normalize(h) for h in hyps]
    chrf = sacrebleu.corpus_chrf(hyps, [[r["tgt_ref"] for r in rows]]).score
    print(f"apertium en->es->{target} chrF {chrf:.1f}")
    assert chrf > floor


def test_incremental_commits_through_the_pivot_are_never_rewritten(pivot, refs):
    """Word by word (the worst case: every update re-translates through Spanish), what is
    committed only grows, the steps add up to the final text, and the result stays close to
    translating each sentence whole."""
    rows = refs("en", "fr")
    whole, incremental, revised = [], [], 0
    for row in rows:
        words = row["src_ref"].split()
        mt = IncrementalTranslator(pivot, "en", "fr")
        said, committed, hypothesis = "", "", ""
        for i in range(1, len(words) + 1):
            step = mt.update(" ".join(words[:i]), final=i == len(words))
            assert step.committed.startswith(committed), (committed, step.committed)
            new_hypothesis = f"{step.committed} {step.draft}".split()
            revised += new_hypothesis[:len(hypothesis)] != hypothesis  # the MT changed its mind
            committed, hypothesis = step.committed, new_hypothesis
            said += step.new_committed
        assert said.strip() == committed  # the steps add up to the sentence's translation
        incremental.append(said)
        whole.append(pivot.translate([row["src_ref"]], source="en", target="fr")[0])
    assert revised > 5  # the pivot's translations do move as the source grows
    tgt = [[r["tgt_ref"] for r in rows]]
    chrf_whole = sacrebleu.corpus_chrf(whole, tgt).score
    chrf_incremental = sacrebleu.corpus_chrf(incremental, tgt).score
    print(f"en->es->fr chrF whole {chrf_whole:.1f}, word by word {chrf_incremental:.1f}")
    assert chrf_incremental > chrf_whole - 5
