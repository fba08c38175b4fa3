"""A session ended by a fault, as its transports see it (stand-in engines: this is wiring):
the clients' caption sinks get the fatal error record and the link finishes; the peer's track
is still read (drained: aiortc would queue it unread) and ``on_end`` — "the peer left" — is
not called, since the peer is still in the call."""

import asyncio

import pytest
from fakes import RATE, BeepTts, CountingAsr, RaisingVad, UpperMt, tone_phrases

from babelcall.engines.registry import Engines
from babelcall.realtime.scheduler import Scheduler
from babelcall.realtime.session import Session, SessionConfig
from babelcall.transports.link import Link
from babelcall.transports.tracks import PcmTrack

pytestmark = pytest.mark.timeout(60)


def test_a_failed_session_tells_its_sinks_and_keeps_draining_the_track():
    async def main():
        engines = Engines(vad=RaisingVad(), asr=CountingAsr(), tts=BeepTts(),
                          translator=UpperMt())
        async with Scheduler(engines) as sched:
            link = Link(Session(sched, SessionConfig("en", "es", clone_voice=False)))
            records = []
            link.add_sink(records.append)
            link.start()
            ended = []
            track = PcmTrack(tone_phrases(1.0, 1.0), RATE)
            link.feed(track, on_end=lambda: ended.append(True))
            await asyncio.wait_for(link.finished.wait(), 10)
            await asyncio.wait_for(track.finished.wait(), 20)  # still read to its end
            await link.close()
            return records, ended, set(sched.sessions)

    records, ended, left = asyncio.run(main())
    fatal = [r for r in records if r.get("fatal")]
    assert fatal and fatal[0]["stage"] == "listen" and "vad exploded" in fatal[0]["message"]
    assert ended == []  # the peer did not leave: its session failed
    assert left == set()
