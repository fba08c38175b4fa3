"""``babelcall serve``: one aiohttp application for every way into a live translation.

  GET  /                      the browser page (clients/browser)
  POST /offer                 browser signalling: JSON {sdp, type, source, target, ...}
  POST /whip?source=&target=  WHIP ingest (application/sdp) -> 201 + answer + Location
  DELETE /whip/<id>           hang up (any call, also one made through /offer)
  POST /whep/<id>             WHEP egress: the translated audio (and delayed video) of <id>
  DELETE /whep/<id>/<viewer>  stop watching
  GET  /captions/<id>         captions and stats as Server-Sent Events (for WHIP callers
                              without a data channel, e.g. OBS)
  POST /rooms/<room>/join?lang=en&name=Ana   a translated video call, WHIP shape
  DELETE /rooms/<room>/<id>   leave the room
  GET  /ws?source=&target=&rate=    raw PCM16 over a WebSocket (transports/websocket.py)
  GET  /health, GET /stats    liveness (with the served languages); load figures
  GET  /languages             the language pairs served: engines and measured quality
  GET  /ice                   the STUN/TURN servers for the page's own connection

Errors are JSON ``{"error": code, "message": text}`` with a 4xx/5xx status, whatever the
endpoint; the server keeps serving everyone else."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import signal
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from babelcall.engines.languages import check_language, languages_payload
from babelcall.engines.registry import Engines
from babelcall.realtime.bounded import DropQueue
from babelcall.realtime.errors import BabelcallError, UnsupportedLanguage
from babelcall.realtime.scheduler import Scheduler
from babelcall.transports.hub import HUB, Hub, ServerConfig
from babelcall.transports.ingest import CallOptions, Ingest
from babelcall.transports.peer import ice_server
from babelcall.transports.rooms import Room
from babelcall.transports.signaling import (
    SignalingError,
    check_token,
    error_response,
    language,
    number,
    parse_offer,
    read_body,
)
from babelcall.transports.websocket import websocket_handler
from babelcall.transports.wire_guard import handler_args

log = logging.getLogger(__name__)
BROWSER = Path(__file__).resolve().parent.parent / "clients" / "browser"
PUBLIC = {"/", "/client.js", "/favicon.svg", "/favicon.ico", "/health", "/languages"}
ROOM_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")  # fullmatch: "$" would let "name\n" through
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(engines: Engines, config: ServerConfig | None = None, *,
               scheduler: Scheduler | None = None) -> web.Application:
    """The server application. Pass ``scheduler`` to share one that is already running;
    otherwise the app creates and closes its own."""
    hub = Hub(engines, config, scheduler=scheduler)
    app = web.Application(middlewares=[_errors, _auth])
    app[HUB] = hub
    app.router.add_get("/", _page("index.html", "text/html"))
    app.router.add_get("/client.js", _page("client.js", "application/javascript"))
    for icon in ("/favicon.svg", "/favicon.ico"):  # browsers ask for /favicon.ico on their own
        app.router.add_get(icon, _page("favicon.svg", "image/svg+xml"))
    app.router.add_get("/health", health)
    app.router.add_get("/ice", ice)
    app.router.add_get("/stats", stats)
    app.router.add_get("/languages", languages)
    app.router.add_post("/offer", offer)
    app.router.add_post("/whip", whip)
    app.router.add_delete("/whip/{id}", hang_up)
    app.router.add_post("/whep/{id}", whep)
    app.router.add_delete("/whep/{id}/{viewer}", whep_stop)
    app.router.add_get("/captions/{id}", captions)
    app.router.add_post("/rooms/{room}/join", room_join)
    app.router.add_delete("/rooms/{room}/{id}", room_leave)
    app.router.add_get("/ws", websocket_handler)
    app.on_startup.append(lambda app: app[HUB].start())
    app.on_shutdown.append(lambda app: app[HUB].close())
    return app


# -- middlewares --------------------------------------------------------------------------
@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    cors = request.app[HUB].config.cors_origin
    try:
        if request.method == "OPTIONS" and cors:
            response: web.StreamResponse = web.Response(status=204, headers={
                "Access-Control-Allow-Methods": "GET, POST, DELETE, OPTIONS",
                "Access-Control-Allow-Headers": "Authorization, Content-Type"})
        else:
            response = await handler(request)
    except SignalingError as exc:
        headers = {"Retry-After": "10"} if exc.status == 503 else None
        response = error_response(exc.status, exc.code, str(exc), headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error_response(exc.status, re.sub(r"\W+", "_", exc.reason.lower()),
                                  exc.text or exc.reason)
    except BabelcallError as exc:
        response = error_response(400, "bad_request", str(exc))
    except Exception:
        log.exception("error handling %s %s", request.method, request.path)
        response = error_response(500, "internal", "internal server error (see the log)")
    if cors and not response.prepared:
        response.headers["Access-Control-Allow-Origin"] = cors
        response.headers["Access-Control-Expose-Headers"] = "Location"
    return response


@web.middleware
async def _auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path not in PUBLIC:
        check_token(request, request.app[HUB].config.token)
    return await handler(request)


# -- pages and status ---------------------------------------------------------------------
def _page(name: str, content_type: str) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(BROWSER / name, headers={"Content-Type": content_type,
                                                         "Cache-Control": "no-cache"})
    return handler


async def health(request: web.Request) -> web.Response:
    served = languages_payload(request.app[HUB].engines)
    return web.json_response({"status": "ok", "languages": served["languages"],
                              "pairs": [f"{p['source']}-{p['target']}" for p in served["pairs"]]})


async def languages(request: web.Request) -> web.Response:
    """The pairs this server serves, for the page's language pickers (engines/languages.py)."""
    return web.json_response(languages_payload(request.app[HUB].engines))


