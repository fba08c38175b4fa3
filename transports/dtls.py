"""DTLS that completes with RSA peers too, and says why it did not.

aiortc's DTLS context offers only ECDHE-ECDSA cipher suites. When babelcall answers an offer it
is the DTLS client (``a=setup:active``), so a peer whose certificate is RSA — GStreamer's
webrtcbin, which generates a 2048-bit RSA certificate, and others — has no suite it can choose
and refuses the handshake ("no shared cipher"). Browsers use ECDSA certificates, which is why
this goes unnoticed. ``InteropCertificate`` is aiortc's own certificate (ECDSA P-256, same
fingerprints) whose context offers the ECDHE-RSA suites as well, in the order browsers use;
nothing else of aiortc's handshake changes. It is installed per peer connection
(``use_interop_certificate``), never by patching aiortc's module, so other aiortc users in the
process keep their defaults.

aiortc logs a failed handshake only at debug level; the certificate also records the TLS
alerts of its handshakes so a failed peer's log line can name the cause."""

from __future__ import annotations

import logging
from typing import Any

from aiortc import RTCPeerConnection
from aiortc.rtcdtlstransport import RTCCertificate, SRTPProtectionProfile
from OpenSSL import SSL

from babelcall.transports import compat

log = logging.getLogger(__name__)
CIPHERS = b":".join([
    b"ECDHE-ECDSA-AES128-GCM-SHA256", b"ECDHE-RSA-AES128-GCM-SHA256",
    b"ECDHE-ECDSA-AES256-GCM-SHA384", b"ECDHE-RSA-AES256-GCM-SHA384",
    b"ECDHE-ECDSA-CHACHA20-POLY1305", b"ECDHE-RSA-CHACHA20-POLY1305",
    b"ECDHE-ECDSA-AES128-SHA", b"ECDHE-RSA-AES128-SHA",
    b"ECDHE-ECDSA-AES256-SHA", b"ECDHE-RSA-AES256-SHA",
])
_ALERT = 0x4000  # SSL_CB_ALERT
_READ = 0x04     # SSL_CB_READ: an alert received (otherwise sent)
ALERTS = {0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac",
          40: "handshake_failure (no shared cipher suite?)", 42: "bad_certificate",
          43: "unsupported_certificate", 45: "certificate_expired", 46: "certificate_unknown",
          47: "illegal_parameter", 48: "unknown_ca", 50: "decode_error", 51: "decrypt_error",
          70: "protocol_version", 71: "insufficient_security", 80: "internal_error",
          110: "unsupported_extension"}


class InteropCertificate(RTCCertificate):
    alert: str | None = None  # the last fatal TLS alert of a handshake, for the logs

    def _create_ssl_context(self, srtp_profiles: list[SRTPProtectionProfile]) -> SSL.Context:
        ctx = super()._create_ssl_context(srtp_profiles)
        ctx.set_cipher_list(CIPHERS)
        ctx.set_info_callback(self._on_info)
        return ctx

    def _on_info(self, conn: SSL.Connection, where: int, ret: int) -> None:
        if where & _ALERT and ret >> 8 == 2:  # level 2: fatal
            name = ALERTS.get(ret & 0xFF, f"alert {ret & 0xFF}")
            self.alert = f"{'received' if where & _READ else 'sent'} {name}"


def use_interop_certificate(pc: RTCPeerConnection) -> InteropCertificate | None:
    """Give ``pc`` (new, before any description is set) an ``InteropCertificate``. aiortc has
    no public way to pass certificates; if its private attribute moves, the default stays and
    RSA peers fail as before (with a warning here, and tests/transports/test_dtls.py fails)."""
    cert = InteropCertificate.generateCertificate()
    if not compat.set_certificates(pc, [cert]):
        log.warning("aiortc internals changed: DTLS with RSA peers is not enabled")
        return None
    return cert


def failure_cause(pc: RTCPeerConnection, cert: InteropCertificate | None) -> str:
    """Why a peer connection is not connected: ICE, DTLS (with the TLS alert), or neither."""
    ice = pc.iceConnectionState
    dtls = _dtls_states(pc)
    if ice == "failed":
        return "ICE failed: no candidate pair answered (firewall, NAT, or unreachable " \
               "candidates; a TURN server may be needed)"
    if "failed" in dtls:
        alert = cert.alert if cert is not None else None
        return "DTLS handshake failed" + (f": {alert}" if alert else
                                          " (or the certificate fingerprint did not match)")
    return f"ICE {ice}, DTLS {', '.join(sorted(dtls)) or 'not started'}"


def _dtls_states(pc: RTCPeerConnection) -> set[str]:
    transports: list[Any] = [t.receiver.transport for t in pc.getTransceivers()
                             if t.receiver is not None]
    if pc.sctp is not None:
        transports.append(pc.sctp.transport)
    return {t.state for t in transports if t is not None}
