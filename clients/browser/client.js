// babelcall browser client.
// In a room (?room=demo): a translated video call — camera and microphone up, a tile per
// participant with their (delayed) video, their captions and figures, the translated speech of
// everyone in one audio track. Without a room: the interpreter — your own speech translated.
// window.babelcall exposes the live state (tests and curious users read it).
"use strict";

const FALLBACK_LANGUAGES = { en: "English", es: "Español", fr: "Français", de: "Deutsch",
  pt: "Português", it: "Italiano", ja: "日本語", zh: "中文", hi: "हिन्दी" };
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(window.location.search);
const state = window.babelcall = {
  status: "idle", error: null, session: null, captions: 0, translations: 0, audioOut: 0,
  latencyMs: null, meanLatencyMs: null, lagS: null, rttMs: null, bytesReceived: 0,
  packetsReceived: 0, audioEnergy: 0, level: 0, loudFrames: 0, lines: {},
  room: null, me: null, roster: [], speakers: {}, negotiations: 0, languages: FALLBACK_LANGUAGES,
};
let pc = null, channel = null, stream = null, location_ = null, timers = [], audioCtx = null;
const remoteVideo = {};  // mid -> MediaStreamTrack (the others' cameras)

// -- setup ------------------------------------------------------------------------------------
function languageName(code) {
  return state.languages[code] || code;
}

function fillLanguages(languages) {
  state.languages = languages;
  for (const [id, def] of [["source", "en"], ["target", "es"]]) {
    const sel = $(id);
    const keep = sel.value || params.get(id === "source" ? "lang" : "target") || params.get(id) || def;
    sel.innerHTML = "";
    for (const [code, name] of Object.entries(languages)) sel.add(new Option(name, code));
    if (!(keep in languages)) sel.add(new Option(keep, keep));
    sel.value = keep;
  }
}

async function loadLanguages() {
  // The server's own list when it has one (GET /languages), else the built-in one.
  try {
    const resp = await fetch("/languages", { headers: authHeaders() });
    if (!resp.ok) return;
    const body = await resp.json();
    const found = {};
    for (const item of body.languages || []) {
      const code = typeof item === "string" ? item : (item.code || item.lang || item.id);
      const name = typeof item === "string" ? null : (item.name || item.native);
      if (code) found[code] = name || FALLBACK_LANGUAGES[code] || code;
    }
    if (Object.keys(found).length) fillLanguages(found);
  } catch (_) { /* keep the built-in list */ }
}

