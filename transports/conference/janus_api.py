"""The Janus core API (janus.conf.meetecho.com) over its WebSocket: transactions, event
routing and keep-alives. ``janus.py`` builds the VideoRoom on top of it.

The API is a small request/response protocol on one WebSocket (subprotocol ``janus-protocol``):
``create`` a session, ``attach`` one handle per PeerConnection to a plugin, send plugin
``message``s (each with a ``transaction`` that its reply carries back: first an ``ack``, then
the ``event`` for asynchronous requests, or one ``success`` for synchronous ones) and
``keepalive`` the session more often than its ``session_timeout``. Events without a pending
transaction are routed to their handle by ``sender``. Closing the WebSocket makes Janus drop
the session at once; a client that hangs without closing is dropped after the server's
``session_timeout``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from babelcall.realtime.tasks import cancel_and_wait
from babelcall.transports.conference.base import (
    ConferenceError,
    ConnectionLost,
    NotAuthorized,
    RoomNotFound,
    ServerUnreachable,
)

log = logging.getLogger(__name__)
PROTOCOL = "janus-protocol"
VIDEOROOM = "janus.plugin.videoroom"
MAX_KEEPALIVE_S = 25.0

# Janus core and VideoRoom error codes that have a clearer name for the user.
_NO_SUCH_ROOM = 426
_UNAUTHORIZED = (403, 405, 433)  # core: bad secret/token; VideoRoom: wrong pin


class JanusError(ConferenceError):
    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


def parse_url(url: str) -> tuple[str, int | str | None]:
    """``janus+ws://host:8188/1234`` -> (``ws://host:8188``, 1234). The room is optional (the
    worker serves many); numeric rooms are ints, as Janus compares them by type."""
    parts = urlsplit(url)
    scheme = parts.scheme.removeprefix("janus+")
    if scheme not in ("ws", "wss") or not parts.hostname:
        raise ConferenceError(f"{url}: expected janus+ws://HOST:PORT/ROOM (or janus+wss://)")
    try:
        port = parts.port
    except ValueError as exc:
        raise ConferenceError(f"{url}: bad port") from exc
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    base = f"{scheme}://{host}:{port or 8188}"
    name = parts.path.strip("/")
    if "/" in name:
        raise ConferenceError(f"{url}: the path is the room id only, got '{name}'")
    room: int | str | None = (int(name) if name.isdigit() else name) if name else None
    return base, room


def _error(code: int | None, reason: str, what: str) -> ConferenceError:
    if code == _NO_SUCH_ROOM:
        return RoomNotFound(f"{what}: {reason}")
    if code in _UNAUTHORIZED:
        return NotAuthorized(f"{what}: {reason} (check --pin, --secret or --token)")
    return JanusError(f"{what}: Janus error {code}: {reason}", code)


class JanusSession:
    """One Janus session on one WebSocket: transactions, event routing and keepalives."""

    def __init__(self, url: str, *, token: str | None = None, apisecret: str | None = None,
                 request_timeout_s: float = 10.0) -> None:
        self.url = url
        self.token = token
        self.apisecret = apisecret
        self.request_timeout_s = request_timeout_s
        self.id: int | None = None
        self.keepalive_s = MAX_KEEPALIVE_S
        self.closed = False
        self.lost_reason: str | None = None
        self.on_lost: Callable[[str], None] | None = None
        self.handles: dict[int, JanusHandle] = {}
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._pending: dict[str, tuple[asyncio.Future[dict[str, Any]], bool]] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def connect(self) -> None:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        try:
            self._ws = await self._http.ws_connect(self.url, protocols=(PROTOCOL,),
                                                   max_msg_size=8 * 1024 * 1024)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            await self._http.close()
            self.closed = True
            raise ServerUnreachable(f"cannot reach Janus at {self.url}: "
                                    f"{exc or type(exc).__name__}") from exc
        if self._ws.protocol != PROTOCOL:
            await self.close()
            raise ServerUnreachable(f"{self.url} is not a Janus WebSocket API "
                                    f"(no '{PROTOCOL}' subprotocol)")
        self._tasks.append(asyncio.create_task(self._read(), name="janus-read"))
        try:
            info = await self.request({"janus": "info"}, what="Janus info")
            if VIDEOROOM not in info.get("plugins", {}):
                raise ConferenceError(f"Janus at {self.url} has no VideoRoom plugin")
            timeout = float(info.get("session-timeout") or 0)
            if timeout > 0:  # three keepalives per timeout: one may be late, two more follow
                self.keepalive_s = min(MAX_KEEPALIVE_S, max(0.5, timeout / 3))
            created = await self.request({"janus": "create"}, what="create a Janus session")
            self.id = int(created["data"]["id"])
        except BaseException:
            await self.close()
            raise
        self._tasks.append(asyncio.create_task(self._keepalive(), name="janus-keepalive"))

    async def attach(self, plugin: str = VIDEOROOM,
                     on_event: Callable[[dict[str, Any]], None] | None = None) -> JanusHandle:
        reply = await self.request({"janus": "attach", "plugin": plugin},
                                   what=f"attach to {plugin}")
        handle = JanusHandle(self, int(reply["data"]["id"]), on_event)
        self.handles[handle.id] = handle
        return handle

    async def request(self, msg: dict[str, Any], *, handle: int | None = None,
                      ack_only: bool = False, what: str = "request",
                      timeout_s: float | None = None) -> dict[str, Any]:
        """Send ``msg`` and return its final reply (``success`` or ``event``; ``ack`` for
        keepalives and trickles); Janus and plugin errors raise ConferenceError."""
        if self.closed or self._ws is None:
            raise ConnectionLost(f"the connection to Janus at {self.url} is closed"
                                 + (f" ({self.lost_reason})" if self.lost_reason else ""))
        tx = secrets.token_hex(8)
        msg = {**msg, "transaction": tx}
        if self.id is not None and msg["janus"] not in ("info", "create"):
            msg["session_id"] = self.id
        if handle is not None:
            msg["handle_id"] = handle
        if self.token:
            msg["token"] = self.token
        if self.apisecret:
            msg["apisecret"] = self.apisecret
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[tx] = (fut, ack_only)
        try:
            try:
                await self._ws.send_str(json.dumps(msg))
            except (ConnectionError, RuntimeError, aiohttp.ClientError) as exc:
                self._lost(f"send failed: {exc}")
                raise ConnectionLost(f"the connection to Janus at {self.url} is lost") from exc
            try:
                async with asyncio.timeout(timeout_s or self.request_timeout_s):
                    reply = await fut
            except TimeoutError:
                raise JanusError(f"{what}: Janus at {self.url} did not answer within "
                                 f"{timeout_s or self.request_timeout_s:.0f} s") from None
        finally:
            self._pending.pop(tx, None)
        if reply.get("janus") == "error":
            err = reply.get("error", {})
            raise _error(err.get("code"), err.get("reason", "unknown error"), what)
        data = reply.get("plugindata", {}).get("data", {})
        if "error_code" in data or "error" in data:
            raise _error(data.get("error_code"), data.get("error", "unknown error"), what)
        return reply

    async def close(self) -> None:
        """End the session politely (``destroy``) and close the socket; idempotent."""
        if not self.closed and self.id is not None:
            with contextlib.suppress(ConferenceError):
                await self.request({"janus": "destroy"}, what="destroy", timeout_s=2)
        await self._shutdown("closed by us")

    async def _shutdown(self, reason: str) -> None:
        self._lost(reason, notify=False)
        await cancel_and_wait(self._tasks)
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        if self._http is not None:
            with contextlib.suppress(Exception):
                await self._http.close()

    # -- internals ----------------------------------------------------------------------
    def _lost(self, reason: str, notify: bool = True) -> None:
        if self.closed:
            return
        self.closed = True
        self.lost_reason = reason
        for fut, _ in self._pending.values():
            if not fut.done():
                fut.set_exception(ConnectionLost(f"the connection to Janus at {self.url} "
                                                 f"was lost ({reason})"))
        if notify and self.on_lost is not None:
            self.on_lost(reason)

    async def _read(self) -> None:
        assert self._ws is not None
        reason = "Janus closed the connection"
        try:
            async for m in self._ws:
                if m.type == aiohttp.WSMsgType.TEXT:
                    try:
                        msg = json.loads(m.data)
                    except ValueError:
                        log.warning("janus: not JSON: %.200s", m.data)
                        continue
                    self._dispatch(msg)
                elif m.type == aiohttp.WSMsgType.ERROR:
                    reason = f"WebSocket error: {self._ws.exception()}"
                    break
        except Exception as exc:  # a reset connection
            reason = f"{type(exc).__name__}: {exc}"
        self._lost(reason)

    def _dispatch(self, msg: dict[str, Any]) -> None:
        kind = msg.get("janus")
        pending = self._pending.get(msg.get("transaction", ""))
        if pending is not None and (kind != "ack" or pending[1]):
            if not pending[0].done():
                pending[0].set_result(msg)
            return
        if kind == "ack":
            return
        if kind == "timeout":
            self._lost("the Janus session timed out")
            return
        handle = self.handles.get(msg.get("sender", -1))
        if handle is not None:
            handle.dispatch(msg)
        else:
            log.debug("janus: unrouted %s", kind)

    async def _keepalive(self) -> None:
        while not self.closed:
            await asyncio.sleep(self.keepalive_s)
            try:
                await self.request({"janus": "keepalive"}, ack_only=True, what="keepalive")
            except ConnectionLost:
                return
            except ConferenceError as exc:
                log.warning("janus keepalive: %s", exc)


class JanusHandle:
    """One plugin handle: ``message`` a plugin request (with an optional JSEP)."""

    def __init__(self, session: JanusSession, handle_id: int,
                 on_event: Callable[[dict[str, Any]], None] | None) -> None:
        self.session = session
        self.id = handle_id
        self.on_event = on_event
        self.detached = False

    async def message(self, body: dict[str, Any], jsep: dict[str, Any] | None = None, *,
                      what: str = "request", timeout_s: float | None = None,
                      ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        msg: dict[str, Any] = {"janus": "message", "body": body}
        if jsep is not None:
            msg["jsep"] = jsep
        reply = await self.session.request(msg, handle=self.id, what=what, timeout_s=timeout_s)
        return reply.get("plugindata", {}).get("data", {}), reply.get("jsep")

    def dispatch(self, msg: dict[str, Any]) -> None:
        if msg.get("janus") == "detached":
            self.detached = True
        if self.on_event is not None:
            try:
                self.on_event(msg)
            except Exception:
                log.exception("janus event handler failed")

    async def detach(self) -> None:
        self.session.handles.pop(self.id, None)
        if self.detached or self.session.closed:
            return
        self.detached = True
        with contextlib.suppress(ConferenceError):
            await self.session.request({"janus": "detach"}, handle=self.id, what="detach",
                                       timeout_s=3)


