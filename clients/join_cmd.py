"""``babelcall join`` and ``babelcall worker``: interpret the people of a conference room on a
Janus server (VideoRoom), as a participant of the room.

    babelcall join janus+ws://HOST:8188/1234 --source en --target es
    babelcall join janus+ws://HOST:8188/1234 --languages ana=en,luis=es --pin 1111
    babelcall worker janus+ws://HOST:8188 --rooms 1234,5678     # run one per machine

The room is checked before any model loads, so a wrong address, room or pin fails in a
second with one clear line and exit code 2."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from typing import Any

from babelcall.realtime.errors import BabelcallError

log = logging.getLogger(__name__)


def _config(args: argparse.Namespace):  # -> BotConfig
    from babelcall.transports.conference.bot import BotConfig, parse_languages

    languages = parse_languages(args.languages)
    if args.source == args.target:
        raise BabelcallError(f"--source and --target are both '{args.source}'")
    return BotConfig(source=args.source, target=args.target, languages=languages,
                     voice=args.voice, detect=args.detect_languages)


def _load_engines(args: argparse.Namespace, config: Any):  # -> Engines
    from babelcall.clients.cli import load_engines

    engines = load_engines(args)
    config.check(engines)
    return engines


async def _until_signal(task: asyncio.Future[Any]) -> None:
    """Run ``task`` until it ends or SIGINT/SIGTERM; then return (the caller cleans up)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    waiter = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    if task.done():
        task.result()  # the bot's own end: raises its error


def cmd_join(args: argparse.Namespace) -> int:
    from babelcall.transports.conference import open_room
    from babelcall.transports.conference.joinbot import JoinBot

    config = _config(args)
    options = dict(pin=args.pin, display=args.display, token=args.token,
                   apisecret=args.secret, ice_servers=args.stun or [])

    async def main() -> None:
        probe = open_room(args.url, **options)  # fail fast: before seconds of model loading
        await probe.join()
        await probe.leave()
        engines = await asyncio.to_thread(_load_engines, args, config)
        bot = JoinBot(lambda: open_room(args.url, **options), engines, config,
                      rejoin=not args.no_rejoin, rejoin_timeout_s=args.rejoin_timeout)
        await bot.start()
        print(f"babelcall: joined {args.url} as {args.display!r}; interpreting "
              f"({', '.join(f'{s}->{t}' for s, t in config.pairs())}); Ctrl-C to leave",
              flush=True)
        try:
            await _until_signal(asyncio.ensure_future(bot.wait()))
        finally:
            await bot.stop()

    asyncio.run(main())
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from babelcall.realtime.scheduler import Scheduler
    from babelcall.transports.conference import open_room
    from babelcall.transports.conference.janus import JanusLobby, parse_url
    from babelcall.transports.conference.worker import Worker

    config = _config(args)
    base, url_room = parse_url(args.url)
    rooms: list[int | str] | None = None
    if args.rooms:
        rooms = [int(r) if r.isdigit() else r for r in
                 filter(None, (r.strip() for r in args.rooms.split(",")))]
    elif url_room is not None:
        rooms = [url_room]
    if args.max_rooms is not None and args.max_rooms < 1:
        raise BabelcallError("--max-rooms must be at least 1")

    async def main() -> None:
        lobby = JanusLobby(base, token=args.token, apisecret=args.secret)
        await lobby.list_rooms()  # unreachable / unauthorized: fail before loading models
        engines = await asyncio.to_thread(_load_engines, args, config)
        worker = Worker(
            lambda room, display: open_room(args.url, room, pin=args.pin, display=display,
                                            token=args.token, apisecret=args.secret,
                                            ice_servers=args.stun or []),
            lobby.list_rooms, lobby.list_participants,
            Scheduler(engines, max_sessions=args.max_sessions), config,
            worker_id=args.worker_id, rooms=rooms, recheck_s=args.recheck,
            max_rooms=args.max_rooms)
        await worker.start()
        print(f"babelcall: worker {worker.worker_id} serving "
              f"{'rooms ' + ','.join(map(str, rooms)) if rooms else 'every listed room'} "
              f"of {base}", flush=True)
        try:
            await _until_signal(asyncio.ensure_future(worker.wait()))
        finally:
            await worker.stop()
            await lobby.close()

    asyncio.run(main())
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    from babelcall.clients.cli import engine_args

    p.add_argument("--pin", help="room PIN, if the room has one")
    p.add_argument("--secret", default=os.environ.get("JANUS_API_SECRET"),
                   help="Janus API secret (apisecret in janus.jcfg; default: "
                        "$JANUS_API_SECRET)")
    p.add_argument("--token", default=os.environ.get("JANUS_TOKEN"),
                   help="Janus auth token (token_auth in janus.jcfg; default: $JANUS_TOKEN)")
    p.add_argument("--languages", help="who speaks what, by display name: ana=en,luis=es "
                                       "(others speak --source)")
    p.add_argument("--detect-languages", action="store_true",
                   help="participants not in --languages: detect their language (Whisper "
                        "language ID on their first seconds of speech, among the room's "
                        "languages) instead of assuming --source")
    p.add_argument("--stun", action="append", help="STUN/TURN URL for ICE (repeatable)")
    for name, default, what in (("source", "en", "language of participants not in "
                                                  "--languages"),
                                ("target", "es", "the room's other language")):
        p.add_argument(f"--{name}", f"-{name[0]}", default=default,
                       help=f"{what} (default: {default})")
    engine_args(p, languages=False)


def register(sub: Any) -> None:
    j = sub.add_parser("join", help="interpret a Janus VideoRoom room as a participant: each "
                                    "speaker's translation becomes a feed of its own")
    j.add_argument("url", help="janus+ws://HOST:8188/ROOM")
    j.add_argument("--display", default="babelcall",
                   help="the bot's name in the room (default: babelcall; keep the prefix, "
                        "every babelcall feed is skipped by it)")
    j.add_argument("--no-rejoin", action="store_true",
                   help="exit with an error when the server goes away, instead of rejoining")
    j.add_argument("--rejoin-timeout", type=float, default=120.0,
                   help="give up rejoining after this many seconds (default: 120)")
    _common(j)
    j.set_defaults(func=cmd_join)

    w = sub.add_parser("worker", help="serve the rooms of a Janus server together with other "
                                      "workers (no coordinator: Janus' participant lists are "
                                      "the shared state)")
    w.add_argument("url", help="janus+ws://HOST:8188")
    w.add_argument("--rooms", help="comma-separated rooms to serve (default: every room the "
                                   "VideoRoom 'list' request returns)")
    w.add_argument("--worker-id", help="this worker's id; the smallest id present wins a room "
                                       "(default: random)")
    w.add_argument("--max-rooms", type=int, help="claim at most this many rooms")
    w.add_argument("--max-sessions", type=int, help="scheduler limit on sessions; a full "
                                                    "worker claims no new room")
    w.add_argument("--recheck", type=float, default=3.0,
                   help="seconds between claim checks (default: 3)")
    _common(w)
    w.set_defaults(func=cmd_worker)
