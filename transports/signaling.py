"""Checking what callers send before any model or peer connection is spent on it.

Every refusal is a ``SignalingError`` with an HTTP status, a stable machine-readable ``code`` and
a sentence for people; the server turns it into ``{"error": code, "message": ...}``. aiortc's
SDP parser accepts almost anything, so the offer is validated here (a v=0 line, ICE and DTLS
credentials, an audio m-line with a codec aiortc can decode) to answer 400 with the reason
instead of failing later inside the peer connection."""

from __future__ import annotations

import asyncio
import hmac
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiortc import sdp
from aiortc.codecs import CODECS
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from babelcall.realtime.errors import BabelcallError
from babelcall.transports.tracks import TRACK_PREFIX

LANGUAGE_CHARS = set("abcdefghijklmnopqrstuvwxyz")
# A WebRTC offer has one m-line per track plus one for data channels (3 for the browser page);
# aiortc answers every section it is given, so a crafted offer of a thousand lines would cost a
# thousand transceivers and an answer of almost a megabyte.
MAX_MEDIA_SECTIONS = 16


class SignalingError(BabelcallError):
    """A request babelcall refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def error_response(status: int, code: str, message: str,
                   headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status,
                             headers=headers)


@dataclass(frozen=True)
class MediaLine:
    kind: str
    mid: str | None
    sends: bool     # the offerer sends this media to us
    receives: bool  # the offerer wants this media from us
    track_id: str | None
    opus: bool = False  # Opus is offered (aiortc then picks it: it is first in its list)


@dataclass(frozen=True)
class Offer:
    sdp: str
    audio: MediaLine | None
    video: MediaLine | None
    data: bool  # has an m=application line (a data channel)


def _common_audio(codecs: list[RTCRtpCodecParameters]) -> bool:
    ours = {(c.mimeType.lower(), c.clockRate) for c in CODECS["audio"]}
    return any((c.mimeType.lower(), c.clockRate) in ours for c in codecs)


def parse_offer(text: str, *, need_send: bool, need_receive: bool) -> Offer:
    """Validate an SDP offer. ``need_send``: the offer must send us audio (ingest);
    ``need_receive``: it must accept audio from us (egress)."""
    if not text.lstrip().startswith("v=0"):
        raise SignalingError(400, "bad_sdp", "the body is not an SDP offer (it must start "
                                             "with v=0)")
    m_lines = [line for line in text.splitlines() if line.startswith("m=")]
    if len(m_lines) > MAX_MEDIA_SECTIONS:
        raise SignalingError(400, "bad_sdp", f"the SDP offer has {len(m_lines)} media sections; "
                                             f"at most {MAX_MEDIA_SECTIONS} are accepted")
    if sum(line.startswith("m=application") for line in m_lines) > 1:
        raise SignalingError(400, "bad_sdp", "the SDP offer has more than one m=application "
                                             "section (WebRTC data channels share one)")
    try:
        desc = sdp.SessionDescription.parse(text)
    except Exception as exc:  # the parser asserts and indexes freely on bad input
        raise SignalingError(400, "bad_sdp", f"malformed SDP offer ({type(exc).__name__})") \
            from exc
    if not desc.media:
        raise SignalingError(400, "bad_sdp", "the SDP offer has no media sections")
    lines: dict[str, MediaLine] = {}
    for media in desc.media:
        if media.kind not in ("audio", "video"):
            continue
        if media.ice is None or not media.ice.usernameFragment or not media.ice.password:
            raise SignalingError(400, "bad_sdp", f"the {media.kind} section has no ICE "
                                                 "credentials (a=ice-ufrag, a=ice-pwd)")
        if media.dtls is None or not media.dtls.fingerprints:
            raise SignalingError(400, "bad_sdp", f"the {media.kind} section has no DTLS "
                                                 "fingerprint (a=fingerprint)")
        direction = media.direction or "sendrecv"
        opus = any(c.mimeType.lower() == "audio/opus" for c in media.rtp.codecs)
        line = MediaLine(media.kind, media.rtp.muxId, direction in ("sendonly", "sendrecv"),
                         direction in ("recvonly", "sendrecv"), media.msid, opus)
        if media.kind == "audio" and not _common_audio(media.rtp.codecs):
            offered = ", ".join(sorted({c.mimeType for c in media.rtp.codecs})) or "none"
            raise SignalingError(400, "unsupported_codec",
                                 f"no supported audio codec in the offer (offered: {offered}; "
                                 "supported: opus, PCMU, PCMA, G722)")
        lines.setdefault(media.kind, line)
    audio = lines.get("audio")
    if audio is None:
        raise SignalingError(400, "no_audio", "the offer has no audio m-line")
    if need_send and not audio.sends:
        raise SignalingError(400, "no_audio", "the offer sends no audio (direction "
                                              "recvonly/inactive); nothing to translate")
    if need_receive and not audio.receives:
        raise SignalingError(400, "no_audio", "the offer does not receive audio; "
                                              "use a recvonly or sendrecv audio m-line")
    if need_send and TRACK_PREFIX in (audio.track_id or ""):
        raise SignalingError(409, "loop", "this audio is babelcall's own translated output; "
                                          "translating it again would loop")
    has_data = any(m.kind == "application" for m in desc.media)
    return Offer(text, audio, lines.get("video"), has_data)


async def read_body(request: web.Request, limit: int, timeout_s: float) -> bytes:
    """The whole request body, however many TCP segments it comes in; more than ``limit``
    bytes (declared or streamed) is refused with 413, a body that takes longer than
    ``timeout_s`` to arrive with 408."""
    if request.content_length is not None and request.content_length > limit:
        raise SignalingError(413, "too_large", f"the body is {request.content_length} bytes; "
                                               f"the limit is {limit}")
    body = bytearray()
    try:
        async with asyncio.timeout(timeout_s):
            while len(body) <= limit:
                chunk = await request.content.read(limit + 1 - len(body))
                if not chunk:
                    break
                body += chunk
    except TimeoutError:
        raise SignalingError(408, "timeout", f"the request body did not arrive within "
                                             f"{timeout_s:.0f} s") from None
    if len(body) > limit:
        raise SignalingError(413, "too_large", f"the body is over the {limit}-byte limit")
    return bytes(body)


def check_token(request: web.Request, token: str | None) -> None:
    """Bearer token from the Authorization header, or ``?token=`` (browsers cannot set headers
    on a WebSocket). Compared in constant time."""
    if not token:
        return
    header = request.headers.get("Authorization", "")
    given = header[7:].strip() if header.lower().startswith("bearer ") else \
        request.query.get("token", "")
    try:  # header bytes that are not UTF-8 arrive as lone surrogates
        given_bytes = given.encode()
    except UnicodeEncodeError:
        given_bytes = b""
    if not hmac.compare_digest(given_bytes, token.encode()):
        raise SignalingError(401, "unauthorized", "missing or wrong bearer token "
                                                  "(Authorization: Bearer TOKEN)")


def language(value: Any, name: str) -> str:
    if value is None or value == "":
        raise SignalingError(400, "bad_language", f"'{name}' (a language code such as en) "
                                                  "is required")
    if not isinstance(value, str):
        raise SignalingError(400, "bad_language", f"'{name}' must be a string, a language "
                                                  f"code such as en, not {type(value).__name__}")
    value = value.strip().lower()
    if not 2 <= len(value) <= 3 or not set(value) <= LANGUAGE_CHARS:
        raise SignalingError(400, "bad_language", f"'{name}' must be an ISO 639 code such "
                                                  f"as en or es, got {value[:20]!r}")
    return value


def number(params: Mapping[str, object], name: str, default: float, lo: float,
           hi: float) -> float:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise SignalingError(400, "bad_parameter", f"'{name}' must be a number") from None
    if not math.isfinite(value) or not lo <= value <= hi:
        raise SignalingError(400, "bad_parameter", f"'{name}' must be within [{lo}, {hi}]")
    return value
