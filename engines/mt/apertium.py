"""Apertium rule-based MT, the MT that works fully offline today (en<->es, es<->pt, fr<->es ...).

Starting Apertium costs ~150 ms (a dozen processes load their transducers) and a sentence then
takes a few ms, so each pair gets one long-lived pipeline in null-flush mode (every stage flushes
its output when it reads a NUL) and is fed sentence by sentence.

The ``apertium -z -u <pair>`` wrapper script cannot be that server in Apertium 3.8: its txt
deformatter (apertium-destxt) drops the NUL and its gawk SETVAR filter reads ahead, so it answers
nothing until stdin closes. So we run the pair's mode pipeline in null-flush form
(``apertium-wblank-mode -z``, with ``-n`` to the generator as ``apertium -u`` does: no unknown-word
marks) and do the txt deformatting here: escape the stream format's reserved characters, append
the "." that destxt adds (the tagger needs a sentence end) and a numbered superblank that comes out
verbatim after the translation, so each answer is delimited without counting NULs (stages may emit
several per flush)."""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

from babelcall.realtime.cost import charge
from babelcall.realtime.errors import EngineUnavailable, UnsupportedLanguage

INSTALL_HINT = "apertium is not installed: apt-get install apertium apertium-eng-spa"

# ISO 639-1 -> the ISO 639-3 codes current Apertium pairs are named with
ISO639_3 = {
    "af": "afr", "an": "arg", "bg": "bul", "br": "bre", "ca": "cat", "cy": "cym", "da": "dan",
    "de": "deu", "en": "eng", "eo": "epo", "es": "spa", "eu": "eus", "fr": "fra", "gl": "glg",
    "hi": "hin", "id": "ind", "is": "isl", "it": "ita", "kk": "kaz", "mk": "mkd", "ms": "zlm",
    "nb": "nob", "nl": "nld", "nn": "nno", "no": "nor", "oc": "oci", "pl": "pol", "pt": "por",
    "ro": "ron", "ru": "rus", "sc": "srd", "sl": "slv", "sv": "swe", "tt": "tat", "uk": "ukr",
    "ur": "urd", "be": "bel", "sh": "hbs", "sr": "hbs", "hr": "hbs", "bs": "hbs",
}

# Debian packages that carry a pair (both directions); older ones keep 2-letter names
DEBIAN_PACKAGES = {
    frozenset(p): pkg for p, pkg in [
        (("en", "es"), "apertium-eng-spa"), (("en", "ca"), "apertium-eng-cat"),
        (("es", "ca"), "apertium-spa-cat"), (("es", "pt"), "apertium-es-pt"),
        (("fr", "es"), "apertium-fr-es"), (("fr", "ca"), "apertium-fra-cat"),
        (("pt", "ca"), "apertium-por-cat"), (("es", "it"), "apertium-spa-ita"),
        (("ca", "it"), "apertium-cat-ita"), (("es", "gl"), "apertium-es-gl"),
        (("en", "gl"), "apertium-en-gl"), (("pt", "gl"), "apertium-pt-gl"),
        (("es", "ro"), "apertium-es-ro"), (("eu", "es"), "apertium-eu-es"),
        (("eu", "en"), "apertium-eu-en"), (("oc", "fr"), "apertium-oci-fra"),
        (("oc", "es"), "apertium-oc-es"), (("oc", "ca"), "apertium-oc-ca"),
        (("ru", "uk"), "apertium-rus-ukr"), (("af", "nl"), "apertium-afr-nld"),
        (("is", "en"), "apertium-isl-eng"), (("mk", "en"), "apertium-mkd-eng"),
        (("sv", "da"), "apertium-swe-dan"), (("nn", "nb"), "apertium-nno-nob"),
    ]
}

_RESERVED = re.compile(r"([\\^$\[\]<>@/{}])")
# backslash escapes, and the brackets of superblanks (apertium-retxt keeps their content)
_UNESCAPE = re.compile(r"\\(.)|[\[\]]", re.S)
_MARKS = re.compile(r"(?<!\w)[*#@]+(?=\w)")
_MODE = re.compile(r"^([a-z]{2,3})-([a-z]{2,3})$")


def _codes(lang: str) -> list[str]:
    base = lang.lower().replace("_", "-").split("-")[0]
    return list(dict.fromkeys([ISO639_3.get(base, base), base]))


def package_hint(source: str, target: str) -> str:
    pkg = DEBIAN_PACKAGES.get(frozenset((source, target)))
    if pkg:
        return f"apt-get install {pkg}"
    return f"look for an Apertium {source}-{target} pair with: apt-cache search apertium"