function setup() {
  fillLanguages(FALLBACK_LANGUAGES);
  $("room").value = params.get("room") || "";
  $("name").value = params.get("name") || localStorage.getItem("babelcall.name") || "";
  if (params.get("camera") === "0") $("use-camera").checked = false;
  const token = new URLSearchParams(window.location.hash.slice(1)).get("token");
  if (token) $("token").value = token;
  $("setup").onsubmit = (e) => { e.preventDefault(); start(); };
  $("stop").onclick = () => stop();
  $("mute").onclick = () => toggle("mute", "audio");
  $("camera").onclick = () => toggle("camera", "video");
  $("live-video").onchange = () => send({ type: "live_video", on: $("live-video").checked });
  $("copy-link").onclick = copyLink;
  loadLanguages();
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

function send(msg) {
  if (channel && channel.readyState === "open") channel.send(JSON.stringify(msg));
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

// -- the call ---------------------------------------------------------------------------------
async function start() {
  const room = $("room").value.trim();
  state.room = room || null;
  $("start").disabled = true;
  try {
    const wantCamera = room && $("use-camera").checked;
    setStatus(wantCamera ? "asking for the camera and microphone…" : "asking for the microphone…");
    // Raw voice: browser processing smears consonants and hurts recognition.
    const audio = { echoCancellation: false, noiseSuppression: false, autoGainControl: false,
                    channelCount: 1 };
    const video = { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 24 } };
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio, video: wantCamera ? video : false });
    } catch (err) {
      if (!wantCamera) throw err;
      stream = await navigator.mediaDevices.getUserMedia({ audio, video: false });
      setStatus("no camera — joining with the microphone only");
    }
    pc = new RTCPeerConnection({ iceServers: await iceServers() });
    pc.addTransceiver(stream.getAudioTracks()[0], { direction: "sendrecv", streams: [stream] });
    if (room) {
      const cam = stream.getVideoTracks()[0];
      const tx = pc.addTransceiver(cam || "video", { direction: cam ? "sendonly" : "recvonly",
                                                      streams: [stream] });
      preferCodecs(tx);  // the server relays video as it comes: VP8 or H.264
    }
    channel = pc.createDataChannel("captions");
    channel.onmessage = (e) => onMessage(JSON.parse(e.data));
    channel.onopen = () => {
      timers.push(setInterval(() => send({ type: "ping", t: performance.now() }), 2000));
      send({ type: "ping", t: performance.now() });
    };
    pc.ontrack = (e) => {
      if (e.track.kind === "audio") playTrack(e.track);
      else { remoteVideo[e.transceiver.mid] = e.track; renderTiles(); }
    };
    pc.onconnectionstatechange = () => {
      if (["failed", "closed"].includes(pc.connectionState)) stop(`call ${pc.connectionState}`);
      else if (pc.connectionState === "connected") setStatus(room ? `live in room ${room}` : "live — speak now");
    };
    await pc.setLocalDescription(await pc.createOffer());
    await waitIceGathering(pc);
    setStatus("connecting…");
    const answer = await signal(pc.localDescription.sdp, room);
    await pc.setRemoteDescription({ type: "answer", sdp: answer });
    timers.push(setInterval(pollStats, 500));
    showCall(room);
  } catch (err) {
    await stop(null);
    setStatus(String(err.message || err), true);
  }
}

async function iceServers() {
  // The server's STUN/TURN servers (babelcall serve --stun ...); none on a LAN.
  try {
    const resp = await fetch("/ice", { headers: authHeaders() });
    if (resp.ok) return (await resp.json()).iceServers || [];
  } catch (_) { /* an older server: none */ }
  return [];
}

function preferCodecs(tx) {
  if (!tx.setCodecPreferences || !window.RTCRtpReceiver || !RTCRtpReceiver.getCapabilities) return;
  const codecs = RTCRtpReceiver.getCapabilities("video").codecs;
  const rank = (c) => ({ "video/VP8": 0, "video/H264": 1, "video/rtx": 2 }[c.mimeType] ?? 9);
  const usable = codecs.filter((c) => rank(c) < 9).sort((a, b) => rank(a) - rank(b));
  try { if (usable.length) tx.setCodecPreferences(usable); } catch (_) { /* keep defaults */ }
}

