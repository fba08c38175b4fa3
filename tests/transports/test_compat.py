"""The aiortc, aioice and aiohttp internals babelcall relies on (``transports/compat.py``)
exist in the installed versions: an upgrade that moves one fails here, not in a call. And the
pins in pyproject.toml keep an unchecked upgrade from being installed at all."""

import asyncio
import re
import tomllib
from importlib.metadata import version
from pathlib import Path

from babelcall.transports import compat


def test_every_private_attribute_babelcall_uses_exists():
    async def main():
        missing = compat.missing()
        await asyncio.sleep(0)  # the probe's peer connection closes
        return missing

    assert asyncio.run(main()) == []


def test_the_installed_versions_are_within_the_pins():
    text = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    deps = tomllib.loads(text)["project"]["dependencies"]
    for name in ("aiortc", "aioice", "aiohttp"):
        (spec,) = [d for d in deps if re.match(rf"{name}\b", d)]
        upper = re.search(r"<\s*([\d.]+)", spec)
        assert upper, f"{name} needs an upper bound (the internals are checked per version)"
        installed = tuple(int(x) for x in version(name).split(".")[:2])
        assert installed < tuple(int(x) for x in upper.group(1).split(".")[:2]), spec
    assert any(re.match(r"pyOpenSSL\b", d, re.I) for d in deps)  # transports/dtls.py


# -- consent freshness (compat.patient_consent) ------------------------------------------------
async def _connected_pair():
    """Two aioice connections over loopback, connected (one nominated pair each)."""
    from aioice import Connection

    a, b = Connection(ice_controlling=True, use_ipv6=False), Connection(ice_controlling=False,
                                                                        use_ipv6=False)
    await asyncio.gather(a.gather_candidates(), b.gather_candidates())
    for me, far in ((a, b), (b, a)):
        for candidate in far.local_candidates:
            await me.add_remote_candidate(candidate)
        await me.add_remote_candidate(None)
        me.remote_username, me.remote_password = far.local_username, far.local_password
    await asyncio.gather(a.connect(), b.connect())
    return a, b


def _answer_late(conn, delay_s: float | None) -> None:
    """``conn`` answers STUN requests ``delay_s`` late (None: never), as a far end behind a
    busy event loop does."""
    answer = conn.request_received
    loop = asyncio.get_running_loop()
    conn.request_received = (lambda *args: None) if delay_s is None else (
        lambda *args: loop.call_later(delay_s, answer, *args))


async def _still_connected(conn) -> bool:
    try:
        await conn.send(b"x")
        return True
    except ConnectionError:
        return False


def _consent_run(monkeypatch, own_check: bool) -> tuple[bool, bool]:
    """(a's connection held while b answered 0.7 s late, held once b stopped answering)."""
    from aioice import ice

    import babelcall.transports.peer  # noqa: F401  (installs the check, as every peer does)

    if own_check:
        monkeypatch.setattr(ice.Connection, "query_consent", compat.aioice_query_consent)
    monkeypatch.setattr(ice, "CONSENT_INTERVAL", 0.2)  # checks every 0.16-0.24 s
    monkeypatch.setattr(compat, "CONSENT_EXPIRY_S", 1.5)

    async def main():
        a, b = await _connected_pair()
        try:
            _answer_late(b, 0.7)
            await asyncio.sleep(5.0)  # 20+ checks (aioice: 7), each answered over 500 ms late
            held_late = await _still_connected(a)
            _answer_late(b, None)
            await asyncio.sleep(3.0)  # twice the expiry without an answer
            return held_late, await _still_connected(a)
        finally:
            await asyncio.gather(a.close(), b.close())

    return asyncio.run(main())


def test_consent_holds_while_answers_come_late_and_expires_without_them(monkeypatch):
    """The failure this replaces: a server translating three browsers on one core read every
    consent answer later than 500 ms and dropped all three ("Consent to send expired")."""
    assert _consent_run(monkeypatch, own_check=False) == (True, False)


def test_aioice_own_check_drops_a_far_end_that_answers_late(monkeypatch):
    """The same far end under aioice's own check (one try, 500 ms, six misses end it): the
    call is dropped while the far end is still there. If this stops failing, aioice has fixed
    it and ``patient_consent`` can go."""
    assert _consent_run(monkeypatch, own_check=True)[0] is False


def test_an_ice_socket_is_read_in_full_at_each_wake_up():
    """Datagrams that queued while the loop was busy reach the connection at its next
    iteration, not one per iteration (asyncio's pace: a browser's video outran a busy server's
    loop, and consent answers and renegotiations waited seconds behind it)."""
    import babelcall.transports.peer  # noqa: F401  (installs the drain, as every peer does)

    async def main():
        a, b = await _connected_pair()
        try:
            for i in range(50):  # never suspends: all 50 wait in b's socket
                await a.send(b"%d" % i)
            for _ in range(3):
                await asyncio.sleep(0)
            return b._queue.qsize()
        finally:
            await asyncio.gather(a.close(), b.close())

    assert asyncio.run(main()) == 50
