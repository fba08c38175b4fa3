"""The language pairs this install can serve: the engine of each stage and the measured quality
of each pair. One table for ``babelcall languages``, the server's ``GET /languages`` (and
``/health``) and the browser page's language pickers.

Quality comes from ``babelcall bench --pair X-Y --fast --record`` (engines/quality.json): each
figure is kept with its date and with the MT route it was measured on, and is shown only while
that is still the pair's route (a figure measured on another engine would be a false claim)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from babelcall.engines.mt.router import route_label, text_engine
from babelcall.realtime.errors import UnsupportedLanguage

QUALITY_FILE = Path(__file__).with_name("quality.json")
# Languages listed besides those of the installed text engines: Whisper translates them into
# English (German measured; any other of Whisper's languages works too: ``--all``).
LISTED_SPEAKERS = ("de",)


@dataclass(frozen=True)
class PairInfo:
    source: str
    target: str
    asr: str  # "whisper-base" or "whisper-base translate"
    mt: str  # the route: "bergamot", "apertium", "apertium en->es->fr", "whisper-translate"
    tts: str
    quality: dict[str, Any] | None  # measured figures with their date, or None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_quality(path: Path = QUALITY_FILE) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}


def record_quality(pair: str, figures: dict[str, Any], tts: dict[str, Any] | None = None,
                   path: Path = QUALITY_FILE) -> None:
    """Store a bench's figures for ``pair`` (and a TTS round trip per language)."""
    data = load_quality(path)
    data.setdefault("pairs", {})[pair] = figures
    for lang, row in (tts or {}).items():
        data.setdefault("tts", {})[lang] = row
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False, sort_keys=True) + "\n",
                    encoding="utf-8")


def mt_label(engines: Any, source: str, target: str) -> str:
    """The MT route of a pair as the table names it (UnsupportedLanguage if none)."""
    route = getattr(engines.translator, "route", None)
    if route is not None:
        found = route(source, target)
        if found is None:
            raise UnsupportedLanguage(f"no route for {source}->{target}")
        return found.label
    return route_label(text_engine(engines.translator, source, target), source, target)


def tts_label(engines: Any, language: str) -> str:
    name_for = getattr(engines.tts, "name_for", None)
    if name_for is not None:
        return name_for(language)
    return str(getattr(engines.tts, "model_name", type(engines.tts).__name__))


def candidate_languages(engines: Any, everything: bool = False) -> list[str]:
    """Languages worth listing: those of the installed text engines and the synthesiser, and
    the listed speakers (``everything``: every language the recogniser knows)."""
    from babelcall.engines.registry import asr_languages

    known = asr_languages(engines.asr) or frozenset()
    langs = set(LISTED_SPEAKERS) | {"en"}
    langs |= getattr(engines.translator, "languages", set)()
    langs |= set(getattr(engines.tts, "languages", ()))
    if everything:
        langs |= known
    return sorted(lang for lang in langs if not known or lang in known)


def pair_table(engines: Any, languages: Iterable[str] | None = None,
               quality: dict[str, Any] | None = None) -> list[PairInfo]:
    """Every pair among ``languages`` (default: ``candidate_languages``) that the engines
    serve, each with its engines and, when measured on the same route, its quality."""
    langs = sorted(languages) if languages is not None else candidate_languages(engines)
    quality = load_quality() if quality is None else quality
    asr_name = str(getattr(engines.asr, "model_name", "asr"))
    rows = []
    for source in langs:
        for target in langs:
            if source == target:
                continue
            try:
                engines.check_pair(source, target)
                mt = mt_label(engines, source, target)
            except UnsupportedLanguage:
                continue
            task = engines.asr_task(source, target)
            measured = quality.get("pairs", {}).get(f"{source}-{target}")
            if measured is not None and measured.get("mt") != mt:
                measured = None
            tts_row = quality.get("tts", {}).get(target)
            if measured is not None and tts_row is not None:
                measured = {**measured, "tts_wer": tts_row.get("wer"),
                            "tts_date": tts_row.get("date")}
            rows.append(PairInfo(source, target,
                                 asr_name + (" translate" if task == "translate" else ""),
                                 mt, tts_label(engines, target), measured))
    return rows


def languages_payload(engines: Any) -> dict[str, Any]:
    """The JSON of ``GET /languages``: every listed language and every servable pair."""
    rows = pair_table(engines)
    langs = sorted({r.source for r in rows} | {r.target for r in rows})
    return {"languages": langs, "pairs": [r.as_dict() for r in rows]}


def markdown_table(rows: list[PairInfo]) -> str:
    """The table ``babelcall languages`` prints (and the README carries)."""
    def fig(q: dict[str, Any] | None, key: str) -> str:
        value = (q or {}).get(key)
        return "–" if value is None else f"{value:g}"

    lines = ["| pair | ASR | MT | TTS | text chrF / BLEU | heard chrF | TTS WER | measured |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        q = r.quality
        text = "–" if q is None or q.get("text_chrf") is None else \
            f"{fig(q, 'text_chrf')} / {fig(q, 'text_bleu')}"
        heard = fig(q, "heard_chrf") + (" (round trip)" if q and q.get("round_trip") else "")
        lines.append(f"| {r.source}→{r.target} | {r.asr} | {r.mt} | {r.tts} | {text} | "
                     f"{heard} | {fig(q, 'tts_wer')} | {(q or {}).get('date', 'not measured')} |")
    return "\n".join(lines) + "\n"


def check_language(engines: Any, language: str) -> None:
    """Refuse a language no pair serves in either direction (a room participant's), naming
    the languages that are served."""
    others = candidate_languages(engines)
    for other in others:
        for pair in ((language, other), (other, language)):
            try:
                engines.check_pair(*pair)
                return
            except UnsupportedLanguage:
                pass
    raise UnsupportedLanguage(f"no installed pair speaks or hears '{language}'; this install "
                              f"serves {', '.join(others)} (babelcall languages)")