async function signal(sdp, room) {
  const source = $("source").value, target = $("target").value;
  let resp;
  if (room) {
    const name = $("name").value.trim();
    if (name) localStorage.setItem("babelcall.name", name);
    const q = new URLSearchParams({ lang: source, echo_guard: $("echo").checked ? "1" : "0",
                                    mix: $("mix").value });
    if (name) q.set("name", name);
    resp = await fetch(`/rooms/${encodeURIComponent(room)}/join?${q}`,
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
    state.me = location_ ? location_.split("/").pop() : null;
    return await resp.text();
  }
  const body = await resp.json();
  location_ = body.location;
  state.session = body.session;
  return body.sdp;
}

function showCall(room) {
  $("setup").hidden = true;
  $("controls").hidden = false;
  $("stop").disabled = false;
  $("stop").textContent = room ? "Leave" : "Stop";
  $("share").hidden = !room;
  $("mute").hidden = false;
  $("camera").hidden = !room || !stream.getVideoTracks().length;
  $("live-video").parentElement.hidden = !room;
  $("captions").hidden = !!room;
  if (room) {
    const link = new URL(window.location.href);  // the #token=..., if any, stays in it
    link.search = new URLSearchParams({ room }).toString();
    $("link").value = link.toString();
    renderTiles();
  }
}

function toggle(button, kind) {
  if (!stream) return;
  const off = $(button).getAttribute("aria-pressed") !== "true";
  stream.getTracks().filter((t) => t.kind === kind).forEach((t) => { t.enabled = !off; });
  $(button).setAttribute("aria-pressed", String(off));
  if (button === "mute") $(button).textContent = off ? "Unmute microphone" : "Mute microphone";
  else $(button).textContent = off ? "Turn camera on" : "Turn camera off";
  send({ type: "state", mic: $("mute").getAttribute("aria-pressed") !== "true",
         camera: $("camera").getAttribute("aria-pressed") !== "true" });
  renderTiles();
}

async function copyLink() {
  const text = $("link").value;
  try {
    await navigator.clipboard.writeText(text);
    setStatus("invite link copied");
  } catch (_) {
    $("link").select();
    setStatus("press Ctrl+C to copy the invite link");
  }
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

let buffered = {};  // kind -> [jitterBufferDelay, emitted] summed over this page's streams
async function pollStats() {
  if (!pc) return;
  const report = await pc.getStats();
  const now = { audio: [0, 0], video: [0, 0] };
  report.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "audio") {
      state.bytesReceived = s.bytesReceived || 0;
      state.packetsReceived = s.packetsReceived || 0;
      state.audioEnergy = s.totalAudioEnergy || 0;
    }
    if (s.type === "inbound-rtp" && now[s.kind] && s.jitterBufferEmittedCount) {
      now[s.kind][0] += s.jitterBufferDelay;
      now[s.kind][1] += s.jitterBufferEmittedCount;
    }
  });
  $("received").textContent = `${(state.bytesReceived / 1000).toFixed(0)} kB`;
  // How long this page holds audio and video before playing them: the server shows the
  // pictures that much later or earlier, so lips and translated voice meet here.
  const hold = {};
  for (const kind of ["audio", "video"]) {
    const [delay, count] = now[kind], [delay0, count0] = buffered[kind] || [0, 0];
    if (count > count0) hold[kind] = 1000 * (delay - delay0) / (count - count0);
  }
  buffered = now;
  if (state.room && hold.audio != null && hold.video != null) {
    state.playout = hold;
    send({ type: "playout", audio_ms: hold.audio, video_ms: hold.video });
  }
}

// -- tiles ------------------------------------------------------------------------------------
function speaker(pid) {
  return state.speakers[pid] = state.speakers[pid] ||
    { latencyMs: null, lagS: null, videoDelayMs: null, audioOut: 0, captions: 0, lines: {} };
}

function tile(p) {
  let el = document.querySelector(`.tile[data-pid="${CSS.escape(p.id)}"]`);
  if (!el) {
    el = document.createElement("article");
    el.className = "tile";
    el.dataset.pid = p.id;
    el.innerHTML = '<div class="frame"><video autoplay playsinline muted></video>' +
      '<div class="off">camera off</div></div>' +
      '<div class="who"><h2 class="name"></h2><span class="lang"></span>' +
      '<span class="badge muted-badge" hidden>muted</span></div>' +
      '<div class="figures"></div><div class="cc" role="log" tabindex="0"></div>';
    const video = el.querySelector("video");
    video.dataset.pid = p.id === state.me ? "self" : p.id;
    $("tiles").appendChild(el);
  }
  return el;
}

