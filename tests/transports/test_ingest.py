"""Fan-out paths on stand-in engines (no model time needed): the caller's video relayed back
and to a WHEP viewer, the viewer's own captions and hang-up, captions as Server-Sent Events,
and the browser's JSON /offer with the original voice mixed under the translation."""

import asyncio
import json

import aiohttp
import numpy as np
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from fakes import fake_engines, tone_phrases
from transport_utils import SmallCamera, running_server, until

from babelcall.clients.call import Caller
from babelcall.realtime.audio import Resampler
from babelcall.transports.tracks import PcmTrack

pytestmark = pytest.mark.timeout(90)


def tone_track(*durations):
    return PcmTrack(tone_phrases(*durations, gap=0.8), 16000)


def test_video_relay_whep_viewer_and_sse_captions():
    async def main():
        async with running_server(fake_engines()) as srv, aiohttp.ClientSession() as http:
            caller = Caller(tone_track(1.0, 1.0), srv.url, video=SmallCamera(),
                            params={"source": "en", "target": "es", "video_delay_ms": 300})
            await caller.connect()
            call_id = caller.location.rsplit("/", 1)[1]
            viewer = Caller(None, srv.url, endpoint=f"/whep/{call_id}", video=True)
            await viewer.connect()
            assert viewer.location.startswith(f"{srv.url}/whep/{call_id}/")
            async with http.get(f"{srv.url}/captions/{call_id}") as sse:
                assert sse.content_type == "text/event-stream"
                events = []
                async for line in sse.content:
                    if line.startswith(b"data: "):
                        events.append(json.loads(line[6:]))
                    if any(e["type"] == "translation" for e in events):
                        break
            await until(lambda: viewer.video_frames >= 5 and caller.video_frames >= 5, 30,
                        "relayed video frames")
            await until(lambda: any(r["type"] == "audio_out" for r in viewer.records), 30,
                        "the viewer's captions")
            await asyncio.wait_for(caller.track.finished.wait(), 20)
            assert await caller.finish(drain_timeout=30)
            ingest = srv.hub.ingests[call_id]
            await viewer.hang_up()
            await until(lambda: not ingest.viewers, 10, "the viewer to be dropped")
            await caller.hang_up()
            await until(lambda: not srv.hub.ingests, 10, "the call to close")
            return caller, viewer, events

    caller, viewer, events = asyncio.run(main())
    assert {"speech_started", "transcript", "translation"} <= {e["type"] for e in events}
    # The viewer got the call's audio stream (its content is checked with real speech in
    # test_peers; the stand-in TTS beeps are DC, which Opus does not carry).
    assert len(viewer.audio) / 48000 > 1.0


def test_browser_offer_with_the_original_voice_mixed_in():
    async def main():
        async with running_server(fake_engines()) as srv, aiohttp.ClientSession() as http:
            pc = RTCPeerConnection()
            pc.addTransceiver(tone_track(1.5), direction="sendrecv")
            pc.createDataChannel("captions")
            received, levels = [], []

            async def record(track):
                r = Resampler(48000)
                try:
                    while True:
                        received.append(r.push(await track.recv()))
                except MediaStreamError:
                    pass

            pc.on("track", lambda t: received.append(asyncio.ensure_future(record(t))) and None)
            await pc.setLocalDescription(await pc.createOffer())
            body = {"sdp": pc.localDescription.sdp, "type": "offer", "source": "en",
                    "target": "es", "mix": 0.5}
            async with http.post(srv.url + "/offer", json=body) as resp:
                assert resp.status == 200, await resp.text()
                answer = await resp.json()
            assert answer["type"] == "answer" and answer["location"].endswith(answer["session"])
            await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
            await until(lambda: sum(len(x) for x in received[1:]) > 48000 * 2.5, 30,
                        "2.5 s of returned audio")
            pcm = np.concatenate(received[1:])
            levels = np.sqrt((pcm[: len(pcm) // 960 * 960].reshape(-1, 960) ** 2).mean(axis=1))
            async with http.delete(srv.url + answer["location"]) as resp:
                assert resp.status == 200
            await pc.close()
            await until(lambda: not srv.hub.ingests, 10, "the call to close")
            return levels

    levels = asyncio.run(main())
    # The 200 Hz tone (RMS 0.35) comes back at half level before any translation exists.
    assert np.any((levels > 0.12) & (levels < 0.22)), levels.round(2)
