"""A fake camera whose pictures say which frame they are, and the page-side code that reads them.

Chromium's fake capture device plays a Y4M file in a loop. Every frame here carries its index
``k`` (mod 256) as a bar code across the top: 8 bars for the bits of ``k`` and 8 for their
complement (a misread bar breaks the complement, so a half-decoded frame is rejected, not
misread). The rest of the picture moves, so the encoder has real work. ``MARKS_JS`` runs in a
page: for every <video> it times each presented frame (``requestVideoFrameCallback``, wall
clock ms from ``performance.timeOrigin``) and decodes its index; a speaker's own self-view gives
when frame k was captured, a listener's tile when it was shown, and the difference is how late
the listener sees the speaker."""

from __future__ import annotations

from pathlib import Path

import numpy as np

WIDTH, HEIGHT, FPS = 240, 180, 15
PERIOD = 256  # frames before the index repeats (17 s at 15 fps: far above any delay here)
BARS = 16


def frame_index_y4m(path: Path, frames: int = PERIOD) -> Path:
    """Write ``frames`` 4:2:0 frames, frame k showing k's bar code."""
    x = np.arange(WIDTH)
    y = np.arange(HEIGHT)[:, None]
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{WIDTH} H{HEIGHT} F{FPS}:1 Ip A1:1 C420jpeg\n".encode())
        for k in range(frames):
            luma = np.full((HEIGHT, WIDTH), 96, np.uint8)
            # a bright disc circling the lower part of the picture
            cx = WIDTH / 2 + 70 * np.cos(2 * np.pi * k / 60)
            cy = HEIGHT * 0.65 + 30 * np.sin(2 * np.pi * k / 60)
            luma[(x - cx) ** 2 + (y - cy) ** 2 < 18 ** 2] = 200
            bits = [(k >> (7 - i)) & 1 for i in range(8)]
            bits += [1 - b for b in bits]
            bar = WIDTH // BARS
            for i, b in enumerate(bits):
                luma[: HEIGHT // 3, i * bar:(i + 1) * bar] = 235 if b else 16
            chroma = np.full((HEIGHT // 2, WIDTH // 2), 128, np.uint8)
            f.write(b"FRAME\n")
            f.write(luma.tobytes() + chroma.tobytes() + chroma.tobytes())
    return path


# Runs in the page (add_init_script): window.marks[label] = [[wall_ms, k], ...] per <video> (the
# frames whose code reads back), window.shown[label] = [wall_ms, ...] (every frame presented),
# where label is the element's data-pid (a tile) or "self" (the self-view).
MARKS_JS = """
(() => {
  const BARS = __BARS__;
  window.marks = {};
  window.frameCounts = {};
  window.shown = {};
  const canvas = document.createElement("canvas");
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  const watched = new WeakSet();
  function decode(video) {
    const w = video.videoWidth, h = video.videoHeight;
    if (!w || !h) return null;
    canvas.width = w; canvas.height = h;
    ctx.drawImage(video, 0, 0, w, h);
    const row = ctx.getImageData(0, Math.floor(h / 6), w, 1).data;
    const bits = [];
    for (let i = 0; i < BARS; i++) {
      const x = Math.floor((i + 0.5) * w / BARS);
      const v = (row[4 * x] + row[4 * x + 1] + row[4 * x + 2]) / 3;
      if (v > 90 && v < 160) return null;  // a bar caught mid-change
      bits.push(v >= 128 ? 1 : 0);
    }
    let k = 0;
    for (let i = 0; i < 8; i++) {
      if (bits[i] === bits[i + 8]) return null;  // the complement does not match
      k = k * 2 + bits[i];
    }
    return k;
  }
  function watch(video) {
    if (watched.has(video)) return;
    watched.add(video);
    const onFrame = (now, meta) => {
      const label = video.dataset.pid || "?";
      window.frameCounts[label] = (window.frameCounts[label] || 0) + 1;
      (window.shown[label] = window.shown[label] || []).push(
        performance.timeOrigin + meta.presentationTime);
      const k = decode(video);
      if (k !== null) {
        (window.marks[label] = window.marks[label] || []).push(
          [performance.timeOrigin + meta.presentationTime, k]);
      }
      video.requestVideoFrameCallback(onFrame);
    };
    video.requestVideoFrameCallback(onFrame);
  }
  setInterval(() => document.querySelectorAll("video").forEach(watch), 200);
})();
""".replace("__BARS__", str(BARS))


def capture_time(marks: list[list[float]], k: int, shown_ms: float) -> float | None:
    """When the speaker's camera captured the frame with index ``k`` that a listener showed at
    ``shown_ms``: the latest self-view presentation of ``k`` not after it."""
    best = None
    for t, kk in marks:
        if kk == k and t <= shown_ms + 1 and (best is None or t > best):
            best = t
    if best is None or shown_ms - best > PERIOD / FPS / 2 * 1000:
        return None  # that frame's capture here was missed: an older loop would be matched
    return best


def video_delay_ms(speaker_self: list[list[float]], tile: list[list[float]],
                   at_ms: float) -> float | None:
    """How late the listener's tile showed the speaker at ``at_ms``: shown time minus capture
    time of the last frame shown before ``at_ms`` whose capture the speaker's own page saw,
    among those shown in the second before the last (a loaded page's self-view skips frames,
    and a delay moves little within a second)."""
    shown = [m for m in tile if at_ms - 1000 <= m[0] <= at_ms]
    for t, k in reversed(shown):
        captured = capture_time(speaker_self, int(k), t)
        if captured is not None:
            return t - captured
    return None


# Runs in the page too: every data-channel record with the page's wall clock (``page_ms``), in
# window.records; the translated audio the page plays, recorded (window.recording() -> base64
# WebM/Opus); the moments that audio turns loud after a quiet spell (window.onsets).
PROBE_JS = """
(() => {
  window.records = [];
  window.onsets = [];
  const create = RTCPeerConnection.prototype.createDataChannel;
  RTCPeerConnection.prototype.createDataChannel = function (...args) {
    const channel = create.apply(this, args);
    channel.addEventListener("message", (e) => {
      try {
        const rec = JSON.parse(e.data);
        rec.page_ms = performance.timeOrigin + performance.now();
        window.records.push(rec);
      } catch (_) { /* not JSON */ }
    });
    return channel;
  };
  const chunks = [];
  let recorder = null;
  const timer = setInterval(() => {
    const audio = document.getElementById("audio");
    if (recorder || !audio || !audio.srcObject) return;
    recorder = new MediaRecorder(audio.srcObject, { mimeType: "audio/webm;codecs=opus" });
    recorder.ondataavailable = (e) => chunks.push(e.data);
    recorder.start(500);
    window.recordingStarted = performance.timeOrigin + performance.now();
    const ctx = new AudioContext();
    const analyser = ctx.createAnalyser();
    analyser.fftSize = 512;
    ctx.createMediaStreamSource(audio.srcObject).connect(analyser);
    const buf = new Float32Array(analyser.fftSize);
    let lastLoud = -Infinity;
    setInterval(() => {
      analyser.getFloatTimeDomainData(buf);
      let sum = 0;
      for (const v of buf) sum += v * v;
      const now = performance.now();
      if (Math.sqrt(sum / buf.length) > 0.02) {
        if (now - lastLoud > 300) window.onsets.push(performance.timeOrigin + now);
        lastLoud = now;
      }
    }, 10);
    clearInterval(timer);
  }, 100);
  window.recording = async () => {
    if (recorder && recorder.state === "recording") {
      const stopped = new Promise((r) => { recorder.onstop = r; });
      recorder.stop();
      await stopped;
    }
    const bytes = new Uint8Array(await new Blob(chunks).arrayBuffer());
    let text = "";
    for (let i = 0; i < bytes.length; i += 0x8000) {
      text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    }
    return btoa(text);
  };
})();
"""
