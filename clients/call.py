"""``babelcall call FILE|mic --server URL``: be a caller. Sends a file (paced in real time) or the
microphone to a babelcall server over WebRTC (WHIP with a sendrecv audio line and a "captions"
data channel), records the translated audio that comes back to a WAV file and the captions to
JSON lines. After the file (or Ctrl-C for the mic) it sends ``{"type": "end"}``, waits for the
server's ``done`` (the translation has drained), then hangs up with DELETE."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urljoin

import numpy as np

from babelcall.realtime.errors import BabelcallError
from babelcall.transports.tracks import WIRE_RATE

LOUD_RMS = 0.01  # a received frame louder than this is translated speech, not silence


@dataclass
class CallResult:
    audio: np.ndarray            # received translated audio, 48 kHz mono float32
    rate: int
    records: list[dict[str, Any]] = field(default_factory=list)
    sent_s: float = 0.0          # input audio sent
    first_audio_s: float | None = None  # first translated sound, from the start of sending
    wall_s: float = 0.0
    drained: bool = False        # the server said "done" before the timeout
    sent_start_ns: int | None = None  # monotonic ns when the first input frame went out
    arrivals: list[tuple[int, float]] = field(default_factory=list)  # (ns, RMS) per frame
    pts_arrivals: list[tuple[int, int]] = field(default_factory=list)  # (pts, ns) per frame


class Caller:
    """One WebRTC call to a babelcall server, WHIP-style (SDP offer in, SDP answer and a
    Location out): ``/whip`` to be translated, ``/rooms/<room>/join`` to join a room,
    ``/whep/<id>`` to listen (``track=None``: receive only). Records what comes back.

    ``video``: a track to send as well, or True to receive the call's (delayed) video."""

    def __init__(self, track: Any, server: str, *, endpoint: str = "/whip",
                 params: dict[str, Any] | None = None, token: str | None = None,
                 ice_servers: list[str] | None = None, video: Any = None,
                 on_record: Callable[[dict[str, Any]], None] | None = None) -> None:
        from aiortc import RTCPeerConnection

        from babelcall.transports.peer import ice_configuration
        from babelcall.transports.tracks import OpusTrack

        self.track = track
        self.url = urljoin(server, endpoint) + (f"?{urlencode(params)}" if params else "")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.on_record = on_record
        self.pc = RTCPeerConnection(ice_configuration(ice_servers))
        self.records: list[dict[str, Any]] = []
        self.received: list[np.ndarray] = []
        self.arrivals: list[tuple[int, float]] = []  # (monotonic ns, RMS) per received frame
        self.pts_arrivals: list[tuple[int, int]] = []  # (pts, monotonic ns) per received frame
        self.video_frames = 0
        self.received_pts = 0  # end of the received audio, on the server's output clock
        self.location: str | None = None
        self.done = asyncio.Event()
        self.gone = asyncio.Event()  # the connection failed or the server closed it
        self.started = time.monotonic()
        self._connected = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        if track is None:
            self.pc.addTransceiver("audio", direction="recvonly")
        else:  # encoded here: see OpusTrack (our server always takes Opus)
            self.pc.addTransceiver(OpusTrack(track), direction="sendrecv")
        if video is True:
            self.pc.addTransceiver("video", direction="recvonly")
        elif video is not None:
            self.pc.addTransceiver(video, direction="sendrecv")
        self.channel = self.pc.createDataChannel("captions")
        self.channel.on("message", self._message)
        self.pc.on("track", self._track)
        self.pc.on("connectionstatechange", self._state)

    @property
    def first_audio_s(self) -> float | None:
        """First translated sound received, in seconds from the first frame sent."""
        sent_at = getattr(self.track, "started_ns", None)
        if not sent_at:
            return None
        return next(((ns - sent_at) / 1e9 for ns, rms in self.arrivals if rms > LOUD_RMS), None)

    @property
    def audio(self) -> np.ndarray:
        return np.concatenate(self.received) if self.received else np.zeros(0, np.float32)

    async def connect(self, timeout: float = 30.0) -> None:
        import aiohttp
        from aiortc import RTCSessionDescription

        await self.pc.setLocalDescription(await self.pc.createOffer())
        async with aiohttp.ClientSession() as http, http.post(
                self.url, data=self.pc.localDescription.sdp,
                headers={**self.headers, "Content-Type": "application/sdp"}) as resp:
            body = await resp.text()
            if resp.status != 201:
                await self.pc.close()
                raise CallRefused(resp.status, _message(body))
            self.location = urljoin(self.url, resp.headers.get("Location", ""))
        await self.pc.setRemoteDescription(RTCSessionDescription(body, "answer"))
        try:
            async with asyncio.timeout(timeout):
                await self._connected.wait()
        except TimeoutError:
            await self.hang_up()
            raise BabelcallError(f"the call did not connect within {timeout:.0f} s "
                                 "(ICE failed?)") from None

    def send(self, msg: dict[str, Any]) -> bool:
        if self.channel.readyState != "open":
            return False
        self.channel.send(json.dumps(msg))
        return True

    async def finish(self, drain_timeout: float = 60.0) -> bool:
        """No more input: ask the server to finish, wait for its "done" (True if it came)."""
        if self.gone.is_set():
            return False
        await asyncio.sleep(0.3)  # the last input frames are still on the way
        if self.send({"type": "end"}):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(drain_timeout):
                    await self.done.wait()
        done = next((r for r in self.records if r.get("type") == "done"), {})
        if "out_pts" in done:  # wait until we have received everything the server sent
            deadline = time.monotonic() + 30
            while self.received_pts < done["out_pts"] and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        else:
            await asyncio.sleep(0.5)
        return self.done.is_set()

    async def hang_up(self) -> None:
        import aiohttp

        from babelcall.realtime.tasks import cancel_and_wait

        if self.location:
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with aiohttp.ClientSession() as http, \
                        http.delete(self.location, headers=self.headers):
                    pass
            self.location = None
        await self.pc.close()
        await cancel_and_wait(self._tasks)

    # -- events -----------------------------------------------------------------------------
    def _message(self, message: str) -> None:
        rec = json.loads(message)
        rec["client_ms"] = round((time.monotonic() - self.started) * 1000, 1)
        rec["client_ns"] = time.monotonic_ns()
        self.records.append(rec)
        if self.on_record:
            self.on_record(rec)
        if rec.get("type") == "done":
            self.done.set()

    def _track(self, remote: Any) -> None:
        self._tasks.append(asyncio.ensure_future(
            self._record(remote) if remote.kind == "audio" else self._count(remote)))

    def _state(self) -> None:
        if self.pc.connectionState == "connected":
            self._connected.set()
        elif self.pc.connectionState in ("failed", "closed"):
            self.gone.set()

    async def _record(self, remote: Any) -> None:
        from aiortc.mediastreams import MediaStreamError

        from babelcall.realtime.audio import Resampler

        resampler = Resampler(WIRE_RATE)
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await remote.recv()
                now = time.monotonic_ns()
                if frame.pts is not None:
                    self.received_pts = max(self.received_pts, frame.pts + frame.samples)
                    self.pts_arrivals.append((frame.pts, now))
                pcm = resampler.push(frame)
                self.received.append(pcm)
                rms = float(np.sqrt(np.mean(pcm ** 2))) if len(pcm) else 0.0
                self.arrivals.append((now, rms))

    async def _count(self, remote: Any) -> None:
        from aiortc.mediastreams import MediaStreamError

        with contextlib.suppress(MediaStreamError):
            while True:
                await remote.recv()
                self.video_frames += 1


