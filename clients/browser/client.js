// babelcall browser client: microphone -> WebRTC -> babelcall -> translated audio + captions.
// window.babelcall exposes the live state (tests and curious users read it).
"use strict";

const LANGUAGES = { en: "English", es: "Español", fr: "Français", de: "Deutsch", pt: "Português",
                    it: "Italiano", ja: "日本語", zh: "中文", hi: "हिन्दी" };
const $ = (id) => document.getElementById(id);
const state = window.babelcall = {
  status: "idle", error: null, session: null, captions: 0, translations: 0, audioOut: 0,
  latencyMs: null, meanLatencyMs: null, lagS: null, rttMs: null, bytesReceived: 0,
  packetsReceived: 0, audioEnergy: 0, level: 0, loudFrames: 0, lines: {},
};
let pc = null, channel = null, stream = null, location_ = null, timers = [], audioCtx = null;

function fillLanguages() {
  for (const [id, def] of [["source", "en"], ["target", "es"]]) {
    const sel = $(id);
    for (const [code, name] of Object.entries(LANGUAGES)) sel.add(new Option(name, code));
    sel.value = new URLSearchParams(window.location.search).get(id) || def;
  }
  const token = new URLSearchParams(window.location.hash.slice(1)).get("token");
  if (token) $("token").value = token;
}

function setStatus(text, isError = false) {
  state.status = text;
  if (isError) state.error = text;
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

function authHeaders() {
  const token = $("token").value.trim();
  return token ? { Authorization: "Bearer " + token } : {};
}

function waitIceGathering(pc, timeoutMs = 3000) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { pc.removeEventListener("icegatheringstatechange", check); resolve(); };
    const check = () => { if (pc.iceGatheringState === "complete") done(); };
    pc.addEventListener("icegatheringstatechange", check);
    setTimeout(done, timeoutMs);
  });
}

async function start() {
  $("start").disabled = true;
  try {
    setStatus("asking for the microphone…");
    // Raw voice: browser processing smears consonants and hurts recognition.
    stream = await navigator.mediaDevices.getUserMedia({ audio: {
      echoCancellation: false, noiseSuppression: false, autoGainControl: false,
      channelCount: 1 }, video: false });
    pc = new RTCPeerConnection({ iceServers: [] });
    pc.addTransceiver(stream.getAudioTracks()[0], { direction: "sendrecv", streams: [stream] });
    channel = pc.createDataChannel("captions");
    channel.onmessage = (e) => onRecord(JSON.parse(e.data));
    channel.onopen = () => timers.push(setInterval(() =>
      channel.readyState === "open" && channel.send(JSON.stringify({ type: "ping", t: performance.now() })), 2000));
    pc.ontrack = (e) => playTrack(e.track);
    pc.onconnectionstatechange = () => {
      if (["failed", "closed"].includes(pc.connectionState)) stop(`call ${pc.connectionState}`);
      else if (pc.connectionState === "connected") setStatus("live — speak now");
    };
    await pc.setLocalDescription(await pc.createOffer());
    await waitIceGathering(pc);
    setStatus("connecting…");
    const answer = await signal(pc.localDescription.sdp);
    await pc.setRemoteDescription({ type: "answer", sdp: answer });
    timers.push(setInterval(pollStats, 500));
    $("stop").disabled = false;
  } catch (err) {
    await stop(null);
    setStatus(String(err.message || err), true);
  }
}

async function signal(sdp) {
  const room = $("room").value.trim(), source = $("source").value, target = $("target").value;
  let resp;
  if (room) {
    resp = await fetch(`/rooms/${encodeURIComponent(room)}/join?lang=${source}` +
                       `&echo_guard=${$("echo").checked ? 1 : 0}`,
      { method: "POST", headers: { "Content-Type": "application/sdp", ...authHeaders() }, body: sdp });
  } else {
    resp = await fetch("/offer", { method: "POST",
      headers: { "Content-Type": "application/json", ...authHeaders() },
      body: JSON.stringify({ sdp, type: "offer", source, target, mix: $("mix").value,
                             echo_guard: $("echo").checked ? "1" : "0" }) });
  }
  if (!resp.ok) {
    let msg = `${resp.status} ${resp.statusText}`;
    try { msg = (await resp.json()).message || msg; } catch (_) { /* not JSON */ }
    throw new Error(msg);
  }
  if (room) {
    location_ = resp.headers.get("Location");
    state.session = location_;
    return await resp.text();
  }
  const body = await resp.json();
  location_ = body.location;
  state.session = body.session;
  return body.sdp;
}

