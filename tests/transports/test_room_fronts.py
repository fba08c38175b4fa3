"""A room's sessions as the plan makes them (``Room._sessions_for``): every speaker's sessions,
one per other language present, share the speaker's one front, so a speaker heard in three
languages is recognised by one stream: an English listener is served from the transcript the
others need, though Whisper's own translation would be chosen for a one-to-one call (two
streams only where no text engine translates into English). Wiring logic only: stand-in
engines, no peers."""

import asyncio
from types import MethodType, SimpleNamespace

import pytest
from fakes import UpperMt, fake_engines, fake_scheduler, whisper_routed_mt

from babelcall.transports.hub import Hub
from babelcall.transports.participant import Participant
from babelcall.transports.rooms import Room


class NoEnglishMt(UpperMt):
    def supports(self, source, target):
        return target != "en"


def _person(room, pid: str, lang: str):
    p = SimpleNamespace(id=pid, lang=lang, mix=0.0, front=None, room=room)
    p.speaker_front = MethodType(Participant.speaker_front, p)
    return p


@pytest.mark.parametrize(("mt", "streams_of"), [
    (UpperMt(), {"en": 1, "es": 1, "fr": 1, "pt": 1}),
    (whisper_routed_mt(), {"en": 1, "es": 1, "fr": 1, "pt": 1}),  # transcript + text MT
    (NoEnglishMt(), {"en": 1, "es": 2, "fr": 2, "pt": 2}),  # nothing else: + Whisper's X->en
])
def test_each_speaker_has_one_front_whatever_the_listeners_languages(mt, streams_of):
    async def go():
        sched = fake_scheduler(fake_engines(mt=mt))
        async with sched:
            hub = Hub(sched.engines, scheduler=sched)
            room = SimpleNamespace(hub=hub, participants={})
            made = []
            for pid, lang in (("ana", "en"), ("bea", "es"), ("chloe", "fr"), ("duda", "pt")):
                p = _person(room, pid, lang)
                links = await Room._sessions_for(room, p)  # type: ignore[arg-type]
                made += [link.session for _, _, link in links]
                room.participants[pid] = p
            recognition = {p.lang: p.front.recognition()
                           for p in room.participants.values()}
            per_speaker = {p.lang: {s.config.target for s in made if s.front is p.front}
                           for p in room.participants.values()}
            stats = hub.metrics()["recognition"]
            for s in made:
                await s.close()
            for p in room.participants.values():
                await p.front.close()
            return recognition, per_speaker, stats, len(made), set(sched.sessions)

    recognition, per_speaker, stats, n, left = asyncio.run(go())
    assert n == 12  # 4 speakers x 3 other languages
    for lang, r in recognition.items():
        assert per_speaker[lang] == {"en", "es", "fr", "pt"} - {lang}
        assert r["branches"] == 3 and r["streams"] == streams_of[lang], (lang, r)
    assert sorted(r["streams"] for r in stats) == sorted(streams_of.values())  # /stats
    assert left == set()
