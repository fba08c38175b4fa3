"""Raw HTTP and WebSocket clients for the fuzz suite: they send what aiohttp's own client would
refuse to send (bytes that are not UTF-8 in a header, unmasked frames, broken chunking, one byte
at a time) and report exactly what came back."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import struct
from dataclasses import dataclass, field


@dataclass
class Reply:
    status: int | None  # None: the server closed without an HTTP answer
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    closed: bool = False  # the server closed the connection


async def _read_all(reader: asyncio.StreamReader, timeout: float) -> tuple[bytes, bool]:
    """Everything until the server closes, or what came within ``timeout``."""
    data = bytearray()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        left = deadline - loop.time()
        if left <= 0:
            return bytes(data), False
        try:
            chunk = await asyncio.wait_for(reader.read(65536), left)
        except TimeoutError:
            return bytes(data), False
        except ConnectionError:
            return bytes(data), True
        if not chunk:
            return bytes(data), True
        data += chunk
        head, sep, body = bytes(data).partition(b"\r\n\r\n")
        if sep:
            length = _content_length(head)
            if length is not None and len(body) >= length:
                return bytes(data), False


def _content_length(head: bytes) -> int | None:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            with contextlib.suppress(ValueError):
                return int(value.strip())
    return None


def parse_reply(data: bytes, closed: bool) -> Reply:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2) if lines and lines[0] else []
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        return Reply(None, closed=closed)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.decode("latin-1").strip().lower()] = value.decode("latin-1").strip()
    return Reply(int(parts[1]), headers, body, closed)


async def raw_http(port: int, chunks: list[bytes], *, gaps_s: float | list[float] = 0.0,
                   timeout: float = 5.0) -> Reply:
    """Send ``chunks`` (``gaps_s`` apart) on one connection, then read the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    gaps = gaps_s if isinstance(gaps_s, list) else [gaps_s] * len(chunks)
    try:
        for i, chunk in enumerate(chunks):
            if i and gaps[i - 1]:
                await asyncio.sleep(gaps[i - 1])
            writer.write(chunk)
            await writer.drain()
    except ConnectionError:
        pass  # the server refused and closed before the rest was sent: read its answer
    data, closed = await _read_all(reader, timeout)
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()
    return parse_reply(data, closed)


def request(method: str, path: str, body: bytes = b"", headers: dict[str, str | bytes]
            | None = None, *, length: bool = True) -> bytes:
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Connection: close"]
    for name, value in (headers or {}).items():
        lines.append(name.encode() + b": " + (value if isinstance(value, bytes)
                                                else value.encode()))
    if length and body is not None:
        lines.append(f"Content-Length: {len(body)}".encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")


# -- WebSocket ------------------------------------------------------------------------------
def frame(opcode: int, payload: bytes = b"", *, mask: bool = True, fin: bool = True,
          rsv: int = 0) -> bytes:
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    n = len(payload)
    bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack(">H", n)
    else:
        head += bytes([bit | 127]) + struct.pack(">Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


TEXT, BINARY, CLOSE, PING = 0x1, 0x2, 0x8, 0x9


@dataclass
class WsOutcome:
    status: int | None                  # the handshake's HTTP status
    texts: list[str] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str = ""
    closed: bool = False                # the TCP connection ended


class RawWebSocket:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 status: int | None, rest: bytes) -> None:
        self.reader, self.writer, self.status, self._buf = reader, writer, status, rest

    @classmethod
    async def open(cls, port: int, path: str, headers: dict[str, str] | None = None
                   ) -> RawWebSocket:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        hdrs = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": key,
                "Sec-WebSocket-Version": "13", **(headers or {})}
        lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1"]
        lines += [f"{k}: {v}" for k, v in hdrs.items() if v is not None]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await writer.drain()
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = await reader.read(4096)
            if not chunk:
                break
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        reply = parse_reply(head + b"\r\n\r\n", False)
        return cls(reader, writer, reply.status, rest)

    async def send(self, *frames: bytes) -> None:
        with contextlib.suppress(ConnectionError):
            for f in frames:
                self.writer.write(f)
                await self.writer.drain()

    async def _read(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = await self.reader.read(65536)
            if not chunk:
                raise EOFError
            self._buf += chunk
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    async def next_frame(self) -> tuple[int, bytes]:
        b0, b1 = await self._read(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack(">H", await self._read(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", await self._read(8))[0]
        return b0 & 0x0F, await self._read(n)

    async def until_close(self, timeout: float = 5.0, *, on_text=None) -> WsOutcome:
        """Read until the server's close frame (answered) or the end of the connection."""
        out = WsOutcome(self.status)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    op, payload = await self.next_frame()
                    if op == TEXT:
                        out.texts.append(payload.decode("utf-8", "replace"))
                        if on_text is not None:
                            await on_text(self, out.texts[-1])
                    elif op == CLOSE:
                        if len(payload) >= 2:
                            out.close_code = struct.unpack(">H", payload[:2])[0]
                            out.close_reason = payload[2:].decode("utf-8", "replace")
                        await self.send(frame(CLOSE, payload[:2]))
                        break
        except (EOFError, ConnectionError):
            out.closed = True
        except TimeoutError:
            pass
        if not out.closed:
            with contextlib.suppress(TimeoutError, EOFError, ConnectionError):
                async with asyncio.timeout(2):
                    out.closed = not await self.reader.read()
        await self.aclose()
        return out

    async def aclose(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()