async def ice(request: web.Request) -> web.Response:
    """The STUN/TURN servers (with credentials) for the page's own RTCPeerConnection: behind
    the token, as they are the server's TURN credentials."""
    servers = [ice_server(u) for u in request.app[HUB].config.ice_servers]
    return web.json_response({"iceServers": servers})


async def stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[HUB].metrics())


# -- calls ----------------------------------------------------------------------------------
def call_options(params: dict[str, Any], config: ServerConfig) -> CallOptions:
    """``params``: the query string, or the query and the JSON body of ``/offer`` (so any JSON
    type can arrive here)."""
    mix = number(params, "mix", 0.0, 0.0, 1.0)
    idle = params.get("mix_idle")
    return CallOptions(
        source=language(_or_default(params.get("source"), config.source), "source"),
        target=language(_or_default(params.get("target"), config.target), "target"),
        mix=mix, mix_idle=None if idle in (None, "") else number(params, "mix_idle", mix, 0, 1),
        video_delay_s=_video_delay(params),
        echo_guard=str(params.get("echo_guard", "")).lower() in ("1", "true", "yes", "on"),
        voice=_voice(params.get("voice")))


def _video_delay(params: dict[str, Any]) -> float | None:
    """``video_delay_ms``: absent or "auto" follows the translation's lag, "live" or 0 none,
    a number fixes it (at most 3000)."""
    value = params.get("video_delay_ms")
    if value in (None, "", "auto"):
        return None
    if value == "live":
        return 0.0
    return number(params, "video_delay_ms", 0.0, 0.0, 3000.0) / 1000


def _or_default(value: Any, default: str) -> Any:
    return default if value is None or value == "" else value


def _voice(value: Any) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str) or not re.fullmatch(r"[a-z]{2}_[a-z0-9]{1,30}", value):
        raise SignalingError(400, "bad_parameter", "'voice' must be a voice name like ef_dora")
    return value


def _name(value: str | None) -> str | None:
    """A participant's display name: 1-40 printable characters, spaces folded."""
    if value is None or not value.strip():
        return None
    name = " ".join(value.split())
    if len(name) > 40 or not name.isprintable():
        raise SignalingError(400, "bad_parameter", "'name' must be at most 40 printable "
                                                   "characters")
    return name


