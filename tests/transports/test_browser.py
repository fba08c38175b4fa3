"""The browser page in headless Chromium (Debian's chromium, driven by playwright): a fake
microphone plays an English clip, the page calls the server over WebRTC, shows bilingual
captions and a latency readout, and plays the translated audio it receives."""

import asyncio
import shutil

import numpy as np
import pytest
from conftest import load_clip
from transport_utils import running_server, until

from babelcall.realtime.audio import write_wav

pytestmark = pytest.mark.timeout(240)
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def test_browser_page_interprets_the_microphone(engines, tmp_path):
    playwright = pytest.importorskip("playwright.async_api")
    # Two seconds of silence first: the page connects while Chromium's fake mic already runs.
    mic = tmp_path / "mic.wav"
    silence = np.zeros(48000 * 2, np.float32)
    write_wav(mic, np.concatenate([silence, load_clip("fleurs-en-004", 48000), silence]), 48000)
    flags = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
             f"--use-file-for-fake-audio-capture={mic}%noloop", "--no-sandbox", "--headless",
             "--disable-gpu", "--disable-background-networking", "--disable-component-update",
             "--no-first-run", "--autoplay-policy=no-user-gesture-required"]
    console: list[str] = []

    async def main():
        async with running_server(engines) as srv, playwright.async_playwright() as p:
            browser = await p.chromium.launch_persistent_context(
                str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=flags)
            try:
                page = await browser.new_page()
                page.on("console", lambda m: console.append(m.text))
                await page.goto(f"{srv.url}/?source=en&target=es")
                await page.click("#start")
                await page.wait_for_function("window.babelcall.status.startsWith('live')",
                                             timeout=30_000)
                await page.wait_for_function(
                    "window.babelcall.translations > 0 && window.babelcall.audioOut > 0",
                    timeout=150_000)
                await page.wait_for_function("window.babelcall.loudFrames >= 5",
                                             timeout=60_000)
                state = await page.evaluate("window.babelcall")
                captions = await page.inner_text("#captions")
                latency = await page.inner_text("#latency")
                assert len(srv.hub.ingests) == 1
                await page.click("#stop")
                await until(lambda: not srv.hub.ingests and not srv.hub.scheduler.sessions, 15,
                            "the page's call to be freed")
                return state, captions, latency
            finally:
                await browser.close()

    state, captions, latency = asyncio.run(main())
    assert state["error"] is None, (state["error"], console)
    assert state["packetsReceived"] > 100 and state["bytesReceived"] > 1000, state
    assert state["loudFrames"] >= 5  # the translated voice reached the page's audio graph
    text = captions.lower()  # many people don't think about them as dinosaurs because...
    assert any(w in text for w in ("people", "feathers", "fly")), captions  # the transcript
    assert any(w in text for w in ("personas", "plumas", "volar")), captions  # translated
    assert latency.endswith(" s") and state["latencyMs"] > 0
