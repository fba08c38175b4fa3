"""``GET /ws`` with the real models: PCM16 in (faster than real time), translated PCM16 and JSON
captions out, ``end`` drains; and every kind of bad input gets a JSON error and a clean close."""

import asyncio
import contextlib
import json

import aiohttp
import numpy as np
import pytest
import sacrebleu
from conftest import hear_back, load_clip, reference
from transport_utils import compact, running_server, speech_seconds, to_16k, until

pytestmark = pytest.mark.timeout(180)


async def _session(ws, pcm16: bytes, rate: int, pace: float) -> tuple[dict, list, bytes, int]:
    """Send ``pcm16`` in 20 ms messages at ``pace`` x real time, then end; collect replies."""
    ready = await ws.receive_json(timeout=10)
    step = rate // 50 * 2

    async def send():
        for i in range(0, len(pcm16), step):
            await ws.send_bytes(pcm16[i:i + step])
            await asyncio.sleep(0.02 / pace)
        await ws.send_json({"type": "end"})

    sender = asyncio.create_task(send())
    records, audio = [], bytearray()
    async for msg in ws:
        if msg.type == aiohttp.WSMsgType.BINARY:
            audio += msg.data
        elif msg.type == aiohttp.WSMsgType.TEXT:
            records.append(json.loads(msg.data))
    await sender
    return ready, records, bytes(audio), ws.close_code


def test_websocket_translates_pcm16_and_drains_on_end(engines):
    clip = (load_clip("fleurs-en-000", 16000) * 32767).astype("<i2").tobytes()

    async def main():
        async with running_server(engines, token="t0k") as srv, \
                aiohttp.ClientSession() as http, \
                http.ws_connect(srv.url + "/ws?source=en&target=es&rate=16000",
                                headers={"Authorization": "Bearer t0k"}) as ws:
            result = await _session(ws, clip, 16000, pace=2.0)
            await until(lambda: not srv.hub.scheduler.sessions, 10, "the session to be freed")
            return result

    ready, records, audio, code = asyncio.run(main())
    assert ready == {**ready, "type": "ready", "rate": 24000, "format": "s16le", "channels": 1,
                     "input_rate": 16000, "source": "en", "target": "es"}
    assert code == 1000
    kinds = [r["type"] for r in records]
    assert {"transcript", "translation", "synth_audio", "stats"} <= set(kinds)
    assert "done" in kinds and "error" not in kinds
    pcm = np.frombuffer(audio, "<i2").astype(np.float32) / 32767
    spoken = sum(r["duration_ms"] for r in records if r["type"] == "synth_audio") / 1000
    assert len(pcm) / 24000 == pytest.approx(spoken, abs=0.05)  # all the speech, no padding
    heard = hear_back(compact(to_16k(pcm, 24000), 16000), "es")
    ref = reference("fleurs-en-000", "en", "es")["tgt_ref"]
    assert sacrebleu.sentence_chrf(heard, [ref]).score > 30, heard


def test_websocket_config_message_and_odd_rate(engines):
    """Config in a first message; 44.1 kHz input is resampled (the words are recognised)."""
    clip = (load_clip("fleurs-en-004", 44100) * 32767).astype("<i2").tobytes()

    async def main():
        async with running_server(engines) as srv, aiohttp.ClientSession() as http, \
                http.ws_connect(srv.url + "/ws") as ws:
            await ws.send_json({"type": "config", "source": "en", "target": "es",
                                "rate": 44100})
            return await _session(ws, clip, 44100, pace=4.0)

    ready, records, audio, code = asyncio.run(main())
    assert ready["input_rate"] == 44100 and code == 1000
    said = " ".join(r["committed"] for r in records if r["type"] == "transcript")
    assert any(w in said.lower() for w in ("people", "dinosaur", "feathers", "fly")), said
    assert speech_seconds(np.frombuffer(audio, "<i2") / 32767, 24000) > 0.5


