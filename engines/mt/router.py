"""Which engine translates each language pair, chosen by measurement, and one translator that
serves every pair the install has.

The order of preference (figures: the 5 FLEURS dev clips/sentences per pair, 2026-11-28):
1. Bergamot, where it has the pair (en<->pt): neural, text chrF 75.4 en->pt and 76.6 pt->en,
   against 57.1 / 50.9 for the Apertium route through Spanish.
2. Into English, Whisper's own translation (``task="translate"``): from the same audio it beat
   Whisper transcription + Apertium, es->en chrF 43.7 vs 39.8 and fr->en (through Spanish) 41.6
   vs 35.9. Such a pair has no text engine: the session asks the recogniser to translate.
3. A measured neural-first pivot (``NEURAL_PIVOTS``): en->es as Bergamot en->pt then Apertium
   pt->es, text chrF 48.5 against 45.3 for Apertium's eng-spa (word by word, as the recogniser
   commits: 47.4 vs 43.6); the neural hop reads the English, the rule-based one crosses between
   two close languages, and no English word is left untranslated ("lag", "glowing").
4. An Apertium pair (eng-spa, fr-es, spa-ita, es-pt, ...).
5. Two hops through a pivot (Spanish first, then English), e.g. en->es->fr (chrF 44.8 on the
   dev en-fr sentences, on par with en->es direct at 45.3) or en->es->it.

Engines are passed in already constructed; each loads a pair's model or starts its process on
that pair's first call, so serving many pairs costs a single-pair start-up nothing."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from babelcall.engines.base import Translator
from babelcall.realtime.errors import UnsupportedLanguage

WHISPER_TRANSLATE = "whisper-translate"
PIVOTS = ("es", "en")  # Apertium's pairs meet in Spanish; Bergamot's in English
# Pairs where a pivot whose first hop is neural beat the direct rule-based pair, and through
# which language (module docstring, 3.). Measured pairs only: pt->es, say, stays Apertium's own.
NEURAL_PIVOTS: dict[tuple[str, str], str] = {("en", "es"): "pt"}
# Neural text engines, preferred over Whisper's translation; rule-based ones (Apertium) come after
NEURAL = frozenset({"bergamot", "ctranslate2"})


@dataclass(frozen=True)
class Route:
    """How one pair is translated. ``engine`` None: Whisper translates into English itself."""

    source: str
    target: str
    engine: Translator | None
    label: str  # "bergamot", "apertium", "apertium en->es->fr", "whisper-translate"

    @property
    def via(self) -> str | None:
        return getattr(self.engine, "via", None)


def route_label(engine: Translator | None, source: str, target: str) -> str:
    """How a route is named in tables and ``/stats``: "whisper-translate" (no text engine),
    "apertium", "bergamot", or a pivot's hops ("apertium en->es->fr")."""
    if engine is None:
        return WHISPER_TRANSLATE
    describe = getattr(engine, "describe", None)
    return describe(source, target) if describe is not None else engine.name


def _route(engine: Translator | None, source: str, target: str) -> Route:
    return Route(source, target, engine, route_label(engine, source, target))


