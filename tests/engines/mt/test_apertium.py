"""Apertium through its long-lived null-flush pipelines (real engine, real FLEURS references)."""

from __future__ import annotations

import os
import signal
from concurrent.futures import ThreadPoolExecutor

import pytest
import sacrebleu

from babelcall.engines.base import Translator
from babelcall.engines.mt.apertium import ApertiumTranslator
from babelcall.realtime.errors import EngineUnavailable, UnsupportedLanguage

pytestmark = pytest.mark.slow


def test_is_a_translator(apertium):
    assert isinstance(apertium, Translator)
    assert apertium.name == "apertium" and apertium.supports_prefix is False
    assert apertium.supports("en", "es") and apertium.supports("es", "en")
    assert apertium.mode("en", "es") == "eng-spa"
    assert not apertium.supports("en", "xx")
    # install.sh's pairs, as ISO 639-1 (variants such as spa-eng_US left out)
    assert {("en", "es"), ("es", "en"), ("fr", "es"), ("es", "fr"), ("es", "it"),
            ("es", "pt"), ("en", "ca")} <= set(apertium.pairs())


@pytest.mark.parametrize(("source", "target", "floor"), [("en", "es", 35), ("es", "en", 35)])
def test_fleurs_chrf(apertium, refs, source, target, floor):
    rows = refs(source, target)
    hyps = apertium.translate([r["src_ref"] for r in rows], source=source, target=target)
    assert len(hyps) == len(rows) and all(hyps)
    chrf = sacrebleu.corpus_chrf(hyps, [[r["tgt_ref"] for r in rows]]).score
    print(f"apertium {source}->{target} chrF {chrf:.1f} on {len(rows)} FLEURS sentences")
    assert chrf > floor
    assert not any(mark in h for h in hyps for mark in ("*", "#", "@"))


def test_unsupported_pair_names_the_package(apertium):
    with pytest.raises(UnsupportedLanguage, match="apertium-es-ro"):
        apertium.translate(["Bună ziua."], source="ro", target="es")
    with pytest.raises(UnsupportedLanguage, match="apt-cache search apertium"):
        apertium.translate(["Hallo."], source="de", target="ja")


def test_empty_input_skips_the_process(apertium):
    assert apertium.translate(["", "   ", "\n"], source="en", target="es") == ["", "", ""]
    assert apertium.translate([], source="en", target="es") == []


def test_reserved_characters_pass_through(apertium):
    [out] = apertium.translate(["The price is 5 $ [approx] / <item> {x}"], source="en",
                               target="es")
    assert "$" in out and "[approx]" in out and "<" in out and "{x}" in out
    assert "\\" not in out and "babelcall" not in out


def test_one_pipeline_is_reused(apertium):
    apertium.translate(["Good morning."], source="en", target="es")
    pid = apertium._pipes["eng-spa"].proc.pid
    apertium.translate(["Good evening."], source="en", target="es")
    assert apertium._pipes["eng-spa"].proc.pid == pid


def test_restarts_after_the_process_died(apertium):
    [before] = apertium.translate(["The dog is black."], source="en", target="es")
    pipe = apertium._pipes["eng-spa"]
    os.killpg(pipe.proc.pid, signal.SIGKILL)
    pipe.proc.wait()
    assert apertium.translate(["The dog is black."], source="en", target="es") == [before]
    assert apertium._pipes["eng-spa"].proc.pid != pipe.proc.pid


def test_restarts_when_only_a_stage_died(apertium):
    """Killing just bash leaves the stages running; they must be replaced, not leaked."""
    [before] = apertium.translate(["It is raining."], source="en", target="es")
    pipe = apertium._pipes["eng-spa"]
    pipe.proc.kill()
    pipe.proc.wait()
    assert apertium.translate(["It is raining."], source="en", target="es") == [before]


def test_concurrent_calls_match_sequential(apertium, refs):
    sentences = [r["src_ref"] for r in refs("en", "es")] * 4
    expected = apertium.translate(sentences, source="en", target="es")
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(
            lambda s: apertium.translate([s], source="en", target="es")[0], sentences))
    assert got == expected


def test_missing_binary(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(EngineUnavailable, match="apt-get install apertium"):
        ApertiumTranslator()


def test_close_ends_the_pipelines():
    with ApertiumTranslator() as engine:
        assert engine.translate(["Hello."], source="en", target="es") == ["Hola."]
        proc = engine._pipes["eng-spa"].proc
    assert proc.poll() is not None and engine._pipes == {}
