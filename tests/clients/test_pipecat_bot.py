"""The example pipecat bot end to end: an aiortc peer sends a FLEURS clip in real time over
pipecat's SmallWebRTCTransport (SmallWebRTC signalling, Opus both ways), hears the translation
(judge: closer to the clip's reference than to another clip's) and gets the captions on the
data channel; hanging up frees the session."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable

import aiohttp
import numpy as np
import pytest
import sacrebleu
from aiohttp.test_utils import TestServer
from conftest import hear_back, load_clip, reference

from babelcall.benchmarks.run import compact
from babelcall.clients.pipecat_bot import PipecatBot, make_app
from babelcall.realtime.scheduler import Scheduler
from babelcall.transports.pipecat import InterpreterProcessor
from babelcall.transports.tracks import WIRE_RATE, PcmTrack

pytestmark = pytest.mark.timeout(240)


def _quiet_pipecat() -> None:
    """pipecat logs through loguru at DEBUG to the stderr it found at import: keep warnings,
    written to whatever stderr is current (so pytest captures them with the test)."""
    import sys

    from loguru import logger

    logger.remove()
    logger.add(lambda message: sys.stderr.write(message), level="WARNING")


_quiet_pipecat()


async def until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Wait for a condition (never a fixed sleep); fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)


def test_a_webrtc_peer_hears_the_translation_through_the_pipecat_bot(engines):
    from aiortc import RTCPeerConnection, RTCSessionDescription
    from aiortc.mediastreams import MediaStreamError

    from babelcall.realtime.audio import Resampler

    async def main():
        async with Scheduler(engines) as sched:
            interpreters: list[InterpreterProcessor] = []
            records: list[dict] = []

            def wire(proc: InterpreterProcessor) -> None:
                proc.on_record = records.append
                interpreters.append(proc)

            bot = PipecatBot(sched, "en", "es", on_processor=wire)
            server = TestServer(make_app(bot))
            await server.start_server()
            async with aiohttp.ClientSession() as http:
                page = await (await http.get(server.make_url("/"))).text()
                assert "/api/offer" in page
                bad = await http.post(server.make_url("/api/offer"), data="[1, 2]")
                assert bad.status == 400 and "JSON object" in (await bad.json())["error"]

                pc = RTCPeerConnection()
                track = PcmTrack(load_clip("fleurs-en-000", WIRE_RATE), WIRE_RATE,
                                 lead_in_s=0.3)
                pc.addTrack(track)
                captions: list[dict] = []
                channel = pc.createDataChannel("messages")
                channel.on("message", lambda m: captions.append(json.loads(m)))
                heard: list[tuple[int, np.ndarray]] = []

                async def record(remote) -> None:
                    resampler = Resampler(16000)
                    with contextlib.suppress(MediaStreamError):
                        while True:
                            frame = await remote.recv()
                            heard.append((time.monotonic_ns(), resampler.push(frame)))

                tasks = []
                pc.on("track", lambda t: tasks.append(asyncio.create_task(record(t))))
                await pc.setLocalDescription(await pc.createOffer())
                reply = await http.post(server.make_url("/api/offer"), json={
                    "sdp": pc.localDescription.sdp, "type": pc.localDescription.type})
                assert reply.status == 200, await reply.text()
                answer = await reply.json()
                assert answer["pc_id"] in bot.connections
                await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"],
                                                                    answer["type"]))
                # trickle ICE (PATCH): an end-of-candidates marker; an unknown peer is refused
                done = {"candidate": "", "sdp_mid": "0", "sdp_mline_index": 0}
                patch = await http.patch(server.make_url("/api/offer"), json={
                    "pc_id": answer["pc_id"], "candidates": [done]})
                assert patch.status == 200, await patch.text()
                stray = await http.patch(server.make_url("/api/offer"), json={
                    "pc_id": "nobody", "candidates": [done]})
                assert stray.status == 400
                await until(track.finished.is_set, 60, "the clip to be sent")

                def played_out() -> bool:
                    """Every phrase ended and fully handled (the session's stages hold
                    nothing: its ``idle()``, read without awaiting), its speech received
                    here."""
                    if not interpreters:
                        return False
                    proc = interpreters[0]
                    speakers = [sp for group in proc.speakers.values() for sp in group]
                    started = {r["utt"] for r in records if r["type"] == "speech_started"}
                    ended = {r["utt"] for r in records if r["type"] == "speech_ended"}
                    clock = proc._playout.get(None)
                    return bool(speakers and started and started <= ended and heard
                                and all(sp.session._flow.idle.is_set() for sp in speakers)
                                and clock is not None and clock.end_ns is not None
                                and heard[-1][0] > clock.end_ns + 300_000_000)

                await until(played_out, 90, "the last phrase to be heard")
                await pc.close()
                await until(lambda: not bot.connections and not sched.sessions, 20,
                            "the bot to hang up and free the session")
            for task in tasks:
                task.cancel()
            await server.close()
            return np.concatenate([p for _, p in heard]), captions, records

    audio, captions, records = asyncio.run(main())
    # ours, beside the RTVI messages pipecat's worker sends on the same channel
    assert {"transcript", "translation"} <= {c.get("type") for c in captions}
    assert all(c["language"] == "es" for c in captions if c.get("type") == "translation")
    text = hear_back(compact(audio, 16000), "es")
    ref = reference("fleurs-en-000", "en", "es")["tgt_ref"]
    chrf = sacrebleu.sentence_chrf(text, [ref]).score
    other = sacrebleu.sentence_chrf(text, [reference("fleurs-en-002", "en", "es")["tgt_ref"]])
    print(f"heard over SmallWebRTC (chrF {chrf:.1f}): {text}")
    assert chrf > 30, text
    assert chrf > other.score, text
    assert any(r["type"] == "timing" and r["hops_ms"].get("handed") for r in records)


# getUserMedia gives a WebAudio stream whose clip starts once the page says "connected" (a
# fake capture file would start playing before the call is up, and that audio is never sent)
SPEAKER = """
(() => {
  const pcm = Uint8Array.from(atob("%s"), (c) => c.charCodeAt(0));
  const samples = new Int16Array(pcm.buffer);
  navigator.mediaDevices.getUserMedia = async () => {
    const ctx = new AudioContext({ sampleRate: 48000 });
    const out = ctx.createMediaStreamDestination();
    const clip = ctx.createBuffer(1, samples.length, 48000);
    clip.getChannelData(0).set(Float32Array.from(samples, (v) => v / 32768));
    const timer = setInterval(() => {
      const state = document.getElementById("state");
      if (!state || state.textContent !== "connected") return;
      clearInterval(timer);
      const source = ctx.createBufferSource();
      source.buffer = clip;
      source.connect(out);
      source.start(ctx.currentTime + 0.5);
      window.speakerStarted = true;
    }, 20);
    return out.stream;
  };
})();
"""


def test_the_bot_page_in_chromium_shows_the_translation(engines, tmp_path):
    """The page the bot serves, in headless Chromium (Debian's, driven by playwright): it
    connects over SmallWebRTC's signalling, a scripted microphone speaks an English clip, and
    the Spanish captions and the translated audio arrive."""
    import base64
    import shutil

    from playwright.async_api import async_playwright

    pcm = (load_clip("fleurs-en-004", 48000) * 32767).astype("<i2").tobytes()
    flags = ["--use-fake-ui-for-media-stream", "--no-sandbox", "--headless", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update",
             "--no-first-run", "--autoplay-policy=no-user-gesture-required"]
    chromium = shutil.which("chromium") or "/usr/bin/chromium"

    async def main():
        async with Scheduler(engines) as sched, async_playwright() as p:
            bot = PipecatBot(sched, "en", "es")
            server = TestServer(make_app(bot))
            await server.start_server()
            browser = await p.chromium.launch_persistent_context(
                str(tmp_path / "profile"), executable_path=chromium, headless=True, args=flags)
            try:
                page = await browser.new_page()
                await page.add_init_script(SPEAKER % base64.b64encode(pcm).decode())
                await page.goto(str(server.make_url("/")))
                await page.click("#go")
                await page.wait_for_function(
                    "document.getElementById('state').textContent === 'connected'",
                    timeout=30_000)
                await page.wait_for_function("""(() => {
                    const t = [...document.querySelectorAll('#log .translation')]
                        .map((p) => p.textContent.toLowerCase()).join(' ');
                    return ['personas', 'plumas', 'volar'].some((w) => t.includes(w));
                })()""", timeout=120_000)
                received = await page.evaluate("""(async () => {
                    const out = document.getElementById('out').srcObject;
                    return out ? out.getAudioTracks().length : 0;
                })()""")
                captions = await page.inner_text("#log")
                await page.click("#stop")
                await until(lambda: not bot.connections and not sched.sessions, 20,
                            "the bot to hang up when the page did")
            finally:
                await browser.close()
            await server.close()
            return captions, received

    captions, received = asyncio.run(main())
    assert received == 1  # the translated audio track plays in the page's <audio>
    assert "[en]" in captions and "[es]" in captions, captions
