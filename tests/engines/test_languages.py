"""The language table (``babelcall languages``, ``GET /languages``) on the real engines: the
pairs listed are exactly those check_pair accepts, each with its route, and a measured figure is
shown only for the route it was measured on."""

from __future__ import annotations

import json

import pytest

from babelcall.clients.cli import main
from babelcall.engines.languages import (
    check_language,
    languages_payload,
    load_quality,
    markdown_table,
    pair_table,
    record_quality,
)
from babelcall.realtime.errors import UnsupportedLanguage

pytestmark = pytest.mark.slow


def _row(rows, pair):
    return next(r for r in rows if f"{r.source}-{r.target}" == pair)


def test_the_table_lists_every_served_pair_with_its_engines(all_pairs):
    rows = pair_table(all_pairs, quality={})
    pairs = {f"{r.source}-{r.target}" for r in rows}
    assert {"en-es", "es-en", "en-fr", "fr-en", "en-pt", "pt-en", "en-it", "de-en",
            "fr-pt", "it-fr"} <= pairs
    assert not {"en-de", "en-ca", "es-de"} & pairs  # no MT into German; Kokoro has no Catalan
    assert _row(rows, "en-fr").mt == "apertium en->es->fr"
    assert _row(rows, "en-pt").mt == "bergamot" and _row(rows, "pt-en").mt == "bergamot"
    fr_en = _row(rows, "fr-en")
    assert fr_en.mt == "whisper-translate" and fr_en.asr == "whisper-base translate"
    assert _row(rows, "en-fr").asr == "whisper-base" and _row(rows, "en-fr").tts == "kokoro-82m"
    for r in rows:
        all_pairs.check_pair(r.source, r.target)  # nothing listed that would be refused


def test_a_figure_shows_only_for_the_route_it_was_measured_on(all_pairs):
    quality = {"pairs": {"en-fr": {"mt": "apertium en->es->fr", "text_chrf": 44.8,
                                   "date": "2026-11-27"},
                         "en-pt": {"mt": "apertium en->es->pt", "text_chrf": 57.1,
                                   "date": "2026-11-27"}},
               "tts": {"fr": {"wer": 0.2, "date": "2026-11-27"}}}
    rows = pair_table(all_pairs, ["en", "fr", "pt"], quality=quality)
    en_fr = _row(rows, "en-fr").quality
    assert en_fr["text_chrf"] == 44.8 and en_fr["tts_wer"] == 0.2
    assert _row(rows, "en-pt").quality is None  # measured on Apertium, served by Bergamot
    table = markdown_table(rows)
    assert "| en→fr | whisper-base | apertium en->es->fr | kokoro-82m | 44.8 / – |" in table
    assert "| en→pt | whisper-base | bergamot | kokoro-82m | – | – | – | not measured |" in table


def test_recorded_figures_are_read_back(tmp_path):
    path = tmp_path / "quality.json"
    record_quality("en-fr", {"mt": "x", "text_chrf": 1.0}, {"fr": {"wer": 0.3}}, path=path)
    record_quality("en-pt", {"mt": "y", "text_chrf": 2.0}, path=path)
    data = load_quality(path)
    assert data["pairs"]["en-fr"]["text_chrf"] == 1.0 and data["pairs"]["en-pt"]["mt"] == "y"
    assert data["tts"] == {"fr": {"wer": 0.3}}
    assert load_quality(tmp_path / "missing.json") == {}


def test_a_participant_language_must_be_served_one_way_or_the_other(all_pairs):
    for lang in ("en", "fr", "pt", "de", "nl"):  # nl: Whisper translates it into English
        check_language(all_pairs, lang)
    with pytest.raises(UnsupportedLanguage, match="'zz'.*serves .*en, es, fr"):
        check_language(all_pairs, "zz")


def test_the_payload_is_what_the_page_reads(all_pairs):
    payload = languages_payload(all_pairs)
    assert set(payload) == {"languages", "pairs"}
    assert {"en", "es", "fr", "pt", "it", "de"} <= set(payload["languages"])
    row = next(p for p in payload["pairs"] if (p["source"], p["target"]) == ("en", "fr"))
    assert set(row) == {"source", "target", "asr", "mt", "tts", "quality"}
    json.dumps(payload)  # plain JSON


def test_the_command_prints_the_table(capsys):
    assert main(["languages", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert {"en", "fr", "pt"} <= set(payload["languages"])
    assert main(["languages"]) == 0
    out = capsys.readouterr().out
    assert "| en→pt | whisper-base | bergamot |" in out and "--all" in out