async def _sdp_body(request: web.Request) -> str:
    if request.content_type != "application/sdp":
        raise SignalingError(415, "bad_content_type", "send the SDP offer as "
                                                      "Content-Type: application/sdp")
    body = await read_body(request, request.app[HUB].config.max_sdp_bytes,
                           request.app[HUB].config.client_timeout_s)
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise SignalingError(400, "bad_sdp", "the SDP offer is not UTF-8 text") from None


def _sdp_answer(sdp: str, location: str) -> web.Response:
    return web.Response(status=201, text=sdp, content_type="application/sdp",
                        headers={"Location": location})


async def whip(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    offer_ = parse_offer(await _sdp_body(request), need_send=True, need_receive=False)
    ingest = Ingest(hub, offer_, call_options(dict(request.query), hub.config))
    answer = await ingest.open()
    return _sdp_answer(answer, f"/whip/{ingest.id}")


async def offer(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    body = await read_body(request, hub.config.max_sdp_bytes + 4096,
                           request.app[HUB].config.client_timeout_s)
    try:
        params = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: arrays nested thousands deep
        raise SignalingError(400, "bad_json", "the body must be JSON {sdp, type, source, "
                                              "target}") from None
    if not isinstance(params, dict) or not isinstance(params.get("sdp"), str) \
            or params.get("type", "offer") != "offer":
        raise SignalingError(400, "bad_json", "the body must be JSON {\"sdp\": ..., "
                                              "\"type\": \"offer\"}")
    try:
        sdp_bytes = len(params["sdp"].encode())
    except UnicodeEncodeError:  # "\ud800" in JSON decodes to a lone surrogate
        raise SignalingError(400, "bad_sdp", "the SDP offer is not valid Unicode text") \
            from None
    if sdp_bytes > hub.config.max_sdp_bytes:
        raise SignalingError(413, "too_large", f"the SDP offer is over the "
                                               f"{hub.config.max_sdp_bytes}-byte limit")
    offer_ = parse_offer(params["sdp"], need_send=True, need_receive=False)
    ingest = Ingest(hub, offer_, call_options({**request.query, **params}, hub.config))
    answer = await ingest.open()
    return web.json_response({"sdp": answer, "type": "answer", "session": ingest.id,
                              "location": f"/whip/{ingest.id}",
                              "rate": 48000, "source": ingest.options.source,
                              "target": ingest.options.target})


def _ingest(request: web.Request) -> Ingest:
    ingest = request.app[HUB].ingests.get(request.match_info["id"])
    if ingest is None:
        raise SignalingError(404, "unknown_session", "no such call (it ended, or the id is "
                                                     "wrong)")
    return ingest


async def hang_up(request: web.Request) -> web.Response:
    await _ingest(request).close()
    return web.json_response({"status": "closed"})


async def whep(request: web.Request) -> web.Response:
    ingest = _ingest(request)
    offer_ = parse_offer(await _sdp_body(request), need_send=False, need_receive=True)
    peer, answer = await ingest.add_viewer(offer_)
    return _sdp_answer(answer, f"/whep/{ingest.id}/{peer.id}")


async def whep_stop(request: web.Request) -> web.Response:
    ingest = _ingest(request)
    viewer = ingest.viewers.get(request.match_info["viewer"])
    if viewer is None:
        raise SignalingError(404, "unknown_session", "no such viewer")
    await viewer[0].close()
    return web.json_response({"status": "closed"})


async def captions(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: every caption/stats record of a call, until it ends."""
    ingest = _ingest(request)
    queue: DropQueue[dict[str, Any] | None] = DropQueue(1000, "sse")  # a stalled reader
    sink = queue.offer  # loses its oldest records (counted in /stats), never memory

    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache"})
    await response.prepare(request)
    ingest.link.add_sink(sink)
    closed = asyncio.ensure_future(ingest.link.finished.wait())
    try:
        while not ingest.closed:
            getter = asyncio.ensure_future(queue.get())
            await asyncio.wait({getter, closed}, return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():
                getter.cancel()
                break
            data = json.dumps(getter.result(), ensure_ascii=False)
            await response.write(f"data: {data}\n\n".encode())
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        closed.cancel()
        ingest.link.remove_sink(sink)
    return response


# -- rooms ----------------------------------------------------------------------------------
async def room_join(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    name = request.match_info["room"]
    if not ROOM_NAME.fullmatch(name):
        raise SignalingError(400, "bad_room", "room names are 1-64 letters, digits, - or _")
    lang = language(request.query.get("lang"), "lang")
    try:
        check_language(hub.engines, lang)
    except UnsupportedLanguage as exc:
        raise SignalingError(400, "unsupported_language", str(exc)) from None
    guard = request.query.get("echo_guard", "1").lower() not in ("0", "false", "no", "off")
    who = _name(request.query.get("name"))
    mix = number(request.query, "mix", 0.0, 0.0, 1.0)
    offer_ = parse_offer(await _sdp_body(request), need_send=True, need_receive=False)
    room = hub.room(name, lambda: Room(hub, name))
    try:
        pid, answer = await room.join(offer_, lang, name=who, echo_guard=guard, mix=mix)
    finally:
        if room.empty:  # nobody in it, nor joining it
            hub.drop_room(name)
    return _sdp_answer(answer, f"/rooms/{name}/{pid}")


async def room_leave(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    name, pid = request.match_info["room"], request.match_info["id"]
    room = hub.rooms.get(name)
    if room is None or not room.knows(pid):
        if (name, pid) in hub.left:  # gone already: the leave is done
            return web.json_response({"status": "closed"})
        raise SignalingError(404, "unknown_session", "no such participant in that room")
    await room.leave(pid)
    return web.json_response({"status": "closed"})


@dataclass
class Running:
    url: str
    hub: Hub
    app: web.Application


@contextlib.asynccontextmanager
async def running(engines: Engines, config: ServerConfig | None = None, host: str = "127.0.0.1",
                  port: int = 0, *, shutdown_timeout: float = 60.0,
                  ssl_context: ssl.SSLContext | None = None,
                  scheduler: Scheduler | None = None) -> AsyncIterator[Running]:
    """The server listening on ``host:port`` (0: a free port; https with ``ssl_context``)
    while the block runs; leaving it closes every call and session. Used by ``serve``, the
    benchmark's WebRTC loopback and tests (``scheduler``: see ``create_app``)."""
    app = create_app(engines, config, scheduler=scheduler)
    runner = web.AppRunner(app, shutdown_timeout=shutdown_timeout,
                           **handler_args(app[HUB].config.client_timeout_s))
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
        await site.start()
        bound = runner.addresses[0][1] if port == 0 else port
        scheme = "https" if ssl_context is not None else "http"
        yield Running(f"{scheme}://{host}:{bound}", app[HUB], app)
    finally:
        await runner.cleanup()


async def serve(engines: Engines, config: ServerConfig, host: str, port: int, *,
                ssl_context: ssl.SSLContext | None = None) -> None:
    """Run until SIGINT/SIGTERM (Ctrl-C, systemd, docker stop); shutdown closes every call and
    session before the process exits."""
    async with running(engines, config, host, port, ssl_context=ssl_context) as srv:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):  # not on Windows
                loop.add_signal_handler(sig, stop.set)
        print(f"babelcall: serving on {srv.url}/", flush=True)
        if host in ("0.0.0.0", "::") and ssl_context is not None:
            from babelcall.transports.tls import local_addresses

            for address in local_addresses():
                if address not in ("127.0.0.1", "::1") and ":" not in address:
                    print(f"babelcall: a video call on the LAN: https://{address}:{port}/"
                          "?room=demo", flush=True)
        try:
            await stop.wait()
        finally:
            print("babelcall: shutting down", flush=True)
