"""A foreign WebRTC stack against ``babelcall serve``: GStreamer's webrtcbin (Debian's
gstreamer1.0-plugins-bad, libnice, python3-gi; installed by install.sh) publishes an English
FLEURS clip over WHIP and subscribes to the translation over WHEP. webrtcbin's DTLS
certificate is RSA, so this is also the RSA-peer DTLS check (transports/dtls.py) with a real
client. The Spanish it heard is scored by an independent transcriber against the reference.

The GStreamer peer runs as a subprocess of Debian's /usr/bin/python3 (tests/transports/
gst_whip_peer.py): python3-gi is built for that interpreter, not the project's."""

import asyncio
import json
import logging
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import sacrebleu
from conftest import hear_back, load_clip, reference
from transport_utils import compact, running_server, to_16k, until

from babelcall.realtime.audio import write_wav

pytestmark = pytest.mark.timeout(180)
PEER = Path(__file__).with_name("gst_whip_peer.py")
SYSTEM_PYTHON = "/usr/bin/python3"
CLIP = "fleurs-en-000"
LEAD_IN_S, TAIL_S = 3.0, 4.0   # silence around the clip: connect first, then a phrase end
LISTEN_AFTER_S = 20.0          # after the clip: time for the last phrase's translation


def gi_available() -> bool:
    import subprocess

    probe = "import gi; gi.require_version('GstWebRTC', '1.0'); " \
            "from gi.repository import GstWebRTC"
    return shutil.which(SYSTEM_PYTHON) is not None and subprocess.run(
        [SYSTEM_PYTHON, "-c", probe], capture_output=True).returncode == 0


def peer_key_types(hub) -> set[tuple[str, str]]:
    """(role, key type of the peer's DTLS certificate) for every connected peer of every call:
    what babelcall actually negotiated with."""
    seen = set()
    for ingest in list(hub.ingests.values()):
        peers = [("publisher", ingest.peer)] + [("subscriber", p) for p, _ in
                                                 list(ingest.viewers.values())]
        for role, peer in peers:
            for t in peer.pc.getTransceivers():
                dtls = t.receiver.transport if t.receiver else None
                if dtls is not None and dtls.state == "connected":
                    cert = dtls._ssl.get_peer_certificate(as_cryptography=True)
                    seen.add((role, type(cert.public_key()).__name__))
    return seen


def test_gstreamer_publishes_over_whip_and_hears_spanish_over_whep(engines, tmp_path,
                                                                   caplog):
    assert gi_available(), "GStreamer's Python bindings are missing: run ./install.sh " \
                           "(python3-gi, gir1.2-gst-plugins-bad-1.0, gstreamer1.0-nice ...)"
    clip = load_clip(CLIP, 48000)
    wav = tmp_path / "publish.wav"
    silence = np.zeros(int(48000 * LEAD_IN_S), np.float32)
    write_wav(wav, np.concatenate([silence, clip, silence[: int(48000 * TAIL_S)]]), 48000)
    heard_path = tmp_path / "heard.s16le"
    seconds = LEAD_IN_S + len(clip) / 48000 + LISTEN_AFTER_S

    async def main():
        async with running_server(engines, token="gst") as srv:
            proc = await asyncio.create_subprocess_exec(
                SYSTEM_PYTHON, str(PEER), srv.url, str(wav), str(heard_path), str(seconds),
                "gst", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            keys: set = set()
            waiter = asyncio.ensure_future(proc.communicate())
            while not waiter.done():
                keys |= peer_key_types(srv.hub)
                await asyncio.wait({waiter}, timeout=0.5)
            out, err = waiter.result()
            await until(lambda: not srv.hub.ingests and not srv.hub.scheduler.sessions, 15,
                        "the GStreamer call to be freed")
            return proc.returncode, out.decode(), err.decode(), keys

    with caplog.at_level(logging.WARNING, logger="babelcall"):
        code, out, err, keys = asyncio.run(main())
    assert code == 0, err[-3000:]
    result = json.loads(out.strip().splitlines()[-1])
    assert result["connected"] == {"publisher": True, "subscriber": True}, result
    assert keys == {("publisher", "RSAPublicKey"), ("subscriber", "RSAPublicKey")}, keys
    assert not [r for r in caplog.records if r.name == "babelcall.transports.peer"], \
        caplog.text  # no peer failed or timed out
    pcm = np.frombuffer(heard_path.read_bytes(), "<i2").astype(np.float32) / 32767
    assert len(pcm) > 48000 * (seconds - 10), len(pcm) / 48000  # audio flowed throughout
    speech = compact(to_16k(pcm, 48000), 16000)
    heard = hear_back(speech, "es")
    ref = reference(CLIP, "en", "es")["tgt_ref"]
    chrf = sacrebleu.sentence_chrf(heard, [ref]).score
    print(f"GStreamer WHEP heard: {heard!r} (chrF {chrf:.1f})", file=sys.stderr)
    assert chrf > 30, (heard, ref)
