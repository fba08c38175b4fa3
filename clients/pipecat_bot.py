"""An example pipecat bot: babelcall's ``InterpreterProcessor`` between pipecat's
``SmallWebRTCTransport`` input and output. Every peer that connects gets its own pipeline;
all of them share the models through one scheduler.

    python -m babelcall.clients.pipecat_bot --source en --target es [--port 7860]

then open http://127.0.0.1:7860/ and speak: the translation plays back, captions show under
the button. Signalling is SmallWebRTC's own: ``POST /api/offer`` with ``{"sdp", "type"}``
(and ``pc_id`` to renegotiate) answers ``{"sdp", "type", "pc_id"}``; ``PATCH /api/offer``
takes trickled ICE candidates. That is the shape pipecat's JavaScript SmallWebRTC client
(and its prebuilt UI) posts, so they can be pointed at this server; the page served here is a
plain one that needs no build. babelcall's own call page (``babelcall serve``) speaks babelcall's
signalling, not this one."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Callable
from typing import Any

from aiohttp import web

try:
    import pipecat  # noqa: F401 - the `pipecat` extra
except ImportError as exc:
    raise ImportError("the pipecat bot needs the pipecat extra: pip install -e '.[pipecat]' "
                      "(./install.sh installs it)") from exc
from pipecat.frames.frames import (
    Frame,
    OutputTransportMessageUrgentFrame,
    TranscriptionFrame,
    TranslationFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.transports.base_transport import TransportParams
from pipecat.transports.smallwebrtc.connection import IceServer, SmallWebRTCConnection
from pipecat.transports.smallwebrtc.transport import SmallWebRTCTransport
from pipecat.workers.runner import WorkerRunner

from babelcall.realtime.errors import BabelcallError
from babelcall.realtime.scheduler import Scheduler
from babelcall.realtime.tasks import cancel_and_wait
from babelcall.transports.pipecat import InterpreterProcessor

__all__ = ["PipecatBot", "make_app", "main"]
log = logging.getLogger(__name__)
MAX_SDP_BYTES = 32 * 1024  # as `babelcall serve`: an offer is a few KiB


class Captions(FrameProcessor):
    """The source and translation text to the peer as data-channel messages (what the page
    shows); every frame goes on."""

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TranscriptionFrame | TranslationFrame):
            kind = "translation" if isinstance(frame, TranslationFrame) else "transcript"
            await self.push_frame(OutputTransportMessageUrgentFrame(message={
                "type": kind, "text": frame.text, "user_id": frame.user_id,
                "language": str(frame.language.value) if frame.language else None}))
        await self.push_frame(frame, direction)


class PipecatBot:
    """SmallWebRTC peers in, one pipecat pipeline each: transport input -> babelcall
    interpreter -> captions -> transport output. ``on_processor`` sees each new interpreter
    (tests and benchmarks read its records)."""

    def __init__(self, scheduler: Scheduler, source: str, target: str, *,
                 voice: str | None = None, ice_servers: list[str] | None = None,
                 on_processor: Callable[[InterpreterProcessor], None] | None = None) -> None:
        scheduler.engines.check_pair(source, target)  # refuse before a peer connects
        self.scheduler = scheduler
        self.source, self.target, self.voice = source, target, voice
        self.ice_servers = [IceServer(urls=url) for url in ice_servers or []]
        self.on_processor = on_processor
        self.connections: dict[str, SmallWebRTCConnection] = {}
        self.runs: dict[str, asyncio.Task[None]] = {}

    async def offer(self, body: dict[str, Any]) -> dict[str, Any]:
        """An SDP offer (a new peer, or ``pc_id`` renegotiating) -> the SDP answer."""
        sdp, kind, pc_id = body.get("sdp"), body.get("type"), body.get("pc_id")
        if not isinstance(sdp, str) or kind != "offer":
            raise BabelcallError("need {\"sdp\": \"...\", \"type\": \"offer\"}")
        if len(sdp.encode()) > MAX_SDP_BYTES:
            raise BabelcallError(f"SDP over {MAX_SDP_BYTES} bytes")
        if pc_id is not None:
            conn = self.connections.get(pc_id)
            if conn is None:
                raise BabelcallError(f"no connection {str(pc_id)[:64]!r}")
            await conn.renegotiate(sdp=sdp, type=kind, restart_pc=bool(body.get("restart_pc")))
        else:
            conn = SmallWebRTCConnection(ice_servers=self.ice_servers)
            await conn.initialize(sdp=sdp, type=kind)
            self._run(conn)
        answer = conn.get_answer()
        if answer is None:
            raise BabelcallError("the connection produced no SDP answer")
        return answer

    async def candidates(self, body: dict[str, Any]) -> None:
        """Trickled ICE candidates for ``pc_id`` (``{"pc_id", "candidates": [{"candidate",
        "sdp_mid", "sdp_mline_index"}]}``)."""
        from aiortc.sdp import candidate_from_sdp

        conn = self.connections.get(body.get("pc_id"))  # type: ignore[arg-type]
        if conn is None:
            raise BabelcallError("no such connection")
        for c in body.get("candidates") or []:
            candidate = None  # an empty candidate ends the peer's gathering (RFC 8840)
            if isinstance(c, dict) and c.get("candidate"):
                candidate = candidate_from_sdp(str(c["candidate"]).removeprefix("candidate:"))
                candidate.sdpMid = c.get("sdp_mid")
                candidate.sdpMLineIndex = c.get("sdp_mline_index")
            await conn.add_ice_candidate(candidate)

    def pipeline(self, conn: SmallWebRTCConnection) -> PipelineWorker:
        """The bot's pipeline for one peer."""
        transport = SmallWebRTCTransport(conn, TransportParams(audio_in_enabled=True,
                                                               audio_out_enabled=True))
        interpreter = InterpreterProcessor(self.scheduler, self.source, self.target,
                                           voice=self.voice)
        if self.on_processor is not None:
            self.on_processor(interpreter)
        worker = PipelineWorker(
            Pipeline([transport.input(), interpreter, Captions(), transport.output()]),
            params=PipelineParams(enable_metrics=True), idle_timeout_secs=None)

        @transport.event_handler("on_client_disconnected")
        async def gone(_transport: Any, _client: Any) -> None:
            await worker.cancel(reason="peer left")

        return worker

    def _run(self, conn: SmallWebRTCConnection) -> None:
        pc_id = conn.pc_id
        self.connections[pc_id] = conn

        async def run() -> None:
            try:
                runner = WorkerRunner(handle_sigint=False)
                await runner.add_workers(self.pipeline(conn))
                await runner.run()
            except Exception:
                log.exception("pipecat bot: the pipeline of %s failed", pc_id)
            finally:
                self.connections.pop(pc_id, None)
                self.runs.pop(pc_id, None)
                with contextlib.suppress(Exception):
                    await conn.disconnect()

        self.runs[pc_id] = asyncio.create_task(run(), name=f"pipecat-bot-{pc_id}")

    async def close(self) -> None:
        """Hang up on every peer and stop their pipelines."""
        for conn in list(self.connections.values()):
            with contextlib.suppress(Exception):
                await conn.disconnect()
        await cancel_and_wait(list(self.runs.values()))


