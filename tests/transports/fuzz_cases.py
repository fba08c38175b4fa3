"""The fuzz suite's cases: systematic (every field x every JSON type, every frame rule...) plus
seeded random mutations. Each case is a coroutine that talks to the server and raises
AssertionError when the answer is not clean; tests/transports/test_fuzz.py adds the checks
every case shares (no traceback, no leaked session, still serving, RSS bounded)."""

from __future__ import annotations

import asyncio
import json
import random
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fuzz_wire import (
    BINARY,
    CLOSE,
    PING,
    TEXT,
    RawWebSocket,
    Reply,
    frame,
    raw_http,
    request,
)

TOKEN = "fuzz-t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SDP_CT = {**AUTH, "Content-Type": "application/sdp"}
SEED = 15


@dataclass
class Ctx:
    port: int
    sdp: str  # a valid aiortc offer (sendrecv audio + data channel)
    client_timeout_s: float


@dataclass(frozen=True)
class Case:
    id: str
    run: Callable[[Ctx], Awaitable[None]] | None
    group: str
    timeout_s: float = 5.0


# -- outcome checks ---------------------------------------------------------------------------
async def hang_up(ctx: Ctx, location: str) -> None:
    """404: it ended meanwhile (a concurrent hang-up); whether it is gone is checked after
    every case."""
    reply = await raw_http(ctx.port, [request("DELETE", location, b"", AUTH)])
    assert reply.status in (200, 404), (location, reply.status, reply.body[:200])


async def clean(ctx: Ctx, reply: Reply, what: str, *, may_succeed: bool = False) -> None:
    """A 4xx (JSON ``{error, message}`` when babelcall answered, aiohttp's own text for a
    request its parser refused), or, where the input may be valid, a 2xx whose call is hung
    up at once. Never a 5xx, never silence."""
    status = reply.status
    assert status is not None, f"{what}: no HTTP answer (connection closed: {reply.closed})"
    assert status < 500, f"{what}: {status} {reply.body[:300]!r}"
    if 200 <= status < 300:
        location = reply.headers.get("location")
        if location is None and reply.body.startswith(b"{"):
            location = json.loads(reply.body).get("location")
        if location is not None and status in (200, 201) and what.startswith("POST"):
            await hang_up(ctx, location)  # first: a wrong acceptance must not leak a call
        assert may_succeed, f"{what}: accepted ({status}) {reply.body[:200]!r}"
        return
    assert 400 <= status < 500, f"{what}: {status}"
    if reply.headers.get("content-type", "").startswith("application/json"):
        body = json.loads(reply.body)
        assert body.get("error") and body.get("message"), (what, body)


async def http(ctx: Ctx, method: str, path: str, body: bytes = b"",
               headers: dict[str, Any] | None = None, *, may_succeed: bool = False,
               expect: int | tuple[int, ...] | None = None) -> Reply:
    reply = await raw_http(ctx.port, [request(method, path, body, headers)])
    await clean(ctx, reply, f"{method} {path[:80]}", may_succeed=may_succeed)
    if expect is not None:
        allowed = expect if isinstance(expect, tuple) else (expect,)
        assert reply.status in allowed, (method, path[:80], reply.status, reply.body[:200])
    return reply


def case(group: str, cid: str, fn: Callable[[Ctx], Awaitable[Any]],
         timeout_s: float = 5.0) -> Case:
    async def run(ctx: Ctx) -> None:
        await fn(ctx)
    return Case(f"{group}-{cid}", run, group, timeout_s)


# -- /offer JSON: every field x every JSON type ------------------------------------------
JSON_VALUES: list[tuple[str, Any]] = [
    ("int0", 0), ("int1", 1), ("neg", -1), ("bigint", 2**70), ("float", 1.5),
    ("hugefloat", 1e308), ("true", True), ("false", False), ("null", None), ("list", []),
    ("list_en", ["en"]), ("dict", {}), ("dict_en", {"en": "es"}), ("nested", [[[["en"]]]]),
    ("empty", ""), ("superscript2", "²"), ("digits5000", "9" * 5000),
    ("lone_surrogate", "\ud800"), ("newline", "en\n"), ("long", "x" * 10000),
    ("nan", float("nan")), ("inf", float("inf")), ("nul", "e\x00n"), ("rtl", "\u202een"),
]
FIELDS = ["source", "target", "mix", "mix_idle", "video_delay_ms", "voice", "echo_guard",
          "type", "sdp"]


def _valid_option(field: str, value: Any) -> bool:
    """Whether babelcall must accept ``field: value`` (everything else must be a 4xx)."""
    if field == "echo_guard":
        return True  # any value: on when it reads as 1/true/yes/on
    if field in ("sdp", "type"):
        return False
    if value is None or value == "":
        return True  # the default
    if field == "source" and isinstance(value, str):
        return value.strip().lower() == "en"  # surrounding whitespace is forgiven
    if field in ("mix", "mix_idle"):
        return isinstance(value, int | float) and value in (0, 1)
    if field == "video_delay_ms":
        return isinstance(value, int | float) and 0 <= value <= 5000
    return False