class CallRefused(BabelcallError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"the server refused the call ({status}): {message}")
        self.status = status


async def run_call(track: Any, server: str, source: str, target: str, *,
                   token: str | None = None, mix: float = 0.0,
                   ice_servers: list[str] | None = None, drain_timeout: float = 60.0,
                   stop: asyncio.Event | None = None,
                   on_record: Callable[[dict[str, Any]], None] | None = None) -> CallResult:
    """Call ``server`` with ``track`` (a PcmTrack, whose ``finished`` ends the call, or a live
    track that runs until ``stop`` is set), drain the translation, hang up."""
    caller = Caller(track, server, params={"source": source, "target": target, "mix": mix},
                    token=token, ice_servers=ice_servers, on_record=on_record)
    try:
        await caller.connect()
        waits = [asyncio.ensure_future(e.wait()) for e in
                 (getattr(track, "finished", None), stop, caller.gone) if e is not None]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for w in waits:
            w.cancel()
        sent_s = getattr(track, "sent_s", time.monotonic() - caller.started)
        drained = await caller.finish(drain_timeout)
    finally:
        await caller.hang_up()
    return CallResult(caller.audio, WIRE_RATE, caller.records, sent_s, caller.first_audio_s,
                      time.monotonic() - caller.started, drained,
                      getattr(track, "started_ns", None), caller.arrivals,
                      caller.pts_arrivals)


