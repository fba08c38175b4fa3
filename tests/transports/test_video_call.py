"""The translated video call in headless Chromium (Debian's chromium, driven by playwright): each
person is a browser of their own with a fake camera and a fake microphone (a FLEURS clip after
some silence), joining room "demo" of a server on the real models, each with their language.

Each page must show the others' video (frames counted on its <video> elements), play their
speech translated into its own language (recorded in the page, transcribed back by an
independent Whisper and scored against the FLEURS reference translation), show their captions
under a tile with their name and language, and show their picture about as late as their
translated voice: the fake camera's frames carry their index (``video_marks``), so a listener's
page tells how late it shows each picture, and at each translated clause that delay is compared
with the clause's translation lag (its ``audio_out`` latency, bounded at the relay's 3 s).

Only en<->es is installed offline (Apertium), so the three-person call has two Spanish speakers.
Its third person joins late, which makes the server renegotiate the others' connections."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import re
import shutil
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import sacrebleu
from conftest import hear_back, load_clip, reference, references
from transport_utils import compact, running_server, speech_seconds, until
from video_marks import MARKS_JS, PROBE_JS, frame_index_y4m, video_delay_ms

from babelcall.realtime.audio import write_wav

pytestmark = pytest.mark.timeout(480)
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ROOM = "demo"
MAX_DELAY_MS = 3000  # the relay's bound on a picture's delay (rooms.MAX_VIDEO_DELAY_S)
TOLERANCE_MS = 300
FROZEN_MS = MAX_DELAY_MS  # a tile showing no new picture this long is frozen
MIN_JUDGED_CHARS = 40  # voiced text shorter than this is not scored with chrF
NAMES = {"en": "English", "es": "Español"}


@dataclass
class Person:
    name: str
    lang: str
    clips: tuple[str, ...]  # what their microphone says, in turn (none: silence)
    lead_s: float     # silence before it, from the moment the page opens the microphone
    gap_s: float = 2.5  # silence between two clips
    page: Any = None
    browser: Any = None
    errors: list[str] = field(default_factory=list)
    pid: str = ""
    state: dict[str, Any] = field(default_factory=dict)
    audio: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

    def speech(self, rate: int) -> np.ndarray:
        gap = np.zeros(int(self.gap_s * rate), np.float32)
        parts = [np.zeros(int(self.lead_s * rate), np.float32)]
        for i, clip in enumerate(self.clips):
            parts += [gap] * (i > 0) + [load_clip(clip, rate)]
        return np.concatenate(parts)

    @property
    def speech_end_s(self) -> float:
        return len(self.speech(16000)) / 16000

    def said(self, lang: str) -> str:
        """What their clips say, in ``lang``: the FLEURS reference translations."""
        return " ".join(reference(c, self.lang, lang)["tgt_ref"] for c in self.clips)


@pytest.fixture(scope="module")
def judge():
    """The independent transcriber (benchmarks/judge.py), not babelcall's recogniser."""
    return hear_back


def flags(mic: Path, camera: Path) -> list[str]:
    return ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-audio-capture={mic}%noloop",
            f"--use-file-for-fake-video-capture={camera}", "--no-sandbox", "--headless",
            "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run", "--autoplay-policy=no-user-gesture-required",
            "--disable-renderer-backgrounding", "--disable-background-timer-throttling",
            "--disable-backgrounding-occluded-windows"]


async def open_page(playwright, srv, tmp: Path, person: Person, camera: Path) -> None:
    """A browser with this person's microphone, on the call page, not joined yet."""
    mic = tmp / f"{person.name}.wav"
    write_wav(mic, np.concatenate([person.speech(48000), np.zeros(48000, np.float32)]), 48000)
    person.browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                      args=flags(mic, camera))
    page = person.page = await person.browser.new_page(viewport={"width": 1280, "height": 760})
    page.on("console", lambda m: _console(person, srv, m))
    page.on("pageerror", lambda e: person.errors.append(f"page error: {e}"))
    await page.add_init_script(MARKS_JS + PROBE_JS)
    await page.goto(f"{srv.url}/?room={ROOM}&name={person.name}&lang={person.lang}")


