"""Renegotiation of a room participant's connection, driven by the server.

A participant joins with one offer (their microphone, camera and a data channel). Everyone
else's video reaches them on that same RTCPeerConnection, so every time a participant joins,
the server adds a video line to the others' connections and they must agree to it. The server
makes the offer and sends it over the participant's data channel as
``{"type": "offer", "sdp": ..., ...extra}``; the page answers ``{"type": "answer", "sdp": ...}``
on the same channel. The HTTP join stays a single WHIP-shaped request, and no signalling
socket is needed.

Only the server ever offers after the join, so offers cannot cross (no glare). Changes that
arrive while an offer is out are folded into the next one: ``request()`` marks the connection
dirty and one task per connection offers until it is clean. A page that does not answer within
``timeout_s`` is broken; its connection is closed (which removes it from the room)."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from aiortc import RTCRtpCodecParameters, RTCSessionDescription, sdp
from aiortc.rtcpeerconnection import is_codec_compatible
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters

from babelcall.realtime.tasks import cancel_and_wait
from babelcall.transports import compat
from babelcall.transports.peer import Peer

log = logging.getLogger(__name__)


class Negotiator:
    """``extra()`` gives the fields sent with each offer (e.g. which line carries whose video),
    read after the offer is applied locally, when new lines have their mids; ``on_done`` runs
    after each completed round."""

    def __init__(self, peer: Peer, *, extra: Callable[[], dict[str, Any]] = dict,
                 on_done: Callable[[], Any] | None = None, timeout_s: float = 15.0) -> None:
        self.peer = peer
        self.extra = extra
        self.on_done = on_done
        self.timeout_s = timeout_s
        self.channel_open = asyncio.Event()
        self.rounds = 0
        self._dirty = False
        self._answer: asyncio.Future[str] | None = None
        self._task: asyncio.Task[None] | None = None

    def request(self) -> None:
        """Offer the connection's current transceivers (soon, once, however often called)."""
        self._dirty = True
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"negotiate-{self.peer.id}")

    def answer(self, msg: dict[str, Any]) -> None:
        """The page's answer, from its data channel."""
        sdp = msg.get("sdp")
        if self._answer is None or self._answer.done():
            self.peer.send({"type": "error", "error": "unexpected_answer",
                            "message": "no offer is waiting for an answer"})
        elif not isinstance(sdp, str) or not sdp.startswith("v=0"):
            self._answer.set_exception(ValueError("the answer has no SDP"))
        else:
            self._answer.set_result(sdp)

    async def _run(self) -> None:
        pc = self.peer.pc
        try:
            async with asyncio.timeout(self.timeout_s):
                await self.channel_open.wait()
            while self._dirty and pc.connectionState not in ("closed", "failed"):
                self._dirty = False
                await pc.setLocalDescription(await offer_in_step(pc))
                self._answer = asyncio.get_running_loop().create_future()
                self.peer.send({"type": "offer", "sdp": pc.localDescription.sdp,
                                **self.extra()})
                async with asyncio.timeout(self.timeout_s):
                    sdp = await self._answer
                await pc.setRemoteDescription(RTCSessionDescription(sdp, "answer"))
                self.rounds += 1
                if self.on_done is not None:
                    self.on_done()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # timeout, a bad answer, aiortc refusing it
            log.warning("renegotiation with %s failed (%s: %s); closing it", self.peer.id,
                        type(exc).__name__, exc)
            with contextlib.suppress(Exception):
                self.peer.send({"type": "error", "error": "renegotiation_failed",
                                "message": f"the connection could not be updated: {exc}"})
            asyncio.ensure_future(self.peer.close())

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task])


Lines = dict[str, tuple[list[RTCRtpCodecParameters], list[RTCRtpHeaderExtensionParameters]]]