class _Pipeline:
    """One running mode pipeline; callers serialise access with the pair's lock."""

    def __init__(self, command: str, timeout: float) -> None:
        self.timeout = timeout
        # bash runs the pipeline; its own session lets stop() end every stage at once
        self.proc = subprocess.Popen(
            ["bash", "-c", command, "bash", "-n", ""], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
        self._buf = b""
        self._serial = 0
        self._pids: list[int] = []

    def pids(self) -> list[int]:
        """The pipeline's processes (its process group), for the cost account: Apertium's
        CPU is spent there, not in the calling thread."""
        if not self._pids and self.alive():
            self._pids = _process_group(self.proc.pid)
        return self._pids

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        self.proc.wait()

    def request(self, escaped: str) -> str:
        self._serial += 1
        marker = f"[babelcall:{self._serial}]".encode()
        self.proc.stdin.write(escaped.encode() + b"." + marker + b"\0")
        self.proc.stdin.flush()
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + self.timeout
        while marker not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("apertium did not answer")
            if select.select([fd], [], [], left)[0]:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise EOFError("apertium exited")
                self._buf += chunk
        head, _, self._buf = self._buf.partition(marker)
        out = head.replace(b"\0", b"").decode("utf-8", errors="replace")
        return out[:-1] if out.endswith(".") else out  # the "." we appended


class ApertiumTranslator:
    """Apertium behind the ``Translator`` protocol; one instance serves every session."""

    name = "apertium"
    supports_prefix = False
    # a few ms per sentence in its own processes: not worth a compute slot (realtime/scheduler)
    shares_compute = False

    def __init__(self, datadir: str | os.PathLike[str] | None = None, *,
                 timeout: float = 30.0) -> None:
        if not (shutil.which("apertium") and shutil.which("apertium-wblank-mode")):
            raise EngineUnavailable(INSTALL_HINT)
        self.datadir = Path(datadir or os.environ.get("APERTIUM_DATADIR")
                            or "/usr/share/apertium")
        self.timeout = timeout
        self._pipes: dict[str, _Pipeline] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def mode(self, source: str, target: str) -> str | None:
        """The installed mode (pair name) for source->target, e.g. ``eng-spa``."""
        for s in _codes(source):
            for t in _codes(target):
                if (self.datadir / "modes" / f"{s}-{t}.mode").is_file():
                    return f"{s}-{t}"
        return None

    def supports(self, source: str, target: str) -> bool:
        return self.mode(source, target) is not None

    def pairs(self) -> list[tuple[str, str]]:
        """Installed pairs as ISO 639-1 codes where they have one (variant modes such as
        ``spa-eng_US`` and ``eng-cat_valencia`` are left out)."""
        to_639_1 = {three: two for two, three in ISO639_3.items() if two not in ("sr", "hr",
                                                                               "bs")}
        found = set()
        for path in (self.datadir / "modes").glob("*.mode"):
            m = _MODE.match(path.stem)
            if m:
                found.add(tuple(to_639_1.get(code, code) for code in m.groups()))
        return sorted(found)

    def translate(
        self,
        sources: list[str],
        *,
        source: str,
        target: str,
        target_prefixes: list[str] | None = None,
    ) -> list[str]:
        """``target_prefixes`` is ignored: Apertium cannot be forced to continue a prefix, and
        the incremental policy re-translates the sentence instead."""
        mode = self.mode(source, target)
        if mode is None:
            raise UnsupportedLanguage(f"Apertium has no {source}->{target} pair installed; "
                                      f"install it with: {package_hint(source, target)}")
        return [self._translate_one(mode, text) for text in sources]

    def _translate_one(self, mode: str, text: str) -> str:
        text = " ".join(text.replace("\0", " ").split())
        if not text:
            return ""
        escaped = _RESERVED.sub(r"\\\1", text)
        with self._lock_for(mode), charge("mt", processes=lambda: self._pids_of(mode)):
            for attempt in range(2):
                pipe = self._pipes.get(mode)
                if pipe is None or not pipe.alive():
                    pipe = self._start(mode, pipe)
                try:
                    raw = pipe.request(escaped)
                    break
                except (EOFError, OSError) as e:  # OSError: broken pipe, timeout
                    pipe.stop()  # its state is unknown: never reuse it
                    if attempt:
                        raise EngineUnavailable(f"apertium {mode} failed: {e}") from e
        out = _UNESCAPE.sub(lambda m: m.group(1) or "", raw)
        return " ".join(_MARKS.sub("", out).split())

    def _pids_of(self, mode: str) -> list[int]:
        pipe = self._pipes.get(mode)
        return pipe.pids() if pipe is not None else []

    def _lock_for(self, mode: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(mode, threading.Lock())

    def _start(self, mode: str, old: _Pipeline | None) -> _Pipeline:
        if old is not None:
            old.stop()  # bash may be gone while its stages still run
        try:
            command = subprocess.run(
                ["apertium-wblank-mode", "-z", str(self.datadir / "modes" / f"{mode}.mode")],
                capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError) as e:
            raise EngineUnavailable(f"cannot read the apertium {mode} mode: {e}") from e
        pipe = _Pipeline(command, self.timeout)
        self._pipes[mode] = pipe
        return pipe

    def close(self) -> None:
        with self._guard:
            pipes, self._pipes = list(self._pipes.values()), {}
        for pipe in pipes:
            pipe.stop()

    def __enter__(self) -> ApertiumTranslator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _process_group(pgid: int) -> list[int]:
    """Every process of group ``pgid`` (Linux /proc; empty elsewhere)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if len(fields) > 2 and fields[2] == str(pgid):  # state, ppid, pgrp
            found.append(int(entry.name))
    return found