def _console(person: Person, srv, message) -> None:
    if message.type != "error":
        return
    # GET /languages is served by another branch; until it is, its 404 is expected (the page
    # keeps its own language list then).
    url = (message.location or {}).get("url", "")
    served = any(r.canonical == "/languages" for r in srv.app.router.resources())
    if not (url.endswith("/languages") and not served):
        person.errors.append(f"console error: {message.text} ({url})")


async def join(people: list[Person]) -> None:
    await asyncio.gather(*(p.page.click("#start") for p in people))
    for p in people:
        await p.page.wait_for_function("window.babelcall.status.startsWith('live in')",
                                       timeout=30_000)
        p.pid = await p.page.evaluate("window.babelcall.me")


def _alnum(text: str) -> int:
    return sum(ch.isalnum() for ch in text)


def voiced(records: list[dict], speaker: str) -> bool:
    """The listener has everything ``speaker`` said: their last phrase ended and was translated
    in full, and every committed word has started playing (or was skipped as too late, which
    the server says in a caption)."""
    mine = [r for r in records if r.get("speaker") == speaker]
    ended = [r["utt"] for r in mine if r["type"] == "speech_ended"]
    started = [r["utt"] for r in mine if r["type"] == "speech_started"]
    if not ended or max(started, default=-1) > max(ended):
        return False
    if not any(r["type"] == "translation" and r.get("final") and r["utt"] == max(ended)
               for r in mine):
        return False
    said, out = _said_and_out(mine)
    return out >= said


def _said_and_out(mine: list[dict]) -> tuple[int, int]:
    """Characters committed to a listener, and voiced to them or said to be late."""
    said = " ".join(r.get("committed") or "" for r in mine if r["type"] == "translation")
    out = " ".join(r.get("text") or "" for r in mine if r["type"] in ("audio_out",
                                                                         "speech_skipped"))
    return _alnum(said), _alnum(out)


def _progress(records: list[dict], speaker: str) -> str:
    """What a listener's page got of a speaker, for a failure's message."""
    mine = [r for r in records if r.get("speaker") == speaker]
    kinds: dict[str, int] = {}
    for r in mine:
        kinds[r["type"]] = kinds.get(r["type"], 0) + 1
    said, out = _said_and_out(mine)
    return (f"records by type {kinds}; committed {said} characters, voiced or said to be "
            f"late {out}; last: {mine[-3:]}")


def played_until_ms(records: list[dict], speaker: str) -> float | None:
    """When (page clock) the listener's page will have played the speaker's last voiced
    clause to its end: the moment it started playing plus its length."""
    lengths = {(r["utt"], r["seq"]): r["duration_ms"] for r in records
               if r.get("speaker") == speaker and r["type"] == "synth_audio"}
    ends = [r["page_ms"] + lengths.get((r["utt"], r["seq"]), 0.0) for r in records
            if r.get("speaker") == speaker and r["type"] == "audio_out"]
    return max(ends, default=None)


async def until_voiced(pairs: list[tuple[Person, Person]], timeout: float = 300) -> None:
    """Until each listener has everything each speaker said voiced (or said to be late) and
    played to its end. ``timeout`` only bounds a broken run: a slow machine takes longer."""
    for listener, speaker in pairs:
        async def heard_all(listener=listener, speaker=speaker) -> bool:
            return voiced(await listener.page.evaluate("window.records"), speaker.pid)

        for _ in range(int(timeout / 0.5)):
            if await heard_all():
                break
            await asyncio.sleep(0.5)
        else:
            records = await listener.page.evaluate("window.records")
            status = await listener.page.evaluate("window.babelcall.status")
            raise AssertionError(f"{listener.name} never heard all that {speaker.name} said; "
                                 f"page: {status!r}; {_progress(records, speaker.pid)}")
    for listener, speaker in pairs:  # the last clause plays out on the page
        end = played_until_ms(await listener.page.evaluate("window.records"), speaker.pid)
        now = "performance.timeOrigin + performance.now()"
        while end is not None and await listener.page.evaluate(now) < end + 300:
            await asyncio.sleep(0.1)