async def offer_in_step(pc: Any) -> RTCSessionDescription:
    """aiortc's re-offer, in step with what the connection already agreed.

    aiortc builds every offer from its own defaults: each line gets its own payload type and
    header-extension numbering, also the lines already negotiated. A browser refuses that: in a
    bundle an extension id or payload type may not change meaning ("RTP extension ID
    reassignment not supported"). So the lines already agreed are offered as agreed, and the new
    ones numbered as the page numbers the same codecs and extensions."""
    agreed: Lines = {t.mid: copy.deepcopy(compat.negotiated(t)) for t in pc.getTransceivers()
                     if t.mid is not None and compat.negotiated(t)[0]}
    offer = await pc.createOffer()
    text, lines = align_offer(offer.sdp, pc.remoteDescription.sdp, agreed)
    mids = [m.rtp.muxId for m in sdp.SessionDescription.parse(text).media]
    for t in pc.getTransceivers():  # the same numbers on our side (createOffer reset them)
        i = compat.mline_index(t)
        if i is not None and i < len(mids) and mids[i] in lines:
            compat.set_negotiated(t, *lines[mids[i]])
    return RTCSessionDescription(text, "offer")


def align_offer(offer: str, reference: str, agreed: Lines) -> tuple[str, Lines]:
    """``offer`` with the lines in ``agreed`` (mid -> codecs, extensions) restored and every
    other line's payload types and extension ids taken from ``reference`` (the page's last
    description) where it has the same codec or extension, else from numbers nobody uses.
    Returns the SDP and each audio/video line's codecs and extensions."""
    ref = sdp.SessionDescription.parse(reference)
    ext_ids: dict[str, int] = {}
    base_pts: list[RTCRtpCodecParameters] = []
    rtx_of: dict[int, int] = {}  # base payload type -> its retransmission payload type
    used_ids: set[int] = set()
    used_pts: set[int] = set()
    for media in ref.media:
        for e in media.rtp.headerExtensions:
            ext_ids.setdefault(e.uri, e.id)
            used_ids.add(e.id)
        for c in media.rtp.codecs:
            used_pts.add(c.payloadType)  # type: ignore[arg-type]
            if c.mimeType.lower().endswith("/rtx"):
                rtx_of.setdefault(int(c.parameters.get("apt", -1)), c.payloadType)  # type: ignore
            else:
                base_pts.append(c)
    for codecs, extensions in agreed.values():
        used_pts |= {c.payloadType for c in codecs}  # type: ignore[misc]
        used_ids |= {e.id for e in extensions}

    def free(used: set[int], lo: int, hi: int) -> int:
        n = next(i for i in range(lo, hi + 1) if i not in used)
        used.add(n)
        return n

    desc = sdp.SessionDescription.parse(offer)
    lines: Lines = {}
    for media in desc.media:
        mid = media.rtp.muxId
        if media.kind not in ("audio", "video") or mid is None:
            continue
        if mid in agreed:
            codecs, extensions = copy.deepcopy(agreed[mid])
        else:
            extensions = []
            for e in media.rtp.headerExtensions:
                if e.uri not in ext_ids:
                    ext_ids[e.uri] = free(used_ids, 1, 14)
                extensions.append(RTCRtpHeaderExtensionParameters(id=ext_ids[e.uri], uri=e.uri))
            renumbered: dict[int, int] = {}
            codecs = []
            for c in media.rtp.codecs:
                if c.mimeType.lower().endswith("/rtx"):
                    continue
                same = next((r for r in base_pts if r.mimeType.lower() == c.mimeType.lower()
                             and is_codec_compatible(r, c)), None)
                pt = same.payloadType if same is not None else free(used_pts, 96, 127)
                renumbered[c.payloadType] = pt  # type: ignore[index]
                codecs.append(dataclasses.replace(c, payloadType=pt))
            for c in media.rtp.codecs:
                apt = int(c.parameters.get("apt", -1))
                if c.mimeType.lower().endswith("/rtx") and apt in renumbered:
                    base = renumbered[apt]
                    pt = rtx_of.get(base) or free(used_pts, 96, 127)
                    rtx_of[base] = pt
                    codecs.append(dataclasses.replace(c, payloadType=pt,
                                                      parameters={**c.parameters, "apt": base}))
        media.rtp.codecs = codecs
        media.rtp.headerExtensions = extensions
        media.fmt = [c.payloadType for c in codecs]
        lines[mid] = (codecs, extensions)
    return str(desc), lines
