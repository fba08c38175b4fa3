"""A GStreamer webrtcbin client of babelcall serve, as a foreign WHIP/WHEP peer would be:
publish a WAV file over WHIP, subscribe to the translation over WHEP, record what is heard.

Run with Debian's /usr/bin/python3 (python3-gi and the GStreamer typelibs are built for it,
not for the project's interpreter):

    /usr/bin/python3 gst_whip_peer.py BASE_URL IN.wav OUT.s16le SECONDS [TOKEN]

Non-trickle, as WHIP's simplest clients are: each offer waits for ICE gathering to complete and
carries its candidates. webrtcbin's DTLS certificate is RSA (its dtlsagent's default), the case
aiortc's default DTLS client could not handle. Prints one JSON line with the outcome."""

from __future__ import annotations

import json
import sys
import threading
import time
import urllib.request

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
from gi.repository import Gst, GstSdp, GstWebRTC  # noqa: E402

OPUS = "application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000"


def post(url: str, sdp: str, token: str | None) -> tuple[str, str]:
    headers = {"Content-Type": "application/sdp"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, sdp.encode(), headers, method="POST")
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 201, resp.status
        return resp.read().decode(), resp.headers["Location"]


def delete(url: str, token: str | None) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        urllib.request.urlopen(urllib.request.Request(url, None, headers, method="DELETE"),
                               timeout=10).read()
    except OSError:
        pass


def negotiate(webrtc: Gst.Element, needed: threading.Event, url: str,
              token: str | None) -> str:
    """Offer (after ICE gathering), POST it, apply the answer; returns the Location.
    ``needed``: set by on-negotiation-needed (an offer made before it may lack the codec)."""
    if not needed.wait(10):
        raise RuntimeError("webrtcbin never asked for negotiation")
    promise = Gst.Promise.new()
    webrtc.emit("create-offer", None, promise)
    promise.wait()
    reply = promise.get_reply()
    offer = reply.get_value("offer") if reply is not None else None
    if offer is None:
        raise RuntimeError(f"webrtcbin made no offer: {reply and reply.to_string()}")
    promise = Gst.Promise.new()
    webrtc.emit("set-local-description", offer, promise)
    promise.wait()
    deadline = time.monotonic() + 10
    while webrtc.get_property("ice-gathering-state") != \
            GstWebRTC.WebRTCICEGatheringState.COMPLETE and time.monotonic() < deadline:
        time.sleep(0.05)
    sdp = webrtc.get_property("local-description").sdp.as_text()
    answer, location = post(url, sdp, token)
    _, msg = GstSdp.SDPMessage.new_from_text(answer)
    desc = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, msg)
    promise = Gst.Promise.new()
    webrtc.emit("set-remote-description", desc, promise)
    promise.wait()
    return location


def states(webrtc: Gst.Element) -> dict[str, str]:
    return {name: webrtc.get_property(name).value_nick
            for name in ("connection-state", "ice-connection-state")}


def main() -> int:
    base, wav, out_path, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    token = sys.argv[5] if len(sys.argv) > 5 else None
    Gst.init(None)
    # Publisher: the file, paced in real time (identity sync), Opus, sendonly.
    pub = Gst.parse_launch(
        f"filesrc location={wav} ! wavparse ! audioconvert ! audioresample ! "
        f"audio/x-raw,rate=48000,channels=1 ! identity sync=true ! opusenc ! "
        f"rtpopuspay pt=111 ! {OPUS} ! webrtcbin name=w bundle-policy=max-bundle")
    pub_rtc = pub.get_by_name("w")
    pub_needed = threading.Event()
    pub_rtc.connect("on-negotiation-needed", lambda _: pub_needed.set())
    pub.set_state(Gst.State.PLAYING)
    pub_rtc.emit("get-transceiver", 0).set_property(
        "direction", GstWebRTC.WebRTCRTPTransceiverDirection.SENDONLY)
    whip = negotiate(pub_rtc, pub_needed, f"{base}/whip?source=en&target=es", token)
    call_id = whip.rsplit("/", 1)[-1]

    # Subscriber: recvonly Opus over WHEP, decoded to 48 kHz mono s16le into a file.
    sub = Gst.Pipeline.new("sub")
    sub_rtc = Gst.ElementFactory.make("webrtcbin", "w")
    sub_rtc.set_property("bundle-policy", "max-bundle")
    sub.add(sub_rtc)
    out = open(out_path, "wb")
    received = {"bytes": 0}

    def on_sample(sink: Gst.Element) -> Gst.FlowReturn:
        buf = sink.emit("pull-sample").get_buffer()
        data = buf.extract_dup(0, buf.get_size())
        received["bytes"] += len(data)
        out.write(data)
        return Gst.FlowReturn.OK

    def on_pad(_: Gst.Element, pad: Gst.Pad) -> None:
        if pad.direction != Gst.PadDirection.SRC:
            return
        chain = Gst.parse_bin_from_description(
            "rtpopusdepay ! opusdec ! audioconvert ! audioresample ! "
            "audio/x-raw,format=S16LE,rate=48000,channels=1 ! "
            "appsink name=a emit-signals=true sync=false", True)
        sub.add(chain)
        chain.get_by_name("a").connect("new-sample", on_sample)
        chain.sync_state_with_parent()
        pad.link(chain.get_static_pad("sink"))

    sub_rtc.connect("pad-added", on_pad)
    sub_needed = threading.Event()
    sub_rtc.connect("on-negotiation-needed", lambda _: sub_needed.set())
    sub_rtc.emit("add-transceiver", GstWebRTC.WebRTCRTPTransceiverDirection.RECVONLY,
                 Gst.Caps.from_string(OPUS))
    sub.set_state(Gst.State.PLAYING)
    whep = negotiate(sub_rtc, sub_needed, f"{base}/whep/{call_id}", token)

    deadline = time.monotonic() + seconds
    connected = {"publisher": False, "subscriber": False}
    while time.monotonic() < deadline:
        connected["publisher"] |= states(pub_rtc)["connection-state"] == "connected"
        connected["subscriber"] |= states(sub_rtc)["connection-state"] == "connected"
        time.sleep(0.2)
    result = {"call": call_id, "connected": connected, "publisher": states(pub_rtc),
              "subscriber": states(sub_rtc), "received_bytes": received["bytes"]}
    delete(base + whep, token)
    delete(base + whip, token)
    sub.set_state(Gst.State.NULL)
    pub.set_state(Gst.State.NULL)
    out.close()
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