async def collect(person: Person, tag: str) -> None:
    page = person.page
    person.state = await page.evaluate("""() => ({
        error: window.babelcall.error, negotiations: window.babelcall.negotiations,
        frames: window.frameCounts, marks: window.marks, shown: window.shown,
        records: window.records,
        onsets: window.onsets, recording_ms: window.recordingStarted,
        tiles: Array.from(document.querySelectorAll('.tile')).map((t) => ({
            pid: t.dataset.pid, name: t.querySelector('.name').textContent,
            lang: t.querySelector('.lang').textContent, cc: t.querySelector('.cc').innerText,
            figures: t.querySelector('.figures').innerText,
            label: t.getAttribute('aria-label')})),
    })""")
    person.audio = _decode_16k(base64.b64decode(await page.evaluate("window.recording()")))
    if os.environ.get("BABELCALL_VIDEO_CALL_DUMP"):  # for looking at a run by hand
        import json

        folder = Path(os.environ["BABELCALL_VIDEO_CALL_DUMP"]) / tag
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{person.name}.json").write_text(json.dumps(person.state))
        await page.screenshot(path=str(folder / f"{person.name}.png"))
        write_wav(folder / f"{person.name}.wav", person.audio, 16000)


def _decode_16k(webm: bytes) -> np.ndarray:
    resampler = av.AudioResampler(format="flt", layout="mono", rate=16000)
    with av.open(io.BytesIO(webm)) as container:
        pcm = [f.to_ndarray().reshape(-1) for frame in container.decode(audio=0)
               for f in resampler.resample(frame)]
    return np.concatenate(pcm) if pcm else np.zeros(0, np.float32)


async def leave_all(srv, everyone: list[Person]) -> None:
    for p in everyone:
        await p.page.click("#stop")
    try:
        await until(lambda: not srv.hub.rooms and not srv.hub.scheduler.sessions, 20,
                    "the room and its sessions to be freed")
    except AssertionError as exc:  # say what is still there, and what the server's tasks await
        raise AssertionError(f"{exc}: rooms {list(srv.hub.rooms)}, "
                             f"{len(srv.hub.scheduler.sessions)} sessions; {_awaiting()}") from None


def _awaiting() -> str:
    """Each pending task of this loop and the line it waits at (for a failure's message)."""
    where = []
    for task in asyncio.all_tasks():
        stack = task.get_stack()
        if stack:
            code = stack[-1].f_code
            where.append(f"{task.get_name()} at {Path(code.co_filename).name}:"
                         f"{stack[-1].f_lineno} ({code.co_name})")
    return "; ".join(sorted(where))


async def close_browsers(everyone: list[Person]) -> None:
    for p in everyone:
        if p.browser is not None:
            await p.browser.close()


