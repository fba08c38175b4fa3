"""Several callers at once on one server (one scheduler, real models): each with its own
languages gets its own translation back, a WHEP viewer hears a call's translation too, and a
caller that hangs up mid-phrase frees its session while the others carry on."""

import asyncio
import time

import pytest
import sacrebleu
from conftest import hear_back, reference
from transport_utils import (
    clip_track,
    compact,
    describe,
    running_server,
    speech_seconds,
    to_16k,
    until,
)

from babelcall.clients.call import Caller

pytestmark = pytest.mark.timeout(240)

# name: (clip, source, target, seconds of it, when it starts speaking). All connect at once
# and their sessions overlap; the starts are 3 s apart so that two cores, or one (a machine
# made slower), can voice what they say: four talkers starting together overload even two
# cores, and then everything after a phrase's first piece is captioned only (overload's last
# resort, which the speak stage's tests cover).
CALLS = {
    "A": ("fleurs-en-004", "en", "es", None, 0.5),  # many people don't think about them as...
    "B": ("fleurs-en-003", "en", "pt", 2.9, 3.5),   # the cabbage juice changes color depending...
    "C": ("fleurs-es-003", "es", "en", 3.4, 6.5),   # esto parece tener sentido
}


def test_three_callers_a_viewer_and_one_that_vanishes(all_pairs):
    """Three target languages, through the translators ``babelcall serve`` loads (B heard
    Spanish once: Apertium turned its half sentence into "El Jugo de la Col es colored según
    qué acídico", which no listener could be expected to hear back; Bergamot's Portuguese
    is a sentence)."""
    engines = all_pairs
    t0 = time.monotonic()

    def log(what):
        print(f"{time.monotonic() - t0:6.1f}s {what}", flush=True)

    async def main():
        async with running_server(engines) as srv:
            hub = srv.hub
            callers = {name: Caller(clip_track(clip, lead_in_s=start, seconds=secs), srv.url,
                                    params={"source": src, "target": tgt})
                       for name, (clip, src, tgt, secs, start) in CALLS.items()}
            leaver = Caller(clip_track("fleurs-en-000"), srv.url,
                            params={"source": "en", "target": "es"})
            await asyncio.gather(*(c.connect() for c in [*callers.values(), leaver]))
            assert len(hub.scheduler.sessions) == 4 and len(hub.ingests) == 4
            log("4 calls connected")

            a_id = callers["A"].location.rsplit("/", 1)[1]
            viewer = Caller(None, srv.url, endpoint=f"/whep/{a_id}")
            await viewer.connect()
            assert len(hub.ingests[a_id].viewers) == 1

            # The leaver is mid-phrase after 3 s of speech ("However, due to the slow...").
            await until(lambda: any(r["type"] == "transcript" for r in leaver.records), 60,
                        "the leaver's first words")
            await leaver.pc.close()  # gone without a word: no DELETE, no "end"
            await until(lambda: len(hub.scheduler.sessions) == 3, 30, "the session to be freed")
            assert len(hub.ingests) == 3
            log("the leaver's session is freed")

            async def finish(c):
                await asyncio.wait_for(c.track.finished.wait(), 60)
                ok = await c.finish(drain_timeout=150)
                if not ok:
                    print("not drained:", c.url, describe(hub, [c]), flush=True)
                return ok

            drained = await asyncio.gather(*(finish(c) for c in callers.values()))
            log("every translation drained")
            await viewer.hang_up()
            for c in callers.values():
                await c.hang_up()
            await until(lambda: not hub.scheduler.sessions and not hub.ingests, 10,
                        "every session to be freed")
            return callers, viewer, drained

    callers, viewer, drained = asyncio.run(main())
    log("calls over")
    assert all(drained)
    # What each caller heard is what babelcall voiced for that caller, not for another one.
    # (Four calls overload two cores: a clause may then go out as a caption only, a
    # speech_skipped record; the committed translation is still all there.)
    said = {name: " ".join(r["committed"] for r in c.records if r["type"] == "translation")
            for name, c in callers.items()}
    for name, caller in callers.items():
        voiced = " ".join(r["text"] for r in caller.records
                          if r["type"] == "synth_audio" and r.get("seq", 0) == 0)
        skipped = " ".join(r["text"] for r in caller.records if r["type"] == "speech_skipped")
        assert sorted((voiced + " " + skipped).split()) == sorted(said[name].split()), name
        audio = to_16k(caller.audio, 48000)
        assert speech_seconds(audio, 16000) > 0.5, name
        heard = hear_back(compact(audio, 16000), CALLS[name][2])
        own = sacrebleu.sentence_chrf(heard, [voiced]).score
        others = max(sacrebleu.sentence_chrf(heard, [t]).score for n, t in said.items()
                     if n != name)
        assert own > 40 and own > others + 10, (name, heard, said)
        kinds = {r["type"] for r in caller.records}
        assert {"transcript", "translation", "audio_out", "done"} <= kinds, name
    ref = reference(*CALLS["A"][:3])["tgt_ref"]
    assert sacrebleu.sentence_chrf(said["A"], [ref]).score > 30, said["A"]
    # The viewer heard A's translation, as much of it as A did (and got A's captions on its
    # own channel).
    a_heard = speech_seconds(to_16k(callers["A"].audio, 48000), 16000)
    assert speech_seconds(to_16k(viewer.audio, 48000), 16000) > max(0.8, 0.8 * a_heard)
    assert any(r["type"] == "translation" for r in viewer.records)