function renderTiles() {
  if (!state.room) return;
  const people = state.roster.length ? state.roster :
    [{ id: state.me || "self", name: $("name").value.trim() || "You", lang: $("source").value,
       mic: true, camera: true, mid: null }];
  const keep = new Set(people.map((p) => p.id));
  document.querySelectorAll(".tile").forEach((el) => { if (!keep.has(el.dataset.pid)) el.remove(); });
  for (const p of people) {
    const me = p.id === state.me || p.id === "self";
    const el = tile(p);
    el.classList.toggle("me", me);
    const camOff = me ? $("camera").getAttribute("aria-pressed") === "true" : !p.camera || !p.video;
    el.classList.toggle("camera-off", camOff);
    el.setAttribute("aria-label", `${p.name}${me ? " (you)" : ""}, ${languageName(p.lang)}`);
    el.querySelector(".name").textContent = p.name + (me ? " (you)" : "");
    el.querySelector(".cc").setAttribute("aria-label", `captions: ${p.name}`);
    el.querySelector(".lang").textContent = languageName(p.lang);
    el.querySelector(".muted-badge").hidden = me ? $("mute").getAttribute("aria-pressed") !== "true" : p.mic;
    const video = el.querySelector("video");
    video.setAttribute("aria-label", `${p.name}'s camera`);
    const track = me ? (stream && stream.getVideoTracks()[0]) : remoteVideo[p.mid];
    if (track && (!video.srcObject || video.srcObject.getVideoTracks()[0] !== track)) {
      video.srcObject = new MediaStream([track]);
      video.play().catch(() => {});
    }
    renderFigures(p, me);
  }
  if (document.querySelector(".tile.me") && $("tiles").firstChild !== document.querySelector(".tile.me")) {
    $("tiles").prepend(document.querySelector(".tile.me"));
  }
}

function seconds(ms) {
  return ms == null ? "–" : `${(ms / 1000).toFixed(1)} s`;
}

function renderFigures(p, me) {
  const el = tile(p).querySelector(".figures");
  const s = speaker(me ? state.me : p.id);
  if (me) {
    el.innerHTML = `others hear you <b>${seconds(s.latencyMs)}</b> after you speak · ` +
      `round trip <b>${state.rttMs == null ? "–" : state.rttMs.toFixed(0) + " ms"}</b>`;
  } else {
    const mine = $("source").value;
    const translated = p.lang !== mine;
    el.innerHTML = translated
      ? `you hear them in ${languageName(mine)} <b>${seconds(s.latencyMs)}</b> after they speak · ` +
        `video <b>${seconds(s.videoDelayMs)}</b> behind`
      : "same language: you hear their own voice";
  }
}

// -- captions ---------------------------------------------------------------------------------
function captionLine(rec) {
  // Room: the speaker's tile; a speaker sees their own words once (from their first target).
  const pid = rec.speaker;
  if (state.room && pid) {
    const s = speaker(pid);
    if (pid === state.me) {
      s.target = s.target || rec.target;
      if (rec.target && rec.target !== s.target) return null;
    }
    const key = `${rec.target || ""}/${rec.utt}`;
    let entry = s.lines[key];
    if (!entry) {
      const el = document.querySelector(`.tile[data-pid="${CSS.escape(pid)}"] .cc`);
      if (!el) return null;
      entry = s.lines[key] = newLine(el);
    }
    return entry;
  }
  const key = `${pid || ""}/${rec.utt}`;
  return state.lines[key] = state.lines[key] || newLine($("captions"));
}

function newLine(container) {
  const div = document.createElement("div");
  div.className = "utt";
  div.innerHTML = '<div class="src"></div><div class="tgt"></div>';
  container.appendChild(div);
  while (container.children.length > 40) container.firstChild.remove();
  return { div, container, src: "", partial: "", tgt: "", draft: "" };
}