# -- checks -----------------------------------------------------------------------------------
def check_page(p: Person, everyone: list[Person], min_frames: int = 60) -> dict[str, int]:
    """No errors; a tile per other person with their name, language and video frames."""
    assert not p.errors, (p.name, p.errors)
    assert p.state["error"] is None, (p.name, p.state["error"])
    tiles = {t["pid"]: t for t in p.state["tiles"]}
    assert tiles[p.pid]["name"] == f"{p.name} (you)", tiles
    # figures for the person looking: their own round trip, and for each speaker how late
    # this page hears them (their latest clause), not someone else's figure
    assert re.search(r"round trip \d+ ms", tiles[p.pid]["figures"]), tiles[p.pid]
    for q in everyone:
        lags = [r["latency_ms"] for r in p.state["records"]
                if r.get("type") == "audio_out" and r.get("speaker") == q.pid]
        if not lags:
            continue
        pattern = r"others hear you ([\d.]+) s" if q is p else r"([\d.]+) s after they speak"
        shown = re.search(pattern, tiles[q.pid]["figures"])
        assert shown and abs(float(shown[1]) - lags[-1] / 1000) <= 0.051, \
            (p.name, q.name, lags[-1], tiles[q.pid])
    frames = {}
    for q in everyone:
        if q is p:
            continue
        tile = tiles[q.pid]
        assert (tile["name"], tile["lang"]) == (q.name, NAMES[q.lang]), tile
        assert tile["label"].startswith(q.name), tile
        frames[q.name] = p.state["frames"].get(q.pid, 0)
        read = len(p.state["marks"].get(q.pid, []))
        # their camera's pictures reached this page, and are theirs: the frame codes read back
        assert frames[q.name] >= min_frames and read >= min_frames // 2, \
            (p.name, q.name, p.state["frames"])
        # Never a frozen picture: the relay changes the delay by speeding up or slowing down
        # (frames at most 2.5x apart, tests/transports/test_video_relay.py), never by holding
        # one, and a lost picture plays again from the next keyframe at once, not after the
        # delay. Here three browsers decode each other's video on the server's two cores: on a
        # machine at half its CPU (two fresh suites at once, or the server pinned to one core)
        # tiles stalled 2.0-2.7 s while the page's own camera view ran on, so a gap counts
        # from 3 s (the relay's bound on a picture's delay: a hold for the delay would show),
        # unless the server itself stalled then: its once-a-second "video" report came 1.5 s
        # or more after the previous one (its event loop starved; seen for 8 s here).
        shown = p.state["shown"][q.pid]
        reports = [r["page_ms"] for r in p.state["records"] if r["type"] == "video"]
        stalls = [(a, b) for a, b in zip(reports, reports[1:], strict=False) if b - a >= 1500]
        for before, after in zip(shown, shown[1:], strict=False):
            if after - before >= FROZEN_MS:
                stalled = any(a < after and b > before for a, b in stalls)
                assert stalled, (p.name, q.name, before, after - before)
    return frames


def check_heard(listener: Person, speaker: Person, judge) -> float | None:
    """What a user demands: every speaker heard, in time or said to be late. What the server
    voiced, the listener's recorded audio (transcribed back) must be: close to what was voiced,
    and — where most of it was voiced — closer to the reference translation of the speaker's
    clips than to that of any other clip. What it did not voice (an overloaded machine) it
    must have said it skipped, in the captions. Returns the chrF against the reference (None:
    nothing voiced, all said to be late)."""
    mine = [r for r in listener.state["records"] if r.get("speaker") == speaker.pid]
    voiced = " ".join(r["text"] for r in mine if r["type"] == "audio_out")
    skipped = " ".join(r["text"] for r in mine if r["type"] == "speech_skipped")
    said = " ".join(r.get("committed") or "" for r in mine if r["type"] == "translation")
    if not _alnum(voiced):
        assert _alnum(skipped) >= _alnum(said) > 0, \
            (listener.name, speaker.name, "neither voiced nor said to be late", said)
        print(f"{listener.name} heard {speaker.name} as captions only (the server was late)")
        return None
    ref = speaker.said(listener.lang)
    heard = judge(compact(listener.audio, 16000), listener.lang)
    score = sacrebleu.sentence_chrf(heard, [ref]).score
    others = [sacrebleu.sentence_chrf(heard, [row["tgt_ref"]]).score
              for row in references(speaker.lang, listener.lang)
              if row["clip"] not in speaker.clips]
    as_voiced = sacrebleu.sentence_chrf(heard, [voiced]).score
    print(f"{listener.name} ({listener.lang}) heard {speaker.name}: chrF {score:.1f} against "
          f"the reference (other clips: at most {max(others):.1f}), {as_voiced:.1f} against "
          f"what was voiced: {heard!r}")
    if _alnum(voiced) >= _alnum(said) / 2:  # most of it voiced: it must be recognisable
        assert score > max(others), (listener.name, speaker.name, score, others, heard, ref)
    if _alnum(voiced) >= MIN_JUDGED_CHARS:
        assert as_voiced > 40, (listener.name, speaker.name, as_voiced, heard, voiced)
    else:  # a few words voiced, the rest said to be late: too short for chrF to mean much,
        # but the voiced audio must have reached the listener
        length_s = sum(r["duration_ms"] for r in mine if r["type"] == "synth_audio") / 1000
        assert speech_seconds(listener.audio, 16000) >= 0.5 * length_s, \
            (listener.name, speaker.name, voiced, length_s)
        assert _alnum(voiced) + _alnum(skipped) >= _alnum(said), (voiced, skipped, said)
    return score


