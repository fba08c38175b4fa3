"""The benchmark through a conferencing server: a private Janus (the Debian binary, started here
with its own config), ``babelcall join``'s bot in this process, and for each clip a participant
who publishes it and a listener who subscribes to the bot's translated feed and records it with
its captions. Scored like the WebRTC loopback (benchmarks/loopback.py).

The speaker's first frames reach the bot only once it has subscribed, so the bot's source
timeline does not start at the speaker's first frame: latencies here run from the moment the
interpreter received the end of a phrase to the listener hearing its translation
(``heard_after_ms``), which the loopback run reports too, side by side."""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from babelcall.benchmarks.local_janus import (
    JanusServer,
    Listener,
    human,
    janus_available,
)
from babelcall.benchmarks.loopback import score_received
from babelcall.benchmarks.run import Clip, ClipScore
from babelcall.engines.registry import Engines
from babelcall.realtime.audio import load_file
from babelcall.realtime.errors import BabelcallError
from babelcall.realtime.scheduler import Scheduler
from babelcall.transports.conference import open_room
from babelcall.transports.conference.bot import BotConfig
from babelcall.transports.conference.joinbot import JoinBot
from babelcall.transports.tracks import WIRE_RATE, PcmTrack

ROOM = 4242
LEAD_IN_S = 1.0  # the bot sees the publisher, subscribes and connects during the lead-in


async def run_janus(engines: Engines, clips: list[Clip], source: str,
                    target: str) -> list[ClipScore]:
    """One speaker per clip, one after another, in one room of a private Janus."""
    if not janus_available():
        raise BabelcallError("the Janus benchmark needs the janus binary (install.sh "
                             "installs the Debian package); or pass --no-janus")
    with tempfile.TemporaryDirectory(prefix="babelcall-janus-") as folder:
        server = JanusServer(Path(folder), {ROOM: {}})
        server.start()
        try:
            async with Scheduler(engines) as sched:
                bot = JoinBot(lambda: open_room(f"{server.url}/{ROOM}"), sched,
                              BotConfig(source=source, target=target))
                await bot.start()
                listener = Listener(server, ROOM)
                await listener.join()
                try:
                    return [await _one(engines, server, bot, listener, clip, i, target)
                            for i, clip in enumerate(clips)]
                finally:
                    await listener.close()
                    await bot.stop()
        finally:
            server.stop()


async def _one(engines: Engines, server: JanusServer, bot: JoinBot, listener: Listener,
               clip: Clip, i: int, target: str) -> ClipScore:
    name = f"speaker{i}"
    track = PcmTrack(load_file(clip.path, WIRE_RATE), WIRE_RATE, lead_in_s=LEAD_IN_S)
    conn, _ = await human(server, ROOM, name, track)
    try:
        rec = await listener.record(f"babelcall: {name} → {target}")
        async with asyncio.timeout(120):
            await track.finished.wait()
        assert bot.bot is not None
        interps = [it for s in bot.bot.served.values() if s.publisher.display == name
                   for it in s.interpreters.values()]
        await asyncio.gather(*(it.end(timeout=120) for it in interps))
        deadline = time.monotonic() + 20
        while not rec.quiet_for(1.0) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await rec.subscription.close()
    finally:
        await conn.leave()
    return score_received(engines, clip, rec.captions, rec.arrivals, rec.audio, WIRE_RATE, target,
                          sent_start_ns=None, sent_s=track.sent_s, lead_in_s=LEAD_IN_S)
