"""The browser page in headless Chromium (Debian's chromium, driven by playwright): a scripted
microphone says an English clip once the page shows "live — speak now", the page calls the
server over WebRTC, shows bilingual captions and a latency readout, and plays the translated
audio it receives.

Why the microphone is scripted rather than Chromium's fake capture file: that file starts
playing at getUserMedia, before the call is connected, and whatever it plays before then is
never sent. Connecting took 0.6-2.1 s here on a busy machine, against 2 s of leading
silence: the clip's first words were cut ("Nelly before don't think..."), or most of it on a
busier machine, so the transcript check failed in full-suite runs and the translation came so
soon after connecting that the stats snapshot had only a few silent packets. The speaker now
starts 0.5 s after the page says it is live, as a person would, and every wait is for a
condition (captions with the clip's words, stats past their thresholds), not a snapshot."""

import asyncio
import base64
import contextlib
import shutil

import pytest
from conftest import load_clip
from transport_utils import running_server, until

pytestmark = pytest.mark.timeout(240)
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# getUserMedia gives a WebAudio stream (silence) whose clip starts once the page is live
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
      if (!(window.babelcall && window.babelcall.status.startsWith("live"))) return;
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


def test_browser_page_interprets_the_microphone(engines, tmp_path):
    playwright = pytest.importorskip("playwright.async_api")
    pcm = (load_clip("fleurs-en-004", 48000) * 32767).astype("<i2").tobytes()
    speaker = SPEAKER % base64.b64encode(pcm).decode()
    flags = ["--use-fake-ui-for-media-stream", "--no-sandbox", "--headless",
             "--disable-gpu", "--disable-background-networking", "--disable-component-update",
             "--no-first-run", "--autoplay-policy=no-user-gesture-required"]
    console: list[str] = []

    async def main():
        async with running_server(engines) as srv, playwright.async_playwright() as p:
            browser = await p.chromium.launch_persistent_context(
                str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=flags)
            try:
                page = await browser.new_page()
                await page.add_init_script(speaker)
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
                # Conditions, not snapshots (the page polls its stats twice a second, and the
                # captions grow phrase by phrase); on a timeout the asserts below say what was.
                with contextlib.suppress(playwright.TimeoutError):
                    await page.wait_for_function(
                        "window.babelcall.packetsReceived > 100 && "
                        "window.babelcall.bytesReceived > 1000", timeout=10_000)
                with contextlib.suppress(playwright.TimeoutError):
                    await page.wait_for_function("""(() => {
                        const t = document.querySelector('#captions').innerText.toLowerCase();
                        return ['people', 'feathers', 'fly'].some((w) => t.includes(w)) &&
                               ['personas', 'plumas', 'volar'].some((w) => t.includes(w));
                    })()""", timeout=60_000)
                assert await page.evaluate("window.speakerStarted === true")
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