BAD = [
    ("/ws?source=en&target=es&rate=0", None, "bad_rate", 1008),
    ("/ws?source=en&target=es&rate=abc", None, "bad_rate", 1008),
    ("/ws?source=xx1&target=es", None, "bad_language", 1008),
    ("/ws?source=en&target=ja", None, "unsupported_language", 1008),
    ("/ws", b"\x00\x01", "bad_config", 1008),                       # audio before config
    ("/ws", "{\"type\": \"hello\"}", "bad_config", 1008),
    ("/ws", "not json", "bad_message", 1003),
    ("/ws?source=en&target=es", "not json", "bad_message", 1003),
    ("/ws?source=en&target=es", "{\"type\": \"dance\"}", "bad_message", 1003),
    ("/ws?source=en&target=es", b"\x01\x02\x03", "not_pcm", 1003),  # odd length
    ("/ws?source=en&target=es", b"RIFF\x24\x00\x00\x00WAVEfmt ", "not_pcm", 1003),
    ("/ws?source=en&target=es", b"OggS" + bytes(60), "not_pcm", 1003),
    ("/ws?source=en&target=es", bytes(300_000), "too_large", 1009),
]


@pytest.mark.parametrize("url, first, code, close", BAD,
                         ids=[f"{i}-{case[2]}" for i, case in enumerate(BAD)])
def test_websocket_bad_input_gets_an_error_and_a_clean_close(engines, url, first, code, close):
    async def main():
        async with running_server(engines) as srv, aiohttp.ClientSession() as http, \
                http.ws_connect(srv.url + url) as ws:
            if first is not None:
                if url.startswith("/ws?"):  # configured on the URL: ready first
                    ready = await ws.receive_json(timeout=10)
                    assert ready["type"] == "ready"
                if isinstance(first, bytes):
                    await ws.send_bytes(first)
                else:
                    await ws.send_str(first)
            msgs = [json.loads(m.data) async for m in ws if m.type == aiohttp.WSMsgType.TEXT]
            await until(lambda: not srv.hub.scheduler.sessions, 10, "the session to be freed")
            return msgs, ws.close_code

    msgs, close_code = asyncio.run(main())
    errors = [m for m in msgs if m["type"] == "error"]
    assert errors and errors[-1]["error"] == code and errors[-1]["message"], msgs
    assert close_code == close


OVERSIZE = 2 * 1024 * 1024  # 2 MiB: over aiohttp's max_msg_size (4x the binary limit)


@pytest.mark.parametrize("opcode", ["text", "binary"])
def test_oversize_message_always_gets_1009_with_a_reason(engines, opcode):
    """A 2 MiB message is refused while the client is still sending it (aiohttp fails on the
    frame header). The close frame must reach the client every time: the server lingers,
    reading what is still in flight, instead of closing the socket under unread data (a TCP
    reset that discards the close frame: the client saw 1006). Both as the first message
    (before a config) and after ready, several times over."""
    from fuzz_wire import BINARY, TEXT, RawWebSocket, frame

    data = frame(TEXT if opcode == "text" else BINARY,
                 b"a" * OVERSIZE if opcode == "text" else bytes(OVERSIZE))

    async def one(port: int, path: str) -> tuple[int | None, str]:
        ws = await RawWebSocket.open(port, path)
        if "?" in path:  # configured on the URL: ready first
            _, ready = await ws.next_frame()
            assert json.loads(ready)["type"] == "ready"
        # as over a real network: the frame's header is there long before its last byte,
        # and nothing is read until the whole message is sent
        with contextlib.suppress(ConnectionError):
            for i in range(0, len(data), 64 * 1024):
                ws.writer.write(data[i:i + 64 * 1024])
                await ws.writer.drain()
                await asyncio.sleep(0.001)
        out = await ws.until_close(10)
        return out.close_code, out.close_reason

    async def main():
        async with running_server(engines) as srv:
            port = int(srv.url.rsplit(":", 1)[1])
            got = [await one(port, path) for _ in range(4)
                   for path in ("/ws", "/ws?source=en&target=es")]
            await until(lambda: not srv.hub.scheduler.sessions, 10, "the sessions to be freed")
            return got

    for code, reason in asyncio.run(main()):
        assert code == 1009 and reason, (code, reason)
