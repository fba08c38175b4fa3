"""The router over the installed engines (real Apertium and Bergamot): which route each pair
takes, dispatch, and laziness (a pair's process or model starts on that pair's first call)."""

from __future__ import annotations

import pytest

from babelcall.engines.base import Translator
from babelcall.engines.mt.apertium import ApertiumTranslator
from babelcall.engines.mt.bergamot import BergamotTranslator
from babelcall.engines.mt.incremental import IncrementalTranslator
from babelcall.engines.mt.router import WHISPER_TRANSLATE, RouterTranslator, text_engine
from babelcall.realtime.errors import UnsupportedLanguage

pytestmark = pytest.mark.slow
WHISPER_LANGS = frozenset({"en", "es", "fr", "pt", "it", "de", "ca"})


@pytest.fixture(scope="module")
def bergamot() -> BergamotTranslator:
    return BergamotTranslator()


@pytest.fixture(scope="module")
def router(bergamot, apertium) -> RouterTranslator:
    return RouterTranslator([bergamot, apertium], asr_languages=WHISPER_LANGS)


@pytest.mark.parametrize(("pair", "label"), [
    ("en-pt", "bergamot"), ("pt-en", "bergamot"),  # neural first
    ("fr-en", WHISPER_TRANSLATE), ("es-en", WHISPER_TRANSLATE),  # Whisper beats Apertium
    ("de-en", WHISPER_TRANSLATE), ("it-en", WHISPER_TRANSLATE),
    ("en-es", "bergamot+apertium en->pt->es"),  # measured better than Apertium's eng-spa
    ("pt-es", "apertium"), ("fr-es", "apertium"), ("es-pt", "apertium"),
    ("en-fr", "apertium en->es->fr"), ("en-it", "apertium en->es->it"),
    ("pt-fr", "apertium pt->es->fr"), ("fr-pt", "apertium fr->es->pt"),
])
def test_each_pair_takes_its_measured_route(router, pair, label):
    source, target = pair.split("-")
    route = router.route(source, target)
    assert route is not None and route.label == label
    assert router.supports(source, target) == (label != WHISPER_TRANSLATE)
    assert (router.engine_for(source, target) is None) == (label == WHISPER_TRANSLATE)


def test_a_neural_first_pivot_is_taken_only_where_measured(bergamot, apertium):
    """Without Bergamot, en->es is Apertium's own pair again; without Apertium, no pivot."""
    assert RouterTranslator([apertium]).route("en", "es").label == "apertium"
    assert RouterTranslator([bergamot]).route("en", "es") is None


def test_no_route_is_an_error(router):
    for source, target in (("en", "de"), ("de", "fr"), ("en", "en"), ("xx", "en")):
        assert router.route(source, target) is None
        assert not router.supports(source, target)
        with pytest.raises(UnsupportedLanguage, match=f"{source}->{target}"):
            router.engine_for(source, target)


def test_without_whisper_text_engines_serve_english_too(bergamot, apertium):
    text_only = RouterTranslator([bergamot, apertium])
    assert text_only.route("es", "en").label == "apertium"
    assert text_only.route("fr", "en").label == "apertium fr->es->en"
    assert text_only.route("de", "en") is None


def test_is_a_translator_that_dispatches_per_pair(router, bergamot, apertium):
    assert isinstance(router, Translator)
    assert router.supports_prefix is False and router.shares_compute is False
    text = ["The black dog sleeps."]
    assert router.translate(text, source="en", target="pt") == \
        bergamot.translate(text, source="en", target="pt")
    assert router.translate(text, source="en", target="es") == apertium.translate(
        bergamot.translate(text, source="en", target="pt"), source="pt", target="es")
    [french] = router.translate(text, source="en", target="fr")
    assert "chien" in french
    with pytest.raises(UnsupportedLanguage, match="Whisper"):
        router.translate(["Bonjour."], source="fr", target="en")
    assert router.languages() >= {"en", "es", "fr", "pt", "it", "ca"}


def test_pairs_start_on_first_use():
    with ApertiumTranslator() as apertium:
        lazy = RouterTranslator([BergamotTranslator(), apertium], asr_languages=WHISPER_LANGS)
        lazy.routes(["en", "es", "fr", "pt", "it"], ["en", "es", "fr", "pt", "it"])
        assert apertium._pipes == {}  # choosing routes starts nothing
        lazy.translate(["Good morning."], source="en", target="fr")
        assert sorted(apertium._pipes) == ["eng-spa", "es-fr"]
        bergamot = lazy.engines[0]
        assert bergamot._loaded == {}
        lazy.translate(["Good morning."], source="pt", target="en")
        assert list(bergamot._loaded) == [("pt", "en")]


def test_text_engine_is_the_one_rule(router, apertium):
    """Engines.translator_for, Engines.asr_task and IncrementalTranslator all go through
    text_engine: a router answers for itself; any other translator serves what it supports
    and leaves every other pair into English to Whisper."""
    assert text_engine(router, "en", "fr").describe("en", "fr") == "apertium en->es->fr"
    assert text_engine(router, "fr", "en") is None
    assert text_engine(apertium, "es", "en") is apertium
    assert text_engine(apertium, "fr", "en") is None  # no fr-en mode: Whisper
    assert text_engine(None, "de", "en") is None
    with pytest.raises(UnsupportedLanguage, match="en->fr"):
        text_engine(apertium, "en", "fr")
    with pytest.raises(UnsupportedLanguage, match="Whisper translates only into English"):
        text_engine(None, "en", "fr")


def test_a_pair_whisper_translates_passes_through_the_policy(router):
    """The recogniser already wrote English: the policy commits it as it comes."""
    mt = IncrementalTranslator(router, "fr", "en")
    assert mt.engine is None
    first = mt.update("The accident took place")
    assert first.new_committed == "The accident took place" and first.draft == ""
    last = mt.update("The accident took place in the mountains.", final=True)
    assert last.new_committed == " in the mountains."
    with pytest.raises(UnsupportedLanguage):
        IncrementalTranslator(router, "en", "de")
