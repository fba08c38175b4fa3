"""HTTPS for ``babelcall serve``. Browsers give the camera and microphone only to secure pages
(https, or http on localhost), so a call between two laptops needs TLS: a real certificate
(``--tls-cert/--tls-key``), or for a trial on a LAN a self-signed one made here
(``--self-signed``), which each browser is then told to accept once.

The self-signed pair names localhost, this machine's host name and every address it has on the
LAN (a browser checks the address typed against the certificate); it is kept in a folder and
reused while it is valid and still names them all."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import socket
import ssl
from pathlib import Path

from babelcall.realtime.errors import BabelcallError

VALID_DAYS = 90


def server_context(cert: str | Path, key: str | Path) -> ssl.SSLContext:
    """A TLS server context from PEM files, or one clear error."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise BabelcallError(f"cannot use the TLS certificate {cert} with key {key}: "
                             f"{exc}") from exc
    return ctx


def local_addresses() -> list[str]:
    """This machine's IP addresses, loopback first (no packet is sent to find them)."""
    found = ["127.0.0.1", "::1"]
    with contextlib.suppress(OSError):
        for info in socket.getaddrinfo(socket.gethostname(), None):
            found.append(str(info[4][0]))
    for probe in (("10.255.255.255", 1), ("192.168.255.255", 1)):
        with contextlib.suppress(OSError), \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(probe)  # UDP connect only picks the outgoing interface
            found.append(s.getsockname()[0])
    return [a for a in dict.fromkeys(found) if not a.startswith("0.")]


def self_signed(folder: str | Path, hosts: list[str] | None = None) -> tuple[Path, Path]:
    """A certificate and key in ``folder`` naming localhost, the host name and ``hosts``
    (default: every local address); made anew when missing, expiring or not naming them all."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder = Path(folder).expanduser()
    cert_path, key_path = folder / "babelcall-cert.pem", folder / "babelcall-key.pem"
    names = ["localhost", "127.0.0.1", "::1", socket.gethostname(),
             *(hosts or local_addresses())]
    dns = sorted({n for n in names if not _is_ip(n)})
    ips = sorted({n for n in names if _is_ip(n)})
    now = datetime.datetime.now(datetime.UTC)
    if cert_path.exists() and key_path.exists():
        with contextlib.suppress(ValueError, OSError):
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            have = set(alt.get_values_for_type(x509.DNSName)) | \
                {str(a) for a in alt.get_values_for_type(x509.IPAddress)}
            if set(dns) | set(ips) <= have and \
                    cert.not_valid_after_utc > now + datetime.timedelta(days=1):
                return cert_path, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "babelcall (self-signed)")])
    alt_names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns]
    alt_names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ips]
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
            .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    key_path.touch(mode=0o600)
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