def check_captions(listener: Person, speaker: Person, words: tuple[str, ...]) -> None:
    tile = next(t for t in listener.state["tiles"] if t["pid"] == speaker.pid)
    assert any(w in tile["cc"].lower() for w in words), (listener.name, speaker.name, tile)


def lips(listener: Person, speaker: Person) -> list[tuple[float, float, float]]:
    """At each translated clause of ``speaker`` the listener heard: (translation lag, the lag
    as heard, how late the listener's tile showed the speaker then), in ms.

    The lag is the clause's ``audio_out`` latency (source end reached the server -> the clause
    starts leaving it). The page hears it a little later (its audio path: the first loud
    moment after the record came, or the typical such delay when clauses run together), and
    the picture's delay is read at that moment: shown time minus the time the speaker's own
    page showed the same frame. Both paths from the speaker are alike, so picture delay minus
    heard lag is how far lips and voice are apart."""
    self_marks = speaker.state["marks"].get("self", [])
    tile = listener.state["marks"].get(speaker.pid, [])
    onsets = listener.state["onsets"]
    clauses = [r for r in listener.state["records"]
               if r.get("type") == "audio_out" and r.get("speaker") == speaker.pid]
    paths = {}
    for rec in clauses:
        later = [t - rec["page_ms"] for t in onsets if -50 <= t - rec["page_ms"] <= 1500]
        if later:
            paths[id(rec)] = later[0]
    typical = statistics.median(paths.values()) if paths else 0.0
    out = []
    for rec in clauses:
        path = paths.get(id(rec), typical)
        shown = video_delay_ms(self_marks, tile, rec["page_ms"] + path)
        if shown is not None:
            out.append((rec["latency_ms"], rec["latency_ms"] + path, shown))
    print(f"{listener.name} <- {speaker.name}: (lag, heard lag, picture delay) ms "
          f"{[tuple(round(x) for x in m) for m in out]}")
    return out


def relayed_ms(listener: Person, speaker: Person, at_ms: float) -> tuple[float, float] | None:
    """The relay's own delay for this speaker's picture at this listener and the delay it was
    steering toward (the speaker's current lag, at most the bound), as last reported."""
    last = None
    for r in listener.state["records"]:
        if r["type"] == "video" and r["page_ms"] <= at_ms and speaker.pid in r["delays"]:
            last = (r["delays"][speaker.pid]["delay_ms"], r["delays"][speaker.pid]["target_ms"])
    return last


