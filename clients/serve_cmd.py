"""``babelcall serve``: run the live interpreter server (WebRTC, WHIP/WHEP, rooms, WebSocket and
the browser page) on one port. Models load once, before the port opens; every call then
shares them through one scheduler."""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
from typing import Any

from babelcall.realtime.errors import BabelcallError


def cmd_serve(args: argparse.Namespace) -> int:
    from babelcall.clients.cli import load_engines
    from babelcall.transports.hub import ServerConfig
    from babelcall.transports.server import serve

    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.token:
        print("babelcall: warning: serving beyond localhost without --token; anyone who can "
              "reach the port can use the models", flush=True)
    if args.max_sessions is not None and args.max_sessions < 1:
        raise BabelcallError("--max-sessions must be at least 1")
    ssl_context = tls_context(args)  # before the models load: a bad file fails at once
    engines = load_engines(args)
    config = ServerConfig(token=args.token, source=args.source, target=args.target,
                          voice=args.voice, max_sessions=args.max_sessions,
                          ice_servers=args.stun or [], cors_origin=args.cors_origin)
    try:
        asyncio.run(serve(engines, config, args.host, args.port, ssl_context=ssl_context))
    except KeyboardInterrupt:
        pass
    return 0


def tls_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    """HTTPS from --tls-cert/--tls-key, or a self-signed pair for a LAN trial."""
    from babelcall.transports.tls import self_signed, server_context

    if args.self_signed and (args.tls_cert or args.tls_key):
        raise BabelcallError("--self-signed makes its own certificate: give it or "
                             "--tls-cert/--tls-key, not both")
    if args.self_signed:
        cert, key = self_signed(args.tls_dir)
        print(f"babelcall: self-signed certificate {cert} (browsers will ask you to accept "
              "it once)", flush=True)
        return server_context(cert, key)
    if bool(args.tls_cert) != bool(args.tls_key):
        raise BabelcallError("--tls-cert and --tls-key go together")
    return server_context(args.tls_cert, args.tls_key) if args.tls_cert else None


def register(sub: Any) -> None:
    from babelcall.clients.cli import engine_args

    p = sub.add_parser("serve", help="serve live translation: WebRTC (browser page, WHIP/WHEP, "
                                     "rooms) and WebSocket")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on "
                                                       "(default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default: 8080)")
    p.add_argument("--token", default=os.environ.get("BABELCALL_TOKEN"),
                   help="require 'Authorization: Bearer TOKEN' (or ?token=) on every call "
                        "and socket (default: $BABELCALL_TOKEN)")
    p.add_argument("--max-sessions", type=int, help="refuse calls beyond this many sessions "
                                                    "(503); the scheduler also refuses when "
                                                    "translations run late")
    p.add_argument("--stun", action="append",
                   help="STUN or TURN server for ICE beyond the LAN (repeatable), e.g. "
                        "stun:stun.example.org:3478 or turn:USER:PASSWORD@turn.example.org:3478"
                        "; the browser page uses the same servers")
    p.add_argument("--cors-origin", help="allow signalling from this web origin (or '*')")
    p.add_argument("--tls-cert", help="serve HTTPS with this certificate (PEM; browsers give "
                                      "the camera and microphone only to secure pages)")
    p.add_argument("--tls-key", help="the certificate's private key (PEM)")
    p.add_argument("--self-signed", action="store_true",
                   help="serve HTTPS with a self-signed certificate for this machine's "
                        "names and LAN addresses (made once, kept in --tls-dir): for a "
                        "trial between laptops")
    p.add_argument("--tls-dir", default="~/.cache/babelcall/tls",
                   help="where --self-signed keeps its certificate "
                        "(default: ~/.cache/babelcall/tls)")
    # Callers choose their own languages; here --source/--target only pick the default pair
    # (and the engines checked at start-up).
    for name, default in (("source", "en"), ("target", "es")):
        p.add_argument(f"--{name}", f"-{name[0]}", default=default,
                       help=f"default {name} language for callers that name none "
                            f"(default: {default})")
    engine_args(p, languages=False)
    p.set_defaults(func=cmd_serve)