def make_app(bot: PipecatBot) -> web.Application:
    async def page(_: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    async def offer(request: web.Request) -> web.Response:
        try:
            body = await _json(request)
            if request.method == "PATCH":
                await bot.candidates(body)
                return web.json_response({"status": "ok"})
            return web.json_response(await bot.offer(body))
        except BabelcallError as exc:
            return web.json_response({"error": str(exc)}, status=400)

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"ok": True, "peers": len(bot.connections),
                                  "source": bot.source, "target": bot.target})

    async def shutdown(_: web.Application) -> None:
        await bot.close()

    app = web.Application(client_max_size=MAX_SDP_BYTES * 2)
    app.router.add_get("/", page)
    app.router.add_post("/api/offer", offer)
    app.router.add_patch("/api/offer", offer)
    app.router.add_get("/health", health)
    app.on_shutdown.append(shutdown)
    return app


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.text())
    except (ValueError, RecursionError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        raise BabelcallError("the body must be a JSON object")
    return body


async def serve(scheduler: Scheduler, args: argparse.Namespace) -> None:
    bot = PipecatBot(scheduler, args.source, args.target, voice=args.voice,
                     ice_servers=args.stun)
    runner = web.AppRunner(make_app(bot))
    await runner.setup()
    await web.TCPSite(runner, args.host, args.port).start()
    print(f"babelcall pipecat bot: {args.source} -> {args.target} on "
          f"http://{args.host}:{args.port}/", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    from loguru import logger

    from babelcall.clients.cli import engine_args, load_engines

    p = argparse.ArgumentParser(prog="python -m babelcall.clients.pipecat_bot",
                                description="a pipecat bot (SmallWebRTC) that interprets "
                                            "whoever connects")
    p.add_argument("--host", default="127.0.0.1", help="address (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    p.add_argument("--stun", action="append", help="STUN/TURN server URL (repeatable)")
    p.add_argument("--log-level", default="INFO", help="pipecat's log level (default: INFO)")
    engine_args(p)
    args = p.parse_args(argv)
    logger.remove()  # pipecat logs through loguru, at DEBUG unless told otherwise
    logger.add(sys.stderr, level=args.log_level.upper())
    try:
        engines = load_engines(args)

        async def run() -> None:
            async with Scheduler(engines) as sched:
                await serve(sched, args)

        asyncio.run(run())
    except BabelcallError as exc:
        print(f"babelcall: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>babelcall pipecat bot</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font:16px system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem}
button{font-size:1.1rem;padding:.5rem 1.2rem}#log p{margin:.3rem 0}.translation{font-weight:600}
</style></head><body>
<h1>babelcall in a pipecat bot</h1>
<p>Speak after connecting: you hear the translation; captions appear below.</p>
<button id="go">Connect</button> <button id="stop" disabled>Hang up</button>
<span id="state" role="status">idle</span>
<audio id="out" autoplay></audio><div id="log" aria-live="polite"></div>
<script>
const $ = (id) => document.getElementById(id);
let pc = null;
function caption(msg) {  // ours; pipecat's RTVI messages share the channel
  if (msg.type !== "transcript" && msg.type !== "translation") return;
  const p = document.createElement("p");
  p.className = msg.type; p.textContent = `[${msg.language || ""}] ${msg.text}`;
  $("log").prepend(p);
}
async function connect() {
  const mic = await navigator.mediaDevices.getUserMedia({audio: {echoCancellation: true}});
  pc = new RTCPeerConnection();
  const channel = pc.createDataChannel("messages");
  channel.onmessage = (e) => { try { caption(JSON.parse(e.data)); } catch (_) {} };
  mic.getTracks().forEach((t) => pc.addTransceiver(t, {direction: "sendrecv"}));
  pc.ontrack = (e) => {
    if (e.track.kind === "audio") $("out").srcObject = new MediaStream([e.track]);
  };
  pc.onconnectionstatechange = () => { $("state").textContent = pc.connectionState; };
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((ok) => {
    if (pc.iceGatheringState === "complete") return ok();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === "complete" && ok();
  });
  const r = await fetch("/api/offer", {method: "POST",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({sdp: pc.localDescription.sdp, type: pc.localDescription.type})});
  const answer = await r.json();
  if (!r.ok) { $("state").textContent = answer.error; return; }
  await pc.setRemoteDescription(answer);
}
$("go").onclick = () => {
  $("go").disabled = true;
  $("stop").disabled = false;
  connect().catch((e) => { $("state").textContent = e; });
};
$("stop").onclick = () => {  // closing the connection tells the bot (DTLS close)
  if (pc) pc.close();
  $("state").textContent = "closed";
  $("stop").disabled = true;
};
</script></body></html>
"""

if __name__ == "__main__":
    sys.exit(main())