class RouterTranslator:
    """A ``Translator`` over several engines: each call goes to the pair's chosen route.

    ``asr_languages``: languages the recogniser can translate into English (Whisper's); None
    turns that route off (the text engines then serve X->en too). Thread-safe as its engines
    are: it keeps no per-call state."""

    name = "auto"

    def __init__(self, engines: Iterable[Translator], *,
                 asr_languages: Iterable[str] | None = None) -> None:
        from babelcall.engines.mt.pivot import PivotTranslator

        self.engines: tuple[Translator, ...] = tuple(engines)
        self.asr_languages = frozenset(asr_languages) if asr_languages is not None else None
        self.supports_prefix = bool(self.engines) and all(e.supports_prefix
                                                          for e in self.engines)
        self.shares_compute = any(e.shares_compute for e in self.engines)
        self._routes: dict[tuple[str, str], Route | None] = {}
        self._text_routes: dict[tuple[str, str], Route | None] = {}  # Whisper's route left out
        self._pivots = [PivotTranslator(a, b, via)
                        for via in PIVOTS for a in self.engines for b in self.engines]
        self._neural_pivots = {pair: [PivotTranslator(a, b, via) for a in self.engines
                                      if a.name in NEURAL for b in self.engines]
                               for pair, via in NEURAL_PIVOTS.items()}

    # -- choosing -------------------------------------------------------------------------
    def route(self, source: str, target: str) -> Route | None:
        """The chosen route for a pair, or None when nothing installed translates it."""
        key = (source, target)
        if key not in self._routes:
            self._routes[key] = self._choose(source, target)  # same answer from any thread
        return self._routes[key]

    def _choose(self, source: str, target: str, *, whisper: bool = True) -> Route | None:
        if source == target:
            return None
        direct = [e for e in self.engines if e.supports(source, target)]
        neural = [e for e in direct if e.name in NEURAL]
        if neural:
            return _route(neural[0], source, target)
        if whisper and target == "en" and self.asr_languages is not None \
                and source in self.asr_languages:
            return _route(None, source, target)
        for pivot in self._neural_pivots.get((source, target), ()):
            if pivot.supports(source, target):
                return _route(pivot, source, target)
        if direct:
            return _route(direct[0], source, target)
        for pivot in self._pivots:
            if pivot.supports(source, target):
                return _route(pivot, source, target)
        return None

    def engine_for(self, source: str, target: str) -> Translator | None:
        """The engine for the pair (None: Whisper translates), or UnsupportedLanguage."""
        route = self.route(source, target)
        if route is None:
            raise UnsupportedLanguage(f"no installed translation engine for {source}->{target}")
        return route.engine

    def text_engine_for(self, source: str, target: str) -> Translator | None:
        """The best text engine for the pair even where Whisper's translation is preferred
        (None: no text route). A speaker already transcribed for other listeners is
        translated into English from that transcript rather than by a second Whisper
        stream (``realtime/speaker.py``)."""
        key = (source, target)
        if key not in self._text_routes:
            self._text_routes[key] = self._choose(source, target, whisper=False)
        route = self._text_routes[key]
        return None if route is None else route.engine

    def languages(self) -> set[str]:
        """Languages some installed text engine reads or writes (engines that list pairs)."""
        found: set[str] = set()
        for engine in self.engines:
            pairs = getattr(engine, "pairs", None)  # a method, or CTranslate2's attribute
            for pair in (pairs() if callable(pairs) else pairs) or ():
                found.update(pair)
        return found

    def routes(self, sources: Iterable[str], targets: Iterable[str]) -> list[Route]:
        """Every servable pair among these languages."""
        targets = list(targets)
        found = (self.route(s, t) for s in sources for t in targets if s != t)
        return [r for r in found if r is not None]

    # -- the Translator protocol --------------------------------------------------------------
    def supports(self, source: str, target: str) -> bool:
        """True for pairs a text engine translates (not those routed to Whisper)."""
        route = self.route(source, target)
        return route is not None and route.engine is not None

    def translate(
        self,
        sources: list[str],
        *,
        source: str,
        target: str,
        target_prefixes: list[str] | None = None,
    ) -> list[str]:
        engine = self.engine_for(source, target)
        if engine is None:
            raise UnsupportedLanguage(f"{source}->{target} is translated by Whisper itself "
                                      "(task 'translate'), not by a text engine")
        prefixes = target_prefixes if engine.supports_prefix else None
        return engine.translate(sources, source=source, target=target, target_prefixes=prefixes)


def text_engine(translator: Translator | None, source: str, target: str) -> Translator | None:
    """The text engine for a pair, or None where the recogniser translates into English.

    The one rule ``Engines.translator_for``, ``Engines.asr_task`` and ``IncrementalTranslator``
    share, so the recogniser translates exactly when no text engine will. A router answers for
    its pairs; any other translator (one engine, or the scheduler's wrapper around a router)
    serves what it ``supports``, and Whisper every other pair into English."""
    engine_for = getattr(translator, "engine_for", None)
    if engine_for is not None:
        return engine_for(source, target)
    if translator is not None and translator.supports(source, target):
        return translator
    if target == "en":
        return None
    why = f"{translator.name} cannot translate it" if translator is not None else \
        "Whisper translates only into English"
    raise UnsupportedLanguage(f"no offline translation engine for {source}->{target} ({why})")