def check_lips(pairs: list[tuple[Person, Person]]) -> tuple[list[float], int]:
    """At each translated clause after a speaker's first (before it no lag is known: the
    picture runs at the room's prior), the picture's delay at the listener against the
    translation's current lag as heard there: the median of the lags of the (up to five)
    clauses heard before it, plus the page's audio path. The relay may hold a picture at most
    3 s: where the lag needs more, the picture runs late toward that bound (at least half of
    it: it may still be slowing down to reach it); everywhere else the median offset must be
    within 300 ms. Also printed: each clause's offset against its own
    lag, which swings with the clause (the current lag is what a picture can follow)."""
    offsets, own, pinned = [], [], 0
    for listener, speaker in pairs:
        clauses = [r for r in listener.state["records"]
                   if r.get("type") == "audio_out" and r.get("speaker") == speaker.pid]
        if len(clauses) < 2:  # the first clause has no known lag to follow: nothing to check
            continue          # (an overloaded server voiced one and captioned the rest late)
        measured = lips(listener, speaker)  # (an overloaded server may merge clauses: >= 1)
        assert measured, (f"{listener.name} <- {speaker.name}: no clause's picture delay "
                          f"known: {len(clauses)} clauses, "
                          f"{len(listener.state['marks'].get(speaker.pid, []))} tile marks, "
                          f"{len(speaker.state['marks'].get('self', []))} self-view marks")
        for i, (lag, heard, shown) in enumerate(measured[1:], start=1):
            current = statistics.median(m[0] for m in measured[max(0, i - 5):i])
            relayed = relayed_ms(listener, speaker, clauses[i]["page_ms"])
            assert relayed is not None and relayed[0] <= MAX_DELAY_MS, relayed
            relay, target = relayed
            video_path = shown - relay
            # needing more than the bound: by the lag the relay knows (a server running seconds
            # behind), or by the lag as heard once the picture's own path is counted
            if target >= MAX_DELAY_MS - 100 \
                    or current + (heard - lag) - video_path > MAX_DELAY_MS - 100:
                pinned += 1  # later than the bound allows: the relay holds it long, up to 3 s
                assert relay >= MAX_DELAY_MS / 2, (listener.name, speaker.name, relay, lag)
                continue
            offsets.append(shown - (heard - lag + current))
            own.append(shown - heard)
    print(f"picture delay - current lag as heard, ms: {[round(x) for x in offsets]}; "
          f"clauses whose lag needed more than 3 s: {pinned}")
    print(f"picture delay - the clause's own lag as heard, ms: {[round(x) for x in own]}")
    if len(offsets) >= 2:
        median = statistics.median(abs(x) for x in offsets)
        print(f"median |picture delay - current lag as heard|: {median:.0f} ms")
        assert median <= TOLERANCE_MS, offsets
    return offsets, pinned


# -- tests ------------------------------------------------------------------------------------
def test_two_people_see_and_hear_each_other_translated(engines, judge, tmp_path):
    from playwright.async_api import async_playwright

    # They take turns, as people do (and as this 2-core CPU can serve: one speaker at a time),
    # Ana in two sentences: her picture's delay settles in the pause between them.
    ana = Person("Ana", "en", ("fleurs-en-004", "fleurs-en-000"), lead_s=5.0)
    luis = Person("Luis", "es", ("fleurs-es-004",), lead_s=26.0)
    everyone = [ana, luis]

    async def main():
        camera = frame_index_y4m(tmp_path / "camera.y4m")
        async with running_server(engines) as srv, async_playwright() as pw:
            try:
                for p in everyone:
                    await open_page(pw, srv, tmp_path, p, camera)
                await accessible(ana.page, "the join form")
                await join(everyone)
                assert len(srv.hub.rooms[ROOM].participants) == 2
                await asyncio.sleep(max(p.speech_end_s for p in everyone))
                await until_voiced([(luis, ana), (ana, luis)])
                await accessible(ana.page, "the call")
                await keyboard(ana.page)
                for p in everyone:
                    await collect(p, "two")
                await leave_all(srv, everyone)
            finally:
                await close_browsers(everyone)

    asyncio.run(main())
    frames = {p.name: check_page(p, everyone) for p in everyone}
    check_captions(luis, ana, ("plumas", "canales", "comunicación", "oeste"))
    check_captions(ana, luis, ("carpanedo", "championship", "individual"))
    scores = {"Luis hears Ana": check_heard(luis, ana, judge),
              "Ana hears Luis": check_heard(ana, luis, judge)}
    offsets = check_lips([(luis, ana), (ana, luis)])
    print("frames", frames, "chrF", scores, "offsets", offsets)