def offer_type_cases() -> list[Case]:
    out = []
    for field in FIELDS:
        for name, value in JSON_VALUES:
            def run(ctx: Ctx, field: str = field, value: Any = value) -> Awaitable[Reply]:
                body = {"sdp": ctx.sdp, "type": "offer", "source": "en", "target": "es",
                        field: value}
                return http(ctx, "POST", "/offer", json.dumps(body).encode(), AUTH,
                            may_succeed=_valid_option(field, value))
            out.append(case("offer-type", f"{field}-{name}", run))
    return out


def _offer_bodies(sdp: str) -> list[tuple[str, bytes, bool]]:
    good = json.dumps({"sdp": sdp, "type": "offer"})
    return [
        ("deep-arrays-recursion", b"[" * 15000 + b"]" * 15000, False),
        ("deep-arrays-over-limit", b"[" * 100000 + b"]" * 100000, False),
        ("deep-objects", b'{"a":' * 4000 + b"1" + b"}" * 4000, False),
        ("deep-in-sdp", b'{"sdp": ' + b"[" * 8000 + b"]" * 8000 + b"}", False),
        ("top-list", b"[]", False), ("top-string", b'"v=0"', False), ("top-number", b"1", False),
        ("top-null", b"null", False), ("top-true", b"true", False), ("empty", b"", False),
        ("space", b"   ", False), ("open-brace", b"{", False),
        ("truncated", good[: len(good) // 2].encode(), False), ("garbage", b"\x00\x01garbage",
                                                                  False),
        ("invalid-utf8", b'{"sdp": "\xff\xfe"}', False),
        ("utf8-bom", b"\xef\xbb\xbf" + good.encode(), True),  # json.loads allows it
        ("utf16", good.encode("utf-16"), True),
        ("sdp-1e999999", b'{"sdp": 1e999999}', False),
        ("duplicate-sdp", good[:-1].encode() + b', "sdp": 5}', False),
        ("nan-literal", b'{"sdp": NaN}', False),
        ("control-char", b'{"sdp": "v=0\x01"}', False),
        ("whitespace-40k", b" " * 40000, False),
        ("sdp-33k", json.dumps({"sdp": "v=0\r\n" + "a" * 33000}).encode(), False),
        ("trailing-garbage", good.encode() + b" x", False),
        ("mix-5000-digits", good[:-1].encode() + b', "mix": ' + b"9" * 5000 + b"}", False),
        ("valid", good.encode(), True),
    ]


def offer_body_cases() -> list[Case]:
    out = []
    for name, _, _ in _offer_bodies("v=0"):
        def run(ctx: Ctx, name: str = name) -> Awaitable[Reply]:
            body, ok = next((b, ok) for n, b, ok in _offer_bodies(ctx.sdp) if n == name)
            return http(ctx, "POST", "/offer", body, AUTH, may_succeed=ok)
        out.append(case("offer-body", name, run))
    return out


# -- WHIP SDP bodies and content types ----------------------------------------------------
def _sdp_variants(sdp: str) -> list[tuple[str, bytes, bool]]:
    lines = sdp.split("\r\n")
    head = "\r\n".join(line for line in lines if not line.startswith(("m=", "a=mid")))
    app = "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"
    return [
        ("invalid-utf8", b"v=0\r\n\xff\xfe\r\n", False),
        ("utf16", sdp.encode("utf-16"), False),
        ("nul-bytes", sdp.replace("\r\n", "\r\n\x00", 3).encode(), True),
        ("lf-only", sdp.replace("\r\n", "\n").encode(), True),
        ("cr-only", sdp.replace("\r\n", "\r").encode(), True),
        ("leading-space", b"  " + sdp.encode(), True),
        ("1000-applications", (sdp + "m=application 0 x y\r\n" * 1000).encode(), False),
        ("17-audio", (sdp + "".join(lines[i] + "\r\n" for i in range(len(lines))
                                    if lines[i].startswith("m=audio")) * 16).encode(), False),
        ("two-applications", (sdp + app).encode(), False),
        ("no-media", head.encode(), False),
        ("no-fingerprint", "\r\n".join(line for line in lines
                                       if not line.startswith("a=fingerprint")).encode(), False),
        ("bad-rtpmap", sdp.replace("a=rtpmap:", "a=rtpmap:abc ").encode(), True),
        ("bad-port", sdp.replace("m=audio 9", "m=audio 99999999999").encode(), True),
        ("bad-mline", sdp.replace("m=audio", "m=audio x y z").encode(), True),
        ("bad-ip", sdp.replace("IN IP4 ", "IN IP4 999.").encode(), True),
        ("long-line", (sdp + "a=x" + "y" * 30000 + "\r\n").encode(), True),
        ("only-v0", b"v=0", False),
        ("attributes-5000", (sdp + "a=x\r\n" * 5000).encode(), True),
        ("empty", b"", False),
        ("mline-noise", (sdp + "m=\r\nm=audio\r\nm= \r\n").encode(), True),
    ]


def whip_body_cases() -> list[Case]:
    out = []
    for name, _, _ in _sdp_variants(""):
        def run(ctx: Ctx, name: str = name) -> Awaitable[Reply]:
            body, ok = next((b, ok) for n, b, ok in _sdp_variants(ctx.sdp) if n == name)
            return http(ctx, "POST", "/whip?source=en&target=es", body, SDP_CT, may_succeed=ok)
        out.append(case("whip-sdp", name, run))
    for name, ctype, ok in [("missing", None, False), ("text-plain", "text/plain", False),
                            ("charset", "application/sdp; charset=utf-8", True),
                            ("upper", "APPLICATION/SDP", True), ("garbage", "\x01/\x02", False),
                            ("json", "application/json", False),
                            ("multipart", "multipart/form-data; boundary=x", False)]:
        def run(ctx: Ctx, ctype: str | None = ctype, ok: bool = ok) -> Awaitable[Reply]:
            headers = {**AUTH, **({"Content-Type": ctype} if ctype else {})}
            return http(ctx, "POST", "/whip", ctx.sdp.encode(), headers, may_succeed=ok)
        out.append(case("whip-content-type", name, run))
    return out


# -- query strings ----------------------------------------------------------------------
QUERY_VALUES = [("nul", "%00"), ("ff", "%FF"), ("newline", "en%0A"), ("rtl", "%E2%80%AE"),
                ("digits5000", "9" * 5000), ("superscript2", "%C2%B2"), ("1e999", "1e999"),
                ("nan", "nan"), ("minus0", "-0"), ("inf", "inf"), ("empty", ""),
                ("repeated", "en&{key}=xx"), ("bad-escape", "%"), ("plus", "+en+")]


def query_cases() -> list[Case]:
    out = []
    for key in ("source", "target", "mix", "mix_idle", "video_delay_ms", "voice",
                "echo_guard"):
        for name, raw in QUERY_VALUES:
            def run(ctx: Ctx, key: str = key, raw: str = raw) -> Awaitable[Reply]:
                query = f"source=en&target=es&{key}={raw.format(key=key)}"
                return http(ctx, "POST", f"/whip?{query}", ctx.sdp.encode(), SDP_CT,
                            may_succeed=True)
            out.append(case("query", f"{key}-{name}", run))
    for name, query in [("token-wrong", "token=nope"), ("token-huge", "token=" + "t" * 7000),
                        ("only-amps", "&&&"), ("equals", "=&=&="), ("key-only", "source"),
                        ("long", "x=" + "y" * 9000), ("unicode-key", "%C3%BC=1")]:
        def run(ctx: Ctx, query: str = query) -> Awaitable[Reply]:
            return http(ctx, "POST", f"/whip?{query}", ctx.sdp.encode(),
                        {"Content-Type": "application/sdp"}, may_succeed=False)
        out.append(case("query", name, run))
    return out


# -- paths and methods --------------------------------------------------------------------
# (method, path, must be refused); the others may be served once normalised (/./stats...)
PATHS = [
    ("POST", "/rooms/a%0A/join?lang=en", True),
    ("POST", "/rooms/a%0D%0AX-Evil:%201/join?lang=en", True),
    ("POST", "/rooms/%00/join?lang=en", True), ("POST", "/rooms/" + "r" * 65 + "/join?lang=en",
                                                 True),
    ("POST", "/rooms/%C3%BC/join?lang=en", True), ("POST", "/rooms/a%2Fb/join?lang=en", True),
    ("POST", "/rooms/../join?lang=en", True), ("POST", "/rooms/r/join?lang=%0A", True),
    ("POST", "/rooms/r/join?lang=en&echo_guard=%FF", False), ("DELETE", "/rooms/r/%00", True),
    ("DELETE", "/whip/%00", True), ("DELETE", "/whip/" + "i" * 4000, True),
    ("POST", "/whep/x/y/z", True), ("POST", "/whep/%FF", True), ("GET", "/captions/%FF", True),
    ("GET", "/captions/" + "c" * 4000, True), ("DELETE", "/whep/a/%0A", True),
    ("GET", "//health", False), ("GET", "/health/", False), ("GET", "/HEALTH", True),
    ("GET", "/%2e%2e/stats", False), ("GET", "/./stats", False), ("GET", "/" + "p" * 9000, True),
    ("PUT", "/offer", True), ("PATCH", "/whip", True), ("OPTIONS", "/whip", True),
    ("TRACE", "/health", True), ("DELETE", "/offer", True), ("GET", "/offer", True),
    ("POST", "/health", True), ("GET", "/client.js/..", False),
]


def path_cases() -> list[Case]:
    out = []
    for i, (method, path, refuse) in enumerate(PATHS):
        def run(ctx: Ctx, method: str = method, path: str = path, refuse: bool = refuse
                ) -> Awaitable[Reply]:
            body = ctx.sdp.encode() if method == "POST" else b""
            return http(ctx, method, path, body, SDP_CT, may_succeed=not refuse)
        out.append(case("path", f"{i:02d}-{method}-{quote(path[:24], safe='')}", run))
    for name, room in [("plain", "r-1"), ("underscore", "a_b"), ("64", "r" * 64)]:
        def run(ctx: Ctx, room: str = room) -> Awaitable[Reply]:
            return http(ctx, "POST", f"/rooms/{room}/join?lang=en", ctx.sdp.encode(), SDP_CT,
                        may_succeed=True, expect=201)
        out.append(case("path", f"room-valid-{name}", run))
    return out


# -- headers and what aiohttp's parser refuses --------------------------------------------
def header_cases() -> list[Case]:
    out = []
    # (name, header value, the token is right); NUL and control bytes may be refused by
    # aiohttp's parser before babelcall sees them (400)
    auths: list[tuple[str, bytes, bool]] = [
        ("non-ascii", b"Bearer \xff\xfe\xc3\xa9", False), ("latin1", b"Bearer caf\xe9", False),
        ("bearer-only", b"Bearer", False), ("bearer-space", b"Bearer ", False),
        ("spaces", f"Bearer   {TOKEN}  ".encode(), True),
        ("lowercase", f"bearer {TOKEN}".encode(), True), ("basic", b"Basic Zm9vOmJhcg==", False),
        ("huge", b"Bearer " + b"t" * 7000, False), ("nul", b"Bearer fuzz\x00t0ken", False),
        ("control", b"Bearer \x01\x02", False), ("utf8", "Bearer tökén".encode(), False),
    ]
    for path in ("/stats", "/whip", "/ws", "/offer", "/health"):
        for name, value, ok in auths:
            def run(ctx: Ctx, path: str = path, value: bytes = value, ok: bool = ok,
                    name: str = name) -> Awaitable[Reply]:
                method = "GET" if path in ("/stats", "/ws", "/health") else "POST"
                headers = {"Authorization": value, "Content-Type": "application/sdp"}
                body = ctx.sdp.encode() if method == "POST" else b""
                public = path == "/health"
                parser = (400,) if name in ("nul", "control") else ()
                expect = (200, *parser) if public else None if ok else (401, *parser)
                return http(ctx, method, path, body, headers,
                            may_succeed=ok or public, expect=expect)
            out.append(case("auth", f"{path.strip('/')}-{name}", run))
    raw: list[tuple[str, bytes]] = [
        ("cl-negative", b"POST /offer HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"),
        ("cl-letters", b"POST /offer HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n"),
        ("cl-huge", b"POST /offer HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999"
                    b"\r\n\r\n"),
        ("cl-and-te", b"POST /offer HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("bad-chunk-size", b"POST /offer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
                           b"\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"),
        ("chunk-overflow", b"POST /offer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
                           b"\r\n\r\nffffffffffffffffffff\r\nabc\r\n"),
        ("te-unknown", b"POST /offer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n"),
        ("header-10k", b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 10240
                       + b"\r\n\r\n"),
        ("headers-200", b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"".join(
            b"X-%d: v\r\n" % i for i in range(200)) + b"\r\n"),
        ("no-colon", b"GET /health HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n"),
        ("nul-in-header", b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n"),
        ("obs-fold", b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\r\n  folded\r\n\r\n"),
        ("space-before-colon", b"GET /health HTTP/1.1\r\nHost: x\r\nX-A : a\r\n\r\n"),
        ("http2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
        ("http09", b"GET /\r\n\r\n"),  # aiohttp serves the (public) page
        ("version-9", b"GET /health HTTP/9.9\r\n\r\n"),
        ("bad-method", b"G@T /health HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("long-method", b"A" * 5000 + b" /health HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64)),
        ("request-line-only-lf", b"GET /health HTTP/1.1\nHost: x\n\n"),
        ("absolute-uri", b"GET http://evil.example/stats HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("connect", b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("non-utf8-path", b"GET /\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("space-in-path", b"GET /he alth HTTP/1.1\r\nHost: x\r\n\r\n"),
    ]
    for name, data in raw:
        async def run(ctx: Ctx, name: str = name, data: bytes = data) -> None:
            reply = await raw_http(ctx.port, [data])
            assert reply.status is not None or reply.closed, f"{name}: no answer, not closed"
            if reply.status is not None:
                await clean(ctx, reply, name, may_succeed=reply.status == 200
                            and name in ("request-line-only-lf", "absolute-uri", "obs-fold",
                                         "headers-200", "version-9", "space-before-colon",
                                         "http09"))
        out.append(case("parser", name, run))
    return out


# -- WebSocket ---------------------------------------------------------------------------
async def ws_case(ctx: Ctx, path: str, *, first: list[bytes] = (), after_ready: list[bytes]
                  = (), codes: tuple[int, ...], auth: bool = True,
                  headers: dict[str, str] | None = None, end: bool = True) -> None:
    """Open a socket; send ``first`` before any answer, or ``after_ready`` once the server
    said ready; then expect a close with one of ``codes`` and a reason (1000: after our end).
    """
    hdrs = {**(AUTH if auth else {}), **(headers or {})}
    ws = await RawWebSocket.open(ctx.port, path, hdrs)
    assert ws.status == 101, (path[:80], ws.status)
    await ws.send(*first)
    sent: list[bool] = []

    async def on_text(sock: RawWebSocket, text: str) -> None:
        msg = json.loads(text)
        if msg.get("type") == "ready" and not sent:
            sent.append(True)
            await sock.send(*after_ready)
            if end and not after_ready:
                await sock.send(frame(TEXT, b'{"type": "end"}'))

    out = await ws.until_close(4.5, on_text=on_text)
    assert out.close_code in codes, (path[:80], out.close_code, out.close_reason, out.texts[-2:])
    assert out.close_reason, (path[:80], out.close_code, "close without a reason")
    if out.close_code != 1000:
        errors = [json.loads(t) for t in out.texts if t.startswith("{")]
        errors = [e for e in errors if e.get("type") == "error"]
        # aiohttp-level frame errors close before babelcall can write its JSON error
        assert errors or out.close_code in (1002, 1007, 1009), (path[:80], out.texts)


def ws_http_case(ctx: Ctx, headers: dict[str, str | None], expect: int,
                 path: str = "/ws?source=en&target=es") -> Awaitable[None]:
    async def run() -> None:
        ws = await RawWebSocket.open(ctx.port, path, headers)
        await ws.aclose()
        assert ws.status == expect, (headers, ws.status)
    return run()


WS_URL = "/ws?source=en&target=es"


def ws_cases() -> list[Case]:
    out = []
    for name, rate, codes in [
            ("0", "0", (1008,)), ("neg", "-1", (1008,)), ("superscript2", "%C2%B2", (1008,)),
            ("digits5000", "9" * 5000, (1008,)), ("half", "16000.5", (1008,)),
            ("exp", "1e4", (1008,)), ("hex", "0x3e80", (1008,)), ("space", "%2016000", (1000,)),
            ("over", "192001", (1008,)), ("under", "7999", (1008,)), ("empty", "", (1008,)),
            ("nul", "16000%00", (1008,)), ("letters", "abc", (1008,)),
            ("arabic-digits", "%D9%A1%D9%A6%D9%A0%D9%A0%D9%A0", (1008,))]:
        out.append(case("ws-rate", name, lambda ctx, rate=rate, codes=codes: ws_case(
            ctx, f"{WS_URL}&rate={rate}", codes=codes)))
    for name, src, codes in [("ff", "%FF", (1008,)), ("one-letter", "e", (1008,)),
                             ("word", "english", (1008,)), ("digits", "123", (1008,)),
                             ("newline", "en%0A", (1000,)), ("nul", "%00", (1008,)),
                             ("same", "es", (1008,)), ("unsupported", "zz", (1008,))]:
        out.append(case("ws-source", name, lambda ctx, src=src, codes=codes: ws_case(
            ctx, f"/ws?source={src}&target=es", codes=codes)))
    configs: list[tuple[str, Any, tuple[int, ...]]] = [
        ("source-int", {"source": 0}, (1008,)), ("source-list", {"source": ["en"]}, (1008,)),
        ("source-dict", {"source": {}}, (1008,)), ("source-true", {"source": True}, (1008,)),
        ("source-null", {"source": None}, (1008,)), ("source-sup2", {"source": "²"}, (1008,)),
        ("rate-list", {"rate": []}, (1008,)), ("rate-dict", {"rate": {}}, (1008,)),
        ("rate-true", {"rate": True}, (1008,)), ("rate-float", {"rate": 16000.0}, (1008,)),
        ("rate-sup2", {"rate": "²"}, (1008,)), ("rate-4000-digits", {"rate": "9" * 4000},
                                                   (1008,)),
        ("rate-huge-int", {"rate": 10**30}, (1008,)), ("rate-null", {"rate": None}, (1008,)),
        ("rate-string", {"rate": "16000"}, (1000,)), ("valid", {}, (1000,)),
        ("type-int", {"type": 5}, (1008,)), ("target-nested", {"target": [[["es"]]]}, (1008,)),
    ]
    for name, change, codes in configs:
        body = {"type": "config", "source": "en", "target": "es", "rate": 16000, **change}
        data = json.dumps(body).encode()
        out.append(case("ws-config", name, lambda ctx, data=data, codes=codes: ws_case(
            ctx, "/ws", first=[frame(TEXT, data)], codes=codes)))
    firsts: list[tuple[str, bytes, tuple[int, ...]]] = [
        ("null", frame(TEXT, b"null"), (1003, 1008)), ("list", frame(TEXT, b"[]"), (1003,)),
        ("string", frame(TEXT, b'"x"'), (1003,)), ("empty-object", frame(TEXT, b"{}"), (1008,)),
        ("empty-text", frame(TEXT, b""), (1003,)), ("binary", frame(BINARY, b"\x00\x01"),
                                                      (1008,)),
        ("nested-2000", frame(TEXT, b"[" * 2000 + b"]" * 2000), (1003,)),
        ("nested-100k", frame(TEXT, b"[" * 100000 + b"]" * 100000), (1009,)),
        ("text-300k", frame(TEXT, b'"' + b"a" * 300 * 1024 + b'"'), (1009,)),
        ("text-4097", frame(TEXT, b'{"type": "config", "x": "' + b"a" * 4097 + b'"}'),
         (1009,)),
        ("invalid-utf8", frame(TEXT, b'{"type": "\xff"}'), (1007,)),
        ("unmasked-config", frame(TEXT, b'{"type": "config", "source": "en", "target": "es"}',
                                  mask=False), (1002,)),
    ]
    for name, data, codes in firsts:
        out.append(case("ws-first", name, lambda ctx, data=data, codes=codes: ws_case(
            ctx, "/ws", first=[data], codes=codes)))
    ping_big = json.dumps({"type": "ping", "t": "x" * 4000}).encode()
    afters: list[tuple[str, list[bytes], tuple[int, ...]]] = [
        ("ping-number", [frame(TEXT, b'{"type": "ping", "t": 1.5}'),
                         frame(TEXT, b'{"type": "end"}')], (1000,)),
        ("ping-big-t", [frame(TEXT, ping_big), frame(TEXT, b'{"type": "end"}')], (1000,)),
        ("text-300k", [frame(TEXT, b"a" * 300 * 1024)], (1009,)),
        ("binary-300k", [frame(BINARY, bytes(300 * 1024))], (1009,)),
        ("binary-1m", [frame(BINARY, bytes(1100 * 1024))], (1009,)),
        ("odd-pcm", [frame(BINARY, b"\x01\x02\x03")], (1003,)),
        ("wav", [frame(BINARY, b"RIFF\x24\x00\x00\x00WAVEfmt ")], (1003,)),
        ("unknown-type", [frame(TEXT, b'{"type": "dance"}')], (1003,)),
        ("unmasked-text", [frame(TEXT, b'{"type": "end"}', mask=False)], (1002,)),
        ("unmasked-binary", [frame(BINARY, bytes(640), mask=False)], (1002,)),
        ("masked-then-unmasked", [frame(BINARY, bytes(640)),
                                  frame(BINARY, bytes(640), mask=False)], (1002,)),
        ("ping-control-200", [frame(PING, b"p" * 200)], (1002,)),
        ("reserved-opcode", [frame(0x3, b"x")], (1002,)),
        ("reserved-control-opcode", [frame(0xB, b"x")], (1002,)),
        ("rsv1", [frame(TEXT, b'{"type": "end"}', rsv=4)], (1002,)),
        ("rsv3", [frame(BINARY, bytes(64), rsv=1)], (1002,)),
        ("continuation-first", [frame(0x0, b"x")], (1002,)),
        ("fragmented-ping", [frame(PING, b"x", fin=False)], (1002,)),
        ("close-code-999", [frame(CLOSE, struct.pack(">H", 999))], (1002,)),
        ("close-1-byte", [frame(CLOSE, b"\x03")], (1002,)),
        ("fragmented-end", [frame(TEXT, b'{"type":', fin=False), frame(0x0, b' "end"}')],
         (1000,)),
        ("invalid-utf8", [frame(TEXT, b"\xc3\x28")], (1007,)),
        ("message-flood", [frame(BINARY, b"\x00\x00")] * 600, (1008,)),
        ("text-flood", [frame(TEXT, b'{"type": "ping", "t": 1}')] * 600, (1008,)),
    ]
    for name, frames, codes in afters:
        out.append(case("ws-frame", name, lambda ctx, frames=frames, codes=codes: ws_case(
            ctx, WS_URL, after_ready=frames, codes=codes, end=False)))
    for name, headers, expect in [
            ("no-token", {"Authorization": None}, 401),
            ("wrong-token", {"Authorization": "Bearer nope"}, 401),
            ("no-key", {**AUTH, "Sec-WebSocket-Key": None}, 400),
            ("version-99", {**AUTH, "Sec-WebSocket-Version": "99"}, 400),
            ("no-upgrade", {**AUTH, "Upgrade": None, "Connection": None}, 400),
            ("bad-key", {**AUTH, "Sec-WebSocket-Key": "not base64!"}, 400)]:
        out.append(case("ws-handshake", name, lambda ctx, headers=headers, expect=expect:
                        ws_http_case(ctx, headers, expect)))
    return out


# -- floods, concurrency, slow clients ----------------------------------------------------
async def _gather(n: int, make: Callable[[], Awaitable[Any]]) -> list[Any]:
    return await asyncio.gather(*(make() for _ in range(n)))


def flood_cases() -> list[Case]:
    async def health(ctx: Ctx) -> None:
        replies = await _gather(50, lambda: raw_http(ctx.port, [request("GET", "/health")]))
        assert all(r.status == 200 for r in replies), [r.status for r in replies]

    async def bad_offers(ctx: Ctx) -> None:
        await _gather(30, lambda: http(ctx, "POST", "/offer", b"{nope", AUTH))

    async def deep_offers(ctx: Ctx) -> None:
        await _gather(20, lambda: http(ctx, "POST", "/offer", b"[" * 15000 + b"]" * 15000,
                                       AUTH))

    async def bad_ws(ctx: Ctx) -> None:
        await _gather(20, lambda: ws_case(ctx, f"{WS_URL}&rate=%C2%B2", codes=(1008,)))

    async def valid_ws(ctx: Ctx) -> None:
        await _gather(8, lambda: ws_case(ctx, WS_URL, codes=(1000, 1013)))

    async def bare_connections(ctx: Ctx) -> None:
        async def one() -> None:
            _, writer = await asyncio.open_connection("127.0.0.1", ctx.port)
            writer.close()
        await _gather(100, one)

    async def valid_whips(ctx: Ctx) -> None:
        await _gather(5, lambda: http(ctx, "POST", "/whip", ctx.sdp.encode(), SDP_CT,
                                      may_succeed=True, expect=201))

    async def delete_twice(ctx: Ctx) -> None:
        reply = await raw_http(ctx.port, [request("POST", "/whip", ctx.sdp.encode(), SDP_CT)])
        assert reply.status == 201, reply.status
        location = reply.headers["location"]
        first, second = await asyncio.gather(
            raw_http(ctx.port, [request("DELETE", location, b"", AUTH)]),
            raw_http(ctx.port, [request("DELETE", location, b"", AUTH)]))
        assert sorted([first.status, second.status]) in ([200, 200], [200, 404]), \
            (first.status, second.status)

    async def whep_while_deleting(ctx: Ctx) -> None:
        reply = await raw_http(ctx.port, [request("POST", "/whip", ctx.sdp.encode(), SDP_CT)])
        assert reply.status == 201, reply.status
        call = reply.headers["location"].rsplit("/", 1)[-1]
        whep, gone = await asyncio.gather(
            raw_http(ctx.port, [request("POST", f"/whep/{call}", ctx.sdp.encode(), SDP_CT)]),
            raw_http(ctx.port, [request("DELETE", f"/whip/{call}", b"", AUTH)]))
        assert gone.status == 200, gone.status
        await clean(ctx, whep, "POST whep", may_succeed=True)

    return [case("flood", "health-50", health), case("flood", "bad-offers-30", bad_offers),
            case("flood", "deep-json-20", deep_offers), case("flood", "bad-ws-20", bad_ws),
            case("flood", "valid-ws-8", valid_ws),
            case("flood", "bare-connections-100", bare_connections),
            case("concurrency", "valid-whip-5", valid_whips),
            case("concurrency", "delete-twice", delete_twice),
            case("concurrency", "whep-while-deleting", whep_while_deleting)]


def slow_cases() -> list[Case]:
    async def slowloris(ctx: Ctx) -> None:
        """200 connections dribbling headers: all closed by the server in time."""
        conns = [await asyncio.open_connection("127.0.0.1", ctx.port) for _ in range(200)]
        for _, w in conns:
            w.write(b"GET /health HTTP/1.1\r\nHost: x\r\n")

        async def dribble(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + ctx.client_timeout_s + 2.5
            while loop.time() < deadline:
                try:
                    writer.write(b"X: y\r\n")
                    if not await asyncio.wait_for(reader.read(100), 0.3):
                        return True
                except TimeoutError:
                    continue
                except ConnectionError:
                    return True
            return False
        closed = await asyncio.gather(*(dribble(r, w) for r, w in conns))
        for _, w in conns:
            w.close()
        assert all(closed), f"{closed.count(False)} of 200 slow connections still open"

    async def idle(ctx: Ctx) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", ctx.port)
        data = await asyncio.wait_for(reader.read(), ctx.client_timeout_s + 2)
        writer.close()
        assert data == b""

    def split(name: str, path: str, ctype: str, gaps: list[float], pieces: int = 2) -> Case:
        async def run(ctx: Ctx) -> None:
            if path == "/offer":
                body = json.dumps({"sdp": ctx.sdp, "type": "offer"}).encode()
            else:
                body = ctx.sdp.encode()
            data = request("POST", path, body, {**AUTH, "Content-Type": ctype})
            head = len(data) - len(body)
            step = -(-len(body) // pieces)
            chunks = [data[:head + step]] + [data[head + i: head + i + step]
                                             for i in range(step, len(body), step)]
            reply = await raw_http(ctx.port, chunks, gaps_s=gaps)
            assert reply.status in (200, 201), (reply.status, reply.body[:200])
            await clean(ctx, reply, f"POST {path}", may_succeed=True)
        return case("slow", name, run)

    async def body_too_slow(ctx: Ctx) -> None:
        body = ctx.sdp.encode()
        data = request("POST", "/whip", body, SDP_CT)
        reply = await raw_http(ctx.port, [data[: len(data) - 100]],
                               timeout=ctx.client_timeout_s + 2)
        assert reply.status == 408, (reply.status, reply.body[:200])
        await clean(ctx, reply, "slow body")

    async def chunked(ctx: Ctx) -> None:
        body = ctx.sdp.encode()
        half = len(body) // 2
        head = request("POST", "/whip", None, {**SDP_CT, "Transfer-Encoding": "chunked"},
                       length=False)
        parts = [head + b"%x\r\n" % half + body[:half] + b"\r\n",
                 b"%x\r\n" % (len(body) - half) + body[half:] + b"\r\n0\r\n\r\n"]
        reply = await raw_http(ctx.port, parts, gaps_s=0.2)
        assert reply.status == 201, reply.status
        await clean(ctx, reply, "POST chunked", may_succeed=True)

    async def ws_silent(ctx: Ctx) -> None:
        ws = await RawWebSocket.open(ctx.port, "/ws", AUTH)
        out = await ws.until_close(ctx.client_timeout_s + 2)
        assert out.close_code == 1008 and out.close_reason, (out.close_code, out.texts)

    timeout = 9.0  # these wait for the server's client timeout on purpose
    return [case("slow", "slowloris-200", slowloris, timeout), case("slow", "idle", idle),
            split("whip-2-segments-50ms", "/whip", "application/sdp", [0.05]),
            split("whip-2-segments-150ms", "/whip", "application/sdp", [0.15]),
            split("whip-2-segments-300ms", "/whip", "application/sdp", [0.3]),
            split("offer-2-segments-50ms", "/offer", "application/json", [0.05]),
            split("offer-2-segments-300ms", "/offer", "application/json", [0.3]),
            split("whip-20-segments", "/whip", "application/sdp", [0.04] * 20, pieces=20),
            case("slow", "body-too-slow", body_too_slow),
            case("slow", "chunked-2-segments", chunked), case("slow", "ws-no-config",
                                                              ws_silent)]


# -- seeded random mutations -------------------------------------------------------------
def mutation_cases(n: int = 40) -> list[Case]:
    """Byte-level damage to a valid /offer and WHIP request: flips, cuts, repeats."""
    rng = random.Random(SEED)
    out = []
    for i in range(n):
        target = "offer" if i % 2 else "whip"
        ops = [(rng.choice(["flip", "cut", "dup", "insert"]), rng.random(), rng.randrange(256))
               for _ in range(rng.randint(1, 6))]

        async def run(ctx: Ctx, target: str = target, ops: list = ops) -> None:
            if target == "offer":
                body = bytearray(json.dumps({"sdp": ctx.sdp, "type": "offer"}).encode())
                headers = AUTH
            else:
                body, headers = bytearray(ctx.sdp.encode()), SDP_CT
            for op, where, byte in ops:
                k = int(where * len(body))
                if op == "flip":
                    body[k % len(body)] ^= byte or 1
                elif op == "cut":
                    del body[k:k + byte]
                elif op == "dup":
                    body[k:k] = body[k:k + byte]
                else:
                    body.insert(k, byte)
            await http(ctx, "POST", f"/{target}", bytes(body), headers, may_succeed=True)
        out.append(case("mutation", f"{i:02d}-{target}", run))
    return out


def all_cases() -> list[Case]:
    return (offer_type_cases() + offer_body_cases() + whip_body_cases() + query_cases()
            + path_cases() + header_cases() + mutation_cases() + ws_cases() + flood_cases()
            + slow_cases())