function playTrack(track) {
  const media = new MediaStream([track]);
  $("audio").srcObject = media;
  $("audio").play().catch(() => setStatus("click the page to hear the translation"));
  // Level meter from the received audio (also proves audio arrives).
  audioCtx = audioCtx || new AudioContext();
  const analyser = audioCtx.createAnalyser();
  analyser.fftSize = 1024;
  audioCtx.createMediaStreamSource(media).connect(analyser);
  const buf = new Float32Array(analyser.fftSize);
  timers.push(setInterval(() => {
    analyser.getFloatTimeDomainData(buf);
    let sum = 0;
    for (const v of buf) sum += v * v;
    state.level = Math.sqrt(sum / buf.length);
    if (state.level > 0.01) state.loudFrames += 1;
    $("meter").firstElementChild.style.width = Math.min(100, state.level * 400) + "%";
  }, 50));
}

async function pollStats() {
  if (!pc) return;
  const report = await pc.getStats();
  report.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "audio") {
      state.bytesReceived = s.bytesReceived || 0;
      state.packetsReceived = s.packetsReceived || 0;
      state.audioEnergy = s.totalAudioEnergy || 0;
    }
  });
  $("received").textContent = `${(state.bytesReceived / 1000).toFixed(0)} kB`;
}

function line(rec) {
  const key = `${rec.speaker || ""}/${rec.utt}`;
  let entry = state.lines[key];
  if (!entry) {
    const div = document.createElement("div");
    div.className = "utt";
    div.innerHTML = '<div class="src"></div><div class="tgt"></div>';
    $("captions").appendChild(div);
    entry = state.lines[key] = { div, src: "", partial: "", tgt: "", draft: "" };
    const all = $("captions").children;
    while (all.length > 40) all[0].remove();
  }
  return entry;
}

function render(entry, speaker) {
  const who = speaker ? `<span class="who">${speaker.slice(0, 6)}</span>` : "";
  const esc = (t) => t.replace(/[&<>]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;" }[c]));
  entry.div.firstChild.innerHTML = who + esc(entry.src) + ' <span class="partial">' + esc(entry.partial) + "</span>";
  entry.div.lastChild.innerHTML = esc(entry.tgt) + ' <span class="draft">' + esc(entry.draft) + "</span>";
  $("captions").scrollTop = $("captions").scrollHeight;
}

function onRecord(rec) {
  if (rec.type === "transcript") {
    const e = line(rec);
    if (rec.committed) e.src = (e.src + " " + rec.committed).trim();
    e.partial = rec.partial || "";
    state.captions += 1;
    render(e, rec.speaker);
  } else if (rec.type === "translation") {
    const e = line(rec);
    if (rec.committed) e.tgt = (e.tgt + " " + rec.committed).trim();
    e.draft = rec.final ? "" : (rec.draft || "");
    state.captions += 1;
    if (rec.committed) state.translations += 1;
    render(e, rec.speaker);
  } else if (rec.type === "audio_out") {
    state.audioOut += 1;
    state.latencyMs = rec.latency_ms;
    $("latency").textContent = `${(rec.latency_ms / 1000).toFixed(2)} s`;
  } else if (rec.type === "stats") {
    state.lagS = rec.lag_s;
    state.meanLatencyMs = rec.mean_audio_out_ms;
    $("lag").textContent = `${rec.lag_s.toFixed(1)} s`;
    if (rec.mean_audio_out_ms != null) $("latency-mean").textContent = `${(rec.mean_audio_out_ms / 1000).toFixed(2)} s`;
  } else if (rec.type === "pong") {
    state.rttMs = performance.now() - rec.t;
    $("rtt").textContent = `${state.rttMs.toFixed(0)} ms`;
  } else if (rec.type === "speech_skipped") {
    // the server is overloaded: this clause stays in the captions but is not voiced
    state.skipped = (state.skipped || 0) + 1;
    setStatus(`live — ${rec.behind_s.toFixed(0)} s behind: captions only for now`, false);
  } else if (rec.type === "error" || rec.type === "stage_error") {
    setStatus(rec.message || "error", rec.type === "error");
  }
}

async function stop(reason = "stopped") {
  timers.forEach(clearInterval);
  timers = [];
  if (location_) {
    fetch(location_, { method: "DELETE", headers: authHeaders() }).catch(() => {});
    location_ = null;
  }
  if (pc) { pc.close(); pc = null; }
  if (stream) { stream.getTracks().forEach((t) => t.stop()); stream = null; }
  $("start").disabled = false;
  $("stop").disabled = true;
  if (reason) setStatus(reason);
}

fillLanguages();
$("start").onclick = start;
$("stop").onclick = () => stop();
