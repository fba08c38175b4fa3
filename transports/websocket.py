"""``GET /ws``: live translation over one WebSocket, for clients without WebRTC (telephony
bridges, scripts, embedded devices).

  -> config: ``?source=en&target=es&rate=16000`` on the URL, or a first text message
     ``{"type": "config", "source": "en", "target": "es", "rate": 16000}``
  <- ``{"type": "ready", "rate": 24000, "format": "s16le", "channels": 1, ...}``
  -> binary: raw PCM, signed 16-bit little-endian mono at the declared rate (any size up to
     the limit; 20 ms is typical)
  <- binary: translated speech, PCM s16le mono at the "ready" rate, as soon as it is made
  <- text: JSON captions and stats (the records of the data channel), errors
  -> ``{"type": "end"}``: no more audio; the rest of the translation follows, then
     ``{"type": "done", ...}`` and a normal close (1000)

Bad input gets ``{"type": "error", "error": code, "message": ...}`` and a close: 1008 for a
bad config or limits, 1003 for data that is not PCM16 or JSON, 1009 for a message over the
size limit (text messages: ``MAX_TEXT_BYTES``), 1002 for a broken frame (client frames must be
masked), 1013 when the server is full, 1011 for a server bug (logged with its traceback).
A client may send faster than real time (a file): beyond ``ws_max_ahead_s`` ahead the server
stops reading until real time catches up (TCP backpressure), so an upload cannot queue
unbounded work.

This uses aiohttp's WebSocket rather than the ``websockets`` library so that the socket shares
the server's port, token check, limits and shutdown with the WebRTC endpoints and the page."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import numpy as np
from aiohttp import WSMsgType, web

from babelcall.realtime.bounded import DropQueue
from babelcall.realtime.clock import Clock
from babelcall.realtime.errors import BabelcallError, SessionClosed
from babelcall.realtime.playout import PlayoutClock
from babelcall.realtime.tasks import cancel_and_wait
from babelcall.realtime.types import SynthAudio
from babelcall.transports.hub import HUB
from babelcall.transports.link import Link
from babelcall.transports.signaling import SignalingError, language
from babelcall.transports.wire_guard import StrictWebSocketResponse

log = logging.getLogger(__name__)
ENCODED = (b"RIFF", b"OggS", b"ID3", b"fLaC", b"\x1aE\xdf\xa3", b"\x00\x00\x00\x1cftyp")
MIN_RATE, MAX_RATE = 8000, 192000
MAX_TEXT_BYTES = 4096  # a config, end or ping message is well under 200 bytes
# what waits to be written to a client that reads slowly (speech chunks, captions, stats at
# 1/s): beyond it the oldest is dropped and counted (``ws_out`` in /stats)
MAX_OUT_ITEMS = 256


class ProtocolError(Exception):
    def __init__(self, close_code: int, code: str, message: str) -> None:
        super().__init__(message)
        self.close_code, self.code = close_code, code


def parse_config(params: dict[str, Any]) -> tuple[str, str, int]:
    try:
        source = language(params.get("source"), "source")
        target = language(params.get("target"), "target")
    except SignalingError as exc:
        raise ProtocolError(1008, exc.code, str(exc)) from None
    raw = params.get("rate", 16000)
    # isdigit() is also true of "²" and other digits int() refuses; a rate has 6 at most
    whole = isinstance(raw, int) and not isinstance(raw, bool) or \
        isinstance(raw, str) and raw.strip().isascii() and raw.strip().isdigit() \
        and len(raw.strip()) <= 6
    rate = int(raw) if whole else 0
    if not MIN_RATE <= rate <= MAX_RATE:
        raise ProtocolError(1008, "bad_rate", f"'rate' must be a whole number of Hz within "
                                              f"[{MIN_RATE}, {MAX_RATE}], got {str(raw)[:20]!r}")
    return source, target, rate


class _Bucket:
    """Messages per second, with a burst of twice that."""

    def __init__(self, rate: float, clock: Clock) -> None:
        self.clock = clock
        self.rate, self.tokens, self.t = rate, 2 * rate, clock.now_ns() / 1e9

    def take(self) -> bool:
        now = self.clock.now_ns() / 1e9
        self.tokens = min(2 * self.rate, self.tokens + (now - self.t) * self.rate)
        self.t = now
        self.tokens -= 1
        return self.tokens >= 0


async def websocket_handler(request: web.Request) -> web.WebSocketResponse:
    hub = request.app[HUB]
    cfg = hub.config
    ws = StrictWebSocketResponse(heartbeat=30, max_msg_size=4 * cfg.max_ws_message_bytes)
    await ws.prepare(request)
    out: DropQueue[str | bytes | None] = DropQueue(MAX_OUT_ITEMS, "ws_out")
    writer = asyncio.create_task(_write(ws, out))
    unregister = hub.on_close(lambda: ws.close(code=1001, message=b"server shutting down"))
    link: Link | None = None

    def send(rec: dict[str, Any]) -> None:
        out.put_nowait(json.dumps(rec, ensure_ascii=False, separators=(",", ":")))

    try:
        params = dict(request.query)
        if "source" not in params or "target" not in params:
            params = await _first_config(ws, cfg.client_timeout_s)
        source, target, rate = parse_config(params)
        try:
            session = hub.new_session(source, target)
        except SignalingError as exc:
            raise ProtocolError(1013 if exc.status == 503 else 1008, exc.code, str(exc)) \
                from None
        link = Link(session, max_ahead_s=cfg.ws_max_ahead_s, hard_cap_s=cfg.ws_hard_cap_s)
        play = PlayoutClock()  # what the client, playing our audio as it comes, has queued
        now_ns = session.clock.now_ns
        link.backlog = lambda: play.backlog_s(now_ns())

        def speech(ev: SynthAudio) -> None:
            play.place(now_ns(), ev.duration)
            out.put_nowait((np.clip(ev.pcm, -1, 1) * 32767).astype("<i2").tobytes())

        link.audio_sinks.append(speech)
        link.add_sink(send)
        link.start()
        send({"type": "ready", "session": session.id, "rate": hub.engines.tts.sample_rate,
              "format": "s16le", "channels": 1, "input_rate": rate, "source": source,
              "target": target})
        if await _read(ws, link, rate, cfg.max_ws_message_bytes, cfg.max_ws_messages_per_s,
                       send):
            await link.end()
            out.put_nowait(None)
            await writer
            await ws.close(code=1000, message=b"done")
    except ProtocolError as exc:
        await _refuse(ws, out, writer, exc)
    except Exception:  # a bug: the socket is upgraded, an HTTP 500 can no longer be sent
        log.exception("websocket %s failed", request.path_qs[:200])
        await _refuse(ws, out, writer, ProtocolError(1011, "internal",
                                                     "internal server error (see the log)"))
    finally:
        unregister()
        if link is not None:
            await link.close()
        await cancel_and_wait([writer])
        await ws.linger()  # a refused client reads its close frame before the socket goes
    return ws


async def _refuse(ws: web.WebSocketResponse, out: asyncio.Queue[str | bytes | None],
                  writer: asyncio.Task[None], exc: ProtocolError) -> None:
    """The error as a last JSON message, then a close with its code and reason."""
    out.put_nowait(json.dumps({"type": "error", "error": exc.code, "message": str(exc)}))
    out.put_nowait(None)
    with contextlib.suppress(TimeoutError):  # a client that stopped reading gets no reason
        async with asyncio.timeout(2.0):
            await writer
    await ws.close(code=exc.close_code, message=exc.code.encode()[:100])


def _broken(msg: Any, max_bytes: int) -> ProtocolError:
    """The ProtocolError for an ERROR message (aiohttp already closed with its code)."""
    code = getattr(msg.data, "code", 1002)
    if code == 1009:
        return ProtocolError(1009, "too_large", f"message over the {max_bytes}-byte limit")
    return ProtocolError(int(code), "bad_frame", str(msg.data)[:200] or "broken WebSocket frame")


def _text(msg: Any) -> dict[str, Any]:
    if len(msg.data) > MAX_TEXT_BYTES:
        raise ProtocolError(1009, "too_large", f"text message of {len(msg.data)} characters; "
                                               f"the limit is {MAX_TEXT_BYTES}")
    return _json(msg.data)


async def _first_config(ws: web.WebSocketResponse, timeout_s: float) -> dict[str, Any]:
    try:
        msg = await ws.receive(timeout=timeout_s)
    except TimeoutError:
        raise ProtocolError(1008, "bad_config", "no config: give source/target/rate on the "
                                                "URL or send a config message first") from None
    if msg.type == WSMsgType.ERROR:
        raise _broken(msg, MAX_TEXT_BYTES)
    if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
        raise ProtocolError(1000, "closed", "closed before sending a config")
    if msg.type != WSMsgType.TEXT:
        raise ProtocolError(1008, "bad_config", "the first message must be the JSON config "
                                                "(or put source/target/rate on the URL)")
    data = _text(msg)
    if data.get("type") != "config":
        raise ProtocolError(1008, "bad_config", "the first message must be "
                                                "{\"type\": \"config\", ...}")
    return data


def _json(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: arrays nested thousands deep
        data = None
    if not isinstance(data, dict):
        raise ProtocolError(1003, "bad_message", "text messages must be JSON objects")
    return data


async def _read(ws: web.WebSocketResponse, link: Link, rate: int, max_bytes: int,
                max_per_s: float, send: Any) -> bool:
    """Audio into the session until the client ends (True), closes (False) or breaks the
    protocol (ProtocolError). Far ahead of real time, it stops reading for a while (TCP
    backpressure); what still arrives beyond the hard cap is dropped and counted."""
    bucket = _Bucket(max_per_s, link.clock)
    first = True
    while True:
        await link.inbound.wait()
        msg = await ws.receive()
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
            return False
        if msg.type == WSMsgType.ERROR:
            raise _broken(msg, max_bytes)
        if not bucket.take():
            raise ProtocolError(1008, "too_many_messages",
                                f"more than {max_per_s:.0f} messages a second")
        if msg.type == WSMsgType.TEXT:
            data = _text(msg)
            kind = data.get("type")
            if kind == "end":
                return True
            if kind == "ping":  # echo a timestamp, never an arbitrary payload
                t = data.get("t")
                number = isinstance(t, int | float) and not isinstance(t, bool)
                send({"type": "pong", "t": t if number else None})
                continue
            raise ProtocolError(1003, "bad_message", f"unknown message type {kind!r} "
                                                     "(expected end or ping)")
        if msg.type != WSMsgType.BINARY:
            continue
        data = msg.data
        if len(data) > max_bytes:
            raise ProtocolError(1009, "too_large", f"binary message of {len(data)} bytes; "
                                                   f"the limit is {max_bytes}")
        if first and data.startswith(ENCODED):
            raise ProtocolError(1003, "not_pcm", "this looks like an encoded file (WAV/Ogg/"
                                                 "MP3/FLAC/WebM/MP4); send raw PCM s16le")
        if len(data) % 2:
            raise ProtocolError(1003, "not_pcm", f"binary message of {len(data)} bytes: "
                                                 "PCM s16le needs an even number of bytes")
        first = False
        pcm = np.frombuffer(data, dtype="<i2").astype(np.int16)
        try:
            link.inbound.pcm(pcm, rate)
        except SessionClosed as exc:  # ended by a fault (the client saw its error event)
            raise ProtocolError(1011, "session_failed", str(exc)) from None
        except BabelcallError as exc:
            raise ProtocolError(1003, "bad_audio", str(exc)) from None


async def _write(ws: web.WebSocketResponse, out: asyncio.Queue[str | bytes | None]) -> None:
    """The only task that writes to the socket (aiohttp sends must not interleave)."""
    with contextlib.suppress(ConnectionError, RuntimeError):
        while (item := await out.get()) is not None:
            if ws.closed:
                return
            if isinstance(item, bytes):
                await ws.send_bytes(item)
            else:
                await ws.send_str(item)