def _message(body: str) -> str:
    try:
        return json.loads(body).get("message", body)
    except (ValueError, AttributeError):
        return body[:300]


def _mic(device: str | None, fmt: str | None) -> Any:
    from aiortc.contrib.media import MediaPlayer

    if fmt is None:
        fmt = {"darwin": "avfoundation", "win32": "dshow"}.get(sys.platform, "pulse")
    if device is None:
        device = {"avfoundation": ":0", "dshow": "audio=default"}.get(fmt, "default")
    try:
        return MediaPlayer(device, format=fmt).audio
    except Exception as exc:
        raise BabelcallError(f"cannot open the microphone ({fmt}:{device}): {exc}; "
                             "try --mic-format alsa --mic-device hw:0") from exc


def cmd_call(args: argparse.Namespace) -> int:
    from babelcall.realtime.audio import load_file, write_wav
    from babelcall.transports.tracks import PcmTrack

    stop: asyncio.Event | None = None
    if args.input == "mic":
        track = _mic(args.mic_device, args.mic_format)
    else:
        if not os.path.isfile(args.input):
            raise BabelcallError(f"{args.input}: no such file")
        track = PcmTrack(load_file(args.input, WIRE_RATE), WIRE_RATE, lead_in_s=0.5)
    captions = open(args.captions, "w", encoding="utf-8") if args.captions else None  # noqa: SIM115

    def on_record(rec: dict[str, Any]) -> None:
        if captions:
            captions.write(json.dumps(rec, ensure_ascii=False) + "\n")
        if not args.quiet and rec.get("type") == "translation" and rec.get("committed"):
            print(f"[{rec['src_end']:7.2f}s] {rec['committed']}", flush=True)

    async def main() -> CallResult:
        nonlocal stop
        if args.input == "mic":
            stop = asyncio.Event()
            asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.set)
            print("babelcall: live — press Ctrl-C to end the call", file=sys.stderr)
        return await run_call(track, args.server, args.source, args.target, token=args.token,
                              mix=args.mix, ice_servers=args.stun, stop=stop,
                              drain_timeout=args.drain_timeout, on_record=on_record)

    try:
        result = asyncio.run(main())
    finally:
        if captions:
            captions.close()
    write_wav(args.output, result.audio, result.rate)
    if not args.quiet:
        outs = [r["latency_ms"] for r in result.records if r.get("type") == "audio_out"]
        first = f"{result.first_audio_s:.2f} s" if result.first_audio_s is not None else "none"
        mean = f"{np.mean(outs) / 1000:.2f} s" if outs else "n/a"
        print(f"wrote {args.output}: {len(result.audio) / result.rate:.1f} s for "
              f"{result.sent_s:.1f} s sent; first translated sound after {first}; "
              f"speech-end-to-audio latency {mean} (mean of {len(outs)})"
              + ("" if result.drained else "; the call ended before the translation drained"),
              file=sys.stderr)
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("call", help="call a babelcall server with a file or the microphone")
    p.add_argument("input", help="audio file (anything FFmpeg decodes), or 'mic'")
    p.add_argument("--server", default="http://127.0.0.1:8080", help="babelcall server URL")
    p.add_argument("--source", "-s", default="en", help="language spoken (default: en)")
    p.add_argument("--target", "-t", default="es", help="language wanted (default: es)")
    p.add_argument("-o", "--output", required=True, help="translated audio received (WAV)")
    p.add_argument("--captions", help="write the captions and stats as JSON lines here")
    p.add_argument("--token", default=os.environ.get("BABELCALL_TOKEN"),
                   help="bearer token (default: $BABELCALL_TOKEN)")
    p.add_argument("--mix", type=float, default=0.0,
                   help="level of the original voice under the translation (0-1)")
    p.add_argument("--stun", action="append", help="STUN/TURN URL (repeatable)")
    p.add_argument("--mic-device", help="microphone device (default: the system default)")
    p.add_argument("--mic-format", help="FFmpeg input format: pulse, alsa, avfoundation, dshow")
    p.add_argument("--drain-timeout", type=float, default=60.0,
                   help="seconds to wait for the translation to finish after the input ends")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_call)
