"""Two translators chained through a pivot language (en->es->fr with two Apertium pairs).

Apertium has pairs around Spanish (eng-spa, fr-es, spa-ita, es-pt, ...) but few from English, so
en->fr and en->it go through Spanish: on the 5 dev en-fr sentences ``eng-spa | es-fr`` scores
chrF 44.8, on par with en->es direct (45.3). The pivot is an ordinary translator without a
target prefix: the incremental policy re-translates the growing source and commits only what
successive pivoted translations agree on, so committed target text is never rewritten however
the Spanish in between moves (tests/engines/mt/test_pivot.py)."""

from __future__ import annotations

from babelcall.engines.base import Translator
from babelcall.realtime.errors import UnsupportedLanguage


class PivotTranslator:
    """``first`` translates source -> ``via``, ``second`` translates ``via`` -> target."""

    supports_prefix = False

    def __init__(self, first: Translator, second: Translator, via: str) -> None:
        self.first = first
        self.second = second
        self.via = via
        self.name = first.name if first.name == second.name else f"{first.name}+{second.name}"
        self.shares_compute = first.shares_compute or second.shares_compute

    def describe(self, source: str, target: str) -> str:
        return f"{self.name} {source}->{self.via}->{target}"

    def supports(self, source: str, target: str) -> bool:
        return source != self.via != target and self.first.supports(source, self.via) \
            and self.second.supports(self.via, target)

    def translate(
        self,
        sources: list[str],
        *,
        source: str,
        target: str,
        target_prefixes: list[str] | None = None,
    ) -> list[str]:
        """``target_prefixes`` is ignored: neither hop can continue a target prefix."""
        if not self.supports(source, target):
            raise UnsupportedLanguage(f"{self.name} cannot translate {source}->{target} through "
                                      f"'{self.via}'")
        middle = self.first.translate(sources, source=source, target=self.via)
        return self.second.translate(middle, source=self.via, target=target)
