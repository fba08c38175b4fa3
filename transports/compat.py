"""Every use of aiortc's and aiohttp's private internals, in one place.

babelcall needs a few things neither library offers publicly: its own DTLS certificate on a
peer connection (RSA peers, ``dtls.py``), the encoded video frames a receiver reassembles
(passthrough relay, ``video.py``), a re-offer numbered as already agreed
(``negotiation.py``), keyframe requests both ways, ending a remote track that never started
(``peer.py``), the output track's id (the loop guard, ``media.py``), and on aiohttp's side
the WebSocket frame parser (masking check and lingering close, ``wire_guard.py``).
``pyproject.toml`` pins both libraries to the versions these were checked against, and
``REQUIRED`` lists what must exist: tests/transports/test_compat.py fails on an upgrade that
moves any of it, before a call does."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

# (where, attribute) pairs the functions below rely on; "instance" ones are checked on objects
REQUIRED: list[tuple[str, str]] = [
    ("aiortc.RTCPeerConnection instance", "_RTCPeerConnection__certificates"),
    ("aiortc.rtcdtlstransport.RTCCertificate", "_create_ssl_context"),
    ("aiortc.RTCRtpReceiver instance", "_RTCRtpReceiver__decoder_queue"),
    ("aiortc.RTCRtpReceiver", "_send_rtcp_pli"),
    ("aiortc.RTCRtpSender", "_send_keyframe"),
    ("aiortc.RTCRtpTransceiver instance", "_codecs"),
    ("aiortc.RTCRtpTransceiver instance", "_headerExtensions"),
    ("aiortc.RTCRtpTransceiver", "_get_mline_index"),
    ("aiortc.mediastreams.MediaStreamTrack instance", "_id"),
    ("aiortc.rtcrtpreceiver.RemoteStreamTrack instance", "_queue"),
    ("aiohttp.web.WebSocketResponse", "_post_start"),
    ("aiohttp.web.WebSocketResponse", "_close_transport"),
    ("aiohttp.web.WebSocketResponse instance", "_reader"),
    ("aiohttp.web.WebSocketResponse instance", "_req"),
    ("aiohttp.web_protocol.RequestHandler", "_message_tail"),
    ("aiohttp.web_protocol.RequestHandler", "_payload_parser"),
]
PC_CERTIFICATES = "_RTCPeerConnection__certificates"
DECODER_QUEUE = "_RTCRtpReceiver__decoder_queue"


# -- aiortc -------------------------------------------------------------------------------
def set_certificates(pc: Any, certificates: list[Any]) -> bool:
    """Give a new peer connection our certificates; False if aiortc moved the attribute."""
    if not isinstance(getattr(pc, PC_CERTIFICATES, None), list):
        return False
    setattr(pc, PC_CERTIFICATES, certificates)
    return True


def decoder_queue(receiver: Any) -> Any:
    """The queue between a receiver's jitter buffer and its decoder thread (None if moved)."""
    return getattr(receiver, DECODER_QUEUE, None)


def set_decoder_queue(receiver: Any, queue: Any) -> None:
    setattr(receiver, DECODER_QUEUE, queue)


def negotiated(transceiver: Any) -> tuple[list[Any], list[Any]]:
    """The codecs and header extensions a transceiver agreed (empty before an answer)."""
    return (getattr(transceiver, "_codecs", None) or [],
            getattr(transceiver, "_headerExtensions", None) or [])


def set_negotiated(transceiver: Any, codecs: list[Any], extensions: list[Any]) -> None:
    transceiver._codecs, transceiver._headerExtensions = codecs, extensions


def mline_index(transceiver: Any) -> int | None:
    return transceiver._get_mline_index()  # type: ignore[no-any-return]


def request_keyframe(receiver: Any, ssrc: int) -> asyncio.Future[None]:
    """Send a PLI for ``ssrc`` (the speaker's camera)."""
    return asyncio.ensure_future(receiver._send_rtcp_pli(ssrc))


def on_keyframe_request(sender: Any, callback: Callable[[], None]) -> None:
    """Call ``callback`` instead of aiortc's encoder keyframe when the far end asks one of
    ``sender`` (a relayed, pre-encoded track has no encoder to ask)."""
    sender._send_keyframe = callback


def end_remote_track(track: Any) -> None:
    """End a remote track whose receiver never started (its readers would wait for ever);
    None is aiortc's own end-of-track sentinel."""
    queue = getattr(track, "_queue", None)
    if isinstance(queue, asyncio.Queue):
        queue.put_nowait(None)


def set_track_id(track: Any, track_id: str) -> None:
    """The id the answer announces for ``track`` (MediaStreamTrack.id has no setter)."""
    track._id = track_id


# -- aiohttp ------------------------------------------------------------------------------
def payload_parser(handler: Any) -> Any:
    """The WebSocket frame parser of an upgraded connection's handler (None if moved)."""
    return getattr(handler, "_payload_parser", None)


def set_payload_parser(handler: Any, parser: Any) -> None:
    handler._payload_parser = parser


def take_message_tail(handler: Any) -> bytes | None:
    """Bytes that came with the upgrade request, not yet parsed (None if moved); taken."""
    tail = getattr(handler, "_message_tail", None)
    if tail is not None:
        handler._message_tail = b""
    return tail  # type: ignore[no-any-return]


def missing() -> list[str]:
    """What ``REQUIRED`` names that the installed aiortc/aiohttp lack (empty: compatible).
    Needs a running loop (it makes a peer connection and a WebSocket response)."""
    import importlib

    from aiohttp import web
    from aiortc import RTCPeerConnection
    from aiortc.rtcrtpreceiver import RemoteStreamTrack

    pc = RTCPeerConnection()
    transceiver = pc.addTransceiver("audio")
    instances: dict[str, Any] = {
        "aiortc.RTCPeerConnection": pc, "aiortc.RTCRtpReceiver": transceiver.receiver,
        "aiortc.RTCRtpTransceiver": transceiver,
        "aiortc.mediastreams.MediaStreamTrack": RemoteStreamTrack(kind="audio"),
        "aiortc.rtcrtpreceiver.RemoteStreamTrack": RemoteStreamTrack(kind="audio"),
        "aiohttp.web.WebSocketResponse": web.WebSocketResponse()}
    out = []
    for where, attr in REQUIRED:
        if where.endswith(" instance"):
            obj = instances[where.removesuffix(" instance")]
            found = attr in vars(obj) or hasattr(obj, attr)
        else:
            module, _, name = where.rpartition(".")
            cls = getattr(importlib.import_module(module), name)
            found = hasattr(cls, attr) or any(attr in getattr(c, "__slots__", ())
                                              for c in cls.__mro__)
        if not found:
            out.append(f"{where}.{attr}")
    asyncio.ensure_future(pc.close())
    return out