function render(entry, rec) {
  const esc = (t) => t.replace(/[&<>]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;" }[c]));
  const who = rec.name && !state.room ? `<span class="who-line">${esc(rec.name)}</span>` : "";
  entry.div.firstChild.innerHTML = who + esc(entry.src) + ' <span class="partial">' + esc(entry.partial) + "</span>";
  entry.div.lastChild.innerHTML = esc(entry.tgt) + ' <span class="draft">' + esc(entry.draft) + "</span>";
  entry.container.scrollTop = entry.container.scrollHeight;
}

function onMessage(rec) {
  if (rec.type === "offer") return renegotiate(rec);
  if (rec.type === "roster") { state.roster = rec.participants; state.me = rec.you; return renderTiles(); }
  if (rec.type === "video") {
    for (const [pid, d] of Object.entries(rec.delays)) speaker(pid).videoDelayMs = d.delay_ms;
    return renderTiles();
  }
  if (rec.type === "transcript" || rec.type === "translation") {
    const e = captionLine(rec);
    state.captions += 1;
    if (rec.speaker) speaker(rec.speaker).captions += 1;
    if (rec.type === "translation" && rec.committed) state.translations += 1;
    if (!e) return;
    if (rec.type === "transcript") {
      if (rec.committed) e.src = (e.src + " " + rec.committed).trim();
      e.partial = rec.partial || "";
    } else {
      if (rec.committed) e.tgt = (e.tgt + " " + rec.committed).trim();
      e.draft = rec.final ? "" : (rec.draft || "");
    }
    render(e, rec);
  } else if (rec.type === "audio_out") {
    state.audioOut += 1;
    const mine = !state.room || rec.speaker === state.me;
    if (rec.speaker) {
      const s = speaker(rec.speaker);
      s.audioOut += 1;
      s.latencyMs = rec.latency_ms;
    }
    if (mine) {
      state.latencyMs = rec.latency_ms;
      $("latency").textContent = `${(rec.latency_ms / 1000).toFixed(2)} s`;
    }
    renderTiles();
  } else if (rec.type === "stats") {
    if (rec.speaker) speaker(rec.speaker).lagS = rec.lag_s;
    if (!state.room || rec.speaker === state.me) {
      state.lagS = rec.lag_s;
      state.meanLatencyMs = rec.mean_audio_out_ms;
      $("lag").textContent = `${rec.lag_s.toFixed(1)} s`;
      if (rec.mean_audio_out_ms != null) $("latency-mean").textContent = `${(rec.mean_audio_out_ms / 1000).toFixed(2)} s`;
    }
  } else if (rec.type === "pong") {
    state.rttMs = performance.now() - rec.t;
    $("rtt").textContent = `${state.rttMs.toFixed(0)} ms`;
    renderTiles();
  } else if (rec.type === "speech_skipped") {
    // the server is overloaded: this clause stays in the captions but is not voiced
    state.skipped = (state.skipped || 0) + 1;
    setStatus(`live — ${rec.behind_s.toFixed(0)} s behind: captions only for now`, false);
  } else if (rec.type === "error" || rec.type === "stage_error") {
    setStatus(rec.message || "error", rec.type === "error");
  }
}

async function renegotiate(msg) {
  // The server adds a video line for each newcomer and offers it on the data channel.
  if (msg.roster) { state.roster = msg.roster.participants; state.me = msg.roster.you; }
  try {
    await pc.setRemoteDescription({ type: "offer", sdp: msg.sdp });
    await pc.setLocalDescription(await pc.createAnswer());
    send({ type: "answer", sdp: pc.localDescription.sdp });
    state.negotiations += 1;
  } catch (err) {
    setStatus(`could not add a participant's video: ${err.message || err}`, true);
  }
  renderTiles();
}

async function stop(reason = "stopped") {
  timers.forEach(clearInterval);
  timers = [];
  if (location_) {
    fetch(location_, { method: "DELETE", headers: authHeaders() }).catch(() => {});
    location_ = null;
  }
  if (pc) { pc.close(); pc = null; }
  channel = null;
  if (stream) { stream.getTracks().forEach((t) => t.stop()); stream = null; }
  for (const mid of Object.keys(remoteVideo)) delete remoteVideo[mid];
  state.roster = [];
  $("tiles").innerHTML = "";
  $("setup").hidden = false;
  $("controls").hidden = true;
  $("start").disabled = false;
  $("stop").disabled = true;
  for (const [id, label] of [["mute", "Mute microphone"], ["camera", "Turn camera off"]]) {
    $(id).setAttribute("aria-pressed", "false");
    $(id).textContent = label;
  }
  if (reason) setStatus(reason);
}

setup();
