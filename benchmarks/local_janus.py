"""A private Janus for tests, the benchmark and demos: the Debian ``janus`` binary with its own
config folder (VideoRoom and the WebSockets transport only, a free port, a short session
timeout), no root and no system service; and small room clients (a human publisher, a listener
that records a feed with its captions and when each frame arrived) built on the same aiortc
peers as the bot."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from babelcall.realtime.tasks import cancel_and_wait
from babelcall.transports.conference.base import Feed, PublisherJoined, Subscription
from babelcall.transports.conference.janus import JanusRoom

JANUS = shutil.which("janus") or "/usr/bin/janus"
LIB = Path("/usr/lib/x86_64-linux-gnu/janus")
SESSION_TIMEOUT_S = 6


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _lib(kind: str, name: str) -> Path:
    for base in (LIB, *Path("/usr/lib").glob("*/janus")):
        path = base / kind / name
        if path.exists():
            return path
    raise FileNotFoundError(f"{name} not found under {LIB}/{kind}")


class JanusServer:
    """``rooms``: room id -> extra VideoRoom settings (e.g. {"pin": "1111"})."""

    def __init__(self, folder: Path, rooms: dict[int, dict[str, Any]]) -> None:
        self.folder = folder
        self.rooms = rooms
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = folder / "janus.log"
        self._write_config()

    @property
    def url(self) -> str:
        return f"janus+ws://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def _write_config(self) -> None:
        f = self.folder
        for kind, name in (("plugins", "libjanus_videoroom.so"),
                           ("transports", "libjanus_websockets.so")):
            (f / kind).mkdir(parents=True, exist_ok=True)
            link = f / kind / name
            if not link.exists():
                link.symlink_to(_lib(kind, name))
        (f / "none").mkdir(exist_ok=True)
        (f / "janus.jcfg").write_text(f"""general: {{
  configs_folder = "{f}"
  plugins_folder = "{f}/plugins"
  transports_folder = "{f}/transports"
  events_folder = "{f}/none"
  loggers_folder = "{f}/none"
  debug_level = 4
  session_timeout = {SESSION_TIMEOUT_S}
  protected_folders = []
}}
certificates: {{}}
media: {{}}
nat: {{ nice_debug = false ice_ignore_list = "vmnet" }}
plugins: {{}}
transports: {{}}
loggers: {{}}
events: {{}}
""")
        (f / "janus.transport.websockets.jcfg").write_text(f"""general: {{
  json = "plain" ws = true ws_port = {self.port} ws_ip = "127.0.0.1" wss = false
}}
admin: {{ admin_ws = false admin_wss = false }}
""")
        rooms = "\n".join(
            f"room-{rid}: {{ description = \"test {rid}\" publishers = 12 audiocodec = \"opus\" "
            + " ".join(f'{k} = "{v}"' for k, v in extra.items()) + " }"
            for rid, extra in self.rooms.items())
        (f / "janus.plugin.videoroom.jcfg").write_text(f"general: {{}}\n{rooms}\n")

    def start(self, timeout_s: float = 15.0) -> None:
        log = open(self.log, "ab")  # noqa: SIM115 - the process owns it
        self.proc = subprocess.Popen(
            [JANUS, "--configs-folder", str(self.folder), "--config",
             str(self.folder / "janus.jcfg"), "--disable-colors"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"janus exited ({self.proc.returncode}):\n{self.tail()}")
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port), timeout=0.2):
                return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"janus did not open port {self.port}:\n{self.tail()}")
            time.sleep(0.05)

    def stop(self, kill: bool = False) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def restart(self) -> None:
        """Killed (no goodbye to anyone) and started again on the same port."""
        self.stop(kill=True)
        self.start()

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def janus_available() -> bool:
    return os.path.exists(JANUS) and os.access(JANUS, os.X_OK)


# -- room clients ------------------------------------------------------------------------
async def human(server: JanusServer, room: int, name: str, track: MediaStreamTrack,
                pin: str | None = None) -> tuple[JanusRoom, Feed]:
    """A participant who publishes ``track`` under the display name ``name``."""
    conn = JanusRoom(server.ws_url, room, pin=pin, display=f"{name} (control)")
    await conn.join()
    return conn, await conn.publish(track, name)


@dataclass
class Recording:
    display: str
    subscription: Subscription
    captions: list[dict[str, Any]] = field(default_factory=list)  # each with its client_ns
    chunks: list[np.ndarray] = field(default_factory=list)
    arrivals: list[tuple[int, float]] = field(default_factory=list)  # (monotonic ns, RMS)
    task: asyncio.Task[None] | None = None

    @property
    def audio(self) -> np.ndarray:
        return np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.float32)

    def quiet_for(self, seconds: float, threshold: float = 0.01) -> bool:
        tail = self.audio[-int(seconds * 48000):]
        return len(tail) >= int(seconds * 48000) and float(np.abs(tail).max()) < threshold


class Listener:
    """A participant who subscribes to feeds by display name and records them (48 kHz mono)
    with their captions."""

    def __init__(self, server: JanusServer, room: int, pin: str | None = None) -> None:
        self.conn = JanusRoom(server.ws_url, room, pin=pin, display="listener")
        self.displays: dict[str, Any] = {}
        self._watch: asyncio.Task[None] | None = None

    async def join(self) -> None:
        await self.conn.join()
        self._watch = asyncio.create_task(self._events())

    async def _events(self) -> None:
        async for ev in self.conn.events():
            if isinstance(ev, PublisherJoined):
                self.displays[ev.publisher.display] = ev.publisher

    async def record(self, display: str, timeout_s: float = 30.0) -> Recording:
        deadline = time.monotonic() + timeout_s
        while display not in self.displays:
            if time.monotonic() > deadline:
                raise AssertionError(f"no feed {display!r} within {timeout_s:.0f} s; "
                                     f"present: {sorted(self.displays)}")
            await asyncio.sleep(0.05)
        rec_captions: list[dict[str, Any]] = []

        def stamp(caption: dict[str, Any]) -> None:
            rec_captions.append({**caption, "client_ns": time.monotonic_ns()})

        sub = await self.conn.subscribe(self.displays[display], on_caption=stamp)
        rec = Recording(display, sub, rec_captions)
        rec.task = asyncio.create_task(_record(sub.track, rec.chunks, rec.arrivals))
        return rec

    async def close(self) -> None:
        if self._watch is not None:
            await cancel_and_wait([self._watch])
        await self.conn.leave()


async def _record(track: MediaStreamTrack, chunks: list[np.ndarray],
                  arrivals: list[tuple[int, float]]) -> None:
    with contextlib.suppress(MediaStreamError):
        while True:
            frame = await track.recv()
            pcm = frame.to_ndarray().reshape(-1, len(frame.layout.channels)).mean(axis=1)
            pcm = (pcm / 32768.0).astype(np.float32)
            chunks.append(pcm)
            arrivals.append((time.monotonic_ns(),
                             float(np.sqrt(np.mean(pcm ** 2))) if len(pcm) else 0.0))
