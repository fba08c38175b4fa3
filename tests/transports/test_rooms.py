"""A two-way call in a room with the real models: A speaks English, B Spanish, at the same
time; each hears the other in their own language and sees both sides' captions; leaving frees
the sessions and an empty room disappears."""

import asyncio

import pytest
import sacrebleu
from conftest import hear_back
from transport_utils import clip_track, compact, running_server, speech_seconds, to_16k, until

from babelcall.benchmarks.room import settled
from babelcall.clients.call import Caller

pytestmark = pytest.mark.timeout(240)


def _said(caller: Caller, speaker: str) -> str:
    return " ".join(r["committed"] for r in caller.records
                    if r["type"] == "translation" and r.get("speaker") == speaker)


def _heard_from(caller: Caller, speaker: str) -> bool:
    return any(r["type"] == "audio_out" and r.get("speaker") == speaker for r in caller.records)


def test_two_way_call_in_a_room(engines):
    async def main():
        async with running_server(engines) as srv:
            hub = srv.hub
            # A starts talking once B is there: alone in a room, nobody needs a translation.
            a = Caller(clip_track("fleurs-en-004", lead_in_s=3.0), srv.url,
                       endpoint="/rooms/kitchen/join", params={"lang": "en", "echo_guard": "0"})
            await a.connect()
            assert len(hub.rooms["kitchen"].participants) == 1
            assert not hub.scheduler.sessions  # alone: nothing to translate yet
            b = Caller(clip_track("fleurs-es-003", lead_in_s=0.5, seconds=3.4), srv.url,
                       endpoint="/rooms/kitchen/join", params={"lang": "es", "echo_guard": "0"})
            await b.connect()
            assert len(hub.scheduler.sessions) == 2  # en->es for A, es->en for B
            a_id, b_id = (c.location.rsplit("/", 1)[1] for c in (a, b))

            def both_heard():
                return _heard_from(b, a_id) and _heard_from(a, b_id) and \
                    b.received_pts > 0 and a.received_pts > 0

            await until(both_heard, 150, "each side to hear the other's translation")
            links = [link for p in hub.rooms["kitchen"].participants.values()
                     for link in p.links.values()]
            await until(lambda: all(settled(link) for link in links) and
                        _spoken(b, a_id) and _spoken(a, b_id), 120,
                        "every clause to be spoken")
            await until(lambda: _quiet(a) and _quiet(b), 10, "the last audio to arrive")
            recognition = hub.metrics()["recognition"]  # each speaker recognised once
            await a.hang_up()
            await until(lambda: not hub.scheduler.sessions, 10, "A's and B's sessions to close")
            assert list(hub.rooms["kitchen"].participants) == [b_id]
            await b.hang_up()
            await until(lambda: not hub.rooms, 10, "the empty room to go")
            return a, b, a_id, b_id, recognition

    a, b, a_id, b_id, recognition = asyncio.run(main())
    assert [(r["streams"], r["branches"]) for r in recognition] == [(1, 1), (1, 1)]
    assert all(sum(r["asr_passes"].values()) > 0 for r in recognition)
    # B heard A's words in Spanish; A heard B's in English; both saw both sides' captions.
    # (What was voiced: under overload a clause may go out as a caption only.)
    for listener, speaker, lang in ((b, a_id, "es"), (a, b_id, "en")):
        said = _said(listener, speaker)
        voiced = " ".join(r["text"] for r in listener.records if r["type"] == "synth_audio"
                          and r.get("speaker") == speaker and r.get("seq", 0) == 0)
        heard = hear_back(compact(to_16k(listener.audio, 48000), 16000), lang)
        assert said and voiced, (lang, said)
        assert sacrebleu.sentence_chrf(heard, [voiced]).score > 40, (lang, heard, voiced)
    assert _said(a, a_id) and _said(b, b_id)
    assert any(w in _said(b, a_id).lower() for w in ("personas", "plumas", "volar"))
    assert any(w in _said(a, b_id).lower() for w in ("looks", "sense", "seems"))


def _spoken(listener: Caller, speaker: str) -> bool:
    """Every synthesised clause of ``speaker`` has started playing to ``listener``."""
    mine = [r for r in listener.records if r.get("speaker") == speaker]
    return any(r["type"] == "translation" and r["final"] for r in mine) and \
        sum(r["type"] == "synth_audio" for r in mine) == \
        sum(r["type"] == "audio_out" for r in mine)


def _quiet(caller: Caller) -> bool:
    tail = caller.audio[-48000 * 3 // 2:]
    return len(tail) == 48000 * 3 // 2 and speech_seconds(tail, 48000) == 0


def test_a_leave_finishes_though_its_caller_is_cancelled(engines):
    """A leave is called from a DELETE, from the peer's close and from the end of the
    participant's own track (inside a link's task, which another leave may close): cancelling
    a caller must not leave the participant half gone — out of the room, sessions still open.
    Then two people hang up at the same moment, as a call ends: everything is freed."""

    async def join(srv, lang: str, clip: str) -> tuple[Caller, str]:
        c = Caller(clip_track(clip, seconds=1.0), srv.url, endpoint="/rooms/den/join",
                   params={"lang": lang, "echo_guard": "0"})
        await c.connect()
        return c, c.location.rsplit("/", 1)[1]

    async def main():
        async with running_server(engines) as srv:
            hub = srv.hub
            (a, a_id), (b, b_id) = [await join(srv, "en", "fleurs-en-004"),
                                    await join(srv, "es", "fleurs-es-003")]
            assert len(hub.scheduler.sessions) == 2
            room = hub.rooms["den"]
            caller = asyncio.create_task(room.leave(a_id))
            for _ in range(2):  # the caller starts the leave, the leave begins
                await asyncio.sleep(0)
            assert a_id not in room.participants and room.knows(a_id)  # links closing
            caller.cancel()
            await until(lambda: not hub.scheduler.sessions and not room.knows(a_id), 10,
                        "A's and B's sessions to close and A's leave to finish")
            assert list(room.participants) == [b_id]
            await a.hang_up()  # its DELETE: already gone
            c, c_id = await join(srv, "en", "fleurs-en-004")
            assert len(hub.scheduler.sessions) == 2
            await asyncio.gather(b.hang_up(), c.hang_up())
            await until(lambda: not hub.rooms and not hub.scheduler.sessions, 10,
                        "the room and its sessions to be freed")

    asyncio.run(main())
