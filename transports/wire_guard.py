"""What aiohttp leaves to the application on the raw wire, and babelcall enforces.

- **Slow clients.** aiohttp has no timer for a request whose headers never finish
  (slow-loris: a client dribbling one header byte a second holds a socket and a task for
  ever). Its keep-alive timer already starts when a connection opens and closes it while no
  complete request has arrived, so ``CLIENT_TIMEOUT_S`` is passed as ``keepalive_timeout``:
  headers must be complete, and an idle keep-alive connection used again, within that time.
  The same limit applies to a request body (``signaling.read_body``: 408) and to a WebSocket's
  first config message.
- **Parser rejections log one line.** aiohttp answers a malformed request (bad chunk size, a
  10 KB header line, an HTTP/2 preface...) with 400 itself, then logs it with a full
  traceback, as if it were a server bug. ``handler_logger()`` turns those into one warning;
  real errors keep their traceback.
- **Masked client frames.** RFC 6455 §5.1: a server must close the connection when a client
  frame is not masked; aiohttp's reader accepts them. ``StrictWebSocketResponse`` reads the
  frame headers as they pass to aiohttp's parser and fails the socket with 1002 on the first
  unmasked frame. It reaches into aiohttp's private ``_post_start``/``_payload_parser``
  (through ``compat.py``, with everything else private babelcall uses)
  (checked against aiohttp 3.9-3.14); if those change, the guard switches itself off with a
  warning and tests/transports/test_fuzz.py fails on its unmasked-frame cases.
- **Lingering close.** aiohttp refuses a message over ``max_msg_size`` from its frame header,
  while the client is still sending the payload, writes its close frame and closes the socket
  at once. Closing a TCP socket with unread data (or data still arriving) makes the kernel
  answer with a reset, and a client that had not yet read the close frame loses it: it sees an
  abnormal close (1006) instead of 1009. ``StrictWebSocketResponse`` half-closes instead (FIN
  after the close frame), keeps reading and discarding, and ``linger()`` closes the socket
  once the client has closed its side (or after ``LINGER_S``), as HTTP servers do."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from typing import Any

from aiohttp import WSCloseCode, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.http_websocket import WebSocketError

from babelcall.transports import compat

log = logging.getLogger(__name__)
CLIENT_TIMEOUT_S = 10.0
LINGER_S = 2.0  # how long a refused client has to read our close frame and hang up
_REASONS = {1001: "going away", 1002: "protocol error", 1003: "unsupported data",
            1007: "invalid payload data", 1008: "policy violation", 1009: "message too big",
            1011: "internal error"}


class _OneLineRejections(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp's server logger, with malformed-request tracebacks cut to one line."""

    def exception(self, msg: object, *args: object, exc_info: Any = True,
                  **kwargs: Any) -> None:
        exc = exc_info if isinstance(exc_info, BaseException) else sys.exc_info()[1]
        if isinstance(exc, HttpProcessingError):
            detail = " ".join(str(exc.message or exc).split())[:200]  # one line
            self.warning(f"{msg} (refused with 400): %s: %s", *args, type(exc).__name__,
                         detail)
            return
        super().exception(msg, *args, exc_info=exc_info, **kwargs)


def handler_args(client_timeout_s: float = CLIENT_TIMEOUT_S) -> dict[str, Any]:
    """Keyword arguments for ``web.AppRunner`` (passed on to each connection's handler)."""
    return {"keepalive_timeout": client_timeout_s,
            "logger": _OneLineRejections(logging.getLogger("aiohttp.server"), {})}


class _MaskCheck:
    """Sits in front of aiohttp's WebSocket parser and follows the frame headers (payloads
    are skipped by length, not copied)."""

    def __init__(self, parser: Any, queue: Any) -> None:
        self.parser, self.queue = parser, queue
        self.failed = False
        self._header = bytearray()
        self._skip = 0  # payload bytes of the current frame still to pass

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        if self.failed:
            return True, b""
        if not self._scan(data):
            self.failed = True
            self.queue.set_exception(WebSocketError(
                WSCloseCode.PROTOCOL_ERROR, "client frames must be masked (RFC 6455 5.1)"))
            return True, b""
        return self.parser.feed_data(data)  # type: ignore[no-any-return]

    def _scan(self, data: bytes) -> bool:
        i, n = 0, len(data)
        while i < n:
            if self._skip:
                step = min(self._skip, n - i)
                self._skip -= step
                i += step
                continue
            self._header.append(data[i])
            i += 1
            h = self._header
            if len(h) < 2:
                continue
            if not h[1] & 0x80:
                return False
            length = h[1] & 0x7F
            extra = 2 if length == 126 else 8 if length == 127 else 0
            if len(h) < 2 + extra + 4:
                continue
            if extra:
                length = int.from_bytes(h[2:2 + extra], "big")
            self._skip = length
            self._header.clear()
        return True

    def feed_eof(self) -> None:
        self.parser.feed_eof()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.parser, name)


class StrictWebSocketResponse(web.WebSocketResponse):
    """aiohttp's WebSocket with masked client frames enforced, and a reason on every error
    close (aiohttp closes a broken stream with its code but an empty reason), closed
    lingering after a refused frame (the handler awaits ``linger()`` before it returns)."""

    _lingering: Any = None  # the transport half-closed after a refused frame

    def _close_transport(self) -> None:
        """After a refused frame (the reader failed) half-close instead of closing: see the
        module's "Lingering close". A clean close handshake closes at once, as aiohttp does."""
        reader = getattr(self, "_reader", None)
        req = getattr(self, "_req", None)
        transport = req.transport if req is not None else None
        if transport is None or reader is None or reader.exception() is None \
                or transport.is_closing():
            super()._close_transport()
            return
        self._lingering = transport
        if transport.can_write_eof():  # TLS cannot half-close: the close frame must do
            transport.write_eof()

    async def linger(self, timeout_s: float = LINGER_S) -> None:
        """Close a half-closed socket once the client has closed its side, or after
        ``timeout_s``; what it still sends meanwhile is read and dropped by aiohttp."""
        transport, self._lingering = self._lingering, None
        if transport is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while not transport.is_closing():  # the client's FIN closes it
                    await asyncio.sleep(0.02)
        transport.close()

    async def close(self, *, code: int = WSCloseCode.OK, message: bytes = b"",
                    drain: bool = True) -> bool:
        if not message and code != WSCloseCode.OK:
            reader = getattr(self, "_reader", None)
            exc = reader.exception() if reader is not None else None
            message = (str(exc) if exc else _REASONS.get(code, "error")).encode()[:120]
        return await super().close(code=code, message=message, drain=drain)

    def _post_start(self, request: web.BaseRequest, protocol: str | None,
                    writer: Any) -> None:
        handler = request.protocol
        tail = compat.take_message_tail(handler)  # the upgrade's frames: through the check
        if tail is None or not hasattr(handler, "_payload_parser"):  # (compat.REQUIRED)
            log.warning("aiohttp internals changed: client frame masking is not checked")
            super()._post_start(request, protocol, writer)
            return
        super()._post_start(request, protocol, writer)
        check = _MaskCheck(compat.payload_parser(handler), self._reader)
        compat.set_payload_parser(handler, check)
        if tail:
            check.feed_data(tail)