@pytest.mark.timeout(900)  # a bound for a broken run; a slow machine only takes longer
def test_three_people_and_a_late_joiner(engines, judge, tmp_path):
    """Every listener hears every speaker — in time, or told the server is late — whatever
    the machine's speed: the test waits on what the pages received, never on a schedule, and
    judges each listener on what was voiced to them."""
    from playwright.async_api import async_playwright

    ana = Person("Ana", "en", ("fleurs-en-004",), lead_s=9.0)
    luis = Person("Luis", "es", (), lead_s=1.0)  # listens
    # Zoe joins once Ana and Luis are in the call (their connections are renegotiated for her
    # video) and speaks 25 s after (Luis hears her own voice)
    zoe = Person("Zoe", "es", ("fleurs-es-004",), lead_s=25.0)
    everyone = [ana, luis, zoe]

    async def main():
        camera = frame_index_y4m(tmp_path / "camera.y4m")
        async with running_server(engines) as srv, async_playwright() as pw:
            try:
                for p in everyone:
                    await open_page(pw, srv, tmp_path, p, camera)
                await join([ana, luis])
                await join([zoe])
                room = srv.hub.rooms[ROOM]
                assert len(room.participants) == 3
                await until_voiced([(luis, ana), (zoe, ana), (ana, zoe)])
                for p in everyone:
                    await collect(p, "three")
                await leave_all(srv, everyone)
            finally:
                await close_browsers(everyone)

    asyncio.run(main())
    frames = {p.name: check_page(p, everyone, min_frames=40) for p in everyone}
    # Zoe's video reached the two who were there before her: their calls were renegotiated
    assert ana.state["negotiations"] >= 2 and luis.state["negotiations"] >= 2, \
        (ana.state["negotiations"], luis.state["negotiations"])
    for listener in (luis, zoe):
        check_captions(listener, ana, ("personas", "plumas", "volar"))
    check_captions(ana, zoe, ("carpanedo", "championship", "individual"))
    check_captions(luis, zoe, ("carreras", "campeonato", "miércoles"))  # her own words
    # Luis hears Ana translated, then Zoe in her own voice: his recording is judged for Ana up
    # to Zoe's first word or the end of Ana's translation at his page, whichever is later (a
    # slow server may still be voicing Ana when Zoe speaks), and from Zoe's first word for her
    # voice's loudness
    zoe_starts = next(r for r in ana.state["records"]
                      if r.get("type") == "speech_started" and r.get("speaker") == zoe.pid)
    start = zoe_starts["page_ms"]
    # when her first word reached the server: the record itself comes as late as the VAD is
    # (over a second on a machine at half its CPU), her passed-through voice does not wait
    onset = start - zoe_starts.get("latency_ms", 0.0)
    ana_end = played_until_ms(luis.state["records"], ana.pid) or start
    at = lambda ms: int((ms - luis.state["recording_ms"]) / 1000 * 16000)  # noqa: E731
    cut = at(start)
    whole, luis.audio = luis.audio, luis.audio[:max(cut, at(ana_end))]
    scores = {"Luis hears Ana": check_heard(luis, ana, judge),
              "Zoe hears Ana": check_heard(zoe, ana, judge),
              "Ana hears Zoe": check_heard(ana, zoe, judge)}
    clip = load_clip(zoe.clips[0])
    her_voice = whole[at(onset):at(onset) + len(clip) + 16000]
    loud, said = speech_seconds(her_voice, 16000), speech_seconds(clip, 16000)
    assert loud > 0.7 * said, (loud, said)  # her voice, about as loud as she spoke
    offsets = check_lips([(luis, ana), (zoe, ana), (ana, zoe)])
    print("frames", frames, "chrF", scores, "offsets", offsets)


# -- accessibility ----------------------------------------------------------------------------
async def accessible(page, what: str) -> None:
    """axe-core (WCAG 2 A and AA rules) finds nothing on the page."""
    import axe_playwright_python

    script = Path(axe_playwright_python.__file__).with_name("axe.min.js")
    await page.add_script_tag(path=str(script))
    result = await page.evaluate(
        "axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa']}})")
    problems = [(v["id"], [n["target"] for n in v["nodes"]]) for v in result["violations"]]
    assert not problems, (what, problems)


async def keyboard(page) -> None:
    """Every call control is reached with Tab and works from the keyboard."""
    await page.focus("body")
    reached = []
    for _ in range(20):
        await page.keyboard.press("Tab")
        reached.append(await page.evaluate("document.activeElement.id"))
    assert {"mute", "camera", "live-video", "link", "copy-link", "stop"} <= set(reached), reached
    await page.focus("#mute")
    await page.keyboard.press("Space")
    assert await page.get_attribute("#mute", "aria-pressed") == "true"
    await page.keyboard.press("Enter")
    assert await page.get_attribute("#mute", "aria-pressed") == "false"
