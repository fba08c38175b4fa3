"""Bad requests on every endpoint get a clear 4xx/5xx JSON answer and the server keeps serving:
tokens, content types, malformed and oversized SDP, offers without audio or with unknown codecs,
unknown ids, a full server (503 from the scheduler), and a peer whose ICE never connects."""

import asyncio
import json

import aiohttp
import pytest
from transport_utils import clip_track, make_offer, running_server, until

from babelcall.clients.call import Caller, CallRefused

pytestmark = pytest.mark.timeout(120)
TOKEN = {"Authorization": "Bearer s3cret"}
SDP = {"Content-Type": "application/sdp"}


@pytest.fixture(scope="module")
def offer_sdp():
    return make_offer()


async def _post(http, url, body, headers):
    async with http.post(url, data=body, headers=headers) as resp:
        return resp.status, await resp.text(), resp.headers


def test_every_endpoint_refuses_bad_requests_clearly(engines, offer_sdp):
    video_only = make_offer(data=False).replace("m=audio", "m=video")
    isac = offer_sdp
    for codec in ("opus/48000/2", "PCMU/8000", "PCMA/8000", "G722/8000"):
        isac = isac.replace(codec, "ISAC/16000")

    async def main():
        async with running_server(engines, token="s3cret") as srv, \
                aiohttp.ClientSession() as http:
            u = srv.url
            cases = [  # (method, path, body, headers, status, code)
                ("POST", "/whip?source=en&target=es", offer_sdp, SDP, 401, "unauthorized"),
                ("POST", "/whip", offer_sdp, {**SDP, "Authorization": "Bearer nope"}, 401,
                 "unauthorized"),
                ("GET", "/stats", None, {}, 401, "unauthorized"),
                ("GET", "/ws?source=en&target=es", None, {}, 401, "unauthorized"),
                ("POST", "/whip", offer_sdp, {**TOKEN, "Content-Type": "text/plain"}, 415,
                 "bad_content_type"),
                ("POST", "/whip", "v=0\r\nthis is not sdp", {**TOKEN, **SDP}, 400, "bad_sdp"),
                ("POST", "/whip", "hello", {**TOKEN, **SDP}, 400, "bad_sdp"),
                ("POST", "/whip", b"\xff\xfe\x00v=0", {**TOKEN, **SDP}, 400, "bad_sdp"),
                ("POST", "/whip", "v=0\r\n" + "a=x\r\n" * 20000, {**TOKEN, **SDP}, 413,
                 "too_large"),
                ("POST", "/whip", video_only, {**TOKEN, **SDP}, 400, "no_audio"),
                ("POST", "/whip", isac, {**TOKEN, **SDP}, 400, "unsupported_codec"),
                ("POST", "/whip?source=english", offer_sdp, {**TOKEN, **SDP}, 400,
                 "bad_language"),
                ("POST", "/whip?source=en&target=en", offer_sdp, {**TOKEN, **SDP}, 400,
                 "bad_language"),
                ("POST", "/whip?source=en&target=ja", offer_sdp, {**TOKEN, **SDP}, 400,
                 "unsupported_language"),
                ("POST", "/whip?mix=loud", offer_sdp, {**TOKEN, **SDP}, 400, "bad_parameter"),
                ("POST", "/whip?video_delay_ms=1e9", offer_sdp, {**TOKEN, **SDP}, 400,
                 "bad_parameter"),
                ("POST", "/offer", "{not json", TOKEN, 400, "bad_json"),
                ("POST", "/offer", json.dumps({"sdp": 5}), TOKEN, 400, "bad_json"),
                ("POST", "/offer", json.dumps({"sdp": "v=0\r\n" + "a=x\r\n" * 8000}), TOKEN,
                 413, "too_large"),
                ("DELETE", "/whip/nope", None, TOKEN, 404, "unknown_session"),
                ("POST", "/whep/nope", offer_sdp, {**TOKEN, **SDP}, 404, "unknown_session"),
                ("DELETE", "/whep/nope/nada", None, TOKEN, 404, "unknown_session"),
                ("GET", "/captions/nope", None, TOKEN, 404, "unknown_session"),
                ("POST", "/rooms/bad%20name/join?lang=en", offer_sdp, {**TOKEN, **SDP}, 400,
                 "bad_room"),
                ("POST", "/rooms/r/join", offer_sdp, {**TOKEN, **SDP}, 400, "bad_language"),
                ("DELETE", "/rooms/r/nobody", None, TOKEN, 404, "unknown_session"),
                ("GET", "/nowhere", None, TOKEN, 404, "not_found"),
                ("PATCH", "/whip/x", "", TOKEN, 405, "method_not_allowed"),
            ]
            for method, path, body, headers, status, code in cases:
                async with http.request(method, u + path, data=body, headers=headers) as resp:
                    text = await resp.text()
                    assert resp.status == status, (method, path, resp.status, text)
                    assert resp.content_type == "application/json", (path, text)
                    assert json.loads(text)["error"] == code, (path, text)
                    assert json.loads(text)["message"], path
            for path in ("/", "/client.js", "/health"):  # public
                async with http.get(u + path) as resp:
                    assert resp.status == 200, path
            assert not srv.hub.scheduler.sessions and not srv.hub.ingests

    asyncio.run(main())


def test_a_full_server_answers_503_and_keeps_serving(engines, offer_sdp):
    async def main():
        async with running_server(engines, max_sessions=1) as srv:
            first = Caller(clip_track("fleurs-en-004"), srv.url,
                           params={"source": "en", "target": "es"})
            await first.connect()
            second = Caller(clip_track("fleurs-en-004"), srv.url,
                            params={"source": "en", "target": "es"})
            with pytest.raises(CallRefused) as refused:
                await second.connect()
            assert refused.value.status == 503 and "limit of 1" in str(refused.value)
            async with aiohttp.ClientSession() as http, \
                    http.post(srv.url + "/whip", data=offer_sdp, headers=SDP) as resp:
                assert resp.status == 503 and resp.headers["Retry-After"]
                assert (await resp.json())["error"] == "overloaded"
            await first.hang_up()
            await until(lambda: not srv.hub.scheduler.sessions, 10, "the slot to be freed")
            third = Caller(clip_track("fleurs-en-004"), srv.url,
                           params={"source": "en", "target": "es"})
            await third.connect()  # served again
            await third.hang_up()

    asyncio.run(main())


def test_a_peer_that_never_connects_is_closed_and_freed(engines, offer_sdp):
    async def main():
        async with running_server(engines, connect_timeout_s=2) as srv, \
                aiohttp.ClientSession() as http:
            # An offer whose ICE candidates lead nowhere: the answer comes, ICE never succeeds.
            dead = "\r\n".join(
                line for line in offer_sdp.splitlines() if not line.startswith("a=candidate"))
            dead += "\r\na=candidate:1 1 udp 2130706431 192.0.2.1 9 typ host\r\n"
            status, _, headers = await _post(http, srv.url + "/whip", dead, SDP)
            assert status == 201 and headers["Location"].startswith("/whip/")
            assert len(srv.hub.scheduler.sessions) == 1
            await until(lambda: not srv.hub.scheduler.sessions and not srv.hub.ingests, 30,
                        "the unconnected call to be closed")

    asyncio.run(main())
