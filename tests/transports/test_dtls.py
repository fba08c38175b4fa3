"""DTLS with RSA and ECDSA peers (transports/dtls.py), on real aiortc connections over
loopback: babelcall answers, so it is the DTLS client and must offer suites for the peer's
certificate type. The RSA peer stands in for GStreamer's webrtcbin (whose 2048-bit RSA
certificate and OpenSSL's default suite list it copies); test_gstreamer.py runs the real one."""

import asyncio
import logging

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack
from aiortc.rtcdtlstransport import RTCCertificate, generate_certificate
from cryptography.hazmat.primitives.asymmetric import rsa

from babelcall.transports.dtls import failure_cause
from babelcall.transports.peer import Peer
from babelcall.transports.signaling import parse_offer

pytestmark = pytest.mark.timeout(60)


class RsaCertificate(RTCCertificate):
    """An RSA-keyed peer whose DTLS server accepts OpenSSL's default suites (as webrtcbin)."""

    ciphers = b"DEFAULT"

    @classmethod
    def generateCertificate(cls):  # noqa: N802 - aiortc's name
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return cls(key=key, cert=generate_certificate(key))

    def _create_ssl_context(self, srtp_profiles):
        ctx = super()._create_ssl_context(srtp_profiles)
        ctx.set_cipher_list(self.ciphers)
        return ctx


class RsaEcdsaOnlyCertificate(RsaCertificate):
    """An RSA certificate behind a server that only allows ECDSA suites: no handshake can
    succeed, whoever the client is (how a failure with a TLS alert is produced here)."""

    ciphers = b"ECDHE-ECDSA-AES128-GCM-SHA256"


async def connect(offerer_cert: type[RTCCertificate] | None, interop: bool = True
                  ) -> tuple[str, str, str]:
    """An offerer (DTLS server, as a WHIP client is) and babelcall's Peer as the answerer
    (``interop=False``: a plain aiortc answerer, aiortc's defaults)."""
    offerer = RTCPeerConnection()
    if offerer_cert is not None:
        offerer._RTCPeerConnection__certificates = [offerer_cert.generateCertificate()]
    offerer.addTransceiver(AudioStreamTrack(), direction="sendrecv")
    offerer.createDataChannel("captions")
    await offerer.setLocalDescription(await offerer.createOffer())
    if interop:
        peer = Peer(parse_offer(offerer.localDescription.sdp, need_send=True,
                                need_receive=False), connect_timeout_s=20)
        answer, pc = await peer.answer(lambda p: None), peer.pc
        cert = peer._certificate
    else:
        peer, pc, cert = None, RTCPeerConnection(), None
        await pc.setRemoteDescription(offerer.localDescription)
        await pc.setLocalDescription(await pc.createAnswer())
        answer = pc.localDescription.sdp
    try:
        assert "a=setup:active" in answer  # babelcall answers: it is the DTLS client
        await offerer.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        seen = "new"
        for _ in range(300):
            seen = pc.connectionState
            if seen in ("connected", "failed", "closed"):
                break
            await asyncio.sleep(0.05)
        cause = failure_cause(pc, cert)
        return seen, offerer.connectionState, cause
    finally:
        await offerer.close()
        await (peer.close() if peer is not None else pc.close())


@pytest.mark.parametrize("peer", [None, RsaCertificate], ids=["ecdsa-peer", "rsa-peer"])
def test_babelcall_completes_dtls_with_ecdsa_and_rsa_peers(peer):
    ours, theirs, _ = asyncio.run(connect(peer))
    assert (ours, theirs) == ("connected", "connected")


def test_aiortcs_default_cannot_complete_dtls_with_an_rsa_peer():
    """Why the interop certificate exists: aiortc's own context offers ECDSA suites only."""
    ours, _, cause = asyncio.run(connect(RsaCertificate, interop=False))
    assert ours == "failed" and cause.startswith("DTLS handshake failed"), cause


def test_a_failed_peer_is_logged_once_with_its_cause(caplog):
    with caplog.at_level(logging.INFO, logger="babelcall.transports.peer"):
        ours, _, _ = asyncio.run(connect(RsaEcdsaOnlyCertificate))
    assert ours in ("failed", "closed")
    failed = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert len(failed) == 1, failed
    assert failed[0].endswith("failed: DTLS handshake failed: received handshake_failure "
                              "(no shared cipher suite?)"), failed
