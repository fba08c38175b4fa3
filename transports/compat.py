"""Every use of aiortc's and aiohttp's private internals, in one place.

babelcall needs a few things neither library offers publicly: its own DTLS certificate on a
peer connection (RSA peers, ``dtls.py``), the encoded video frames a receiver reassembles
(passthrough relay, ``video.py``), a re-offer numbered as already agreed
(``negotiation.py``), keyframe requests both ways, ending a remote track that never started
(``peer.py``), the output track's id (the loop guard, ``media.py``), on aioice's side a
consent freshness check that a busy event loop does not fail (``patient_consent``), and on
aiohttp's side the WebSocket frame parser (masking check and lingering close,
``wire_guard.py``). ``pyproject.toml`` pins the libraries to the versions these were
checked against, and ``REQUIRED`` lists what must exist: tests/transports/test_compat.py
fails on an upgrade that moves any of it, before a call does."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

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
    ("aioice.ice.StunProtocol", "datagram_received"),
    ("aioice.ice.StunProtocol", "connection_lost"),
    ("aioice.ice.Connection", "query_consent"),
    ("aioice.ice.Connection", "build_request"),
    ("aioice.ice.Connection instance", "_nominated"),
    ("aioice.ice.Connection instance", "_query_consent_task"),
    ("aioice.ice.Connection instance", "remote_password"),
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


# -- aioice -------------------------------------------------------------------------------
# RFC 7675 §5.1: consent expires 30 s after the last answer to a consent check.
CONSENT_EXPIRY_S = 30.0
# Each check is resent after 0.5, 1 and 2 s (RFC 5389's RTO doubling) and waits 7.5 s in all,
# so an answer read late by a busy event loop still counts.
CONSENT_RETRANSMISSIONS = 3
aioice_query_consent: Callable[..., Any] | None = None  # aioice's own, once replaced


def patient_consent() -> None:
    """Use ``_query_consent`` for every ICE connection of this process (idempotent).

    aioice's own check sends one request every ~5 s without retransmission and ends the
    call after six answers later than 500 ms: a server whose event loop is busy for half a
    second at a time (a 2-core machine translating three people) read every answer late and
    dropped all its browsers ("Consent to send expired") while they were still there."""
    global aioice_query_consent
    from aioice import ice

    if ice.Connection.query_consent is not _query_consent:
        aioice_query_consent = ice.Connection.query_consent  # kept to compare against
        ice.Connection.query_consent = _query_consent  # type: ignore[method-assign]


async def _query_consent(self: Any) -> None:
    """RFC 7675 consent freshness: a check on every nominated pair every 4-6 s, each with
    retransmissions; consent lasts while any answer came within ``CONSENT_EXPIRY_S``."""
    from aioice import ice, stun

    assert self.remote_password is not None
    answered = time.monotonic()
    checks: set[asyncio.Task[None]] = set()

    async def check(pair: Any) -> None:
        nonlocal answered
        request = self.build_request(pair, nominate=False)
        try:
            await pair.protocol.request(request, pair.remote_addr,
                                        integrity_key=self.remote_password.encode("utf8"),
                                        retransmissions=CONSENT_RETRANSMISSIONS)
            answered = time.monotonic()
        except stun.TransactionError:
            pass

    try:
        while True:
            await asyncio.sleep(ice.CONSENT_INTERVAL * (0.8 + 0.4 * random.random()))
            if time.monotonic() - answered > CONSENT_EXPIRY_S:
                log.info("ICE consent expired: no answer to a consent check for %.0f s",
                         time.monotonic() - answered)
                self._query_consent_task = None  # close() must not cancel this task
                await self.close()
                return
            for pair in list(self._nominated.values()):
                task = asyncio.create_task(check(pair))
                checks.add(task)
                task.add_done_callback(checks.discard)
    finally:
        for task in checks:
            task.cancel()


# Datagrams read per wake-up of an ICE socket: asyncio reads one per event-loop iteration,
# and a loop iterating every 50 ms (a busy one-core server) read 20 a second where a browser
# sends ~100 of video: the socket's queue grew to 500 KB (seconds late) and overflowed.
READS_PER_WAKEUP = 64
_READ_SIZE = 65536


def draining_ice_sockets() -> None:
    """Make every ICE socket read what is waiting, up to ``READS_PER_WAKEUP`` datagrams,
    each time the loop finds it readable (idempotent).

    A backlog there holds everything of a call: the media, the data channel (a renegotiation's
    answer came after its 15 s timeout) and the answers to consent checks (seconds late, then
    dropped with the rest). The extra reads go through a duplicate of the socket's descriptor:
    the same queue, read the same way, without touching asyncio's transport."""
    from aioice import ice

    protocol = ice.StunProtocol
    if getattr(protocol.datagram_received, "drains", False):
        return
    one, lost = protocol.datagram_received, protocol.connection_lost

    def datagram_received(self: Any, data: bytes | str, addr: tuple[Any, ...]) -> None:
        one(self, data, addr)
        reader = _reader(self)
        for _ in range(READS_PER_WAKEUP - 1):
            if reader is None or self.transport.is_closing():
                return
            try:
                data, addr = reader.recvfrom(_READ_SIZE)
            except OSError:  # nothing waiting (BlockingIOError), or an error asyncio's own
                return       # read of the socket will report
            one(self, data, addr)

    def connection_lost(self: Any, exc: Exception | None) -> None:
        reader = self.__dict__.pop("_drain_reader", None)
        if reader is not None:
            reader.close()
        lost(self, exc)

    datagram_received.drains = True  # type: ignore[attr-defined]
    protocol.datagram_received = datagram_received  # type: ignore[method-assign]
    protocol.connection_lost = connection_lost  # type: ignore[method-assign]


def _reader(protocol: Any) -> socket.socket | None:
    reader = protocol.__dict__.get("_drain_reader")
    if reader is None:
        raw = protocol.transport.get_extra_info("socket")
        if raw is None:
            return None
        reader = socket.socket(fileno=os.dup(raw.fileno()))
        reader.setblocking(False)
        protocol._drain_reader = reader
    return reader  # type: ignore[no-any-return]


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
    """What ``REQUIRED`` names that the installed aiortc/aioice/aiohttp lack (empty:
    compatible). Needs a running loop (it makes a peer connection and a WebSocket response)."""
    import importlib

    from aiohttp import web
    from aioice import ice
    from aiortc import RTCPeerConnection
    from aiortc.rtcrtpreceiver import RemoteStreamTrack

    pc = RTCPeerConnection()
    transceiver = pc.addTransceiver("audio")
    instances: dict[str, Any] = {
        "aiortc.RTCPeerConnection": pc, "aiortc.RTCRtpReceiver": transceiver.receiver,
        "aiortc.RTCRtpTransceiver": transceiver,
        "aiortc.mediastreams.MediaStreamTrack": RemoteStreamTrack(kind="audio"),
        "aiortc.rtcrtpreceiver.RemoteStreamTrack": RemoteStreamTrack(kind="audio"),
        "aiohttp.web.WebSocketResponse": web.WebSocketResponse(),
        "aioice.ice.Connection": ice.Connection(ice_controlling=True)}
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
