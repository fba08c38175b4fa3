"""Reaching ``babelcall serve`` from another machine: HTTPS with a self-signed pair for a LAN
trial (made once, reused while it names the machine), one clear error for files that are not a
certificate and its key, and TURN credentials passed to aiortc and (behind the token) to the
page."""

from __future__ import annotations

import argparse
import asyncio
import ssl

import aiohttp
import pytest
from fakes import fake_engines
from transport_utils import running_server

from babelcall.clients.serve_cmd import tls_context
from babelcall.realtime.errors import BabelcallError
from babelcall.transports.server import running
from babelcall.transports.tls import self_signed, server_context


def test_self_signed_pair_serves_https_and_is_reused(tmp_path):
    cert, key = self_signed(tmp_path, ["192.168.1.20"])
    made = cert.stat().st_mtime_ns
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    assert self_signed(tmp_path, ["192.168.1.20"]) == (cert, key)
    assert cert.stat().st_mtime_ns == made  # still names the machine: kept
    self_signed(tmp_path, ["10.1.2.3"])
    assert cert.stat().st_mtime_ns != made  # a new address: made anew

    async def main():
        client = ssl.create_default_context(cafile=str(cert))
        async with running(fake_engines(), host="127.0.0.1",
                           ssl_context=server_context(cert, key)) as srv, \
                aiohttp.ClientSession() as http:
            assert srv.url.startswith("https://")
            async with http.get(f"{srv.url}/health", ssl=client) as resp:
                health = resp.status
            async with http.get(f"{srv.url}/favicon.ico", ssl=client) as resp:
                icon = resp.status, resp.content_type
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                async with http.get(f"{srv.url}/health"):  # an unknown issuer is refused
                    pass
            return health, icon

    health, icon = asyncio.run(main())
    assert health == 200
    assert icon == (200, "image/svg+xml")


def test_bad_tls_files_give_one_clear_error(tmp_path):
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(BabelcallError, match="cannot use the TLS certificate"):
        server_context(junk, junk)

    def args(**kw):
        base = {"tls_cert": None, "tls_key": None, "self_signed": False,
                "tls_dir": str(tmp_path)}
        return argparse.Namespace(**{**base, **kw})

    assert tls_context(args()) is None  # plain http, as before
    with pytest.raises(BabelcallError, match="go together"):
        tls_context(args(tls_cert=str(junk)))
    with pytest.raises(BabelcallError, match="not both"):
        tls_context(args(self_signed=True, tls_cert=str(junk), tls_key=str(junk)))
    assert isinstance(tls_context(args(self_signed=True)), ssl.SSLContext)


def test_plain_server_still_serves_http():
    async def main():
        async with running_server(fake_engines()) as srv:
            return srv.url

    assert asyncio.run(main()).startswith("http://")


def test_turn_credentials_reach_aiortc_and_the_page():
    from babelcall.transports.peer import ice_configuration

    turn = "turn:alice:s3cret@turn.example.org:3478?transport=tcp"
    server = ice_configuration([turn, "stun:stun.example.org:3478"]).iceServers
    assert (server[0].urls, server[0].username, server[0].credential) == \
        ("turn:turn.example.org:3478?transport=tcp", "alice", "s3cret")
    assert server[1].urls == "stun:stun.example.org:3478" and server[1].username is None

    async def main():
        async with running_server(fake_engines(), ice_servers=[turn], token="t") as srv, \
                aiohttp.ClientSession() as http:
            async with http.get(f"{srv.url}/ice") as resp:
                refused = resp.status  # the credentials are behind the token
            async with http.get(f"{srv.url}/ice", headers={"Authorization": "Bearer t"}) as resp:
                return refused, await resp.json()

    refused, body = asyncio.run(main())
    assert refused == 401
    assert body == {"iceServers": [{"urls": "turn:turn.example.org:3478?transport=tcp",
                                    "username": "alice", "credential": "s3cret"}]}
