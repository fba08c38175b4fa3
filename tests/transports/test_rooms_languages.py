"""Two-way rooms beyond English<->Spanish, end to end on the real models through the server
(``POST /rooms/<room>/join?lang=..``): an English and a French speaker, then an English and a
Portuguese speaker, talking at the same time. What each side hears is transcribed by an
independent Whisper (benchmarks/judge.py: plain faster-whisper, full window, beam 5, VAD)
and scored against the reference translation of what the other side said."""

import asyncio

import aiohttp
import pytest
import sacrebleu
from conftest import eval_dir, reference, references
from transport_utils import clip_track, make_offer, running_server, speech_seconds, until

from babelcall.benchmarks.judge import hear
from babelcall.benchmarks.room import said, settled, spoken
from babelcall.clients.call import Caller
from babelcall.realtime.budget import LatencyBudget

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

# fleurs-pt-002 has no English reference in ../shared/eval: ours, from its FLEURS transcript
# ("giancarlo fisichella perdeu o controle do carro e acabou a corrida logo após a largada").
PT_002_EN = "Giancarlo Fisichella lost control of his car and ended the race right after the start."
PT_002_SRC = (eval_dir() / "fleurs-pt-002.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def judge():
    return hear


def _heard_from(caller: Caller, speaker: str) -> bool:
    return any(r["type"] == "audio_out" and r.get("speaker") == speaker for r in caller.records)


def _quiet(caller: Caller) -> bool:
    tail = caller.audio[-48000 * 3 // 2:]
    return len(tail) == 48000 * 3 // 2 and speech_seconds(tail, 48000) == 0


def two_way_call(engines, room: str, a: tuple[str, str], b: tuple[str, str]):
    """A (language, clip) and B talk at once in ``room``; returns both callers and ids once
    everything either said has been heard by the other.

    This checks what is heard, not how soon: the overload last resort (a clause that would be
    heard over 10 s late is captioned, not voiced) is moved out of reach, because this CPU is
    shared with other jobs and the test must not depend on their load."""
    patient = LatencyBudget(merge_backlog_s=60.0, max_speech_lag_s=600.0)

    async def main():
        async with running_server(engines, budget=patient) as srv:
            hub = srv.hub
            callers = []
            for (lang, clip), lead_in in ((a, 3.0), (b, 0.5)):
                caller = Caller(clip_track(clip, lead_in_s=lead_in), srv.url,
                                endpoint=f"/rooms/{room}/join",
                                params={"lang": lang, "echo_guard": "0"})
                await caller.connect()
                callers.append(caller)
            ca, cb = callers
            assert len(hub.scheduler.sessions) == 2  # a->b and b->a
            ida, idb = (c.location.rsplit("/", 1)[1] for c in callers)
            await until(lambda: _heard_from(cb, ida) and _heard_from(ca, idb), 200,
                        "each side to hear the other")
            links = [link for p in hub.rooms[room].participants.values()
                     for link in p.links.values()]
            await until(lambda: all(settled(link) for link in links) and
                        spoken(cb.records, ida) and spoken(ca.records, idb), 150,
                        "every clause to be spoken")
            await until(lambda: _quiet(ca) and _quiet(cb), 15, "the last audio to arrive")
            for caller in callers:
                await caller.hang_up()
            await until(lambda: not hub.rooms and not hub.scheduler.sessions, 15,
                        "the room to close")
            return ca, cb, ida, idb

    return asyncio.run(main())


def _chrf(hypothesis: str, reference_text: str) -> float:
    return sacrebleu.sentence_chrf(hypothesis, [reference_text]).score


def _heard(judge, caller: Caller, language: str) -> str:
    return judge(caller.audio, 48000, language)


def test_english_and_french_speakers_hear_each_other(all_pairs, judge):
    ca, cb, ida, idb = two_way_call(all_pairs, "salon", ("en", "fleurs-en-003"),
                                    ("fr", "fleurs-fr-004"))
    to_fr = reference("fleurs-en-003", "en", "fr")["tgt_ref"]  # what B should hear
    to_en = reference("fleurs-fr-004", "fr", "en")["tgt_ref"]  # what A should hear
    heard_fr, heard_en = _heard(judge, cb, "fr"), _heard(judge, ca, "en")
    chrf_fr = sacrebleu.sentence_chrf(heard_fr, [to_fr]).score
    chrf_en = sacrebleu.sentence_chrf(heard_en, [to_en]).score
    print(f"B heard (fr, chrF {chrf_fr:.1f}): {heard_fr}\nA heard (en, chrF {chrf_en:.1f}): "
          f"{heard_en}")
    # Heard chrF over the dev clips: 30.1 en->fr (rule-based MT through Spanish, then Kokoro's
    # French), 40.4 fr->en (Whisper). The untranslated source scores 24.4 / 21.3 against these
    # references (cognates), so the French side is also checked for French words.
    assert chrf_fr > 22, (heard_fr, said(cb.records, ida))
    assert chrf_en > 25, (heard_en, said(ca.records, idb))
    # ...and each side heard the translation, not the other's words carried over: closer to
    # the reference translation than to what the other speaker said (single words are at the
    # mercy of Kokoro's French and the judge's: "couleur" was once heard as "couler")
    assert chrf_fr > _chrf(heard_fr, reference("fleurs-en-003", "en", "fr")["src_ref"])
    assert chrf_en > _chrf(heard_en, reference("fleurs-fr-004", "fr", "en")["src_ref"])


def _word_chrf(hypothesis: str, reference_text: str) -> float:
    from babelcall.benchmarks.measures import normalize

    return sacrebleu.sentence_chrf(normalize(hypothesis), [normalize(reference_text)]).score


def test_english_and_portuguese_speakers_hear_each_other(all_pairs, judge):
    ca, cb, ida, idb = two_way_call(all_pairs, "sala", ("en", "fleurs-en-004"),
                                    ("pt", "fleurs-pt-002"))
    to_pt = reference("fleurs-en-004", "en", "pt")["tgt_ref"]
    heard_pt, heard_en = _heard(judge, cb, "pt"), _heard(judge, ca, "en")
    # Scored on words (lower case, no punctuation): the judge punctuates by the pauses between
    # voiced pieces ("não pensa. Sobre os"), which moved chrF by ~10 points with the same words.
    chrf_pt = _word_chrf(heard_pt, to_pt)
    chrf_en = _word_chrf(heard_en, PT_002_EN)
    print(f"B heard (pt, chrF {chrf_pt:.1f}): {heard_pt}\nA heard (en, chrF {chrf_en:.1f}): "
          f"{heard_en}")
    assert chrf_pt > 45, (heard_pt, said(cb.records, ida))  # Bergamot: the best pair offline
    # One 15-word sentence with one reference of ours, through Whisper base's Portuguese: 48-55
    # in nine runs, 37.3 in a tenth ("... ended the race, new ones made wide": the clip's last
    # words misheard). Below 30 the sense is gone; that it is this sentence's translation, not
    # any English sentence, is checked against every other English clip's words below.
    assert chrf_en > 30, (heard_en, said(ca.records, idb))
    others = [_word_chrf(heard_en, row["src_ref"]) for row in references("en", "pt")]
    assert chrf_en > max(others), (heard_en, max(others))
    assert chrf_pt > _word_chrf(heard_pt, reference("fleurs-en-004", "en", "pt")["src_ref"])
    assert chrf_en > _word_chrf(heard_en, PT_002_SRC)


def test_the_server_lists_its_pairs_and_refuses_what_it_cannot_serve(all_pairs):
    """GET /languages (public, for the page's pickers) and /health carry the pairs; a room
    join in a language nothing serves, or that cannot reach the others, is refused at once
    with one clear error; a join nobody else can understand yet is accepted."""
    offer = make_offer()
    sdp = {"Content-Type": "application/sdp", "Authorization": "Bearer t"}

    async def main():
        async with running_server(all_pairs, token="t") as srv, \
                aiohttp.ClientSession() as http:
            async with http.get(f"{srv.url}/languages") as resp:  # no token needed
                assert resp.status == 200
                served = await resp.json()
            async with http.get(f"{srv.url}/health") as resp:
                health = await resp.json()
            async with http.post(f"{srv.url}/rooms/r1/join?lang=zz", data=offer,
                                 headers=sdp) as resp:
                zz = resp.status, await resp.json()
            async with http.post(f"{srv.url}/rooms/r1/join?lang=de", data=offer,
                                 headers=sdp) as resp:  # alone: nothing to translate yet
                assert resp.status == 201
                location = resp.headers["Location"]
            async with http.post(f"{srv.url}/rooms/r1/join?lang=fr", data=offer,
                                 headers=sdp) as resp:  # fr->de has no engine
                to_german = resp.status, await resp.json()
            async with http.delete(f"{srv.url}{location}", headers=sdp) as resp:
                assert resp.status == 200
            await until(lambda: not srv.hub.rooms, 10, "the room to close")
            # a leave that arrives after the participant is gone is done, not an error (a
            # page hangs up after its connection closed); an id never seen is still a 404
            async with http.delete(f"{srv.url}{location}", headers=sdp) as resp:
                assert resp.status == 200, await resp.text()
            async with http.delete(f"{srv.url}/rooms/r1/nobody", headers=sdp) as resp:
                assert resp.status == 404
                assert (await resp.json())["error"] == "unknown_session"
            return served, health, zz, to_german

    served, health, zz, to_german = asyncio.run(main())
    pairs = {(p["source"], p["target"]): p for p in served["pairs"]}
    assert pairs[("en", "fr")]["mt"] == "apertium en->es->fr"
    assert pairs[("en", "pt")]["mt"] == "bergamot" and ("en", "de") not in pairs
    assert {"en", "fr", "pt"} <= set(served["languages"])
    assert health["status"] == "ok" and "en-fr" in health["pairs"]
    assert health["languages"] == served["languages"]
    assert zz[0] == 400 and zz[1]["error"] == "unsupported_language" and "'zz'" in \
        zz[1]["message"]
    assert to_german[0] == 400 and to_german[1]["error"] == "unsupported_language"
    assert "fr->de" in to_german[1]["message"]
